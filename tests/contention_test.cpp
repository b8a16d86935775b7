// Mutual exclusion under contention: threads and separate processes hammer one lock, and a
// counter that does not go through Redis proves that no two ever held it at once.
#include "contention.hpp"
#include "support.hpp"

#include <gtest/gtest.h>

#include <thread>

namespace {

using test::contend;

using process_lock::ProcessLock;
using namespace std::chrono_literals;

class ContentionTest : public ::testing::Test {
 protected:
  test::RedisServer server_;
  test::SharedTally tally_;
};

TEST_F(ContentionTest, ThreadsNeverHoldTogether) {
  constexpr int threads = 8, attempts = 300;
  std::vector<std::thread> pool;
  pool.reserve(threads);
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
