// process-lock: how the keeper is stopped and a waiter woken (KeeperControl, WaitSlot), a
// waiter's retry timing and the keeper's next step (pure functions).
// SPDX-License-Identifier: Apache-2.0
// One part of <process_lock.hpp>, which includes its parts in order; include that, not this.
#ifndef PROCESS_LOCK_HPP_
#error "include <process_lock.hpp>; process_lock/wakeups.hpp is one of its parts"
#endif
#ifndef PROCESS_LOCK_WAKEUPS_HPP_
#define PROCESS_LOCK_WAKEUPS_HPP_

namespace process_lock {
namespace detail {

/// A keeper thread and how to stop it; shared by the lock object and the thread.
struct KeeperControl {
  std::mutex mutex;
  std::condition_variable cv;
  bool stop = false;                  // guarded by mutex
  std::atomic<bool> finished{false};  // the loop has ended
  std::mutex join_mutex;              // whoever stops it waits here until it has ended
  std::atomic<std::thread::id> id{};  // set by the keeper itself, for "am I the keeper?"
  std::thread thread;
};

/// One wait in progress: cancel() sets the flag and makes the eventfd readable, which wakes
/// the poll() the wait sleeps in. The eventfd is made only once the wait has to sleep, so a
/// try_lock_for that gets the lock at once makes no system call for it.
class WaitSlot {
 public:
  WaitSlot() = default;
  ~WaitSlot() {
    const int fd = fd_.load();
    if (fd >= 0) close(fd);
  }
  WaitSlot(const WaitSlot&) = delete;
  WaitSlot& operator=(const WaitSlot&) = delete;

  /// Before the first sleep. An interrupt() that finds no eventfd yet has set the flag, which
  /// the wait looks at after this and before sleeping (both sides are sequentially consistent).
  void prepare() {
    if (fd_.load() >= 0) return;
    const int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "process_lock: eventfd");
    fd_.store(fd);
  }
  void interrupt() noexcept {
    cancelled_ = true;
    const int fd = fd_.load();
    if (fd < 0) return;
    const std::uint64_t one = 1;
    [[maybe_unused]] const ssize_t ignored = write(fd, &one, sizeof one);
  }
  bool cancelled() const noexcept { return cancelled_.load(); }
  int fd() const noexcept { return fd_.load(); }
  /// Sleeps until `deadline` or an interrupt.
  void sleep_until(std::chrono::steady_clock::time_point deadline) const noexcept {
    for (;;) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || cancelled()) return;
      pollfd p{fd_.load(), POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 60000))) > 0) return;
    }
  }

 private:
  std::atomic<int> fd_{-1};
  std::atomic<bool> cancelled_{false};
};

/// A uniformly random duration in [0, limit], for jitter.
inline std::chrono::milliseconds jitter(std::chrono::milliseconds limit) {
  thread_local std::minstd_rand generator(std::random_device{}());
  if (limit.count() <= 0) return std::chrono::milliseconds(0);
  return std::chrono::milliseconds(std::uniform_int_distribution<long long>(0, limit.count())(generator));
}

/// When a waiter tries again by itself. `holder_pttl` is the holder's remaining TTL in ms (-1:
/// none). `attempt` counts the waiter's retries, for exponential backoff where no expiry is
/// known or no release notice can arrive (`notices` false).
inline std::chrono::milliseconds retry_delay(long long holder_pttl, int attempt, bool notices) {
  using std::chrono::milliseconds;
  const milliseconds backoff_cap = notices ? milliseconds(1000) : milliseconds(250);
  const milliseconds backoff = std::min(milliseconds(5LL << std::min(attempt, 8)), backoff_cap);
  const milliseconds polling = backoff / 2 + jitter(backoff / 2);
  if (holder_pttl < 0) return polling;
  holder_pttl = std::min(holder_pttl, 24LL * 3600 * 1000);  // a TTL of centuries would overflow the clock: check daily
  // Just after the holder's expiry, spread over up to 10% of it (at most 50 ms).
  const milliseconds expiry =
      milliseconds(holder_pttl) + milliseconds(1) + jitter(std::min(milliseconds(holder_pttl / 10), milliseconds(50)));
  return notices ? expiry : std::min(expiry, polling);
}

/// What the keeper does next (see next_keeper_step).
struct KeeperStep {
  enum class Kind { renew, wait, report };
  Kind kind = Kind::wait;
  LostReason reason = LostReason::unreachable;    // report: why the hold is given up
  std::chrono::steady_clock::time_point until{};  // wait: until when, at the latest; renew: the
                                                  // time to report, which the renewal must not pass
};

/// The keeper's decision at `now`, for a hold valid until `valid_until` by our clock: the loss
/// is reported as `expired` once the validity is over, and `margin` before it ends as
/// `unreachable` (renewals kept failing) or, when `capped` (max_hold or max_renewals reached, so
/// no renewal is sent), `limit_reached`; else a renewal is sent once `due` has come (unless
/// capped); else it waits until the renewal is due or the report time comes, whichever is first.
inline KeeperStep next_keeper_step(std::chrono::steady_clock::time_point now,
                                   std::chrono::steady_clock::time_point valid_until, std::chrono::milliseconds margin,
                                   std::chrono::steady_clock::time_point due, bool capped) noexcept {
  using Kind = KeeperStep::Kind;
  if (now >= valid_until) return {Kind::report, LostReason::expired, {}};
  const auto report_at = valid_until - margin;
  if (now >= report_at) return {Kind::report, capped ? LostReason::limit_reached : LostReason::unreachable, {}};
  if (!capped && now >= due) return {Kind::renew, LostReason::unreachable, report_at};
  return {Kind::wait, LostReason::unreachable, capped ? report_at : std::min(due, report_at)};
}

}  // namespace detail
}  // namespace process_lock

#endif  // PROCESS_LOCK_WAKEUPS_HPP_
