// process-lock: waiting for the lock: try_lock_for / try_lock_until and cancel(); what one
// attempt is and how to subscribe to release notices (the loop itself is detail::Waiter).
// SPDX-License-Identifier: Apache-2.0
// One part of <process_lock.hpp>, which includes its parts in order; include that, not this.
#ifndef PROCESS_LOCK_HPP_
#error "include <process_lock.hpp>; process_lock/wait.hpp is one of its parts"
#endif
#ifndef PROCESS_LOCK_WAIT_HPP_
#define PROCESS_LOCK_WAIT_HPP_

namespace process_lock {

template <class Clock, class Duration>
std::chrono::steady_clock::time_point ProcessLock::to_steady(const std::chrono::time_point<Clock, Duration>& t) {
  return detail::to_steady(t);
}

template <class Rep, class Period>
bool ProcessLock::try_lock_for(const std::chrono::duration<Rep, Period>& timeout) {
  return try_lock_until(deadline_after(timeout));
}

template <class Rep, class Period>
std::chrono::steady_clock::time_point ProcessLock::deadline_after(const std::chrono::duration<Rep, Period>& timeout) {
  return detail::saturating_deadline(std::chrono::steady_clock::now(), timeout);
}

template <class Clock, class Duration>
bool ProcessLock::try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline) {
  detail::WaitSlot slot;
  return wait_until(to_steady(deadline), slot);
}

template <class Rep, class Period, class Callback,
          std::enable_if_t<std::is_invocable_v<Callback&, const Error&, bool>, int>>
void ProcessLock::try_lock_for(const std::chrono::duration<Rep, Period>& timeout, Callback&& cb) {
  deliver<bool>([&] { return try_lock_for(timeout); }, cb);
}

#if defined(__cpp_lib_jthread)
template <class Rep, class Period>
bool ProcessLock::try_lock_for(const std::chrono::duration<Rep, Period>& timeout, std::stop_token stop) {
  detail::WaitSlot slot;
  const std::stop_callback on_stop(stop, [&slot]() noexcept { slot.interrupt(); });
  return wait_until(deadline_after(timeout), slot);
}
#endif

inline void ProcessLock::cancel() noexcept {
  PerProcess* const here = per_process_if_made();
  if (!here) return;  // in a child: the parent's waits do not exist here
  const std::lock_guard<std::mutex> guard(here->waiters_mutex);
  for (detail::WaitSlot* slot : here->waiters) slot->interrupt();
}

inline bool ProcessLock::wait_until(std::chrono::steady_clock::time_point deadline, detail::WaitSlot& slot) {
  // Reachable by cancel() from before the first attempt to the end.
  const PerProcess::Reachable reachable(per_process(), slot);
  return detail::Waiter::wait(
      deadline, slot, [&](bool listening) { return attempt("try_lock", listening); },
      [&]() -> std::unique_ptr<detail::Master> {
        // The first master that accepts: its attempts mark the record there, so that a release
        // is announced (one that is not is found at the holder's expiry).
        for (auto& node : clone_nodes()) {
          try {
            node->set_deadline(deadline);  // a slow server must not hold the wait past its deadline
            node->subscribe(identity_->keys.channel);
            return std::move(node);
          } catch (const Error&) {
            // try the next master
          }
        }
        return nullptr;  // no channel rights, or the servers are failing: poll instead
      });
}

}  // namespace process_lock

#endif  // PROCESS_LOCK_WAIT_HPP_
