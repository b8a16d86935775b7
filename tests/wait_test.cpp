// Waiting for a lock: instant hand-off on release, retry at a dead holder's expiry, deadlines,
// cancellation, polling without channel rights, and the standard TimedLockable adapter.
// Upper time bounds here are generous sanity limits against hangs; latency figures live in
// the hand-off benchmark.
#include <gtest/gtest.h>

#include <future>
#include <mutex>
#include <thread>

#include "support.hpp"

namespace {

using process_lock::errc;
using process_lock::Error;
using process_lock::Mutex;
using process_lock::ProcessLock;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const std::string channel = "process_lock:released:job";

// Waits until `n` connections listen for the lock's release notices: the waiters are waiting.
bool listening(test::RawClient& raw, long long n) {
  return test::wait_until([&] {
    auto reply = raw.run({"PUBSUB", "NUMSUB", channel});
    return reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 && reply->element[1]->integer == n;
  });
}

class WaitTest : public test::SharedServerTest<WaitTest> {};

TEST_F(WaitTest, FreeLockIsTakenAtOnce) {
  ProcessLock lock("job", 10, options());
  EXPECT_TRUE(lock.try_lock_for(5s));
  EXPECT_TRUE(lock.owner());
  EXPECT_TRUE(lock.fence().has_value());
}

TEST_F(WaitTest, HeldLockTimesOutAtTheDeadlineNotBefore) {
  ProcessLock holder("job", 60, options());
  ASSERT_TRUE(holder.lock());
  ProcessLock waiter("job", 60, options());
  const auto start = Clock::now();
  EXPECT_FALSE(waiter.try_lock_for(150ms));
  const auto waited = Clock::now() - start;
  EXPECT_GE(waited, 150ms);
  EXPECT_LT(waited, 3s);
  EXPECT_FALSE(waiter.owner());
}

TEST_F(WaitTest, DeadlineInThePastMeansOneTry) {
  ProcessLock holder("job", 60, options());
  ASSERT_TRUE(holder.lock());
  ProcessLock waiter("job", 60, options());
  EXPECT_FALSE(waiter.try_lock_until(Clock::now() - 1s));
  ASSERT_TRUE(holder.clear().value());
  EXPECT_TRUE(waiter.try_lock_until(std::chrono::system_clock::now() - 1s));
}

TEST_F(WaitTest, ReleaseByAnotherProcessWakesTheWaiter) {
  // The holder's lock would last a minute; only the release notice can end the wait early.
  ProcessLock holder("job", 60, options());
  ASSERT_TRUE(holder.lock());
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Release only once the parent listens for the notice: then only the notice can wake it
    // before the minute is up (its own retry would come at the holder's expiry).
    test::RawClient raw(server_->port());
    if (!listening(raw, 1)) _exit(2);
    ProcessLock releaser("job", 60, options());
    _exit(releaser.clear(true) == std::optional<bool>(true) ? 0 : 1);
  }
  ProcessLock waiter("job", 60, options());
  const auto start = Clock::now();
  const bool acquired = waiter.try_lock_for(30s);
  const auto waited = Clock::now() - start;
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_TRUE(acquired);
  EXPECT_LT(waited, 10s) << "woken by expiry or the deadline, not by the release";
  EXPECT_EQ(raw_->string({"GET", "job"}), waiter.token());
}

