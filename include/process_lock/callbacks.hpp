// process-lock: the node-style callback forms of the calls.
// SPDX-License-Identifier: Apache-2.0
// One part of <process_lock.hpp>, which includes its parts in order; include that, not this.
#ifndef PROCESS_LOCK_HPP_
#error "include <process_lock.hpp>; process_lock/callbacks.hpp is one of its parts"
#endif
#ifndef PROCESS_LOCK_CALLBACKS_HPP_
#define PROCESS_LOCK_CALLBACKS_HPP_

namespace process_lock {

template <class T, class Fn, class Callback>
void ProcessLock::deliver(Fn&& fn, Callback& cb) {
  std::optional<T> value;  // engaged when the call succeeded
  Error error;
  try {
    value.emplace(fn());
  } catch (const Error& e) {
    error = e;
  }
  cb(static_cast<const Error&>(error), value ? std::move(*value) : T{});
}

template <class Callback>
void ProcessLock::lock(Callback&& cb) {
  static_assert(std::is_invocable_v<Callback&, const Error&, bool>,
                "lock(callback): the callback must be callable as cb(const process_lock::Error&, bool)");
  deliver<bool>([this] { return lock(); }, cb);
}

template <class Callback>
void ProcessLock::update(Callback&& cb) {
  static_assert(std::is_invocable_v<Callback&, const Error&, bool>,
                "update(callback): the callback must be callable as cb(const process_lock::Error&, bool)");
  deliver<bool>([this] { return update(); }, cb);
}

template <class Callback, std::enable_if_t<detail::is_callback_v<Callback>, int>>
void ProcessLock::clear(Callback&& cb) {
  clear(false, std::forward<Callback>(cb));
}

template <class Callback, std::enable_if_t<detail::is_callback_v<Callback>, int>>
void ProcessLock::clear(bool force, Callback&& cb) {
  static_assert(std::is_invocable_v<Callback&, const Error&, std::optional<bool>>,
                "clear(callback): the callback must be callable as "
                "cb(const process_lock::Error&, std::optional<bool>)");
  deliver<std::optional<bool>>([this, force] { return clear(force); }, cb);
}

template <class Callback>
void ProcessLock::state(Callback&& cb) {
  static_assert(
      std::is_invocable_v<Callback&, const Error&, State>,
      "state(callback): the callback must be callable as cb(const process_lock::Error&, process_lock::State)");
  deliver<State>([this] { return state(); }, cb);
}

}  // namespace process_lock

#endif  // PROCESS_LOCK_CALLBACKS_HPP_
