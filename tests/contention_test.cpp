// Mutual exclusion under contention: threads and separate processes hammer one lock, and a
// counter that does not go through Redis proves that no two ever held it at once.
#include "contention.hpp"

#include <gtest/gtest.h>

#include <thread>

#include "support.hpp"

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
  test::expect_exclusive(*tally_, threads);
}

TEST_F(ContentionTest, ProcessesNeverHoldTogether) {
  constexpr int processes = 6, attempts = 300;
  EXPECT_EQ(test::contend_in_processes(processes, attempts, "shared-job", test::options_for(server_.url()), *tally_),
            0);
  test::expect_exclusive(*tally_, processes);
}

}  // namespace
