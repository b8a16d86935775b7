// process-lock: checked timeouts and deadlines: any duration or time point turned into a steady
// deadline.
// SPDX-License-Identifier: Apache-2.0
// One part of <process_lock.hpp>, which includes its parts in order; include that, not this.
#ifndef PROCESS_LOCK_HPP_
#error "include <process_lock.hpp>; process_lock/time.hpp is one of its parts"
#endif
#ifndef PROCESS_LOCK_TIME_HPP_
#define PROCESS_LOCK_TIME_HPP_

namespace process_lock {
namespace detail {

inline std::chrono::milliseconds checked_io_timeout(std::optional<std::chrono::milliseconds> explicit_value,
                                                    std::optional<std::chrono::milliseconds> from_url,
                                                    std::string_view what) {
  const auto value = explicit_value ? *explicit_value : from_url ? *from_url : default_io_timeout;
  if (value < std::chrono::milliseconds(1) || value > max_io_timeout)
    throw Error(errc::invalid_argument, "Options::" + std::string(what) + " must be from 1 ms to 1 h (got " +
                                            std::to_string(value.count()) + " ms)");
  return value;
}

/// `now + d` on the monotonic clock, for a duration of any type and value, without overflow:
/// `now` itself when `d` is zero or negative (a wait of zero or less is one attempt),
/// `time_point::max()` ("forever") when the sum would come within a second of the end of the
/// clock's range or beyond it, else the sum rounded up to the clock's tick. `now` is a reading
/// of the clock. A NaN duration is `errc::invalid_argument`. Every public wait and time limit
/// is turned into a deadline by this or by `to_steady`.
template <class Rep, class Period>
[[nodiscard]] std::chrono::steady_clock::time_point saturating_deadline(std::chrono::steady_clock::time_point now,
                                                                        const std::chrono::duration<Rep, Period>& d) {
  using steady = std::chrono::steady_clock;
  // In long double ticks nothing overflows: hours::max() is about 3e31 ns.
  using ticks = std::chrono::duration<long double, steady::period>;
  const long double left = ticks(d).count();
  if (std::isnan(left)) throw Error(errc::invalid_argument, "a wait or time limit is NaN");
  if (!(left > 0)) return now;
  const auto as_ticks = [](steady::rep r) { return static_cast<long double>(r); };
  const long double room = std::min(
      as_ticks(steady::time_point::max().time_since_epoch().count()) - as_ticks(now.time_since_epoch().count()),
      as_ticks(std::numeric_limits<steady::rep>::max()));
  if (left >= room - ticks(std::chrono::seconds(1)).count()) return steady::time_point::max();
  return now + steady::duration(static_cast<steady::rep>(std::ceil(left)));
}

/// A time point `t` of any clock as a deadline on the monotonic clock: how far `t` lies past
/// `clock_now` (a reading of `t`'s clock), added to `steady_now` by `saturating_deadline` (so
/// never before `steady_now`); the `max()` of any time point type is "forever". The difference
/// is taken in long double, since converting either time point to the other's type overflows
/// at the extremes (`time_point<system_clock, hours>::max()` in nanoseconds).
template <class Clock, class Duration>
[[nodiscard]] std::chrono::steady_clock::time_point to_steady(const std::chrono::time_point<Clock, Duration>& t,
                                                              const typename Clock::time_point& clock_now,
                                                              std::chrono::steady_clock::time_point steady_now) {
  using steady = std::chrono::steady_clock;
  if (t == std::chrono::time_point<Clock, Duration>::max()) return steady::time_point::max();
  if constexpr (std::is_same_v<Clock, steady> && std::is_same_v<Duration, steady::duration>) {
    return std::max(t, steady_now);
  } else {
    using ticks = std::chrono::duration<long double, steady::period>;
    return saturating_deadline(steady_now, ticks(t.time_since_epoch()) - ticks(clock_now.time_since_epoch()));
  }
}

/// `to_steady` measured from now.
template <class Clock, class Duration>
[[nodiscard]] std::chrono::steady_clock::time_point to_steady(const std::chrono::time_point<Clock, Duration>& t) {
  const auto steady_now = std::chrono::steady_clock::now();
  if constexpr (std::is_same_v<Clock, std::chrono::steady_clock>)
    return to_steady(t, steady_now, steady_now);
  else
    return to_steady(t, Clock::now(), steady_now);
}

/// How a read waits for a reply with `left` until its call's deadline, on a socket whose
/// receive timeout (SO_RCVTIMEO) is `current` (zero: none set): blocked in recv() itself under
/// that timeout (`timeout` > 0; `set`: change the socket's to it first), or in poll() (`timeout`
/// zero). recv() alone is one system call per reply where poll() then recv() are two, which is
/// most of what a call costs the client. The timeout must end before the deadline although the
/// kernel's timer wheel (unlike poll()'s precise timer) may fire late by up to an eighth of the
/// timeout plus a tick or two: so the timeout is at most three quarters of what is left and at
/// least `read_wait_slack` before the deadline, and poll() is used when less than
/// `read_wait_floor` is left. A timeout set by an earlier call is kept while it stays within
/// three quarters and is at least half of what is left; a new one is seven tenths of what is
/// left, so that a run of calls with the same command timeout keeps it even when a read starts
/// a little into its call (up to a fifteenth of the call's time).
struct ReadWait {
  std::chrono::milliseconds timeout{0};
  bool set = false;
  friend bool operator==(const ReadWait& a, const ReadWait& b) { return a.timeout == b.timeout && a.set == b.set; }
};
inline constexpr std::chrono::milliseconds read_wait_slack{25};
inline constexpr std::chrono::milliseconds read_wait_floor{100};

[[nodiscard]] constexpr ReadWait plan_read_wait(std::chrono::milliseconds current, std::chrono::microseconds left) noexcept {
  if (left < read_wait_floor) return {};
  if (current.count() > 0 && current * 4 <= left * 3 && current + read_wait_slack <= left && current * 2 >= left)
    return {current, false};
  const auto seven_tenths = std::chrono::duration_cast<std::chrono::milliseconds>(left * 7 / 10);
  const auto within_slack = std::chrono::duration_cast<std::chrono::milliseconds>(left - read_wait_slack);
  return {std::min(seven_tenths, within_slack), true};
}

}  // namespace detail
}  // namespace process_lock

#endif  // PROCESS_LOCK_TIME_HPP_
