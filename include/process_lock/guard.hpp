// process-lock: Guard and Mutex.
// SPDX-License-Identifier: Apache-2.0
// One part of <process_lock.hpp>, which includes its parts in order; include that, not this.
#ifndef PROCESS_LOCK_HPP_
#error "include <process_lock.hpp>; process_lock/guard.hpp is one of its parts"
#endif
#ifndef PROCESS_LOCK_GUARD_HPP_
#define PROCESS_LOCK_GUARD_HPP_

namespace process_lock {

inline Guard::Guard(ProcessLock& lock, std::chrono::milliseconds wait, std::optional<KeepOptions> keep) : lock_(lock) {
  owns_ = wait > std::chrono::milliseconds(0) ? lock_.try_lock_for(wait) : lock_.lock();
  if (!owns_ || !keep) return;
  try {
    lock_.keep(std::move(*keep));
  } catch (...) {
    // The destructor will not run for a guard that failed to construct: release here.
    try {
      (void)lock_.clear();
    } catch (...) {
    }
    throw;
  }
}

inline Guard::~Guard() {
  // Not once the hold has ended (a loss, a clear(), or a release_at() whose minimum hold a
  // clear() would cut short).
  if (!owns_ || !lock_.owner()) return;
  try {
    (void)lock_.clear();  // stops the keeper too
  } catch (...) {
    // The lock expires after its timeout.
  }
}

template <class Rep, class Period>
bool Mutex::try_lock_for(const std::chrono::duration<Rep, Period>& timeout) {
  return try_lock_until(detail::saturating_deadline(std::chrono::steady_clock::now(), timeout));
}

template <class Clock, class Duration>
bool Mutex::try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline) {
  // Converted once: both parts wait for the same moment, on the monotonic clock.
  const std::chrono::steady_clock::time_point until = detail::to_steady(deadline);
  if (!take_local(until)) return false;
  return holding([&] { return lock_.try_lock_until(until); });
}

inline void Mutex::lock() {
  take_local(std::chrono::steady_clock::time_point::max());
  if (!holding([&] { return lock_.try_lock_until(std::chrono::steady_clock::time_point::max()); }))
    throw Error(errc::cancelled, "lock(" + detail::printable_name(lock_.name()) + "): the wait was cancelled");
}

inline std::optional<std::uint64_t> ProcessLock::fence() const noexcept {
  const std::uint64_t f = hold_.fence();
  if (!hold_.ours() || f == 0) return std::nullopt;
  return f;
}

}  // namespace process_lock

#endif  // PROCESS_LOCK_GUARD_HPP_