TEST_F(WaitTest, AReleaseIsAnnouncedOnlyWhenAWaiterListens) {
  const process_lock::detail::LockKeys keys("job");
  // The mark sits after the token in the holder's record: '-' nobody listens, 'w' a waiter does.
  auto mark = [&] {
    const std::string record = raw_->string({"GET", keys.owner}).value_or("");
    return record.size() > 38 ? record.substr(36, 3) : record;
  };
  ProcessLock holder("job", 60, options());
  ASSERT_TRUE(holder.lock());
  EXPECT_EQ(mark(), " - ");
  // An attempt that does not wait for a notice marks nothing, and a release with no waiter
  // publishes nothing.
  ProcessLock other("job", 60, options());
  EXPECT_FALSE(other.lock());
  EXPECT_FALSE(other.try_lock_for(0ms));
  EXPECT_EQ(mark(), " - ");
  raw_->reset_stats();
  ASSERT_TRUE(holder.clear().value());
  EXPECT_EQ(raw_->command_calls().count("publish"), 0u);

  // A waiter subscribes, then its failed attempt marks the record; the holder's own (not
  // forced) release then announces itself, and only that can end the wait before the minute.
  ASSERT_TRUE(holder.lock());
  ProcessLock waiter("job", 60, options());
  auto waiting = std::async(std::launch::async, [&] {
    const auto start = Clock::now();
    const bool acquired = waiter.try_lock_for(30s);
    return std::make_pair(acquired, Clock::now() - start);
  });
  ASSERT_TRUE(test::wait_until([&] { return mark() == " w "; }));
  EXPECT_TRUE(holder.update());  // a renewal keeps the mark
  EXPECT_EQ(mark(), " w ");
  raw_->reset_stats();
  ASSERT_TRUE(holder.clear().value());
  const auto [acquired, waited] = waiting.get();
  EXPECT_EQ(raw_->command_calls()["publish"], 1);
  EXPECT_TRUE(acquired);
  EXPECT_LT(waited, 10s) << "woken by expiry or the deadline, not by the release";
  EXPECT_EQ(mark(), " - ");  // the waiter's own hold starts unmarked
}

TEST_F(WaitTest, DeadHoldersExpiryLetsTheWaiterIn) {
  // A holder that died: its key just expires, with no notice.
  raw_->run({"SET", "job", "0f1e2d3c-4b5a-4697-8877-665544332211", "PX", "200"});
  ProcessLock waiter("job", 60, options());
  ASSERT_EQ(waiter.state(), process_lock::State::locked);  // connected before counting
  raw_->reset_stats();
  const auto start = Clock::now();
  EXPECT_TRUE(waiter.try_lock_for(10s));
  EXPECT_GE(Clock::now() - start, 150ms);  // not before the holder's lock ran out
  // It tried at the start, after subscribing, and at the expiry, not every few milliseconds.
  EXPECT_LE(raw_->command_calls()["evalsha"], 5);
}

TEST_F(WaitTest, CancelStopsAWaitFromAnotherThread) {
  ProcessLock holder("job", 60, options());
  ASSERT_TRUE(holder.lock());
  ProcessLock waiter("job", 60, options());
  auto waiting = std::async(std::launch::async, [&] {
    const auto start = Clock::now();
    const bool acquired = waiter.try_lock_for(60s);
    return std::make_pair(acquired, Clock::now() - start);
  });
  ASSERT_TRUE(listening(*raw_, 1));
  waiter.cancel();
  ASSERT_EQ(waiting.wait_for(10s), std::future_status::ready) << "cancel() did not stop the wait";
  const auto [acquired, waited] = waiting.get();
  EXPECT_FALSE(acquired);
  EXPECT_LT(waited, 10s);
  EXPECT_EQ(raw_->string({"GET", "job"}), holder.token());
}

#if defined(__cpp_lib_jthread)
TEST_F(WaitTest, StopTokenStopsAWait) {
  ProcessLock holder("job", 60, options());
  ASSERT_TRUE(holder.lock());
  ProcessLock waiter("job", 60, options());
  std::stop_source stop;
  auto waiting = std::async(std::launch::async, [&] { return waiter.try_lock_for(60s, stop.get_token()); });
  std::this_thread::sleep_for(200ms);
  stop.request_stop();
  ASSERT_EQ(waiting.wait_for(10s), std::future_status::ready) << "request_stop() did not stop the wait";
  EXPECT_FALSE(waiting.get());
}
#endif

