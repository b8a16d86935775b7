// Wire compatibility with 0.1.0 (wire version 1): a 0.1.0 process, built from the header in git
// history (tests/compat/v1_client.cpp), and today's library on one lock exclude each other,
// never renew or clear each other's hold, share one fencing counter, and let each other in
// after a release. Skipped where the build had no git history to take 0.1.0 from.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <future>

#include "support.hpp"

namespace {

using process_lock::ProcessLock;
using process_lock::State;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

#ifdef PROCESS_LOCK_V1_CLIENT
/// A 0.1.0 process holding its own ProcessLock, driven one command at a time.
class V1Process {
 public:
  V1Process(const std::string& url, const std::string& name, std::chrono::milliseconds timeout,
            const char* client = PROCESS_LOCK_V1_CLIENT) {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    const std::string ms = std::to_string(timeout.count());
    std::fflush(nullptr);
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      execl(client, client, url.c_str(), name.c_str(), ms.c_str(), nullptr);
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    to_ = in[1];
    from_ = out[0];
  }
  ~V1Process() {
    close(to_);  // end of input: the client returns; a stuck one is killed
    int status = 0;
    const auto until = Clock::now() + 5s;
    while (waitpid(pid_, &status, WNOHANG) == 0) {
      if (Clock::now() > until) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(1ms);
    }
    close(from_);
  }
  V1Process(const V1Process&) = delete;
  V1Process& operator=(const V1Process&) = delete;

  /// Sends one command and returns its one-line answer ("timeout" if none came within 30 s).
  std::string ask(const std::string& command) {
    const std::string line = command + "\n";
    if (write(to_, line.data(), line.size()) != static_cast<ssize_t>(line.size())) return "write failed";
    std::string answer;
    const auto until = Clock::now() + 30s;
    for (;;) {
      const auto nl = buffer_.find('\n');
      if (nl != std::string::npos) {
        answer = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return answer;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
      if (left <= 0) return "timeout";
      pollfd p{from_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left)) <= 0) continue;
      char chunk[512];
      const ssize_t n = read(from_, chunk, sizeof chunk);
      if (n <= 0) return "eof";
      buffer_.append(chunk, static_cast<std::size_t>(n));
    }
  }
  std::uint64_t fence() { return std::stoull(ask("fence")); }

 private:
  pid_t pid_ = -1;
  int to_ = -1, from_ = -1;
  std::string buffer_;
};

class CompatTest : public test::SharedServerTest<CompatTest> {
 protected:
  std::unique_ptr<V1Process> v1(std::chrono::milliseconds timeout = 60s) {
    return std::make_unique<V1Process>(server_->url(), "job", timeout);
  }
};

TEST_F(CompatTest, TheOldClientIsVersionOne) {
  // Not the new header by mistake: 0.1.0 keeps its holder's details in a hash.
  auto old = v1();
  ASSERT_EQ(old->ask("lock"), "1");
  EXPECT_EQ(raw_->string({"TYPE", process_lock::detail::LockKeys("job").holder}), "hash");
  EXPECT_EQ(raw_->string({"GET", "job"}), old->ask("token"));
}

TEST_F(CompatTest, AnOldHolderExcludesTheNewVersion) {
  auto old = v1();
  ASSERT_EQ(old->ask("lock"), "1");
  const std::uint64_t old_fence = old->fence();
  ProcessLock lock("job", 60, options());
  EXPECT_FALSE(lock.lock());
  EXPECT_FALSE(lock.owner());
  EXPECT_FALSE(lock.try_lock_for(100ms));
  EXPECT_FALSE(lock.update());
  EXPECT_EQ(lock.clear(), std::optional<bool>(false));
  EXPECT_EQ(lock.state(), State::locked);
  const process_lock::Inspection seen = lock.inspect();
  EXPECT_FALSE(seen.ours);
  ASSERT_TRUE(seen.holder.has_value());  // read from 0.1.0's hash
  EXPECT_EQ(seen.holder->fence, old_fence);
  EXPECT_EQ(seen.fence_counter, old_fence);
  // The old holder still has it, untouched.
  EXPECT_EQ(old->ask("update"), "1");
  EXPECT_EQ(raw_->string({"GET", "job"}), old->ask("token"));
  // Its release lets the new version in, with a higher fence.
  EXPECT_EQ(old->ask("clear"), "1");
  ASSERT_TRUE(lock.lock());
  EXPECT_GT(lock.fence().value_or(0), old_fence);
}

