// The quorum's decisions (detail::tally), as tables: no server. Each row is what the masters
// answered and what the lock must conclude; tests/quorum_test.cpp checks the same rules against
// real masters.
#include <gtest/gtest.h>

#include <process_lock.hpp>
#include <optional>
#include <string>
#include <vector>

namespace {

using process_lock::errc;
using process_lock::Error;
using process_lock::Inspection;
using process_lock::State;
using process_lock::detail::LockReply;
using process_lock::detail::Votes;
namespace tally = process_lock::detail::tally;
using Outcome = tally::Outcome;

// A master that failed to answer.
template <class T>
std::pair<std::optional<T>, Error> failed() {
  return {std::nullopt, Error(errc::timeout, "did not reply")};
}
template <class T>
std::pair<std::optional<T>, Error> answered(T value) {
  return {std::move(value), Error()};
}
std::pair<std::optional<LockReply>, Error> granted(std::uint64_t fence) {
  LockReply r;
  r.acquired = true;
  r.fence = fence;
  return answered(r);
}
std::pair<std::optional<LockReply>, Error> refused(long long holder_pttl) {
  LockReply r;
  r.holder_pttl = holder_pttl;
  return answered(r);
}
// Renewal answers: 1 renewed, 2 re-acquired, 0 not ours; nullopt: failed.
Votes<long long> answers(std::initializer_list<std::optional<long long>> list) {
  Votes<long long> votes;
  for (const auto& a : list) votes.push_back(a ? answered(*a) : failed<long long>());
  return votes;
}

TEST(QuorumTallyTest, Majorities) {
  const std::size_t expected[][2] = {{1, 1}, {2, 2}, {3, 2}, {4, 3}, {5, 3}, {15, 8}};
  for (const auto& row : expected) EXPECT_EQ(tally::majority(row[0]), row[1]) << row[0] << " masters";
}

TEST(QuorumTallyTest, Decisions) {
  struct Row {
    std::size_t masters, yes, no;
    bool in_time;
    Outcome outcome;
  };
  const Row rows[] = {
      {3, 2, 0, true, Outcome::agreed},      // a majority, one master failed
      {3, 3, 0, true, Outcome::agreed},      //
      {3, 2, 1, true, Outcome::agreed},      //
      {3, 2, 1, false, Outcome::refused},    // a majority too late, all answered: a plain no
      {3, 2, 0, false, Outcome::no_quorum},  // too late, and one failed: cannot tell
      {3, 1, 2, true, Outcome::refused},     // another owner holds a majority
      {3, 0, 2, true, Outcome::refused},     // a majority said no: the failed one changes nothing
      {3, 1, 1, true, Outcome::no_quorum},   // the failed one would have decided
      {3, 1, 0, true, Outcome::no_quorum},   //
      {3, 0, 0, true, Outcome::no_quorum},   // nobody answered
      {5, 3, 0, true, Outcome::agreed},      //
      {5, 2, 3, true, Outcome::refused},     //
      {5, 2, 2, true, Outcome::no_quorum},   //
      {5, 0, 3, true, Outcome::refused},     //
      {5, 2, 0, true, Outcome::no_quorum},   //
      {1, 1, 0, true, Outcome::agreed},      //
      {1, 0, 1, true, Outcome::refused},     //
      {1, 0, 0, true, Outcome::no_quorum},   //
  };
  for (const Row& r : rows) {
    const tally::Count c{r.yes, r.no, r.masters - r.yes - r.no};
    EXPECT_EQ(tally::decide(r.masters, c, r.in_time), r.outcome)
        << r.masters << " masters, " << r.yes << " yes, " << r.no << " no, in time " << r.in_time;
  }
}

// An acquire's parallel round stops waiting once it is granted or refused whatever the masters
// still outstanding (counted as failed until they answer) say: yes, no, or nothing at all. One
// bound for no quorum waits for all, so that the error names every master's fate.
TEST(QuorumTallyTest, AnAcquireStopsWaitingOnceGrantedOrRefusedForCertain) {
  struct Row {
    std::size_t masters, yes, no, failed, outstanding;
    bool certain;
    const char* why;
  };
  const Row rows[] = {
      {3, 2, 0, 1, 1, true, "a majority granted: the last one cannot undo it"},
      {3, 1, 0, 2, 2, false, "one yes, two to come"},
      {3, 1, 1, 1, 1, false, "the last one decides"},
      {3, 0, 2, 1, 1, true, "a majority refused: held by another"},
      {3, 1, 1, 1, 0, true, "all in"},
      {3, 0, 1, 2, 1, false, "a failure and one to come: refused or no quorum"},
      {3, 0, 0, 2, 0, true, "two failed, none to come"},
      {3, 0, 0, 2, 1, false, "no quorum either way: the last one is still heard"},
      {3, 0, 0, 3, 3, false, "nothing yet"},
      {5, 3, 0, 2, 2, true, "three of five"},
      {5, 2, 0, 3, 3, false, "two of five, three to come"},
      {5, 2, 2, 1, 1, false, "the last one decides between agreed and no quorum"},
      {5, 0, 3, 2, 2, true, "three of five refused"},
      {5, 1, 1, 3, 1, false, "no quorum whatever comes: still heard, for the message"},
      {5, 0, 0, 3, 2, false, "three failed: no quorum, the other two still heard"},
      {5, 1, 0, 4, 2, false, "two failed, two to come: they could make three yes"},
      {5, 1, 1, 3, 2, false, "two to come could make three no"},
      {1, 0, 0, 1, 1, false, "one master, not yet answered"},
      {1, 1, 0, 0, 0, true, "one master granted"},
      {3, 2, 0, 0, 1, false, "more outstanding than unanswered: not a real count"},
  };
  for (const Row& r : rows)
    EXPECT_EQ(tally::acquire_decided(r.masters, tally::Count{r.yes, r.no, r.failed}, r.outstanding), r.certain) << r.why;
}

// Votes of masters still outstanding are nullopt, like failures; `outstanding` says how many.
TEST(QuorumTallyTest, ClearStopsWaitingOnceItsVerdictIsCertain) {
  const std::nullopt_t x = std::nullopt;
  EXPECT_TRUE(tally::clear_decided(answers({1, 1, x}), 1)) << "a majority released ours";
  EXPECT_TRUE(tally::clear_decided(answers({1, 1, 1, x, x}), 2)) << "three of five released ours";
  EXPECT_FALSE(tally::clear_decided(answers({1, 0, x}), 1)) << "the last one decides ours or theirs";
  EXPECT_FALSE(tally::clear_decided(answers({1, -1, x}), 1)) << "the last one may hold another's";
  EXPECT_FALSE(tally::clear_decided(answers({1, x, x}), 2)) << "one answer of three";
  EXPECT_FALSE(tally::clear_decided(answers({1, x, x}), 1)) << "one failed, one to come";
  EXPECT_TRUE(tally::clear_decided(answers({1, x, x}), 0)) << "nothing more to come";
  EXPECT_TRUE(tally::clear_decided(answers({0, 0, -1, x, x}), 2)) << "another's, and ours can no longer win";
  EXPECT_FALSE(tally::clear_decided(answers({0, 1, 1, x, x}), 2)) << "one more of ours makes it ours";
  EXPECT_TRUE(tally::clear_decided(answers({0, 0, x}), 1)) << "another owner's on a majority";
}

TEST(QuorumTallyTest, StateIsCertainAtTheFirstHolderOrOnceAllAnswered) {
  auto held = [](std::initializer_list<std::optional<bool>> list) {
    Votes<bool> votes;
    for (const auto& a : list) votes.push_back(a ? answered(*a) : failed<bool>());
    return votes;
  };
  EXPECT_TRUE(tally::state_settled(held({true, std::nullopt, std::nullopt}), 2)) << "one holder is enough";
  EXPECT_FALSE(tally::state_settled(held({false, false, std::nullopt}), 1)) << "open needs the last one too";
  EXPECT_TRUE(tally::state_settled(held({false, false, std::nullopt}), 0)) << "the last one failed";
}

TEST(QuorumTallyTest, CountsWhatEachMasterSaid) {
  const Votes<LockReply> votes = {granted(4), refused(100), failed<LockReply>(), granted(5), refused(0)};
  const tally::Count c = tally::count(votes, [](const LockReply& r) { return r.acquired; });
  EXPECT_EQ(c.yes, 2u);
  EXPECT_EQ(c.no, 2u);
  EXPECT_EQ(c.failed, 1u);
}

TEST(QuorumTallyTest, TheFenceIsTheHighestOfThoseThatGrantedAndTheOthersAreRaised) {
  const Votes<LockReply> votes = {granted(5), granted(7), failed<LockReply>(), refused(900), granted(7), granted(6)};
  EXPECT_EQ(tally::fence_to_hand_out(votes), 7u);
  EXPECT_EQ(tally::masters_to_raise(votes, 7), (std::vector<std::size_t>{0, 5}));
  EXPECT_EQ(tally::masters_to_raise(votes, 5), std::vector<std::size_t>{});
  EXPECT_EQ(tally::fence_to_hand_out({refused(10), failed<LockReply>()}), 0u) << "nothing granted, no fence";
}

TEST(QuorumTallyTest, AFailedAcquireGivesBackWhatGrantedAndWhatDidNotAnswer) {
  const Votes<LockReply> votes = {granted(3), refused(100), failed<LockReply>(), granted(3), refused(50)};
  EXPECT_EQ(tally::masters_to_release(votes), (std::vector<std::size_t>{0, 2, 3}));
  EXPECT_EQ(tally::masters_to_release({refused(1), refused(2)}), std::vector<std::size_t>{});
}

TEST(QuorumTallyTest, AWaiterIsToldTheShortestRemainingHold) {
  EXPECT_EQ(tally::shortest_holder_pttl({refused(300), refused(100), granted(2), refused(0), failed<LockReply>()}),
            100);
  EXPECT_EQ(tally::shortest_holder_pttl({refused(0), refused(-2), granted(1)}), -1) << "no TTL known";
  EXPECT_EQ(tally::shortest_holder_pttl({}), -1);
}

TEST(QuorumTallyTest, AMasterThatLostTheLockGetsItBackOnlyWhileAMajorityStillHoldsItForUs) {
  using List = std::vector<std::size_t>;
  EXPECT_EQ(tally::masters_to_reacquire(answers({1, 1, 0, 1, 0}), true), (List{2, 4}));
  EXPECT_EQ(tally::masters_to_reacquire(answers({1, 1, 0, std::nullopt, 1}), true), (List{2})) << "not the failed one";
  EXPECT_EQ(tally::masters_to_reacquire(answers({1, 1, 0, std::nullopt, 0}), true), List{}) << "2 of 5 renewed";
  EXPECT_EQ(tally::masters_to_reacquire(answers({1, 2, 0}), true), (List{2})) << "a re-acquired one counts";
  EXPECT_EQ(tally::masters_to_reacquire(answers({1, 1, 0, 1, 0}), false), List{}) << "hold not valid";
  EXPECT_EQ(tally::masters_to_reacquire(answers({1, 0, 0}), true), List{}) << "no majority: lost, not restored";
  EXPECT_EQ(tally::masters_to_reacquire(answers({0, 0, 0}), true), List{}) << "force-cleared everywhere";
}

TEST(QuorumTallyTest, ClearVerdicts) {
  struct Row {
    Votes<long long> votes;
    bool quorum;
    std::optional<bool> cleared;
    const char* why;
  };
  const Row rows[] = {
      {answers({1, 1, 0}), true, true, "a majority held our token"},
      {answers({1, 1, std::nullopt}), true, true, "a majority held our token, one failed"},
      {answers({1, 0, -1}), true, false, "another owner holds it somewhere, we had no majority"},
      {answers({0, 1, std::nullopt}), true, false, "another owner's, one failed"},
      {answers({1, -1, -1}), true, true, "what was left of ours"},
      {answers({-1, -1, -1}), true, std::nullopt, "not locked anywhere"},
      {answers({-1, -1, std::nullopt}), true, std::nullopt, "not locked where asked"},
      {answers({1, std::nullopt, std::nullopt}), false, std::nullopt, "too few answered"},
  };
  for (const Row& r : rows) {
    const tally::ClearVerdict v = tally::clear_verdict(r.votes);
    EXPECT_EQ(v.quorum, r.quorum) << r.why;
    if (r.quorum) {
      EXPECT_EQ(v.cleared, r.cleared) << r.why;
    }
  }
}

TEST(QuorumTallyTest, StateVerdicts) {
  auto held = [](std::initializer_list<std::optional<bool>> list) {
    Votes<bool> votes;
    for (const auto& a : list) votes.push_back(a ? answered(*a) : failed<bool>());
    return votes;
  };
  EXPECT_EQ(tally::state_verdict(held({true, std::nullopt, std::nullopt})), State::locked) << "one holder is enough";
  EXPECT_EQ(tally::state_verdict(held({false, false, std::nullopt})), State::open);
  EXPECT_EQ(tally::state_verdict(held({false, std::nullopt, std::nullopt})), std::nullopt) << "no quorum";
  EXPECT_EQ(tally::state_verdict(held({false, false, false, std::nullopt, std::nullopt})), State::open);
}

Inspection locked_by(bool ours, std::uint64_t counter, const std::string& host) {
  Inspection i;
  i.state = State::locked;
  i.ours = ours;
  i.fence_counter = counter;
  i.ttl = std::chrono::milliseconds(1000);
  i.holder = process_lock::Holder{};
  i.holder->host = host;
  return i;
}

TEST(QuorumTallyTest, InspectionsMerge) {
  Inspection open;
  open.fence_counter = 9;
  {
    const auto m = tally::merge_inspections(
        {answered(locked_by(true, 4, "us")), answered(locked_by(true, 6, "us")), answered(open)});
    ASSERT_TRUE(m);
    EXPECT_TRUE(m->ours);
    EXPECT_EQ(m->state, State::locked);
    EXPECT_EQ(m->holder->host, "us");
    EXPECT_EQ(m->fence_counter, 9u) << "the highest counter of any master";
  }
  {
    const auto m = tally::merge_inspections(
        {answered(locked_by(true, 4, "us")), answered(locked_by(false, 5, "them")), answered(locked_by(false, 5, "them"))});
    ASSERT_TRUE(m);
    EXPECT_FALSE(m->ours) << "ours on a minority only";
    EXPECT_EQ(m->holder->host, "them") << "the holder shown is the other one";
  }
  {
    const auto m = tally::merge_inspections(
        {failed<Inspection>(), failed<Inspection>(), answered(locked_by(false, 2, "them"))});
    ASSERT_TRUE(m) << "one holder answers the question even without a quorum";
    EXPECT_EQ(m->state, State::locked);
  }
  EXPECT_FALSE(tally::merge_inspections({failed<Inspection>(), failed<Inspection>(), answered(open)}))
      << "open, but too few answered to say so";
}

}  // namespace
