// A lock inherited by a forked child: the child is the same owner and keeps it with a keeper of
// its own; whatever the parent's threads were doing at the fork, no call in the child hangs.
//
// Children of this threaded test process report by exit code (no GoogleTest assertions there)
// and end with _exit; a watchdog kills one that hangs and fails the test.
#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <cstdio>
#include <random>
#include <thread>

#include "support.hpp"

namespace {

using process_lock::KeepOptions;
using process_lock::ProcessLock;
using process_lock::State;
using namespace std::chrono_literals;

// ThreadSanitizer does not support starting threads in the child of a multi-threaded process
// (it makes such a child die), and every test here does.
#if defined(__SANITIZE_THREAD__)
#define SKIP_UNDER_TSAN() GTEST_SKIP() << "ThreadSanitizer does not support threads after a multi-threaded fork"
#else
#define SKIP_UNDER_TSAN() (void)0
#endif

// AddressSanitizer's allocator (GCC 12's libasan) has no fork handlers: a child may hang in
// malloc if another thread of the parent was inside it at the fork (seen: a new thread's start
// stuck in SizeClassAllocator64::GetFromAllocator). So the tests that fork while other threads
// are busy do not run under it; glibc's own malloc is safe across fork.
#if defined(__SANITIZE_ADDRESS__)
#define SKIP_UNDER_ASAN() GTEST_SKIP() << "AddressSanitizer's allocator is not safe across a fork of busy threads"
#else
#define SKIP_UNDER_ASAN() (void)0
#endif

// A child's exit code for an exception: its message is on stderr.
constexpr int threw = 90;

// Runs `body` in a forked child, whose exit code is what it returns (`threw` if it throws).
pid_t start_child(const std::function<int()>& body) {
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid != 0) return pid;
  prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a failed test
  if (getppid() != parent) _exit(1);
  int code = threw;
  try {
    code = body();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "child %d: %s\n", static_cast<int>(getpid()), e.what());
  }
  _exit(code);
}

// Waits up to `limit` for the child; one still running then is killed. "" if it exited 0, else
// what it did.
std::string outcome_of(pid_t pid, std::chrono::milliseconds limit) {
  if (pid < 0) return "fork failed";
  const auto deadline = std::chrono::steady_clock::now() + limit;
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() >= deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return "hung: killed after " + std::to_string(limit.count()) + " ms";
    }
    std::this_thread::sleep_for(200us);
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status) == 0 ? "" : "exited " + std::to_string(WEXITSTATUS(status));
  return "killed by signal " + std::to_string(WTERMSIG(status));
}

std::string run_child(const std::function<int()>& body, std::chrono::milliseconds limit) {
  return outcome_of(start_child(body), limit);
}

class ForkTest : public test::SharedServerTest<ForkTest> {};

// The daemon of the README: lock, keep, fork, the parent stops renewing, the child keeps the lock
// with a keeper of its own, on its own connection, across several timeouts.
TEST_F(ForkTest, ChildKeepsTheInheritedLockWithItsOwnKeeper) {
  SKIP_UNDER_TSAN();
  ProcessLock lock("daemon", 300ms, options());
  ASSERT_TRUE(lock.lock());
  std::atomic<int> parent_renewals{0};
  KeepOptions keep;
  keep.interval = 50ms;
  keep.on_renewed = [&] { ++parent_renewals; };
  lock.keep(keep);
  ASSERT_TRUE(test::wait_until([&] { return parent_renewals > 0; }));  // a daemon that has held it a while
  const int port = server_->port();
  const pid_t child = start_child([&] {
    const bool shows_parents_keeper = lock.keeping();  // it does not exist here
    std::atomic<int> renewals{0};
    KeepOptions own = keep;
    own.on_renewed = [&] { ++renewals; };
    lock.keep(own);
    if (!lock.keeping()) return 11;
    std::this_thread::sleep_for(1000ms);  // over three timeouts, and the parent renews nothing
    test::RawClient raw(port);
    if (raw.string({"GET", "daemon"}) != lock.token()) return 12;
    if (raw.integer({"PTTL", "daemon"}) <= 0) return 13;
    if (renewals < 5) return 14;  // every 50 ms: about 20
    if (!lock.owner() || lock.valid_for() <= 0ms || !lock.fence()) return 15;
    lock.stop_keeping();
    if (lock.keeping()) return 16;
    return shows_parents_keeper ? 10 : 0;
  });
  lock.stop_keeping();  // from now on only the child renews
  EXPECT_EQ(outcome_of(child, 5000ms), "");
  EXPECT_EQ(raw_->string({"GET", "daemon"}), lock.token());  // the child neither released it nor let it expire
  EXPECT_TRUE(lock.update());                                // one owner: the parent may go on
  EXPECT_EQ(lock.clear(), std::optional<bool>(true));
}