TEST_F(CompatTest, ANewHolderExcludesTheOldVersion) {
  ProcessLock lock("job", 60, options());
  ASSERT_TRUE(lock.lock());
  const std::uint64_t fence = lock.fence().value_or(0);
  auto old = v1();
  EXPECT_EQ(old->ask("lock"), "0");
  EXPECT_EQ(old->ask("wait 100"), "0");
  EXPECT_EQ(old->ask("update"), "0");
  EXPECT_EQ(old->ask("clear"), "0");
  // 0.1.0 sees the lock held by another, without details (it reads only its own hash).
  EXPECT_EQ(old->ask("inspect"), "locked 0 - -");
  EXPECT_TRUE(lock.update());
  EXPECT_EQ(raw_->string({"GET", "job"}), lock.token());
  ASSERT_EQ(lock.clear(), std::optional<bool>(true));
  EXPECT_EQ(old->ask("lock"), "1");
  EXPECT_GT(old->fence(), fence);
  EXPECT_FALSE(lock.lock());
}

TEST_F(CompatTest, FencesKeepIncreasingAcrossVersions) {
  ProcessLock lock("job", 60, options());
  auto old = v1();
  std::uint64_t last = 0;
  for (int i = 0; i < 10; ++i) {
    std::uint64_t fence = 0;
    if (i % 2) {
      ASSERT_EQ(old->ask("lock"), "1");
      fence = old->fence();
      ASSERT_EQ(old->ask("clear"), "1");
    } else {
      ASSERT_TRUE(lock.lock());
      fence = lock.fence().value_or(0);
      ASSERT_EQ(lock.clear(), std::optional<bool>(true));
    }
    EXPECT_GT(fence, last) << "round " << i;
    last = fence;
  }
}

TEST_F(CompatTest, ForcedClearsWorkBothWays) {
  auto old = v1();
  ProcessLock lock("job", 60, options());
  ASSERT_EQ(old->ask("lock"), "1");
  EXPECT_EQ(lock.clear(true), std::optional<bool>(true));
  EXPECT_EQ(old->ask("update"), "0");  // it knows it lost the lock
  ASSERT_TRUE(lock.lock());
  EXPECT_EQ(old->ask("force"), "1");
  EXPECT_FALSE(lock.update());
  EXPECT_FALSE(lock.owner());
}

TEST_F(CompatTest, ANewWaiterIsWokenByAnOldHoldersRelease) {
  // 0.1.0 announces every release; the holder's minute-long TTL cannot be what ends the wait.
  auto old = v1();
  ASSERT_EQ(old->ask("lock"), "1");
  ProcessLock waiter("job", 60, options());
  auto waiting = std::async(std::launch::async, [&] {
    const auto start = Clock::now();
    const bool acquired = waiter.try_lock_for(30s);
    return std::make_pair(acquired, Clock::now() - start);
  });
  ASSERT_TRUE(test::wait_until([&] {
    auto reply = raw_->run({"PUBSUB", "NUMSUB", "process_lock:released:job"});
    return reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 && reply->element[1]->integer == 1;
  }));
  EXPECT_EQ(old->ask("clear"), "1");
  const auto [acquired, waited] = waiting.get();
  EXPECT_TRUE(acquired);
  EXPECT_LT(waited, 10s) << "woken by the deadline, not by the release";
}
#else
TEST(CompatTest, SkippedWithoutGitHistory) {
  GTEST_SKIP() << "built without the git history that holds 0.1.0 (see tests/CMakeLists.txt)";
}
#endif


