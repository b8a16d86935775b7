// detail::Hold, this object's record of its hold, as a table of events: no server. Each row is
// one change (taken or ended, with or without the epoch it was made for) and what must be true
// after it; the keeper's races against clear() that these rules settle are in keep_test.cpp.
#include <gtest/gtest.h>

#include <process_lock.hpp>
#include <optional>
#include <string>

namespace {

using process_lock::detail::Hold;
using namespace std::chrono_literals;
using time_point = Hold::time_point;

struct Step {
  std::string what;
  enum { taken, ended } kind;
  std::uint64_t fence;              // taken: the fence the answer gave (0: none)
  bool released;                    // ended: by our release
  std::optional<Hold::Epoch> epoch;  // made for this hold (nullopt: whatever is current)
  bool recorded;                    // the change's result
  bool ours;                        // then
  std::uint64_t fence_after;
  Hold::Epoch epoch_after;
};

TEST(HoldTest, EventsInOrder) {
  const Step steps[] = {
      {"acquired with fence 7", Step::taken, 7, false, std::nullopt, true, true, 7, 0},
      {"renewed: no fence in the answer keeps 7", Step::taken, 0, false, std::nullopt, true, true, 7, 0},
      {"renewed by the keeper for hold 0", Step::taken, 0, false, 0, true, true, 7, 0},
      {"released by clear()", Step::ended, 0, true, std::nullopt, true, false, 0, 1},
      {"a late renewal for hold 0 does not revive it", Step::taken, 7, false, 0, false, false, 0, 1},
      {"a late loss for hold 0 changes nothing", Step::ended, 0, false, 0, false, false, 0, 1},
      {"ending a hold that is not ours keeps the epoch", Step::ended, 0, false, std::nullopt, true, false, 0, 1},
      {"acquired again with fence 9", Step::taken, 9, false, std::nullopt, true, true, 9, 1},
      {"lost, as the keeper saw it for hold 1", Step::ended, 0, false, 1, true, false, 0, 2},
      {"acquired with no fence known", Step::taken, 0, false, std::nullopt, true, true, 0, 2},
  };
  std::mutex writers;
  Hold hold;
  EXPECT_FALSE(hold.ours());
  EXPECT_EQ(hold.fence(), 0u);
  EXPECT_EQ(hold.epoch(writers), 0u);
  const time_point now = std::chrono::steady_clock::now();
  for (const Step& s : steps) {
    const time_point until = now + 10s;
    const bool recorded = s.kind == Step::taken ? hold.taken(writers, until, s.fence, s.epoch)
                                                : hold.ended(writers, s.released, s.epoch);
    EXPECT_EQ(recorded, s.recorded) << s.what;
    EXPECT_EQ(hold.ours(), s.ours) << s.what;
    EXPECT_EQ(hold.fence(), s.fence_after) << s.what;
    EXPECT_EQ(hold.epoch(writers), s.epoch_after) << s.what;
    EXPECT_EQ(hold.valid_at(now), s.ours) << s.what;
    if (s.ours) {
      EXPECT_EQ(hold.valid_until(), until) << s.what;
    }
    EXPECT_FALSE(hold.valid_at(now + 10s)) << s.what << ": valid until, not at, the end";
  }
}

TEST(HoldTest, AnEndSaysWhetherItWasAReleaseOrALoss) {
  std::mutex writers;
  Hold hold;
  const time_point until = std::chrono::steady_clock::now() + 10s;
  hold.taken(writers, until, 1);
  EXPECT_FALSE(hold.end_of(writers, 0).ended);
  hold.ended(writers, true);
  EXPECT_TRUE(hold.end_of(writers, 0).ended);
  EXPECT_TRUE(hold.end_of(writers, 0).released);
  EXPECT_FALSE(hold.end_of(writers, 1).ended) << "hold 1 has not begun, let alone ended";
  hold.taken(writers, until, 2);
  hold.ended(writers, false);
  EXPECT_TRUE(hold.end_of(writers, 1).ended);
  EXPECT_FALSE(hold.end_of(writers, 1).released) << "lost";
}

}  // namespace
