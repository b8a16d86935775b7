// process-lock: Waiter, the loop of try_lock_for / try_lock_until: attempts, release notices,
// retry timing, cancellation.
// SPDX-License-Identifier: Apache-2.0
// One part of <process_lock.hpp>, which includes its parts in order; include that, not this.
#ifndef PROCESS_LOCK_HPP_
#error "include <process_lock.hpp>; process_lock/waiter.hpp is one of its parts"
#endif
#ifndef PROCESS_LOCK_WAITER_HPP_
#define PROCESS_LOCK_WAITER_HPP_

namespace process_lock {
namespace detail {

/// Waits for a lock: attempts until one succeeds, `deadline` passes or `slot` is interrupted
/// (cancel(), a stop_token). Between attempts it listens for release notices on a subscription
/// of its own, else sleeps; either way it tries again by itself at the holder's expiry or, at
/// the latest, after the polling delay (retry_delay). What an attempt is, and how to subscribe,
/// are the caller's: the waiter knows neither the lock's keys nor its masters.
class Waiter {
 public:
  /// `attempt(listening)` tries once and returns {acquired, holder_pttl}; `listening` says a
  /// subscription is up, so that the attempt marks the holder's record and its release is
  /// announced. `subscribe()` returns a connection subscribed to the lock's release notices, or
  /// nullptr if none could be made (the wait then polls).
  template <class Attempt, class Subscribe>
  static bool wait(std::chrono::steady_clock::time_point deadline, WaitSlot& slot, Attempt&& attempt,
                   Subscribe&& subscribe) {
    using clock = std::chrono::steady_clock;
    if (slot.cancelled()) return false;
    auto last = attempt(false);
    if (last.acquired || clock::now() >= deadline) return last.acquired;
    slot.prepare();
    if (slot.cancelled()) return false;

    std::unique_ptr<Master> notices;  // subscribed to this lock's release notices
    bool can_subscribe = true;
    for (int retries = 0; !slot.cancelled() && clock::now() < deadline; ++retries) {
      if (!notices && can_subscribe) {
        notices = subscribe();
        can_subscribe = notices != nullptr;
        // A release between the last attempt and the subscription sent a notice nobody heard.
        // Subscribed, the attempt marks the holder's record so that its release is announced.
        last = attempt(notices != nullptr);
        if (last.acquired) return true;
        continue;
      }
      const auto delay = retry_delay(last.holder_pttl, retries, notices != nullptr);
      const auto wake_at = deadline - clock::now() < delay ? deadline : clock::now() + delay;
      if (notices) {
        try {
          notices->wait_message(wake_at, slot.fd());
        } catch (const Error&) {
          notices.reset();  // subscribe again on the next round
        }
      } else {
        slot.sleep_until(wake_at);
      }
      if (slot.cancelled()) return false;
      last = attempt(notices != nullptr);
      if (last.acquired) return true;
    }
    return false;
  }
};

}  // namespace detail
}  // namespace process_lock

#endif  // PROCESS_LOCK_WAITER_HPP_