#if defined(PROCESS_LOCK_V2_CLIENT) && defined(PROCESS_LOCK_V1_CLIENT)
// Wire version 2 (development builds of 0.2.0 up to commit f036ebe, before watchers' notices):
// the same client source on that commit's header.
class V2Process : public V1Process {
 public:
  V2Process(const std::string& url, const std::string& name, std::chrono::milliseconds timeout)
      : V1Process(url, name, timeout, PROCESS_LOCK_V2_CLIENT) {}
};

class CompatV2Test : public test::SharedServerTest<CompatV2Test> {};

TEST_F(CompatV2Test, VersionTwoAndThreeExcludeEachOtherAndShareTheCounter) {
  V2Process old(server_->url(), "job", 60000ms);
  ASSERT_EQ(old.ask("lock"), "1");
  ProcessLock lock("job", 60, options());
  EXPECT_FALSE(lock.lock());
  EXPECT_EQ(lock.clear(), std::optional<bool>(false));
  ASSERT_EQ(old.ask("clear"), "1");
  ASSERT_TRUE(lock.lock());
  EXPECT_EQ(*lock.fence(), 2u);
  EXPECT_EQ(old.ask("lock"), "0");
  ASSERT_TRUE(lock.clear().value());
  EXPECT_EQ(old.ask("lock"), "1");
  EXPECT_EQ(old.fence(), 3u);
}

TEST_F(CompatV2Test, AWatcherSeesAVersionTwoHolderAndItsReleaseIsAnnounced) {
  // A watched lock holds the placeholder: version 2's acquisition overwrites it silently (found
  // by polling), and its release of the hold the watcher marked publishes.
  ProcessLock watcher("job", 10, options());
  std::mutex mutex;
  std::vector<process_lock::WatchEvent> events;
  std::string failure;  // what the watch threw, reported here rather than by std::terminate
  std::atomic<bool> stop{false};
  process_lock::WatchOptions o;
  o.poll_interval = 200ms;
  o.stop = &stop;
  std::thread watching([&] {
    try {
      watcher.watch_for(20s, [&](const process_lock::WatchEvent& e) {
        const std::lock_guard<std::mutex> guard(mutex);
        events.push_back(e);
      }, o);
    } catch (const std::exception& e) {
      const std::lock_guard<std::mutex> guard(mutex);
      failure = e.what();
    }
  });
  // Joined on every way out, a failed ASSERT included (a joinable thread's destructor terminates).
  struct Join {
    std::atomic<bool>& stop;
    ProcessLock& watcher;
    std::thread& thread;
    ~Join() {
      stop = true;
      watcher.cancel();
      thread.join();
    }
  } const join{stop, watcher, watching};
  auto count = [&] {
    const std::lock_guard<std::mutex> guard(mutex);
    return events.size();
  };
  ASSERT_TRUE(test::wait_until([&] { return count() >= 1; }, 5000ms));
  V2Process old(server_->url(), "job", 60000ms);
  ASSERT_EQ(old.ask("lock"), "1");
  EXPECT_TRUE(test::wait_until([&] { return count() >= 2; }, 3000ms));
  raw_->reset_stats();
  ASSERT_EQ(old.ask("clear"), "1");
  EXPECT_TRUE(test::wait_until([&] { return count() >= 3; }, 3000ms));
  EXPECT_EQ(raw_->command_calls()["publish"], 1);  // marked 'w' by the watcher: announced
  const std::lock_guard<std::mutex> guard(mutex);
  EXPECT_EQ(failure, "");
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events[1].kind, process_lock::WatchEvent::Kind::acquired);
  EXPECT_EQ(events[1].token, old.ask("token"));
  EXPECT_EQ(events[2].kind, process_lock::WatchEvent::Kind::released);
}
#endif

}  // namespace