TEST_F(WaitTest, CancelDuringTheFirstAttemptIsNotLost) {
  // The first attempt hangs on a silent server; a cancel() then must still end the wait.
  test::FakeServer silent({{{test::FakeServer::Act::hang, ""}}});
  ProcessLock waiter("job", 60, test::options_for(silent.url(), 300ms));
  auto waiting = std::async(std::launch::async, [&] {
    try {
      return waiter.try_lock_for(60s);
    } catch (const Error&) {
      return false;  // the attempt timed out; the point is that the wait ended
    }
  });
  std::this_thread::sleep_for(100ms);
  waiter.cancel();
  ASSERT_EQ(waiting.wait_for(10s), std::future_status::ready) << "the cancel was lost";
  EXPECT_FALSE(waiting.get());
}

TEST_F(WaitTest, VeryLongTimeoutsDoNotOverflow) {
  ProcessLock lock("job", 10, options());
  EXPECT_TRUE(lock.try_lock_for(std::chrono::milliseconds::max()));
  ASSERT_TRUE(lock.clear().value());
  EXPECT_TRUE(lock.try_lock_for(std::chrono::hours(24 * 365 * 300)));
}

TEST_F(WaitTest, SlowSubscriptionDoesNotOvershootTheDeadline) {
  using Act = test::FakeServer::Act;
  const std::string held = "*2\r\n:0\r\n:60000\r\n";  // lock: held by another, 60 s left
  // Connection 1 answers attempts; connection 2 (the subscription) never answers.
  test::FakeServer server({{{Act::reply, held}, {Act::reply, held}, {Act::reply, held}}, {{Act::hang, ""}}});
  ProcessLock waiter("job", 60, test::options_for(server.url(), 3000ms));
  const auto start = Clock::now();
  EXPECT_FALSE(waiter.try_lock_for(200ms));
  EXPECT_LT(Clock::now() - start, 1500ms) << "waited for the subscription's 3 s timeout";
}

TEST_F(WaitTest, CallbackForm) {
  ProcessLock lock("job", 10, options());
  int calls = 0;
  lock.try_lock_for(1s, [&](const Error& err, bool acquired) {
    ++calls;
    EXPECT_FALSE(err);
    EXPECT_TRUE(acquired);
  });
  ProcessLock unreachable("job", 10, test::options_for(test::closed_port_url(), 200ms));
  unreachable.try_lock_for(1s, [&](const Error& err, bool acquired) {
    ++calls;
    EXPECT_EQ(err.code(), errc::connect_failed);
    EXPECT_FALSE(acquired);
  });
  EXPECT_EQ(calls, 2);
}

