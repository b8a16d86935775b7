// The keeper's timing (detail::next_keeper_step), as a table: no server, no thread. Each row is
// a moment in a hold's life and what the keeper must do then; tests/keep_test.cpp checks the
// keeper itself against real servers.
#include <gtest/gtest.h>

#include <process_lock.hpp>
#include <string>

namespace {

using process_lock::LostReason;
using process_lock::detail::KeeperStep;
using process_lock::detail::next_keeper_step;
using Kind = KeeperStep::Kind;
using namespace std::chrono_literals;

TEST(KeeperStepTest, Table) {
  // A hold valid until t0 + 10 s, its loss reported 2 s before that (at t0 + 8 s).
  const auto t0 = std::chrono::steady_clock::now();
  const auto valid_until = t0 + 10s;
  const auto margin = 2000ms;
  const struct {
    std::string what;
    std::chrono::milliseconds now, due;
    bool capped;
    Kind kind;
    LostReason reason;                 // for report
    std::chrono::milliseconds until;   // for wait
  } rows[] = {
      {"early: wait for the renewal", 1s, 3s, false, Kind::wait, {}, 3s},
      {"due: renew", 3s, 3s, false, Kind::renew, {}, {}},
      {"overdue: renew", 5s, 3s, false, Kind::renew, {}, {}},
      {"due after the report time: wait only until the report", 1s, 9s, false, Kind::wait, {}, 8s},
      {"capped: no renewal even when due; wait for the report", 5s, 3s, true, Kind::wait, {}, 8s},
      {"report time, renewals failing: unreachable", 8s, 3s, false, Kind::report, LostReason::unreachable, {}},
      {"report time, capped: limit reached", 8s, 3s, true, Kind::report, LostReason::limit_reached, {}},
      {"validity over: expired", 10s, 3s, false, Kind::report, LostReason::expired, {}},
      {"validity over, capped: still expired", 11s, 3s, true, Kind::report, LostReason::expired, {}},
  };
  for (const auto& r : rows) {
    const KeeperStep step = next_keeper_step(t0 + r.now, valid_until, margin, t0 + r.due, r.capped);
    EXPECT_EQ(step.kind, r.kind) << r.what;
    if (r.kind == Kind::report) {
      EXPECT_EQ(step.reason, r.reason) << r.what;
    }
    if (r.kind == Kind::wait) {
      EXPECT_EQ(step.until, t0 + r.until) << r.what;
    }
  }
}

// With no margin the report is at the validity's end, and is then an expiry.
TEST(KeeperStepTest, NoMarginReportsOnlyAtTheEnd) {
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(next_keeper_step(t0 + 9999ms, t0 + 10s, 0ms, t0 + 20s, false).until, t0 + 10s);
  EXPECT_EQ(next_keeper_step(t0 + 10s, t0 + 10s, 0ms, t0 + 20s, false).reason, LostReason::expired);
}

}  // namespace
