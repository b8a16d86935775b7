// Mutual exclusion under contention: threads and separate processes hammer one lock, and a
// counter that does not go through Redis proves that no two ever held it at once.
#include "support.hpp"

#include <gtest/gtest.h>

#include <sys/mman.h>

#include <thread>

namespace {

using process_lock::Error;
using process_lock::ProcessLock;
using namespace std::chrono_literals;

// Lives in shared memory so forked workers update the same one (std::atomic<int> is lock-free).
struct Tally {
  std::atomic<int> inside{0};       // holders right now
  std::atomic<int> overlaps{0};     // times a holder found another one inside
  std::atomic<int> acquisitions{0};
  std::atomic<int> failed_clears{0};
  std::atomic<int> errors{0};
  std::atomic<std::uint64_t> last_fence{0};  // written only inside the critical section
  std::atomic<int> fence_regressions{0};     // a holder whose fence was not above the last one
};
static_assert(std::atomic<int>::is_always_lock_free && std::atomic<std::uint64_t>::is_always_lock_free);

// One contender: try, and when it holds the lock, stay inside a little while, then release.
void contend(ProcessLock& lock, Tally& tally, int attempts) {
  for (int i = 0; i < attempts; ++i) {
    try {
      if (!lock.lock()) {
        std::this_thread::yield();
        continue;
      }
      if (tally.inside.fetch_add(1) != 0) ++tally.overlaps;
      ++tally.acquisitions;
      const std::uint64_t fence = lock.fence().value_or(0);
      if (fence <= tally.last_fence.load()) ++tally.fence_regressions;
      tally.last_fence = fence;
      std::this_thread::sleep_for(200us);
      tally.inside.fetch_sub(1);
      // Our lock was never allowed to expire (10 s timeout), so clearing must find it ours.
      if (lock.clear() != std::optional<bool>(true)) ++tally.failed_clears;
    } catch (const Error&) {
      ++tally.errors;
    }
  }
}

class ContentionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    void* mem = mmap(nullptr, sizeof(Tally), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(mem, MAP_FAILED);
    tally_ = new (mem) Tally();
  }
  void TearDown() override {
    tally_->~Tally();
    munmap(tally_, sizeof(Tally));
  }
  test::RedisServer server_;
  Tally* tally_ = nullptr;
};

TEST_F(ContentionTest, ThreadsNeverHoldTogether) {
  constexpr int threads = 8, attempts = 300;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      ProcessLock lock("shared-job", 10s, test::options_for(server_.url()));
      contend(lock, *tally_, attempts);
    });
  }
  for (auto& th : pool) th.join();
  EXPECT_EQ(tally_->overlaps.load(), 0);
  EXPECT_EQ(tally_->fence_regressions.load(), 0);
  EXPECT_EQ(tally_->failed_clears.load(), 0);
  EXPECT_EQ(tally_->errors.load(), 0);
  EXPECT_GT(tally_->acquisitions.load(), threads);  // the lock really changed hands
}

TEST_F(ContentionTest, ProcessesNeverHoldTogether) {
  constexpr int processes = 6, attempts = 300;
  std::vector<pid_t> children;
  for (int p = 0; p < processes; ++p) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      // Each process makes its own object after the fork, as a real worker would.
      ProcessLock lock("shared-job", 10s, test::options_for(server_.url()));
      contend(lock, *tally_, attempts);
      _exit(0);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  EXPECT_EQ(tally_->overlaps.load(), 0);
  EXPECT_EQ(tally_->fence_regressions.load(), 0);
  EXPECT_EQ(tally_->failed_clears.load(), 0);
  EXPECT_EQ(tally_->errors.load(), 0);
  EXPECT_GT(tally_->acquisitions.load(), processes);
}

}  // namespace