// What each child does with the lock it inherited from a parent whose keeper renews constantly
// while another thread makes calls. `kind` picks one of the sequences.
int use_inherited(std::unique_ptr<ProcessLock>& lock, int kind, std::uint64_t fence, const KeepOptions& keep) {
  if (!lock->owner() || lock->fence() != fence || lock->valid_for() <= 0ms) return 11;
  const bool shows_parents_keeper = lock->keeping();  // it does not exist here
  switch (kind) {
    case 0:  // keep, renew, stop
      lock->keep(keep);
      if (!lock->keeping()) return 12;
      if (!lock->update()) return 13;
      lock->stop_keeping();
      if (lock->keeping()) return 14;
      break;
    case 1:  // calls, then _exit with a keeper running
      if (!lock->update()) return 13;
      if (lock->state() != State::locked) return 15;
      if (!lock->inspect().ours) return 16;
      lock->keep(keep);
      break;
    case 2:  // keep, then release the lock (the parent takes it again)
      lock->keep(keep);
      if (lock->clear() != std::optional<bool>(true)) return 17;
      if (lock->owner() || lock->keeping()) return 18;
      break;
    default:  // keep, then destroy the object: the lock stays the parent's
      lock->keep(keep);
      lock.reset();
      break;
  }
  return shows_parents_keeper ? 10 : 0;
}

// Forks at random moments while the keeper and another thread are in the middle of anything:
// a renewal, a call holding the connection, a keeper being replaced. Every child must finish.
TEST_F(ForkTest, ForksAtRandomMomentsOfABusyKeeper) {
  SKIP_UNDER_TSAN();
  SKIP_UNDER_ASAN();
  auto lock = std::make_unique<ProcessLock>("busy", 500ms, options());
  ASSERT_TRUE(lock->lock());
  KeepOptions keep;
  keep.interval = 2ms;  // renewing all the time
  lock->keep(keep);
  std::atomic<bool> done{false};
  std::thread caller([&] {
    while (!done) {
      try {
        (void)lock->update();
        (void)lock->state();
        (void)lock->keeping();
        (void)lock->fence();
        (void)lock->valid_for();
      } catch (const process_lock::Error&) {
        // the child of kind 2 released the lock for a moment
      }
      std::this_thread::sleep_for(100us);  // busy, yet leaving the children some of the two cores CI has
    }
  });
  const unsigned seed = std::random_device{}();
  std::mt19937 random(seed);
  int forks = 0;
  std::string failure;
  for (; forks < 300 && failure.empty(); ++forks) {
    const int kind = forks % 4;
    if (forks % 8 == 7) lock->keep(keep);  // the new keeper is just starting at the fork
    std::this_thread::sleep_for(std::chrono::microseconds(random() % 1000));
    const std::uint64_t fence = lock->fence().value_or(0);
    // (A child's time limit far beyond any stall of a loaded machine: what it looks for is a hang.)
    failure = run_child([&] { return use_inherited(lock, kind, fence, keep); }, 10000ms);
    if (!failure.empty())
      failure = "fork " + std::to_string(forks) + " (kind " + std::to_string(kind) + "): " + failure;
    if (kind == 2) {  // the child released it: take it again, with no keeper racing the answer
      lock->stop_keeping();
      if (!lock->lock()) failure += "; the parent could not take the lock again";
      lock->keep(keep);
    }
    if (kind == 3 && raw_->string({"GET", "busy"}) != lock->token())
      failure += "; the child's destructor released the lock";
  }
  done = true;
  caller.join();
  EXPECT_EQ(failure, "") << "seed " << seed;
  EXPECT_EQ(forks, 300);
  EXPECT_TRUE(lock->keeping());
  EXPECT_TRUE(lock->update());
}

