// The keeper: renewal in the background, loss reported once with its reason, and reported
// before the local validity runs out when Redis cannot be reached.
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "support.hpp"

namespace {

using test::LostProbe;

using process_lock::errc;
using process_lock::KeepOptions;
using process_lock::Lost;
using process_lock::LostReason;
using process_lock::ProcessLock;
using namespace std::chrono_literals;

TEST(KeepTest, KeepsTheLockAliveAcrossManyTimeouts) {
  test::RedisServer server;
  ProcessLock holder("job", 400ms, test::options_for(server.url()));
  ProcessLock rival("job", 400ms, test::options_for(server.url()));
  LostProbe probe;
  ASSERT_TRUE(holder.lock());
  std::atomic<int> renewals{0};
  KeepOptions o;
  o.on_renewed = [&] { ++renewals; };
  holder.keep(probe.options(o));
  EXPECT_TRUE(holder.keeping());
  const auto until = std::chrono::steady_clock::now() + 1600ms;  // four timeouts
  while (std::chrono::steady_clock::now() < until) {
    ASSERT_FALSE(rival.lock());
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(server.client().string({"GET", "job"}), holder.token());
  EXPECT_GT(holder.valid_for(), 0ms);
  EXPECT_EQ(probe.count(), 0u);
  EXPECT_GE(renewals.load(), 4);  // every 133 ms for 1.6 s, so about 12
  EXPECT_EQ(holder.clear(), std::optional<bool>(true));
  EXPECT_FALSE(holder.keeping());  // clear() stops it
  EXPECT_EQ(probe.count(), 0u);    // a release is not a loss
}

TEST(KeepTest, ForceClearByAnotherProcessIsReportedTaken) {
  test::RedisServer server;
  ProcessLock holder("job", 1000ms, test::options_for(server.url()));
  LostProbe probe;
  ASSERT_TRUE(holder.lock());
  holder.keep(probe.options());
  const int status = test::in_child([&] {
    ProcessLock intruder("job", 10, test::options_for(server.url()));
    return intruder.clear(true) == std::optional<bool>(true) && intruder.lock() ? 0 : 1;
  });
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_TRUE(probe.reported(5s));
  EXPECT_EQ(probe.at(0).reason, LostReason::taken);
  EXPECT_FALSE(holder.owner());
  EXPECT_EQ(holder.fence(), std::nullopt);
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(probe.count(), 1u);  // once
  EXPECT_FALSE(holder.keeping());
}

TEST(KeepTest, PausedServerIsReportedBeforeTheValidityRunsOut) {
  test::RedisServer server;
  ProcessLock holder("job", 1000ms, test::options_for(server.url(), 2000ms));
  LostProbe probe;
  ASSERT_TRUE(holder.lock());
  holder.keep(probe.options());  // renew every 333 ms, report 200 ms before validity ends
  server.pause();
  const bool reported = probe.reported(5s);
  server.resume();
  ASSERT_TRUE(reported);
  const Lost lost = probe.at(0);
  EXPECT_EQ(lost.reason, LostReason::unreachable);
  EXPECT_GT(lost.remaining, 0ms) << "reported only after the lock could have expired";
  EXPECT_EQ(lost.error.code(), errc::timeout) << lost.error.what();
  // The lock may still be ours until the validity ends: the object keeps it, to release it.
  EXPECT_TRUE(holder.owner());
}

TEST(KeepTest, StoppedServerIsReportedBeforeTheValidityRunsOut) {
  test::RedisServer server;
  ProcessLock holder("job", 1000ms, test::options_for(server.url()));
  LostProbe probe;
  ASSERT_TRUE(holder.lock());
  holder.keep(probe.options());
  server.stop();
  ASSERT_TRUE(probe.reported(5s));
  const Lost lost = probe.at(0);
  EXPECT_EQ(lost.reason, LostReason::unreachable);
  EXPECT_GT(lost.remaining, 0ms);
  EXPECT_TRUE(lost.error.code() == errc::connect_failed || lost.error.code() == errc::connection_lost)
      << lost.error.what();
}

TEST(KeepTest, RenewalCapIsReportedBeforeTheValidityRunsOut) {
  test::RedisServer server;
  ProcessLock holder("job", 300ms, test::options_for(server.url()));
  LostProbe probe;
  ASSERT_TRUE(holder.lock());
  KeepOptions o;
  o.max_renewals = 2;
  holder.keep(probe.options(o));
  ASSERT_TRUE(probe.reported(5s));
  EXPECT_EQ(probe.at(0).reason, LostReason::limit_reached);
  EXPECT_GT(probe.at(0).remaining, 0ms);
  // Nobody renews it any more: it expires.
  EXPECT_TRUE(test::wait_until([&] { return server.client().integer({"EXISTS", "job"}) == 0; }));
}

TEST(KeepTest, HoldTimeCapStopsRenewing) {
  test::RedisServer server;
  ProcessLock holder("job", 300ms, test::options_for(server.url()));
  LostProbe probe;
  ASSERT_TRUE(holder.lock());
  KeepOptions o;
  o.max_hold = 400ms;
  holder.keep(probe.options(o));
  ASSERT_TRUE(probe.reported(5s));
  EXPECT_EQ(probe.at(0).reason, LostReason::limit_reached);
}

TEST(KeepTest, PausedHolderFindsItsLockExpiredAndItsFenceStale) {
  test::RedisServer server;
  int report[2];
  ASSERT_EQ(pipe(report), 0);
  const pid_t holder_pid = fork();
  ASSERT_GE(holder_pid, 0);
  if (holder_pid == 0) {
    ProcessLock holder("job", 300ms, test::options_for(server.url()));
    if (!holder.lock()) _exit(1);
    const std::uint64_t fence = *holder.fence();
    std::promise<LostReason> lost;
    KeepOptions o;
    o.on_lost = [&](const Lost& l) { lost.set_value(l.reason); };
    holder.keep(o);
    if (write(report[1], &fence, sizeof fence) != sizeof fence) _exit(2);  // "holding"
    const LostReason reason = lost.get_future().get();                     // after SIGSTOP ... SIGCONT
    holder.stop_keeping();  // join the keeper before _exit skips the destructor
    const std::uint64_t answer[2] = {fence, static_cast<std::uint64_t>(reason)};
    _exit(write(report[1], answer, sizeof answer) == sizeof answer ? 0 : 3);
  }
  std::uint64_t holder_fence = 0;
  ASSERT_EQ(read(report[0], &holder_fence, sizeof holder_fence), static_cast<ssize_t>(sizeof holder_fence));
  kill(holder_pid, SIGSTOP);
  ProcessLock successor("job", 10, test::options_for(server.url()));
  EXPECT_TRUE(successor.try_lock_for(5s));  // the paused holder's lock expires
  kill(holder_pid, SIGCONT);
  std::uint64_t answer[2] = {0, 0};
  ASSERT_EQ(read(report[0], answer, sizeof answer), static_cast<ssize_t>(sizeof answer));
  int status = 0;
  waitpid(holder_pid, &status, 0);
  close(report[0]);
  close(report[1]);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(static_cast<LostReason>(answer[1]), LostReason::expired);
  EXPECT_LT(answer[0], *successor.fence());  // a fenced resource would reject the old holder
}

TEST(KeepTest, ThrowingCallbackIsReportedNotSilent) {
  test::RedisServer server;
  ProcessLock holder("job", 300ms, test::options_for(server.url()));
  ASSERT_TRUE(holder.lock());
  std::promise<void> called;
  KeepOptions o;
  o.on_lost = [&](const Lost&) {
    called.set_value();
    throw std::runtime_error("user code failed");
  };
  testing::internal::CaptureStderr();
  holder.keep(o);
  server.client().run({"SET", "job", "someone-else"});
  const bool was_called = called.get_future().wait_for(5s) == std::future_status::ready;
  holder.stop_keeping();  // joins the keeper's thread: its report is written by then
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_FALSE(holder.keeping());
  EXPECT_TRUE(was_called);
  EXPECT_TRUE(test::contains(err, "on_lost callback of \"job\" threw: user code failed")) << err;
}

TEST(KeepTest, DestructionStopsTheKeeperAndReleases) {
  test::RedisServer server;
  {
    ProcessLock holder("job", 300ms, test::options_for(server.url()));
    ASSERT_TRUE(holder.lock());
    holder.keep();
  }
  EXPECT_EQ(server.client().integer({"EXISTS", "job"}), 0);
}

TEST(KeepTest, KeepNeedsAHeldLockAndSaneOptions) {
  test::RedisServer server;
  ProcessLock lock("job", 300ms, test::options_for(server.url()));
  EXPECT_EQ(test::failure_of([&] { lock.keep(); }).code(), errc::invalid_argument);
  ASSERT_TRUE(lock.lock());
  KeepOptions o;
  o.interval = 300ms;
  EXPECT_EQ(test::failure_of([&] { lock.keep(o); }).code(), errc::invalid_argument);
  o = {};
  o.margin = 400ms;
  EXPECT_EQ(test::failure_of([&] { lock.keep(o); }).code(), errc::invalid_argument);
  o = {};
  o.interval = 240ms;  // + the default 60 ms margin leaves no room before the report time
  EXPECT_EQ(test::failure_of([&] { lock.keep(o); }).code(), errc::invalid_argument);
  EXPECT_FALSE(lock.keeping());
}

TEST(KeepTest, KeepStartedLateInAHoldStillRenews) {
  test::RedisServer server;
  ProcessLock holder("job", 1000ms, test::options_for(server.url()));
  LostProbe probe;
  ASSERT_TRUE(holder.lock());
  std::this_thread::sleep_for(500ms);  // past the first renewal's time
  holder.keep(probe.options());
  std::this_thread::sleep_for(2000ms);  // two timeouts
  EXPECT_EQ(probe.count(), 0u);
  EXPECT_EQ(server.client().string({"GET", "job"}), holder.token());
}

TEST(KeepTest, LossFoundByTheUsersOwnCallIsReported) {
  test::RedisServer server;
  ProcessLock holder("job", 1000ms, test::options_for(server.url()));
  LostProbe probe;
  ASSERT_TRUE(holder.lock());
  holder.keep(probe.options());
  server.client().run({"SET", "job", "someone-else"});
  EXPECT_FALSE(holder.update());  // the user finds out first
  ASSERT_TRUE(probe.reported(5s));
  EXPECT_EQ(probe.at(0).reason, LostReason::taken);
}

TEST(KeepTest, ConcurrentKeepCallsLeaveOneKeeper) {
  test::RedisServer server;
  {
    ProcessLock holder("job", 1000ms, test::options_for(server.url()));
    ASSERT_TRUE(holder.lock());
    for (int round = 0; round < 50; ++round) {
      std::thread a([&] { holder.keep(); });
      std::thread b([&] { holder.keep(); });
      a.join();
      b.join();
    }
    EXPECT_TRUE(holder.keeping());
  }  // destruction must find and stop every keeper, or the process aborts here
  EXPECT_EQ(server.client().integer({"EXISTS", "job"}), 0);
}

TEST(KeepTest, OnLostMayClearTheLock) {
  test::RedisServer server;
  ProcessLock holder("job", 300ms, test::options_for(server.url()));
  ASSERT_TRUE(holder.lock());
  std::promise<std::optional<bool>> cleared;
  KeepOptions o;
  o.on_lost = [&](const Lost&) { cleared.set_value(holder.clear()); };  // from the keeper's thread
  holder.keep(o);
  server.client().run({"SET", "job", "someone-else"});
  auto f = cleared.get_future();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(f.get(), std::optional<bool>(false));
}

}  // namespace

namespace {

using process_lock::Guard;

TEST(GuardTest, TakesAndReleases) {
  test::RedisServer server;
  ProcessLock lock("job", 10, test::options_for(server.url()));
  {
    Guard guard(lock);
    ASSERT_TRUE(guard);
    EXPECT_TRUE(guard.owns_lock());
    EXPECT_TRUE(guard.fence().has_value());
    EXPECT_EQ(server.client().string({"GET", "job"}), lock.token());
  }
  EXPECT_EQ(server.client().integer({"EXISTS", "job"}), 0);
}

// A minimum hold set inside the guard's scope outlives the guard: its destructor releases only
// a hold that is still the object's.
TEST(GuardTest, ReleaseAtInScopeIsNotUndoneAtScopeExit) {
  test::RedisServer server;
  ProcessLock lock("job", 10, test::options_for(server.url()));
  {
    Guard guard(lock);
    ASSERT_TRUE(guard);
    EXPECT_TRUE(lock.release_at(std::chrono::steady_clock::now() + 60s));
  }
  EXPECT_EQ(server.client().string({"GET", "job"}), lock.token());
  EXPECT_GT(server.client().integer({"PTTL", "job"}), 50000);
}

TEST(GuardTest, ContendedGuardOwnsNothingAndReleasesNothing) {
  test::RedisServer server;
  ProcessLock holder("job", 10, test::options_for(server.url()));
  ASSERT_TRUE(holder.lock());
  ProcessLock lock("job", 10, test::options_for(server.url()));
  {
    Guard guard(lock, 100ms);
    EXPECT_FALSE(guard);
    EXPECT_EQ(guard.fence(), std::nullopt);
  }
  EXPECT_EQ(server.client().string({"GET", "job"}), holder.token());
}

TEST(GuardTest, KeepsTheLockWhileInScope) {
  test::RedisServer server;
  ProcessLock lock("job", 400ms, test::options_for(server.url()));
  ProcessLock rival("job", 400ms, test::options_for(server.url()));
  {
    Guard guard(lock, 0ms, KeepOptions{});
    ASSERT_TRUE(guard);
    EXPECT_TRUE(lock.keeping());
    std::this_thread::sleep_for(1200ms);  // three timeouts
    EXPECT_FALSE(rival.lock());
  }
  EXPECT_FALSE(lock.keeping());
  EXPECT_TRUE(rival.lock());
}

TEST(GuardTest, BadKeepOptionsThrowAndLeaveNothingHeld) {
  test::RedisServer server;
  ProcessLock lock("job", 150ms, test::options_for(server.url()));
  KeepOptions bad;
  bad.interval = 1s;
  EXPECT_EQ(test::failure_of([&] { Guard guard(lock, 0ms, bad); }).code(), errc::invalid_argument);
  EXPECT_EQ(server.client().integer({"EXISTS", "job"}), 0);
}

}  // namespace