TEST_F(WaitTest, WaitersTakeTurnsWithoutOverlap) {
  constexpr int waiters = 8;
  std::atomic<int> inside{0}, overlaps{0}, acquired{0};
  std::vector<std::thread> threads;
  threads.reserve(waiters);
  for (int i = 0; i < waiters; ++i) {
    threads.emplace_back([&] {
      ProcessLock lock("job", 60, options());
      if (!lock.try_lock_for(30s)) return;
      if (inside.fetch_add(1) != 0) ++overlaps;
      ++acquired;
      std::this_thread::sleep_for(5ms);
      inside.fetch_sub(1);
      (void)lock.clear();  // hands over at once: the next waiter is notified
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(acquired.load(), waiters);
}

TEST(WaitWithoutChannelRightsTest, FallsBackToPolling) {
  // Redis 7 gives new ACL users no pub/sub channels: no notices, but waiting still works.
  test::RedisServer server;
  server.client().run({"ACL", "SETUSER", "nochan", "on", ">pw", "~*", "+@all", "resetchannels"});
  const std::string url = "redis://nochan:pw@127.0.0.1:" + std::to_string(server.port());
  ProcessLock holder("job", 60, test::options_for(url));
  ASSERT_TRUE(holder.lock());
  std::thread releaser([&] {
    std::this_thread::sleep_for(300ms);
    EXPECT_EQ(holder.clear(), std::optional<bool>(true));  // the notice is refused, the release is not
  });
  ProcessLock waiter("job", 60, test::options_for(url));
  const auto start = Clock::now();
  EXPECT_TRUE(waiter.try_lock_for(30s));
  EXPECT_LT(Clock::now() - start, 10s);
  releaser.join();
}

// ---- the TimedLockable adapter ---------------------------------------------------------------

TEST_F(WaitTest, MutexWorksWithUniqueLock) {
  ProcessLock lock("job", 10, options());
  Mutex mutex(lock);
  {
    std::unique_lock<Mutex> guard(mutex);  // blocking lock()
    EXPECT_TRUE(guard.owns_lock());
    EXPECT_EQ(raw_->string({"GET", "job"}), lock.token());
  }
  EXPECT_EQ(raw_->integer({"EXISTS", "job"}), 0);  // unlock() on scope exit

  ProcessLock other("job", 10, options());
  ASSERT_TRUE(other.lock());
  std::unique_lock<Mutex> timed(mutex, 100ms);  // try_lock_for
  EXPECT_FALSE(timed.owns_lock());
  std::unique_lock<Mutex> tried(mutex, std::try_to_lock);
  EXPECT_FALSE(tried.owns_lock());
  ASSERT_TRUE(other.clear().value());
  EXPECT_TRUE(timed.try_lock_until(Clock::now() + 1s));
}

TEST_F(WaitTest, MutexWorksWithScopedLockAndLockGuard) {
  ProcessLock a("job-a", 10, options());
  ProcessLock b("job-b", 10, options());
  Mutex ma(a), mb(b);
  {
    std::scoped_lock both(ma, mb);
    EXPECT_TRUE(a.owner());
    EXPECT_TRUE(b.owner());
  }
  EXPECT_EQ(raw_->integer({"EXISTS", "job-a"}), 0);
  EXPECT_EQ(raw_->integer({"EXISTS", "job-b"}), 0);
  {
    const std::lock_guard<Mutex> guard(ma);
    EXPECT_EQ(raw_->string({"GET", "job-a"}), a.token());
  }
  EXPECT_EQ(raw_->integer({"EXISTS", "job-a"}), 0);
}

TEST_F(WaitTest, MutexExcludesThreadsSharingOneLock) {
  // One ProcessLock is one owner; the Mutex must still let only one of its threads in.
  ProcessLock lock("job", 10, options());
  Mutex mutex(lock);
  std::atomic<int> inside{0}, overlaps{0};
  std::vector<std::thread> threads;
  threads.reserve(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        const std::lock_guard<Mutex> guard(mutex);
        if (inside.fetch_add(1) != 0) ++overlaps;
        std::this_thread::sleep_for(100us);
        inside.fetch_sub(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(raw_->integer({"EXISTS", "job"}), 0);
}

TEST_F(WaitTest, MutexLockWaitsForTheHolder) {
  ProcessLock holder("job", 60, options());
  ASSERT_TRUE(holder.lock());
  std::thread releaser([&] {
    std::this_thread::sleep_for(200ms);
    (void)holder.clear();
  });
  ProcessLock lock("job", 60, options());
  Mutex mutex(lock);
  mutex.lock();  // blocks until the release
  EXPECT_EQ(raw_->string({"GET", "job"}), lock.token());
  mutex.unlock();
  releaser.join();
}

TEST_F(WaitTest, CancelledMutexLockThrows) {
  ProcessLock holder("job", 60, options());
  ASSERT_TRUE(holder.lock());
  ProcessLock lock("job", 60, options());
  Mutex mutex(lock);
  auto waiting = std::async(std::launch::async, [&] { return test::failure_of([&] { mutex.lock(); }); });
  ASSERT_TRUE(listening(*raw_, 1));
  lock.cancel();
  ASSERT_EQ(waiting.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(waiting.get().code(), errc::cancelled);
}

}  // namespace