// The destructor in a child leaves the lock to the parent (it does not release it) and does not
// wait for the parent's keeper, which does not exist there, whatever the parent's threads were
// doing with their keepers at the fork.
TEST_F(ForkTest, DestructorInAChildNeitherReleasesNorHangs) {
  SKIP_UNDER_TSAN();
  SKIP_UNDER_ASAN();
  auto lock = std::make_unique<ProcessLock>("job", 2000ms, options());
  ASSERT_TRUE(lock->lock());
  KeepOptions keep;
  keep.interval = 5ms;
  lock->keep(keep);
  // A fork finds a keeper starting, renewing, being stopped or being waited for.
  std::atomic<bool> done{false};
  std::thread cycler([&] {
    while (!done) {
      try {
        (void)lock->update();
        lock->keep(keep);
      } catch (const process_lock::Error&) {
        // a failed renewal: the next round tries again
      }
      lock->stop_keeping();
    }
  });
  std::mt19937 random(std::random_device{}());
  int forks = 0;
  std::string failure;
  for (; forks < 100 && failure.empty(); ++forks) {
    std::this_thread::sleep_for(std::chrono::microseconds(random() % 1000));
    failure = run_child(
        [&] {
          lock.reset();
          return 0;
        },
        3000ms);
  }
  done = true;
  cycler.join();
  EXPECT_EQ(failure, "") << "fork " << forks - 1;
  EXPECT_EQ(raw_->string({"GET", "job"}), lock->token());
  EXPECT_TRUE(lock->update());
}

// A keeper's callback that forks: in the child the object works and has no keeper; the keeper
// does not go on there once the callback returns.
TEST_F(ForkTest, ForkInAKeeperCallback) {
  SKIP_UNDER_TSAN();
  ProcessLock lock("job", 1000ms, options());
  ASSERT_TRUE(lock.lock());
  std::promise<pid_t> calling_child, returning_child;
  std::atomic<int> renewals{0};
  KeepOptions keep;
  keep.interval = 20ms;
  keep.on_renewed = [&] {
    const int n = ++renewals;
    if (n == 1) {
      calling_child.set_value(start_child([&] {
        if (lock.keeping()) return 10;
        if (!lock.update()) return 11;
        KeepOptions own;
        own.interval = 20ms;
        lock.keep(own);
        if (!lock.keeping()) return 12;
        lock.stop_keeping();
        return 0;
      }));
    } else if (n == 2) {
      const pid_t pid = fork();
      if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        // The process ends by exit() when its last thread does; nothing of the test's must run
        // there again (static destructors, a leak check of what the parent's threads owned).
        std::atexit([] { _exit(0); });
        return;  // back into the keeper, in the child
      }
      returning_child.set_value(pid);
    }
  };
  lock.keep(keep);
  auto first = calling_child.get_future();
  auto second = returning_child.get_future();
  ASSERT_EQ(first.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(outcome_of(first.get(), 3000ms), "");
  ASSERT_EQ(second.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(outcome_of(second.get(), 3000ms), "");  // its only thread ended, and with it the process
  EXPECT_TRUE(lock.keeping());
  EXPECT_TRUE(lock.update());
}

}  // namespace
