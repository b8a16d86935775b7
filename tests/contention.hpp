// Mutual exclusion checks shared by the contention tests: a tally in shared memory that forked
// workers update, and a contender that records every hold in it.
#ifndef PROCESS_LOCK_TESTS_CONTENTION_HPP_
#define PROCESS_LOCK_TESTS_CONTENTION_HPP_

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <new>
#include <process_lock.hpp>
#include <string>
#include <thread>
#include <vector>

namespace test {

using namespace std::chrono_literals;

// Lives in shared memory so forked workers update the same one (std::atomic<int> is lock-free).
struct Tally {
  std::atomic<int> inside{0};    // holders right now
  std::atomic<int> overlaps{0};  // times a holder found another one inside
  std::atomic<int> acquisitions{0};
  std::atomic<int> failed_clears{0};
  std::atomic<int> errors{0};
  std::atomic<std::uint64_t> last_fence{0};  // written only inside the critical section
  std::atomic<int> fence_regressions{0};     // a holder whose fence was not above the last one
};
static_assert(std::atomic<int>::is_always_lock_free && std::atomic<std::uint64_t>::is_always_lock_free);

// One contender: try, and when it holds the lock, stay inside a little while, then release.
inline void contend(process_lock::ProcessLock& lock, Tally& tally, int attempts) {
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
    } catch (const process_lock::Error&) {
      ++tally.errors;
    }
  }
}

/// A Tally in memory shared with forked children; unmapped by the destructor.
class SharedTally {
 public:
  SharedTally() {
    void* mem = mmap(nullptr, sizeof(Tally), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) throw std::bad_alloc();
    tally_ = new (mem) Tally();
  }
  ~SharedTally() {
    tally_->~Tally();
    munmap(tally_, sizeof(Tally));
  }
  SharedTally(const SharedTally&) = delete;
  SharedTally& operator=(const SharedTally&) = delete;
  Tally& operator*() const { return *tally_; }
  Tally* operator->() const { return tally_; }

 private:
  Tally* tally_;
};

/// Forks `processes` workers; each makes its own lock on `name` (as a real worker would, after
/// the fork) and contends `attempts` times. Returns how many did not exit cleanly.
inline int contend_in_processes(int processes, int attempts, const std::string& name,
                                const process_lock::Options& options, Tally& tally) {
  std::vector<pid_t> children;
  for (int p = 0; p < processes; ++p) {
    const pid_t pid = fork();
    if (pid < 0) break;
    if (pid == 0) {
      process_lock::ProcessLock lock(name, std::chrono::seconds(10), options);
      contend(lock, tally, attempts);
      _exit(0);
    }
    children.push_back(pid);
  }
  int failed = processes - static_cast<int>(children.size());
  for (pid_t pid : children) {
    int status = 0;
    waitpid(pid, &status, 0);
    failed += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  return failed;
}

/// No two contenders ever held the lock at once, tokens only grew, and it changed hands.
inline void expect_exclusive(const Tally& tally, int contenders) {
  EXPECT_EQ(tally.overlaps.load(), 0);
  EXPECT_EQ(tally.fence_regressions.load(), 0);
  EXPECT_EQ(tally.failed_clears.load(), 0);
  EXPECT_EQ(tally.errors.load(), 0);
  EXPECT_GT(tally.acquisitions.load(), contenders);  // the lock really changed hands
}

}  // namespace test

#endif  // PROCESS_LOCK_TESTS_CONTENTION_HPP_
