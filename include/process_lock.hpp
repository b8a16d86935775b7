// process-lock: one holder at a time across processes and hosts, with Redis holding the lock.
// SPDX-License-Identifier: Apache-2.0
// Header-only, C++17, over hiredis (0.14 or 1.x). The README is the manual.

#ifndef PROCESS_LOCK_HPP_
#define PROCESS_LOCK_HPP_

#define PROCESS_LOCK_VERSION_MAJOR 0
#define PROCESS_LOCK_VERSION_MINOR 2
#define PROCESS_LOCK_VERSION_PATCH 0
#define PROCESS_LOCK_VERSION_STRING "0.2.0"
// What the scripts keep in Redis (README "Working with process-lock-node"); 0.1.0 wrote 1.
// Processes of either version on one lock exclude each other and share its fencing counter.
#define PROCESS_LOCK_WIRE_VERSION 2

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>
#if __has_include(<stop_token>)
#include <stop_token>
#endif

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

namespace process_lock {

// ============================================================================================
// Declarations: the public surface
// ============================================================================================

/// Kinds of failure. `Error::code()` compares equal to these (`err.code() == errc::timeout`).
enum class errc {
  invalid_argument = 1,  ///< A bad lock name, timeout or option, detected at construction.
  invalid_url,           ///< `REDIS_URL` / `Options::url` is malformed.
  unsupported,           ///< Well-formed but not supported by this build (e.g. `rediss://`).
  connect_failed,        ///< The server could not be reached (refused, no route, bad host).
  timeout,               ///< Connecting or waiting for a reply took longer than its timeout.
  connection_lost,       ///< The connection broke during a call (server closed it, I/O error).
  auth_failed,           ///< Wrong user or password, or the server wants one and none was given.
  permission_denied,     ///< The ACL user may not run the commands the lock needs (NOPERM).
  server_error,          ///< Any other error reply; the server's text is kept (WRONGTYPE, READONLY...).
  protocol_error,        ///< The peer does not speak the Redis protocol, or replied nonsense.
  cancelled,             ///< A blocking `Mutex::lock()` was stopped by `ProcessLock::cancel()`.
  no_quorum,             ///< Several masters: too few answered for a decision; the message names each one's fate.
  not_replicated,        ///< Too few replicas acknowledged a write within `wait_timeout` (see `wait_replicas`).
};

/// The `std::error_category` of `errc`; its `name()` is "process_lock".
const std::error_category& category() noexcept;

/// Makes `errc` usable as a `std::error_code`.
std::error_code make_error_code(errc e) noexcept;

}  // namespace process_lock

template <>
struct std::is_error_code_enum<process_lock::errc> : std::true_type {};

namespace process_lock {

/// What the direct calls throw and what callbacks receive as their first argument.
///
/// Mirrors a node-style `err`: a default-constructed `Error` means success and tests false
/// (`if (err) ...`); a real failure tests true, `code()` tells its kind (an `errc`), `what()`
/// is a complete one-line message, and `server_reply()` holds the server's own error text when
/// the server answered with one. No message ever contains a password: a refused AUTH is never
/// quoted (`server_reply()` is then only its error code, e.g. "WRONGPASS"), and any other text
/// has every password of the URL, of any length, replaced by `***`. Copying never throws.
class Error : public std::system_error {
 public:
  /// Success: `code()` is empty and the object tests false.
  Error();
  /// A failure of kind `kind` with a full message and, optionally, the server's error reply.
  Error(errc kind, std::string message, std::string server_reply = {});

  /// True when this is a failure.
  explicit operator bool() const noexcept { return static_cast<bool>(code()); }
  /// The full message: what failed, where, and why.
  const char* what() const noexcept override;
  /// The server's own error text (e.g. "WRONGTYPE Operation against a key ..."), passwords
  /// hidden; for a refused AUTH only its error code; or empty.
  const std::string& server_reply() const noexcept;

 private:
  std::shared_ptr<const std::string> message_;  // shared: copies must not throw
  std::shared_ptr<const std::string> server_reply_;
};

/// What `state()` reports: whether anyone holds the lock.
enum class State { open, locked };

/// "open" or "locked", the strings the node package uses.
constexpr std::string_view to_string(State s) noexcept { return s == State::open ? "open" : "locked"; }
inline std::ostream& operator<<(std::ostream& os, State s) { return os << to_string(s); }

/// Connection settings. Everything has a default; an explicit field wins over the URL.
struct Options {
  /// Where Redis is. Empty (the default) means the `REDIS_URL` environment variable, read at
  /// construction, or `redis://127.0.0.1:6379` when that is unset or empty. Grammar:
  /// `redis://[[user][:password]@]host[:port][/db][?query]`, `unix://[[user][:password]@]/path
  /// [?query]`, `redis+sentinel://[[user][:password]@]host[:port][,host[:port]...]/master[/db]
  /// [?query]`; several `redis://`/`unix://` URLs separated by commas are independent masters
  /// locked by majority (see the README). Query keys: `db`, `user`, `password`,
  /// `connect_timeout`, `command_timeout`, `node_timeout`, `wait_replicas`, `wait_timeout`,
  /// and for sentinels `sentinel_user`, `sentinel_password`.
  std::string url;
  /// Longest wait for a connection (and its AUTH/SELECT). Unset: the URL's `connect_timeout`,
  /// else 2 s. Must be 1 ms .. 1 h.
  std::optional<std::chrono::milliseconds> connect_timeout;
  /// Longest wait for one reply (per socket read or write). Unset: the URL's
  /// `command_timeout`, else 2 s. Must be 1 ms .. 1 h.
  std::optional<std::chrono::milliseconds> command_timeout;
  /// Several masters: the longest one master may take per call (connecting included), so that
  /// a dead or slow one cannot use up the lock's validity. Unset: the URL's `node_timeout`,
  /// else the lock's timeout / (2 x masters), within 1 ms .. command_timeout. Must be 1 ms ..
  /// 1 h even with one master (where it is unused), and at most the command timeout.
  std::optional<std::chrono::milliseconds> node_timeout;
  /// After each acquire and renewal, require this many replicas to acknowledge the write (Redis
  /// `WAIT`), so that a failover is much less likely to lose the lock; too few is a failure
  /// (`errc::not_replicated`). Unset: the URL's `wait_replicas`, else 0 (no check).
  std::optional<int> wait_replicas;
  /// How long `WAIT` may take. Unset: the URL's `wait_timeout`, else half the command timeout.
  /// Must be 1 ms .. 1 h even when unused, and below the command timeout when used.
  std::optional<std::chrono::milliseconds> wait_timeout;
  /// Prepended to the lock name to form the Redis key. Empty by default, which is what
  /// process-lock-node processes use; set it only if every party uses the same prefix.
  std::string key_prefix;
};

/// The longest lock timeout accepted (one year); anything longer is taken for a mistake.
inline constexpr std::chrono::milliseconds max_timeout{std::chrono::hours(24 * 365)};

/// Why a kept lock (see `ProcessLock::keep`) was given up.
enum class LostReason {
  taken,          ///< A renewal found the lock gone or held by someone else (force-cleared, expired).
  unreachable,    ///< Renewals kept failing; reported before the local validity ran out.
  expired,        ///< The local validity ran out before the keeper could act (e.g. the process was paused).
  limit_reached,  ///< `max_hold` or `max_renewals` was reached; reported before the validity ran out.
};

/// "taken", "unreachable", "expired" or "limit_reached".
constexpr std::string_view to_string(LostReason r) noexcept {
  switch (r) {
    case LostReason::taken:
      return "taken";
    case LostReason::unreachable:
      return "unreachable";
    case LostReason::expired:
      return "expired";
    case LostReason::limit_reached:
      return "limit_reached";
  }
  return "unknown";
}

/// What `KeepOptions::on_lost` receives.
struct Lost {
  LostReason reason = LostReason::taken;
  /// The last renewal's failure (for `unreachable`); empty otherwise.
  Error error;
  /// How long the lock was still surely ours when this was reported: stop the work within it.
  /// Zero for `taken` and `expired`.
  std::chrono::milliseconds remaining{0};
};

/// How `ProcessLock::keep` renews a lock in the background.
struct KeepOptions {
  /// Time between renewals. Unset: a third of the lock's timeout. Must be positive, and
  /// interval + margin below the timeout less drift (see `valid_for`).
  std::optional<std::chrono::milliseconds> interval;
  /// How long before the local validity runs out the keeper gives up and reports the lock
  /// lost, so the work can stop while the lock is still ours. Unset: a fifth of the timeout.
  /// Must not be negative.
  std::optional<std::chrono::milliseconds> margin;
  /// Stop renewing this long after `keep()`; the loss is then reported `margin` before validity
  /// ends. Must not be negative; a length beyond the clock's range is no limit.
  std::optional<std::chrono::milliseconds> max_hold;
  /// Stop renewing after this many renewals; reported likewise.
  std::optional<unsigned long> max_renewals;
  /// Called once, on the keeper's thread, when the lock is lost or about to be. An exception
  /// it throws is written to stderr, never lost silently. May call the lock (e.g. `clear()`).
  std::function<void(const Lost&)> on_lost;
  /// Called on the keeper's thread after each successful renewal (e.g. for a log line).
  std::function<void()> on_renewed;
};

/// Who holds a lock, as recorded by the process-lock that took it (process-lock-node records
/// nothing, so its locks have no `Holder`).
struct Holder {
  std::string host;                             ///< gethostname() of the holder
  long pid = 0;                                 ///< its process id
  std::chrono::system_clock::time_point since;  ///< when it took the lock, by the server's clock
  std::uint64_t fence = 0;                      ///< the fencing token of that acquisition
};

/// Everything `inspect()` learns in one round trip.
struct Inspection {
  State state = State::open;
  bool ours = false;  ///< held with this object's token
  /// Time left before the lock expires; nullopt when open or held without a TTL.
  std::optional<std::chrono::milliseconds> ttl;
  /// The fencing counter's current value: the token of the latest acquisition (0 if never).
  std::uint64_t fence_counter = 0;
  std::optional<Holder> holder;  ///< nullopt when open or taken by a process that records nothing
};

namespace detail {
class Connection;
class FanOut;
struct Ask;
struct LockReply;
struct Script;
struct LockKeys;
class WaitSlot;
struct KeeperControl;
/// One answer per master, in the masters' order: the value it answered, or, when it did not
/// (unreachable, timed out, an error reply), the error.
template <class T>
using Votes = std::vector<std::pair<std::optional<T>, Error>>;
template <class F>
inline constexpr bool is_callback_v = !std::is_arithmetic_v<std::remove_cv_t<std::remove_reference_t<F>>>;
}  // namespace detail

/// A named lock held in Redis, with the API of process-lock-node.
///
/// The key is the lock name (plus `Options::key_prefix`); the value is this object's owner
/// token, a random UUID v4, so any number of processes, in C++ or node, can contend for one
/// name. Every check-and-change runs as one atomic Lua script on the server, one round trip
/// per call; a lock expires by itself `timeout` after it was last taken or renewed.
///
/// Each call comes in two forms with the same meaning: a direct one that returns the answer
/// and throws `Error`, and a node-style one that takes a callback `(const Error& err, value)`.
/// The callback runs exactly once, on the calling thread, before the call returns, after the
/// object's internal mutex is released (so it may call this object again). If the callback
/// throws, the exception propagates to the caller. Allocation failure (`std::bad_alloc`)
/// propagates from both forms instead of reaching a callback.
///
/// Thread safety: all calls of one object may be made from several threads at once; they are
/// serialised on one connection. Distinct objects are independent.
///
/// Construction validates everything and never touches the network; the first call connects.
/// A broken connection is dropped and the next call reconnects. After a fork the child keeps
/// the object's token (it is the same owner) and opens its own connection.
class ProcessLock {
 public:
  /// A lock called `name` that expires `timeout_seconds` after it is taken or renewed, as
  /// `new ProcessLock(name, timeout)` in node. Fractional seconds are rounded to the nearest
  /// millisecond. Throws `Error` (invalid_argument / invalid_url / unsupported) if the name is
  /// empty, the timeout is not in 1 ms .. `max_timeout`, or the URL is bad.
  template <class Seconds, std::enable_if_t<std::is_arithmetic_v<Seconds> && !std::is_same_v<Seconds, bool>, int> = 0>
  ProcessLock(std::string name, Seconds timeout_seconds, Options options = {})
      : ProcessLock(std::move(name), seconds_to_timeout(timeout_seconds), std::move(options), 0) {}

  /// As above with the timeout as a duration, which must be a whole number of milliseconds.
  template <class Rep, class Period>
  ProcessLock(std::string name, std::chrono::duration<Rep, Period> timeout, Options options = {})
      : ProcessLock(std::move(name), duration_to_timeout(timeout), std::move(options), 0) {}

  /// If `owner()` is true, releases the lock (as `clear()` would) so others need not wait for
  /// it to expire: one attempt, bounded by the command timeout, failures swallowed. Never
  /// throws. In a forked child it releases nothing (the lock belongs to the process that made
  /// it) and stops only a keeper the child started.
  ~ProcessLock();

  ProcessLock(const ProcessLock&) = delete;
  ProcessLock& operator=(const ProcessLock&) = delete;
  ProcessLock(ProcessLock&&) = delete;
  ProcessLock& operator=(ProcessLock&&) = delete;

  /// Tries once to take the lock. True if it was free (now ours, TTL = timeout) or already
  /// ours (TTL reset to timeout); false if someone else holds it (nothing changes).
  [[nodiscard]] bool lock();
  /// Callback form of `lock()`: `cb(const Error&, bool owner)`.
  template <class Callback>
  void lock(Callback&& cb);

  /// Renews the lock. True if it is ours (TTL reset to timeout); false if it is absent or held
  /// by someone else (nothing changes).
  [[nodiscard]] bool update();
  /// Callback form of `update()`: `cb(const Error&, bool renewed)`.
  template <class Callback>
  void update(Callback&& cb);

  /// Releases the lock. `nullopt` if it did not exist; true if it was ours (or `force` is set)
  /// and is now deleted; false if someone else holds it and `force` is not set (nothing changes).
  /// Stops the keeper first, if one runs. A successful release publishes a notice that wakes
  /// waiters at once.
  std::optional<bool> clear(bool force = false);
  /// Callback form of `clear()`: `cb(const Error&, std::optional<bool> cleared)`.
  template <class Callback, std::enable_if_t<detail::is_callback_v<Callback>, int> = 0>
  void clear(Callback&& cb);
  /// Callback form of `clear(force)`.
  template <class Callback, std::enable_if_t<detail::is_callback_v<Callback>, int> = 0>
  void clear(bool force, Callback&& cb);

  /// Ends this object's hold without freeing the lock: if it is ours, it stays taken until
  /// `until` (a time point of any clock, measured on the monotonic clock) and then expires by
  /// itself; nobody renews it meanwhile and no release notice is sent. For jobs that must run
  /// once per tick on several hosts: a host that starts late (a skewed cron clock, a slow
  /// start) finds the lock still taken even if the work was short. Owner-checked on the server,
  /// one round trip per master, the fence counter untouched. Stops the keeper first. True if the
  /// lock was ours (it now expires at `until`), false if not (nothing changes); afterwards
  /// `owner()` is false either way. An `until` already past releases the lock as `clear()`
  /// does. Throws `Error`: invalid_argument if `until` is more than `max_timeout` away.
  template <class Clock, class Duration>
  bool release_at(const std::chrono::time_point<Clock, Duration>& until);

  /// Whether anyone (this object included) holds the lock now. Changes nothing.
  [[nodiscard]] State state();
  /// Callback form of `state()`: `cb(const Error&, State)`.
  template <class Callback>
  void state(Callback&& cb);

  /// Waits up to `timeout` for the lock: true once it is ours, false when the time is up or
  /// the wait was cancelled. It tries at once. While it waits, a release by another
  /// process-lock wakes it at once (the release publishes a notice; the wait listens on a
  /// second connection), and it also tries again by itself when the holder's lock is due to
  /// expire, since a dead holder announces nothing; those retries carry random jitter so that
  /// many waiters do not all try at the same instant. It returns no later than one round trip
  /// after the deadline. Throws `Error` when Redis fails; a wait that cannot subscribe (e.g.
  /// an ACL user without channel rights) falls back to polling with jittered backoff. Any
  /// duration type and value: zero or less is one try, beyond the clock's range no limit
  /// (`::max()` waits for as long as it takes), NaN is `errc::invalid_argument`.
  template <class Rep, class Period>
  [[nodiscard]] bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout);
  /// As `try_lock_for`, until a point in time of any clock and duration type (measured on the
  /// monotonic clock): a time point past is one try, `::max()` no limit.
  template <class Clock, class Duration>
  [[nodiscard]] bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline);
  /// Callback form of `try_lock_for`: `cb(const Error&, bool acquired)`.
  template <class Rep, class Period, class Callback,
            std::enable_if_t<std::is_invocable_v<Callback&, const Error&, bool>, int> = 0>
  void try_lock_for(const std::chrono::duration<Rep, Period>& timeout, Callback&& cb);
#if defined(__cpp_lib_jthread)
  /// C++20: as `try_lock_for`, and returns false promptly once `stop` is requested.
  template <class Rep, class Period>
  [[nodiscard]] bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout, std::stop_token stop);
#endif
  /// Makes every `try_lock_for`/`try_lock_until` of this object that is waiting now return
  /// false promptly. Safe from any thread and from a signal-free context; waits that start
  /// later are not affected.
  void cancel() noexcept;

  /// Starts renewing the lock in the background, every `interval`, for as long as it is held;
  /// stops on `clear()`, `stop_keeping()`, destruction, or loss. Calls `on_lost` once if the lock
  /// is lost: a renewal answered false (`taken`), or renewals kept failing and the local
  /// validity is about to run out (`unreachable`, reported `margin` before it does), or the
  /// validity had already run out (`expired`), or a cap was reached (`limit_reached`). The
  /// keeper has a connection of its own, so the object's other calls never delay it. Replaces
  /// a keeper already running. Throws `Error` (invalid_argument) if the lock is not held or an
  /// option is out of range.
  void keep(KeepOptions options = {});
  /// Stops the keeper, if any, and waits for it (at most one renewal, bounded by the validity).
  /// A keeper is this process's: in a forked child the parent's does not exist.
  void stop_keeping() noexcept;
  /// Whether a keeper of this process is renewing the lock now (in a forked child, false until
  /// the child calls keep()).
  bool keeping() const noexcept;

  /// One round trip, read-only: open or locked, whether by us, time left, the fencing
  /// counter, and who holds it (host, pid, since, fence) where the holder recorded it.
  [[nodiscard]] Inspection inspect();

  /// The local flag node calls `owner`: true after a `lock()` or `update()` that answered
  /// true, false after one that answered false and after any `clear()` that succeeded. It is
  /// not a server query: another process may have cleared the lock since. Unchanged by errors.
  bool owner() const noexcept { return owner_.load(); }

  /// The fencing token of the current hold: a number that strictly increases with every
  /// acquisition of this lock name by any process-lock, taken atomically when the lock was
  /// acquired. Pass it to the resource you write so it can reject a holder whose lock has since
  /// passed to someone else (a higher token). nullopt when `owner()` is false.
  std::optional<std::uint64_t> fence() const noexcept;

  /// How long the lock is surely still ours, measured on this machine's monotonic clock from
  /// the moment the last successful `lock()`/`update()` was sent, less a drift margin of 1% of
  /// the timeout + 2 ms. Zero when `owner()` is false. Unaffected by wall-clock changes.
  std::chrono::milliseconds valid_for() const noexcept;

  /// The lock name as given.
  const std::string& name() const noexcept { return name_; }
  /// The Redis key: `Options::key_prefix` followed by the name.
  const std::string& key() const noexcept;
  /// The owner token stored as the key's value while this object holds the lock (UUID v4).
  const std::string& token() const noexcept { return token_; }
  /// How long the lock lives after each `lock()` or `update()`.
  std::chrono::milliseconds timeout() const noexcept { return timeout_; }
  /// Where this object connects, with any password shown as `***`.
  std::string redacted_url() const;

 private:
  ProcessLock(std::string name, std::chrono::milliseconds timeout, Options options, int);

  template <class Seconds>
  static std::chrono::milliseconds seconds_to_timeout(Seconds s);
  template <class Rep, class Period>
  static std::chrono::milliseconds duration_to_timeout(std::chrono::duration<Rep, Period> d);
  static std::chrono::milliseconds checked_timeout(long double ms, bool must_be_whole);
  bool release_at_steady(std::chrono::steady_clock::time_point until);

  using Nodes = std::vector<std::unique_ptr<detail::Connection>>;
  // What the threads of one process share: connections, mutexes, keeper, waits (see its definition).
  struct PerProcess;
  // This process's part, made on its first use in the process (so a forked child makes its own).
  PerProcess& per_process() const;
  // This process's part if it has been made, else nullptr: in a child, nothing of the parent's
  // (its keeper, its waits) exists here.
  PerProcess* per_process_if_made() const noexcept;
  // Runs `fn(connections)` under the mutex; errors get the call's name and the lock's name.
  template <class Fn>
  auto with_nodes(std::string_view call, Fn&& fn);
  // Fresh connections to the same masters, for a keeper or a waiter.
  Nodes clone_nodes();
  std::size_t majority() const noexcept { return nodes_.size() / 2 + 1; }
  // The operations on a given set of connections (the object's or the keeper's). With one
  // master they are its answer; with several, the majority's (see the README).
  struct Attempt;
  // `listening`: the caller is subscribed to release notices (see lock_script_text).
  Attempt acquire_on(Nodes& nodes, bool listening = false);
  bool renew_on(Nodes& nodes, std::chrono::steady_clock::time_point cap, bool release_on_loss);
  std::optional<bool> clear_on(Nodes& nodes, bool force);
  detail::LockReply acquire_node(detail::Connection& node, bool listening);
  long long renew_node(detail::Connection& node, bool reacquire);
  void release_node(detail::Connection& node) noexcept;
  // Sends our release to a master without waiting for it (see Connection::post()).
  void give_back(detail::Connection& node) const noexcept;
  // Asks the masters `which` at once (see detail::FanOut), each bounded by the node timeout and
  // `cap`: `read(node, reply, acks)` makes a master's vote; the round ends once
  // `settled(votes, outstanding)` (the masters not waited for get a vote that says so).
  template <class T, class Read, class Settled>
  void fan_out(Nodes& nodes, detail::Votes<T>& votes, const std::vector<std::size_t>& which, const detail::Ask& ask,
               std::chrono::steady_clock::time_point cap, Read&& read, Settled&& settled) const;
  // Records the answer of an acquire or renewal sent at `sent`: ownership, validity, fence.
  // With `epoch`, only if the hold it belongs to is still the current one; returns whether
  // it was recorded.
  // `released`: the hold ends by our own clear(), not by a loss.
  bool note_ownership(bool ours, std::chrono::steady_clock::time_point sent, std::uint64_t fence,
                      std::optional<std::uint64_t> epoch = std::nullopt, bool released = false);
  std::uint64_t hold_epoch() const;
  // Whether the hold `epoch` has ended, and whether by a release.
  std::pair<bool, bool> hold_end(std::uint64_t epoch) const;
  std::chrono::steady_clock::time_point valid_until() const noexcept;
  std::chrono::milliseconds drift() const noexcept;
  void keep_loop(detail::KeeperControl& control, const KeepOptions& options, std::uint64_t epoch,
                 std::chrono::milliseconds interval, std::chrono::milliseconds margin) noexcept;
  // Stops a keeper and waits for it (unless called from its own thread).
  static void retire(const std::shared_ptr<detail::KeeperControl>& control) noexcept;
  // One acquire attempt: whether the lock is ours now and, if not, the holder's PTTL in ms.
  struct Attempt {
    bool acquired;
    long long holder_pttl;
  };
  Attempt attempt(std::string_view call, bool listening = false);
  // The waiting loop of try_lock_for/until.
  bool wait_until(std::chrono::steady_clock::time_point deadline, detail::WaitSlot& slot);
  template <class Clock, class Duration>
  static std::chrono::steady_clock::time_point to_steady(const std::chrono::time_point<Clock, Duration>& t);
  template <class Rep, class Period>
  static std::chrono::steady_clock::time_point deadline_after(const std::chrono::duration<Rep, Period>& timeout);

  // Runs `fn` for the callback forms: the callback is called once, outside any try block, so a
  // throwing callback is never called a second time.
  template <class T, class Fn, class Callback>
  static void deliver(Fn&& fn, Callback& cb);

  std::string name_;
  std::unique_ptr<const detail::LockKeys> keys_;
  std::chrono::milliseconds timeout_{};
  std::string timeout_arg_;  // timeout_ in ms, as the scripts' argument
  std::string token_;
  std::string host_;  // recorded with each acquisition
  std::atomic<bool> owner_{false};
  std::atomic<std::uint64_t> fence_{0};                         // of the current hold; 0 = none
  std::atomic<std::chrono::steady_clock::rep> valid_until_{0};  // steady_clock ticks
  std::uint64_t hold_epoch_ = 0;    // counts holds that ended, so a late answer cannot revive one
  bool last_end_released_ = false;  // the last hold ended by our clear()
  // The last two are guarded by PerProcess::state_mutex.
  pid_t creator_pid_ = 0;  // the destructor releases only in this process, never in a forked child
  // One master, or several (majority): settings only, never connected; each process's
  // connections (PerProcess::nodes) are clones of these.
  std::vector<std::unique_ptr<detail::Connection>> nodes_;
  std::chrono::milliseconds node_timeout_{0};              // several masters: per master and call
  mutable std::atomic<PerProcess*> per_process_{nullptr};  // owned, unless made by the parent (see PerProcess)
};

/// The standard TimedLockable view of a `ProcessLock`, for `std::unique_lock`,
/// `std::scoped_lock`, `std::lock_guard` and `std::condition_variable_any`: `lock()` blocks
/// until the lock is ours.
///
/// `ProcessLock` itself has no `unlock()`, on purpose: its `lock()` is the node package's single
/// try, so `std::lock_guard<ProcessLock>` would compile into a guard that does not wait; it fails
/// to compile instead. Wrap the lock in a `Mutex` to use the standard tools.
///
/// One `ProcessLock` is one owner, so threads sharing it would all "hold" it at once; a `Mutex`
/// therefore also excludes its own threads (an in-process mutex, taken first). Use one `Mutex`
/// per `ProcessLock`.
class Mutex {
 public:
  explicit Mutex(ProcessLock& lock) noexcept : lock_(lock) {}

  /// Blocks until the lock is ours. Throws `Error` if Redis fails, or with `errc::cancelled`
  /// if `ProcessLock::cancel()` stops the wait.
  void lock();
  /// One try, as `ProcessLock::lock()`.
  [[nodiscard]] bool try_lock() {
    if (!take_local(std::chrono::steady_clock::now())) return false;
    return holding([&] { return lock_.lock(); });
  }
  /// Waits up to `timeout` (any duration; one try if zero or less, no limit if beyond the
  /// clock's range), as `ProcessLock::try_lock_for`.
  template <class Rep, class Period>
  [[nodiscard]] bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout);
  /// Waits until `deadline` (a time point of any clock, measured on the monotonic clock).
  template <class Clock, class Duration>
  [[nodiscard]] bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline);
  /// Releases the lock if it is ours. Never throws (a guard calls it from its destructor): if
  /// Redis cannot be reached, the lock expires after its timeout.
  void unlock() noexcept {
    try {
      (void)lock_.clear();
    } catch (...) {
    }
    release_local();
  }
  /// The wrapped lock, for its other calls (fence(), update(), ...).
  ProcessLock& process_lock() const noexcept { return lock_; }

 private:
  // The in-process part: a flag under a mutex and condition variable (a plain timed mutex's
  // clock-based wait is invisible to ThreadSanitizer on this toolchain).
  bool take_local(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock<std::mutex> guard(local_mutex_);
    auto free = [&] { return !local_held_; };
    if (deadline == std::chrono::steady_clock::time_point::max())
      local_free_.wait(guard, free);
    else if (!local_free_.wait_until(guard, deadline, free))
      return false;
    local_held_ = true;
    return true;
  }
  void release_local() noexcept {
    {
      const std::lock_guard<std::mutex> guard(local_mutex_);
      local_held_ = false;
    }
    local_free_.notify_one();
  }
  // Runs `take` with the in-process part held; keeps it only if `take` got the Redis lock.
  template <class Take>
  bool holding(Take take) {
    try {
      if (take()) return true;
    } catch (...) {
      release_local();
      throw;
    }
    release_local();
    return false;
  }

  ProcessLock& lock_;
  std::mutex local_mutex_;
  std::condition_variable local_free_;
  bool local_held_ = false;
};

/// Holds a lock for a scope: takes it at construction (waiting up to `wait`), keeps it
/// refreshed while in scope when asked, and releases it at scope exit.
///
///     process_lock::Guard guard(lock, 30s, process_lock::KeepOptions{});
///     if (!guard) return;                 // someone else kept it for 30 s
///     run_job(*guard.fence());            // renewed in the background meanwhile
///
/// Contention is not an error: test the guard. Redis failures at construction throw `Error`.
class Guard {
 public:
  /// Waits up to `wait` for the lock (zero: one try). With `keep`, renews it in the background
  /// (`ProcessLock::keep`) while the guard lives.
  explicit Guard(ProcessLock& lock, std::chrono::milliseconds wait = std::chrono::milliseconds(0),
                 std::optional<KeepOptions> keep = std::nullopt);
  /// Stops the keeper and releases the lock if it is still ours; never throws.
  ~Guard();
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;

  /// Whether the guard took the lock. (It may have been lost since: see `KeepOptions::on_lost`.)
  bool owns_lock() const noexcept { return owns_; }
  explicit operator bool() const noexcept { return owns_; }
  /// The fencing token of this hold, while it lasts.
  std::optional<std::uint64_t> fence() const noexcept { return owns_ ? lock_.fence() : std::nullopt; }
  ProcessLock& process_lock() const noexcept { return lock_; }

 private:
  ProcessLock& lock_;
  bool owns_ = false;
};

// ============================================================================================
// Implementation details
// ============================================================================================

namespace detail {

struct ContextDeleter {
  void operator()(redisContext* c) const noexcept { redisFree(c); }
};
struct ReplyDeleter {
  void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using ContextPtr = std::unique_ptr<redisContext, ContextDeleter>;
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

inline constexpr std::chrono::milliseconds default_io_timeout{2000};
inline constexpr std::chrono::milliseconds max_io_timeout{std::chrono::hours(1)};
inline constexpr std::size_t max_masters = 15;  // a quorum lock's masters
// "No deadline" for calls over several masters. (A plain time point rather than an optional:
// GCC 12 warns falsely about optional time points at -O1.)
inline constexpr std::chrono::steady_clock::time_point no_deadline = std::chrono::steady_clock::time_point::max();

/// A TCP server's address.
struct Address {
  std::string host;
  int port = 0;
  /// host:port, with an IPv6 host in brackets.
  std::string display() const {
    return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ':' + std::to_string(port);
  }
  bool operator==(const Address& o) const noexcept { return host == o.host && port == o.port; }
  bool operator!=(const Address& o) const noexcept { return !(*this == o); }
};

/// Where and how to connect, parsed from a URL. Holds passwords; print only `display()`.
struct Endpoint {
  enum class Transport { tcp, unix_socket };
  Transport transport = Transport::tcp;
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string path;  // unix socket
  std::string user;
  std::string password;
  bool has_password = false;
  long db = 0;
  bool db_in_path = false;
  std::optional<std::chrono::milliseconds> connect_timeout;
  std::optional<std::chrono::milliseconds> command_timeout;
  /// Several masters: how long one of them may take per call (see Options::node_timeout).
  std::optional<std::chrono::milliseconds> node_timeout;
  /// After an acquire or renewal, wait for this many replicas to acknowledge it (0: don't).
  int wait_replicas = 0;
  std::optional<std::chrono::milliseconds> wait_timeout;
  /// redis+sentinel://: the sentinels to ask, the master's name, and the sentinels' own
  /// credentials (the URL's user/password are the master's).
  std::vector<Address> sentinels;
  std::string master_name;
  std::string sentinel_user;
  std::string sentinel_password;
  bool sentinel_has_password = false;
  /// redis+cluster://: the nodes to ask for the slot map (any nodes of one Redis Cluster).
  std::vector<Address> cluster_seeds;

  bool is_sentinel() const noexcept { return !sentinels.empty(); }
  bool is_cluster() const noexcept { return !cluster_seeds.empty(); }
  Address address() const { return {host, port}; }

  /// The URL with every password replaced by `***`, safe for messages and logs.
  std::string display() const {
    std::string s = is_sentinel()                 ? "redis+sentinel://"
                    : is_cluster()                ? "redis+cluster://"
                    : transport == Transport::tcp ? "redis://"
                                                  : "unix://";
    if (!user.empty() || has_password) {
      s += user;
      if (has_password) s += ":***";
      s += '@';
    }
    if (transport == Transport::unix_socket) {
      s += path;
      if (db != 0) s += "?db=" + std::to_string(db);
      return s;
    }
    if (is_sentinel()) {
      // Appended piece by piece: `(i ? "," : "") + display()` trips GCC 12's false -Wrestrict at -O3.
      for (std::size_t i = 0; i < sentinels.size(); ++i) {
        if (i) s += ',';
        s += sentinels[i].display();
      }
      s += '/' + printable(master_name);
    } else if (is_cluster()) {
      for (std::size_t i = 0; i < cluster_seeds.size(); ++i) {
        if (i) s += ',';
        s += cluster_seeds[i].display();
      }
    } else {
      s += address().display();
    }
    if (db != 0) s += '/' + std::to_string(db);
    return s;
  }

  // A master name as shown in messages: its printable ASCII, other bytes as '?'.
  static std::string printable(std::string_view name) {
    std::string out(name.substr(0, 64));
    for (char& c : out)
      if (c <= ' ' || c == 0x7f) c = '?';
    return out;
  }
};

[[noreturn]] inline void throw_url_error(std::string_view source, std::string_view problem) {
  throw Error(errc::invalid_url, "invalid " + std::string(source) + ": " + std::string(problem));
}

inline int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/// Decodes %XX escapes. The value is never quoted in errors: it may be a password.
inline std::string percent_decode(std::string_view in, std::string_view source, std::string_view what) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    const int hi = i + 2 < in.size() ? hex_value(in[i + 1]) : -1;
    const int lo = i + 2 < in.size() ? hex_value(in[i + 2]) : -1;
    if (hi < 0 || lo < 0)
      throw_url_error(source, "bad percent-encoding in the " + std::string(what) + " (use %XX with two hex digits)");
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

/// Parses an unsigned decimal in [lo, hi]; nullopt if it is not one.
inline std::optional<long long> parse_uint(std::string_view s, long long lo, long long hi) noexcept {
  if (s.empty() || s.size() > 18) return std::nullopt;
  long long v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  if (v < lo || v > hi) return std::nullopt;
  return v;
}

/// Parses "250", "250ms", "2s" or "1m" (a bare number is milliseconds) within 1 ms .. 1 h.
inline std::optional<std::chrono::milliseconds> parse_duration(std::string_view s) noexcept {
  long long scale = 1;
  if (s.size() > 2 && s.substr(s.size() - 2) == "ms") {
    s.remove_suffix(2);
  } else if (!s.empty() && s.back() == 's') {
    s.remove_suffix(1);
    scale = 1000;
  } else if (!s.empty() && s.back() == 'm') {
    s.remove_suffix(1);
    scale = 60 * 1000;
  }
  const auto v = parse_uint(s, 1, max_io_timeout.count());
  if (!v || *v * scale > max_io_timeout.count()) return std::nullopt;
  return std::chrono::milliseconds(*v * scale);
}

inline constexpr std::string_view known_query_keys =
    "db, user, password, connect_timeout, command_timeout, node_timeout, wait_replicas, wait_timeout, "
    "sentinel_user, sentinel_password";

inline void apply_query(Endpoint& ep, std::string_view query, std::string_view source, bool may_quote = true) {
  const bool may_hold_secret = !may_quote || query.find('@') != std::string_view::npos;
  std::vector<std::string> seen;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (item.empty()) continue;
    const auto eq = item.find('=');
    if (eq == std::string_view::npos) throw_url_error(source, "query parameter without '=' (expected key=value)");
    std::string key = percent_decode(item.substr(0, eq), source, "query");
    if (key == "username") key = "user";
    const bool is_known = key == "db" || key == "user" || key == "password" || key == "connect_timeout" ||
                          key == "command_timeout" || key == "node_timeout" || key == "wait_replicas" ||
                          key == "wait_timeout" || key == "sentinel_user" || key == "sentinel_password";
    if (!is_known) {
      // Quote the key only if it cannot be a piece of a password: an unencoded '?' in a password
      // starts a "query" that runs on to the '@'.
      const bool quotable = !key.empty() && key.size() <= 32 && !may_hold_secret &&
                            key.find_first_not_of("abcdefghijklmnopqrstuvwxyz_") == std::string::npos;
      throw_url_error(source, "unknown query parameter" + (quotable ? " '" + key + "'" : std::string()) +
                                  " (known: " + std::string(known_query_keys) + ")");
    }
    const bool secret = key == "password" || key == "sentinel_password";
    const std::string raw = percent_decode(item.substr(eq + 1), source, secret ? "password" : "query");
    if (std::find(seen.begin(), seen.end(), key) != seen.end())
      throw_url_error(source, "query parameter '" + key + "' given twice");
    seen.push_back(key);
    if (key.rfind("sentinel_", 0) == 0 && !ep.is_sentinel())
      throw_url_error(source, key + " applies only to redis+sentinel:// URLs");
    if (key == "db") {
      const auto db = parse_uint(raw, 0, 1000000);
      if (!db) throw_url_error(source, "db must be a non-negative number");
      if (ep.db_in_path && ep.db != *db) throw_url_error(source, "db given twice with different values");
      ep.db = static_cast<long>(*db);
    } else if (key == "user") {
      if (!ep.user.empty()) throw_url_error(source, "user given both before '@' and as a query parameter");
      ep.user = raw;
    } else if (key == "password") {
      if (ep.has_password) throw_url_error(source, "password given both before '@' and as a query parameter");
      ep.password = raw;
      ep.has_password = !raw.empty();  // an empty password means none, as before '@'
    } else if (key == "sentinel_user") {
      ep.sentinel_user = raw;
    } else if (key == "sentinel_password") {
      ep.sentinel_password = raw;
      ep.sentinel_has_password = !raw.empty();
    } else if (key == "wait_replicas") {
      const auto n = parse_uint(raw, 0, 1000);
      if (!n) throw_url_error(source, "wait_replicas must be a number from 0 to 1000");
      ep.wait_replicas = static_cast<int>(*n);
    } else {
      const auto d = parse_duration(raw);
      if (!d) throw_url_error(source, key + " must be a duration from 1ms to 1h, e.g. 500ms, 2s, 1m");
      (key == "connect_timeout"   ? ep.connect_timeout
       : key == "command_timeout" ? ep.command_timeout
       : key == "node_timeout"    ? ep.node_timeout
                                  : ep.wait_timeout) = d;
    }
  }
  if (!ep.sentinel_user.empty() && !ep.sentinel_has_password)
    throw_url_error(source, "sentinel_user needs a sentinel_password");
}

inline void apply_userinfo(Endpoint& ep, std::string_view userinfo, std::string_view source) {
  const auto colon = userinfo.find(':');
  ep.user = percent_decode(userinfo.substr(0, colon), source, "user");
  if (colon != std::string_view::npos) {
    ep.password = percent_decode(userinfo.substr(colon + 1), source, "password");
    ep.has_password = !ep.password.empty();  // "redis://:@host" has no password
  }
}

/// Parses "host[:port]" or "[v6]:port"; `default_port` when the port is omitted.
inline Address parse_host_port(std::string_view authority, int default_port, std::string_view source) {
  Address a{{}, default_port};
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) throw_url_error(source, "unterminated '[' in an IPv6 host");
    a.host = std::string(authority.substr(1, close - 1));
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') throw_url_error(source, "unexpected characters after the IPv6 host");
      port = after.substr(1);
      if (port.empty()) throw_url_error(source, "empty port after ':'");
    }
    if (a.host.empty() || a.host.find_first_not_of("0123456789abcdefABCDEF:.") != std::string::npos)
      throw_url_error(source, "the IPv6 host between '[' and ']' is not an IPv6 address");
  } else {
    const auto colon = authority.find(':');
    a.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) throw_url_error(source, "empty port after ':'");
      if (port.find(':') != std::string_view::npos)
        throw_url_error(source,
                        "more than one ':' in the host; write IPv6 addresses in brackets, e.g. redis://[::1]:6379");
    }
    if (a.host.find_first_of("[]%") != std::string::npos)
      throw_url_error(source, "the host contains characters a host name cannot have");
  }
  if (a.host.empty()) throw_url_error(source, "missing host, e.g. redis://127.0.0.1:6379");
  if (!port.empty()) {
    const auto p = parse_uint(port, 1, 65535);
    if (!p) throw_url_error(source, "port must be a number from 1 to 65535");
    a.port = static_cast<int>(*p);
  }
  return a;
}

/// Parses one Redis URL. `source` names where it came from ("REDIS_URL" or "Options::url").
/// Errors never quote the URL or any part of it that could be a password.
inline Endpoint parse_url(std::string_view url, std::string_view source, bool may_quote = true) {
  Endpoint ep;
  const auto sep = url.find("://");
  if (sep == std::string_view::npos)
    throw_url_error(source, "expected a URL starting with redis://, unix://, redis+sentinel:// or redis+cluster://");
  std::string scheme(url.substr(0, sep));
  for (char& c : scheme) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);  // RFC 3986: any case
  std::string_view rest = url.substr(sep + 3);
  if (scheme == "rediss" || scheme == "rediss+sentinel" || scheme == "rediss+cluster")
    throw Error(errc::unsupported,
                "rediss:// (TLS) is not supported by process-lock yet; reach Redis over TCP or a unix socket, "
                "or through a local TLS tunnel");
  if (scheme != "redis" && scheme != "unix" && scheme != "redis+sentinel" && scheme != "redis+cluster") {
    const bool printable = may_quote && scheme.size() <= 16 &&
                           scheme.find_first_not_of("abcdefghijklmnopqrstuvwxyz+.-") == std::string_view::npos;
    throw_url_error(
        source, (printable ? "unsupported scheme '" + std::string(scheme) + "'" : std::string("unsupported scheme")) +
                    " (expected redis://, unix://, redis+sentinel:// or redis+cluster://)");
  }
  for (char c : rest)
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f)
      throw_url_error(source, "spaces and control characters must be percent-encoded");
  if (const auto hash = rest.find('#'); hash != std::string_view::npos)
    throw_url_error(source, "fragments ('#') are not allowed; percent-encode '#' as %23");

  std::string_view query;
  if (const auto q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }

  if (scheme == "unix") {
    ep.transport = Endpoint::Transport::unix_socket;
    // unix://[userinfo@]/path: the path starts at the first '/'; userinfo before it.
    const auto slash = rest.find('/');
    if (slash == std::string_view::npos)
      throw_url_error(source, "unix:// needs an absolute socket path, e.g. unix:///run/redis.sock");
    const std::string_view authority = rest.substr(0, slash);
    if (!authority.empty()) {
      if (authority.back() != '@')
        throw_url_error(source, "unix:// takes no host; write unix:///path or unix://:password@/path");
      apply_userinfo(ep, authority.substr(0, authority.size() - 1), source);
    }
    ep.path = percent_decode(rest.substr(slash), source, "socket path");
    if (ep.path.size() < 2) throw_url_error(source, "the unix socket path is empty");
    if (ep.path.find('\0') != std::string::npos) throw_url_error(source, "the unix socket path contains a NUL byte");
    if (ep.path.size() >= sizeof(sockaddr_un::sun_path))
      throw_url_error(source, "the unix socket path is longer than the system allows (" +
                                  std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes)");
    ep.host.clear();
    ep.port = 0;
  } else {
    const auto slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    std::string_view path = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
    if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
      apply_userinfo(ep, authority.substr(0, at), source);
      authority = authority.substr(at + 1);
    }
    if (scheme == "redis+sentinel") {
      // host1[:port1],host2[:port2]/MASTERNAME[/db]
      while (true) {
        const auto comma = authority.find(',');
        ep.sentinels.push_back(parse_host_port(authority.substr(0, comma), 26379, source));
        if (comma == std::string_view::npos) break;
        authority = authority.substr(comma + 1);
      }
      const auto db_slash = path.find('/');
      ep.master_name = percent_decode(path.substr(0, db_slash), source, "master name");
      if (ep.master_name.empty())
        throw_url_error(source, "redis+sentinel:// needs the master's name, e.g. redis+sentinel://host:26379/mymaster");
      path = db_slash == std::string_view::npos ? std::string_view{} : path.substr(db_slash + 1);
      ep.host.clear();
      ep.port = 0;
    } else if (scheme == "redis+cluster") {
      // host1[:port1],host2[:port2][/0]: seeds, any nodes of the cluster (see Connection::locate_in_cluster)
      while (true) {
        const auto comma = authority.find(',');
        ep.cluster_seeds.push_back(parse_host_port(authority.substr(0, comma), 6379, source));
        if (comma == std::string_view::npos) break;
        authority = authority.substr(comma + 1);
      }
      ep.host.clear();
      ep.port = 0;
    } else {
      if (authority.find(',') != std::string_view::npos)
        throw_url_error(source,
                        "a comma in the host; to list several masters, write whole URLs separated by "
                        "commas: redis://host1:6379,redis://host2:6379");
      const Address a = parse_host_port(authority, 6379, source);
      ep.host = a.host;
      ep.port = a.port;
    }
    if (!path.empty()) {
      const auto db = parse_uint(path, 0, 1000000);
      if (!db) throw_url_error(source, "the path must be a database number, e.g. redis://host:6379/2");
      ep.db = static_cast<long>(*db);
      ep.db_in_path = true;
    }
  }
  apply_query(ep, query, source, may_quote);
  if (ep.is_cluster() && ep.db != 0) throw_url_error(source, "a Redis Cluster has only database 0");
  if (!ep.user.empty() && !ep.has_password)
    throw_url_error(source, "a user needs a password (redis://user:password@host)");
  return ep;
}

/// Parses `url`, which may list several masters as whole URLs separated by commas
/// ("redis://a:6379,redis://b:6379"). A comma counts as a separator only where a new URL
/// (scheme://) follows it, so a comma inside a password needs no encoding.
inline std::vector<Endpoint> parse_urls(std::string_view url, std::string_view source) {
  std::vector<std::string_view> pieces;
  std::size_t start = 0;
  for (std::size_t comma = url.find(','); comma != std::string_view::npos; comma = url.find(',', comma + 1)) {
    const std::string_view next = url.substr(comma + 1);
    const auto sep = next.find("://");
    const bool scheme_follows =
        sep != std::string_view::npos && sep > 0 &&
        next.substr(0, sep).find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-") ==
            std::string_view::npos;
    if (!scheme_follows) continue;
    pieces.push_back(url.substr(start, comma - start));
    start = comma + 1;
  }
  pieces.push_back(url.substr(start));
  if (pieces.size() == 1) return {parse_url(url, source)};
  if (pieces.size() > max_masters)
    throw_url_error(source, "lists " + std::to_string(pieces.size()) + " masters; at most " +
                                std::to_string(max_masters) + " are supported");
  std::vector<Endpoint> endpoints;
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    const std::string where =
        std::string(source) + " (master " + std::to_string(i + 1) + " of " + std::to_string(pieces.size()) + ")";
    Endpoint ep = parse_url(pieces[i], where, false);  // a piece may start or end inside a password: quote nothing
    if (ep.is_sentinel())
      throw_url_error(where, "a redis+sentinel:// URL cannot be one of several masters; give it alone");
    if (ep.is_cluster())
      throw_url_error(where, "a redis+cluster:// URL cannot be one of several masters; give it alone");
    for (const Endpoint& other : endpoints)
      if (other.transport == ep.transport && other.host == ep.host && other.port == ep.port && other.path == ep.path &&
          other.db == ep.db)
        throw_url_error(where, "names the same server as an earlier master; a quorum needs distinct servers");
    endpoints.push_back(std::move(ep));
  }
  return endpoints;
}

/// Shows a lock name in messages: printable ASCII as is, other bytes as \xHH, long names cut.
inline std::string printable_name(std::string_view name) {
  std::string out = "\"";
  constexpr std::size_t limit = 80;
  for (std::size_t i = 0; i < name.size() && i < limit; ++i) {
    const auto c = static_cast<unsigned char>(name[i]);
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      static constexpr char digits[] = "0123456789abcdef";
      out += "\\x";
      out += digits[c >> 4];
      out += digits[c & 15];
    }
  }
  if (name.size() > limit) out += "...";
  return out + "\"";
}

/// CRC-16/XMODEM, the hash Redis Cluster uses for key slots; `crc` continues an earlier run.
inline std::uint16_t crc16(std::string_view data, std::uint16_t crc = 0) noexcept {
  static const auto table = [] {
    std::array<std::uint16_t, 256> t{};
    for (unsigned i = 0; i < 256; ++i) {
      auto v = static_cast<std::uint16_t>(i << 8);
      for (int bit = 0; bit < 8; ++bit) v = static_cast<std::uint16_t>((v & 0x8000) ? (v << 1) ^ 0x1021 : v << 1);
      t[i] = v;
    }
    return t;
  }();
  for (const char c : data)
    crc = static_cast<std::uint16_t>((crc << 8) ^ table[((crc >> 8) ^ static_cast<unsigned char>(c)) & 0xff]);
  return crc;
}

/// The part of a key Redis Cluster hashes: the first non-empty {hash tag}, else all of it.
inline std::string_view hashed_part(std::string_view key) noexcept {
  const auto open = key.find('{');
  if (open == std::string_view::npos) return key;
  const auto close = key.find('}', open + 1);
  if (close == std::string_view::npos || close == open + 1) return key;
  return key.substr(open + 1, close - open - 1);
}

/// The Redis Cluster slot (0..16383) of a key.
inline int key_slot(std::string_view key) noexcept { return crc16(hashed_part(key)) & 16383; }

/// A key for data that belongs to `key` (its fencing counter, its holder's details), in the same
/// Redis Cluster slot whatever `key` contains, so that one script may touch both.
inline std::string companion_key(const std::string& key, std::string_view suffix) {
  const int slot = key_slot(key);
  std::string candidate;
  if (key.find('{') != std::string::npos) {
    candidate = key + std::string(suffix);  // keeps a hash tag the key already has
    if (key_slot(candidate) == slot) return candidate;
  }
  candidate = "{" + key + "}" + std::string(suffix);  // the whole key as the tag
  if (key_slot(candidate) == slot) return candidate;
  // The key has a '}' that cuts such a tag short and no tag of its own, so its slot comes from
  // all of it: append two bytes chosen so that the CRC lands in the same slot. Braces are
  // skipped so the bytes cannot form a tag; CRC-16 reaches every value with two free bytes.
  const std::string prefix = key + std::string(suffix) + ":";
  const std::uint16_t base = crc16(prefix);
  for (int a = 0; a < 256; ++a) {
    for (int b = 0; b < 256; ++b) {
      if (a == '{' || a == '}' || b == '{' || b == '}') continue;
      const char pad[2] = {static_cast<char>(a), static_cast<char>(b)};
      if ((crc16(std::string_view(pad, 2), base) & 16383) != slot) continue;
      candidate = prefix + std::string(pad, 2);
      if (key_slot(candidate) == slot) return candidate;
    }
  }
  throw std::logic_error("process_lock: no companion key in the lock's slot");  // unreachable
}

/// The names that go with one lock key.
struct LockKeys {
  std::string lock;     // the lock itself: value = owner token, shared with process-lock-node
  std::string fence;    // fencing counter, incremented by each acquisition; never expires
  std::string owner;    // the holder's details and the waiters' mark, one string; same TTL as the lock
  std::string holder;   // 0.1.0's hash of the holder's details (wire version 1), only read now
  std::string channel;  // pub/sub channel where releases are announced

  explicit LockKeys(std::string key)
      : lock(std::move(key)),
        fence(companion_key(lock, ":fence")),
        owner(companion_key(lock, ":owner")),
        holder(companion_key(lock, ":holder")),
        channel("process_lock:released:" + lock) {}
};

/// 16 bytes from the OS's CSPRNG, as a lowercase RFC 4122 version-4 UUID.
inline std::string random_uuid_v4() {
  unsigned char b[16];
  std::size_t got = 0;
  while (got < sizeof b) {
    const ssize_t n = getrandom(b + got, sizeof b - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::system_error(errno, std::generic_category(), "process_lock: cannot make an owner token (getrandom)");
    }
    got += static_cast<std::size_t>(n);
  }
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);  // version 4
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
  static constexpr char digits[] = "0123456789abcdef";
  std::string s;
  s.reserve(36);
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s += '-';
    s += digits[b[i] >> 4];
    s += digits[b[i] & 15];
  }
  return s;
}

/// SHA-1 as hex, for EVALSHA (the server names scripts by it). Not used for security.
inline std::string sha1_hex(std::string_view data) {
  std::uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
  std::string msg(data);
  const std::uint64_t bit_len = static_cast<std::uint64_t>(data.size()) * 8u;
  msg += static_cast<char>(0x80);
  while (msg.size() % 64 != 56) msg += '\0';
  for (int i = 7; i >= 0; --i) msg += static_cast<char>((bit_len >> (i * 8)) & 0xffu);
  auto rotl = [](std::uint32_t x, int n) { return (x << n) | (x >> (32 - n)); };
  for (std::size_t chunk = 0; chunk < msg.size(); chunk += 64) {
    std::uint32_t w[80];
    for (int i = 0; i < 16; ++i) {
      w[i] = 0;
      for (int j = 0; j < 4; ++j)
        w[i] = (w[i] << 8) | static_cast<unsigned char>(msg[chunk + static_cast<std::size_t>(i * 4 + j)]);
    }
    for (int i = 16; i < 80; ++i) w[i] = rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    std::uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; ++i) {
      std::uint32_t f, k;
      if (i < 20) {
        f = (b & c) | (~b & d);
        k = 0x5A827999u;
      } else if (i < 40) {
        f = b ^ c ^ d;
        k = 0x6ED9EBA1u;
      } else if (i < 60) {
        f = (b & c) | (b & d) | (c & d);
        k = 0x8F1BBCDCu;
      } else {
        f = b ^ c ^ d;
        k = 0xCA62C1D6u;
      }
      const std::uint32_t t = rotl(a, 5) + f + e + k + w[i];
      e = d;
      d = c;
      c = rotl(b, 30);
      b = a;
      a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
  }
  char out[41];
  std::snprintf(out, sizeof out, "%08x%08x%08x%08x%08x", h[0], h[1], h[2], h[3], h[4]);
  return out;
}

/// A Lua script and its SHA-1, computed once.
struct Script {
  std::string_view text;
  std::string sha;
  explicit Script(std::string_view t) : text(t), sha(sha1_hex(t)) {}
};

// The scripts compare the stored owner token with ours; that comparison and the change it
// guards must be one atomic step, or a lock that expires in between could be taken by another
// process and then extended or deleted by us.
// Wire version 2 (PROCESS_LOCK_WIRE_VERSION; 0.1.0 spoke 1): the holder's details are one string,
// KEYS[3] = LockKeys::owner, "<token> <mark> <fence> <since_ms> <pid> <host>" (host last: it may
// hold spaces), set with the lock's TTL by the SET that writes it. <mark> is '-', or 'w' once a
// waiter that listens for release notices found the lock held; only then does a release publish.
// The lock key, the fencing counter and the channel are as in version 1, so the two versions
// exclude each other and share the counter. Each command left is listed in the README.
// KEYS (lock, update, raise fence): 1 = the lock (value: owner token, as process-lock-node writes
// it), 2 = the fencing counter (never expires), 3 = the holder's details.
// ARGV: 1 = our token, 2 = timeout in ms (lock, update) or force flag (clear), then per script.

/// {1, fence} if the lock was free (now ours, fence counter incremented, holder recorded) or
/// already ours (TTL reset, same fence); {0, PTTL of the holder's lock} if held by another.
/// ARGV[3] = host, ARGV[4] = pid, ARGV[5] = '1' if the caller listens for release notices
/// (its failed attempt marks the holder's record, so that the release is announced).
/// SET NX first: on a free lock it both checks and takes it.
inline constexpr std::string_view lock_script_text = R"lua(
if redis.replicate_commands then redis.replicate_commands() end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local fence = redis.call('INCR', KEYS[2])
  local now = redis.call('TIME')
  redis.call('SET', KEYS[3], ARGV[1] .. ' - ' .. fence .. ' ' .. now[1] .. string.format('%03d', math.floor(now[2] / 1000)) ..
             ' ' .. ARGV[4] .. ' ' .. ARGV[3], 'PX', ARGV[2])
  return {1, fence}
end
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
  local owner = redis.call('GET', KEYS[3])
  return {1, tonumber(owner and string.match(owner, '^%S+ %S (%d+) ')) or 0}
end
if ARGV[5] == '1' and holder then
  local owner = redis.call('GET', KEYS[3])
  if owner and string.sub(owner, 1, #holder + 2) == holder .. ' -' then
    redis.call('SETRANGE', KEYS[3], #holder + 1, 'w')
  end
end
return {0, redis.call('PTTL', KEYS[1])}
)lua";

/// 1 if ours and renewed, 0 otherwise. Several masters only: with ARGV[3] = our fence, a
/// master that lost the lock (absent, e.g. restarted without data) gets it back: 2, holder
/// recorded with our fence and the counter raised to it if lower (ARGV[4] = host, ARGV[5] = pid).
inline constexpr std::string_view update_script_text = R"lua(
if redis.replicate_commands then redis.replicate_commands() end
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
  return 1
end
if holder == false and ARGV[3] then
  local now = redis.call('TIME')
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  if (tonumber(redis.call('GET', KEYS[2])) or 0) < tonumber(ARGV[3]) then redis.call('SET', KEYS[2], ARGV[3]) end
  redis.call('SET', KEYS[3], ARGV[1] .. ' - ' .. ARGV[3] .. ' ' .. now[1] .. string.format('%03d', math.floor(now[2] / 1000)) ..
             ' ' .. ARGV[5] .. ' ' .. ARGV[4], 'PX', ARGV[2])
  return 2
end
return 0
)lua";

/// KEYS: 1 = the lock, 2 = the holder's details. -1 if absent, 0 if held by another owner and
/// not forced (ARGV[2] == '1'), else 1: deleted, and if a waiter marked the holder's record (or
/// the release is forced), a release notice published on ARGV[3] so that waiters try again at
/// once. pcall: an ACL user without channel rights still releases; waiters then find out by
/// polling. MGET reads a hash as nil, so an absent lock is looked at again: GET answers
/// WRONGTYPE for a key of another type.
inline constexpr std::string_view clear_script_text = R"lua(
local v = redis.call('MGET', KEYS[1], KEYS[2])
local holder = v[1]
if holder == false then
  redis.call('GET', KEYS[1])
  return -1
end
if holder == ARGV[1] or ARGV[2] == '1' then
  redis.call('DEL', KEYS[1], KEYS[2])
  if ARGV[2] == '1' or (v[2] and string.sub(v[2], 1, #holder + 2) == holder .. ' w') then
    redis.pcall('PUBLISH', ARGV[3], 'released')
  end
  return 1
end
return 0
)lua";

/// Read-only: {holder token or nil, PTTL, fence counter or nil, {token, fence, host, pid, since_ms}}.
/// KEYS[4] = LockKeys::holder, the hash where a 0.1.0 holder keeps its details.
inline constexpr std::string_view inspect_script_text = R"lua(
local holder = redis.call('GET', KEYS[1])
local owner = redis.call('GET', KEYS[3])
local info
if holder and owner then
  local token, fence, since, pid, host = string.match(owner, '^(%S+) %S (%d+) (%d+) (%d+) (.*)$')
  if token == holder then info = {token, fence, host, pid, since} end
end
if not info then info = redis.call('HMGET', KEYS[4], 'token', 'fence', 'host', 'pid', 'since_ms') end
return {holder, redis.call('PTTL', KEYS[1]), redis.call('GET', KEYS[2]), info}
)lua";

inline const Script& lock_script() {
  static const Script s(lock_script_text);
  return s;
}
inline const Script& update_script() {
  static const Script s(update_script_text);
  return s;
}
inline const Script& clear_script() {
  static const Script s(clear_script_text);
  return s;
}
inline const Script& inspect_script() {
  static const Script s(inspect_script_text);
  return s;
}

/// Several masters: where the lock is ours (ARGV[1]), raises the fencing counter to ARGV[2], the
/// token the majority gave, if it is lower, and records that token as the holder's; 1 if ours
/// here, else 0. Without it, a master that missed earlier acquisitions keeps a low counter, and
/// a later majority made of such masters could hand out a token that is not the highest.
inline constexpr std::string_view raise_fence_script_text = R"lua(
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if (tonumber(redis.call('GET', KEYS[2])) or 0) < tonumber(ARGV[2]) then redis.call('SET', KEYS[2], ARGV[2]) end
local owner = redis.call('GET', KEYS[3])
local head, rest = string.match(owner or '', '^(%S+ %S) %d+ (.*)$')
if head then
  redis.call('SET', KEYS[3], head .. ' ' .. ARGV[2] .. ' ' .. rest, 'PX', math.max(redis.call('PTTL', KEYS[3]), 1))
end
return 1
)lua";

inline const Script& raise_fence_script() {
  static const Script s(raise_fence_script_text);
  return s;
}

/// Counts forks, in the child, so a connection notices it was inherited without a getpid()
/// system call per call. (A child made by a raw clone() system call, which runs no fork
/// handlers, is not noticed; fork(), and posix_spawn()/vfork() followed by exec, are fine.)
inline unsigned long fork_generation() noexcept {
  static std::atomic<unsigned long> generation{0};
  static const int registered = pthread_atfork(nullptr, nullptr, [] { generation.fetch_add(1); });
  (void)registered;
  return generation.load(std::memory_order_relaxed);
}

/// This process's id in decimal, as the scripts record it; cached per thread until a fork.
inline const std::string& pid_text() {
  thread_local unsigned long generation = ~0UL;
  thread_local std::string text;
  if (generation != fork_generation()) {
    text = std::to_string(getpid());
    generation = fork_generation();
  }
  return text;
}

inline timeval to_timeval(std::chrono::milliseconds ms) noexcept {
  timeval tv{};
  tv.tv_sec = static_cast<decltype(tv.tv_sec)>(ms.count() / 1000);
  tv.tv_usec = static_cast<decltype(tv.tv_usec)>((ms.count() % 1000) * 1000);
  return tv;
}

/// `text` with every stretch covered by an occurrence of `secret` (of any length, overlapping
/// ones included) replaced by `***`: no message may carry a password. Replies to AUTH are never
/// quoted at all (see `auth_refusal`); this guards the other texts against peers that echo what
/// they were sent. A short secret may mask unrelated letters too, which is the price of the
/// rule; the kind of an error is always read from the unscrubbed text.
[[nodiscard]] inline std::string scrub(std::string text, std::string_view secret) {
  if (secret.empty()) return text;
  auto mask_once = [&] {
    std::string out;
    std::size_t covered_to = 0;  // end of the stretch being masked
    for (std::size_t i = 0; i < text.size(); ++i) {
      const bool starts_secret = text.compare(i, secret.size(), secret) == 0;
      if (i >= covered_to) out += starts_secret ? std::string_view("***") : std::string_view(&text[i], 1);
      if (starts_secret) covered_to = std::max(covered_to, i + secret.size());
    }
    text = std::move(out);
  };
  // A mask beside the rest of the text can form the secret again when the secret has a '*';
  // each pass removes at least one of its other bytes, so this ends. A secret of stars only
  // is then all mask: one pass.
  const bool only_stars = secret.find_first_not_of('*') == std::string_view::npos;
  while (text.find(secret) != std::string::npos) {
    mask_once();
    if (only_stars) break;
  }
  return text;
}

/// What a server's error reply to AUTH says, in words of our own: a server or proxy may echo
/// AUTH's arguments in it, so the reply itself is never quoted. `code` is its error code when
/// it is one Redis uses for AUTH (else empty), `reason` a fixed description.
struct AuthRefusal {
  std::string_view code;
  std::string_view reason;
};
[[nodiscard]] inline AuthRefusal auth_refusal(std::string_view reply) noexcept {
  const std::string_view first_word = reply.substr(0, reply.find(' '));
  auto says = [&](std::string_view words) { return reply.find(words) != std::string_view::npos; };
  if (first_word == "WRONGPASS") return {"WRONGPASS", "wrong user or password, or the user is disabled"};
  if (first_word == "ERR") {
    // The texts of Redis 6+ and of older versions, matched only to choose our words.
    if (says("without any password configured") || says("no password is set"))
      return {"ERR", "the server has no password set"};
    if (says("invalid password")) return {"ERR", "wrong password"};
    return {"ERR", "the server refused the credentials"};
  }
  return {"", "the server refused the credentials"};
}

/// Element `i` of an array reply, which must have type `type`; else a protocol error.
inline const redisReply& element(const redisReply& array, std::size_t i, int type) {
  if (array.type != REDIS_REPLY_ARRAY || i >= array.elements || array.element[i]->type != type)
    throw Error(errc::protocol_error, "a script's reply has an unexpected shape; is the server Redis?");
  return *array.element[i];
}
inline long long integer_at(const redisReply& array, std::size_t i) {
  return element(array, i, REDIS_REPLY_INTEGER).integer;
}
/// A string element, or nullopt for nil.
inline std::optional<std::string> string_at(const redisReply& array, std::size_t i) {
  if (array.type == REDIS_REPLY_ARRAY && i < array.elements && array.element[i]->type == REDIS_REPLY_NIL)
    return std::nullopt;
  const redisReply& e = element(array, i, REDIS_REPLY_STRING);
  return std::string(e.str, e.len);
}
/// A decimal written by one of our scripts; 0 if it is not one.
inline std::uint64_t to_u64(const std::string& s) noexcept {
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return 0;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return v;
}

/// The lock script's answer.
struct LockReply {
  bool acquired = false;
  std::uint64_t fence = 0;    // of our hold, when acquired (0 if the counter is unknown)
  long long holder_pttl = 0;  // the holder's remaining TTL in ms, when not acquired
};
inline LockReply read_lock_reply(const redisReply& reply) {
  const bool acquired = integer_at(reply, 0) == 1;
  const long long second = integer_at(reply, 1);
  LockReply r;
  r.acquired = acquired;
  if (acquired && second > 0) r.fence = static_cast<std::uint64_t>(second);
  if (!acquired) r.holder_pttl = second;
  return r;
}

/// The inspect script's answer, seen by the owner of `token`.
inline Inspection read_inspection(const redisReply& reply, std::string_view token) {
  const std::optional<std::string> holder_token = string_at(reply, 0);
  const long long pttl = integer_at(reply, 1);
  Inspection result;
  result.state = holder_token ? State::locked : State::open;
  result.ours = holder_token == token;
  if (holder_token && pttl >= 0) result.ttl = std::chrono::milliseconds(pttl);
  result.fence_counter = to_u64(string_at(reply, 2).value_or("0"));
  const redisReply& info = element(reply, 3, REDIS_REPLY_ARRAY);
  // The details count only if they were written by the current holder.
  if (holder_token && string_at(info, 0) == holder_token) {
    Holder h;
    h.fence = to_u64(string_at(info, 1).value_or("0"));
    h.host = string_at(info, 2).value_or("");
    h.pid = static_cast<long>(to_u64(string_at(info, 3).value_or("0")));
    // A since_ms beyond what system_clock holds (only a broken peer sends one) would overflow: unknown, 0.
    const std::uint64_t since_ms = to_u64(string_at(info, 4).value_or("0"));
    const auto since_max =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::duration::max());
    h.since = std::chrono::system_clock::time_point(
        std::chrono::milliseconds(since_ms <= static_cast<std::uint64_t>(since_max.count()) ? since_ms : 0));
    result.holder = std::move(h);
  }
  return result;
}

/// Whether a retry after a lost connection could change the answer's meaning.
enum class Retry { safe, unsafe };

/// A Redis Cluster redirection: the slot lives (MOVED) or, during a migration, is being moved
/// (ASK) to `address`. An empty host means "the host you are talking to".
struct Redirect {
  bool ask = false;
  Address address;
};

/// Parses "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>"; nullopt for any other text.
inline std::optional<Redirect> parse_redirect(std::string_view text) {
  Redirect r;
  if (text.substr(0, 6) == "MOVED ") {
    text.remove_prefix(6);
  } else if (text.substr(0, 4) == "ASK ") {
    r.ask = true;
    text.remove_prefix(4);
  } else {
    return std::nullopt;
  }
  const auto space = text.find(' ');
  if (space == std::string_view::npos || !parse_uint(text.substr(0, space), 0, 16383)) return std::nullopt;
  const std::string_view where = text.substr(space + 1);
  const auto colon = where.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  const auto port = parse_uint(where.substr(colon + 1), 1, 65535);
  std::string_view host = where.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (!port || host.find_first_of(" []") != std::string_view::npos || host == "?") return std::nullopt;
  r.address = {std::string(host), static_cast<int>(*port)};
  return r;
}

/// What a Redis Cluster's slot map (the reply to CLUSTER SLOTS) says about one slot.
struct SlotRoute {
  std::optional<Address> owner;  // the slot's master; nullopt: no node serves it (or none can be reached)
  std::vector<Address> nodes;    // every node the map names, masters and replicas, each once
};

/// Reads a CLUSTER SLOTS reply: an array of ranges {start, end, master, replica...}, each node
/// {host, port, ...} (Redis 7 adds an id and metadata, ignored here). A node whose host is empty
/// or nil is reached at `asked_host`, the host of the node that answered; one whose host is "?"
/// (an unknown endpoint) cannot be reached and is left out. Any other shape throws
/// errc::protocol_error naming what is wrong: the map decides where our writes go.
inline SlotRoute read_slot_map(const redisReply& reply, int slot, std::string_view asked_host) {
  auto malformed = [](const std::string& what) -> Error {
    return Error(errc::protocol_error, "sent a malformed CLUSTER SLOTS reply: " + what);
  };
  if (reply.type != REDIS_REPLY_ARRAY) throw malformed("not an array");
  SlotRoute route;
  bool covered = false;
  // nullopt: a node that cannot be reached ("?").
  auto node_at = [&](const redisReply& node, const std::string& which) -> std::optional<Address> {
    if (node.type != REDIS_REPLY_ARRAY || node.elements < 2) throw malformed(which + " is not an array {host, port, ...}");
    const redisReply& host = *node.element[0];
    const redisReply& port = *node.element[1];
    if (host.type != REDIS_REPLY_STRING && host.type != REDIS_REPLY_NIL) throw malformed(which + "'s host is not a string");
    if (port.type != REDIS_REPLY_INTEGER || port.integer < 1 || port.integer > 65535)
      throw malformed(which + "'s port is not a number from 1 to 65535");
    std::string_view name = host.type == REDIS_REPLY_STRING ? std::string_view(host.str, host.len) : std::string_view();
    if (name == "?") return std::nullopt;
    if (name.empty()) name = asked_host;
    // The host goes to getaddrinfo() and into messages: a host name or an address, nothing else.
    if (name.empty() || name.size() > 255) throw malformed(which + "'s host is empty or too long");
    for (char c : name)
      if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f || c == '[' || c == ']' || c == '%' || c == '/')
        throw malformed(which + "'s host contains characters a host name cannot have");
    return Address{std::string(name), static_cast<int>(port.integer)};
  };
  auto remember = [&](const Address& a) {
    if (std::find(route.nodes.begin(), route.nodes.end(), a) == route.nodes.end()) route.nodes.push_back(a);
  };
  for (std::size_t i = 0; i < reply.elements; ++i) {
    const redisReply& range = *reply.element[i];
    const std::string which = "range " + std::to_string(i + 1);
    if (range.type != REDIS_REPLY_ARRAY || range.elements < 3)
      throw malformed(which + " is not an array {start, end, master, replica...}");
    const redisReply& start = *range.element[0];
    const redisReply& end = *range.element[1];
    if (start.type != REDIS_REPLY_INTEGER || end.type != REDIS_REPLY_INTEGER || start.integer < 0 ||
        end.integer > 16383 || start.integer > end.integer)
      throw malformed(which + " does not span slots within 0..16383");
    const bool ours = start.integer <= slot && slot <= end.integer;
    if (ours && covered) throw malformed("slot " + std::to_string(slot) + " is in two ranges");
    covered = covered || ours;
    for (std::size_t n = 2; n < range.elements; ++n) {
      const std::optional<Address> node =
          node_at(*range.element[n], which + (n == 2 ? "'s master" : "'s replica " + std::to_string(n - 2)));
      if (!node) continue;
      if (ours && n == 2) route.owner = *node;
      remember(*node);
    }
  }
  // The owner first, then the other nodes: the order in which they are asked after a failure.
  if (route.owner) {
    route.nodes.erase(std::find(route.nodes.begin(), route.nodes.end(), *route.owner));
    route.nodes.insert(route.nodes.begin(), *route.owner);
  }
  return route;
}

/// The sentinels' channel announcing a failover, and its payload: "<master name> <old ip>
/// <old port> <new ip> <new port>". Returns the new address if the announcement is about
/// `master_name`.
inline constexpr std::string_view switch_channel = "+switch-master";
inline std::optional<Address> parse_switch_master(std::string_view payload, std::string_view master_name) {
  std::string_view words[5];
  for (auto& word : words) {
    const auto space = payload.find(' ');
    word = payload.substr(0, space);
    payload = space == std::string_view::npos ? std::string_view() : payload.substr(space + 1);
  }
  for (const auto& word : words)
    if (word.empty()) return std::nullopt;
  if (!payload.empty() || words[0] != master_name) return std::nullopt;
  const auto port = parse_uint(words[4], 1, 65535);
  if (!port) return std::nullopt;
  return Address{std::string(words[3]), static_cast<int>(*port)};
}

/// The most one reply may take: no reply this library expects is larger than a few KiB, so
/// these only stop a broken or hostile server from holding a call's memory without bound.
inline constexpr std::size_t max_reply_bytes = std::size_t(4) << 20;  // 4 MiB
inline constexpr long long max_reply_elements = 65536;                // over all nested arrays

/// Follows the byte stream a server sends just far enough to bound each reply, before the bytes
/// reach hiredis's reader: a reply's total size and its array elements (hiredis 0.14 allocates
/// an array's element table from its header, `*2147483647` included, and neither version
/// bounds a reply's size). It checks framing only; hiredis still parses the contents.
class ReplyBounds {
 public:
  /// The library uses the defaults; other limits are for tests.
  explicit ReplyBounds(std::size_t max_bytes = max_reply_bytes, long long max_elements = max_reply_elements) noexcept
      : max_bytes_(max_bytes), max_elements_(max_elements) {}

  /// Checks the next bytes of the stream (any split: a reply may span calls, a call may hold
  /// several replies). Returns what is wrong, as the end of a sentence whose subject is the
  /// server ("sent a reply over ...", "does not speak ..."), or an empty string. After a fault,
  /// every later call repeats it: the connection is to be dropped.
  [[nodiscard]] std::string check(std::string_view bytes) {
    while (fault_.empty() && !bytes.empty()) {
      const std::size_t used = step(bytes);
      bytes.remove_prefix(used);
      reply_bytes_ += used;
      if (fault_.empty() && reply_bytes_ > max_bytes_) fault_ = size_fault();
      if (reply_ended_) reply_bytes_ = 0;
      reply_ended_ = false;
    }
    return fault_;
  }

 private:
  enum class Phase { type, line, number, bulk };

  // Consumes a prefix of `bytes` (at least one byte) and returns its length.
  std::size_t step(std::string_view bytes) {
    switch (phase_) {
      case Phase::type:
        return read_type(bytes.front());
      case Phase::line: {  // a simple string, error or integer: up to "\r\n", as hiredis reads it
        for (std::size_t i = 0; i < bytes.size(); ++i) {
          if (bytes[i] == '\n' && after_cr_) {
            value_done();
            return i + 1;
          }
          after_cr_ = bytes[i] == '\r';
        }
        return bytes.size();
      }
      case Phase::number:
        return read_number(bytes.front());
      case Phase::bulk: {
        const std::size_t take = static_cast<std::size_t>(std::min<long long>(bulk_left_, static_cast<long long>(bytes.size())));
        bulk_left_ -= static_cast<long long>(take);
        if (bulk_left_ == 0) value_done();
        return take;
      }
    }
    return bytes.size();
  }

  std::size_t read_type(char c) {
    switch (c) {
      case '+':
      case '-':
      case ':':
        phase_ = Phase::line;
        after_cr_ = false;
        break;
      case '$':
      case '*':
        phase_ = Phase::number;
        header_ = c;
        number_ = 0;
        digits_ = 0;
        negative_ = false;
        after_cr_ = false;
        break;
      default:
        // The byte is not shown: a peer that echoes what it was sent would show a password's.
        fault_ = not_redis("a reply or element whose type byte is none of + - : $ *");
    }
    return 1;
  }

  // The length in a `$` or `*` header: -1 (nil) or 0 and more, ended by "\r\n". Stricter than
  // hiredis 0.14 (which reads "+3" as 3 and "1x" as nil), so that the two never disagree on
  // where a value ends: what this rejects, the connection drops.
  std::size_t read_number(char c) {
    const long long limit = header_ == '*' ? max_elements_ : static_cast<long long>(max_bytes_);
    if (after_cr_) {
      if (c == '\n')
        header_done();
      else
        fault_ = not_redis("a malformed length");
    } else if (c >= '0' && c <= '9') {
      number_ = number_ * 10 + (c - '0');
      ++digits_;
      if (!negative_ && number_ > limit) fault_ = header_ == '*' ? elements_fault() : size_fault();
      // Only -1 (nil): hiredis 0.14 reads "-0" as an empty string, which would put the two out of step.
      if (negative_ && (number_ != 1 || digits_ > 1)) fault_ = not_redis("a negative length other than -1");
    } else if (c == '-' && digits_ == 0 && !negative_) {
      negative_ = true;
    } else if (c == '\r' && digits_ > 0) {
      after_cr_ = true;
    } else {
      fault_ = not_redis("a malformed length");
    }
    return 1;
  }

  void header_done() {
    phase_ = Phase::type;
    if (negative_ || number_ == 0) {  // nil, or empty
      if (header_ == '$' && !negative_) {
        phase_ = Phase::bulk;
        bulk_left_ = 2;  // "\r\n"
        return;
      }
      value_done();
      return;
    }
    if (header_ == '$') {
      if (reply_bytes_ + static_cast<std::size_t>(number_) > max_bytes_) {  // known now: fail before it comes
        fault_ = size_fault();
        return;
      }
      phase_ = Phase::bulk;
      bulk_left_ = number_ + 2;
      return;
    }
    elements_ += number_;
    if (elements_ > max_elements_) {
      fault_ = elements_fault();
      return;
    }
    pending_ += number_ - 1;  // the array itself is one value; its elements are owed now
  }

  void value_done() {
    phase_ = Phase::type;
    if (--pending_ > 0) return;
    pending_ = 1;  // the next reply
    elements_ = 0;
    reply_ended_ = true;
  }

  std::string size_fault() const { return "sent a reply over the limit of " + std::to_string(max_bytes_) + " bytes"; }
  std::string elements_fault() const {
    return "sent a reply over the limit of " + std::to_string(max_elements_) + " array elements";
  }
  static std::string not_redis(const std::string& what) {
    return "does not speak the Redis protocol (" + what + ")";
  }

  std::size_t max_bytes_;
  long long max_elements_;
  Phase phase_ = Phase::type;
  char header_ = 0;         // '$' or '*' while reading its length
  long long number_ = 0;    // the length read so far
  int digits_ = 0;
  bool negative_ = false;
  bool after_cr_ = false;    // in a line or length: the last byte was '\r'
  long long bulk_left_ = 0;  // bytes of a bulk string still to come, "\r\n" included
  long long pending_ = 1;    // values still owed to complete the current reply
  long long elements_ = 0;   // array elements announced in the current reply
  std::size_t reply_bytes_ = 0;  // bytes of the current reply so far
  bool reply_ended_ = false;     // the last step ended a reply
  std::string fault_;
};

/// One logical Redis master, reached through one connection that is opened lazily and replaced
/// after any failure. The master is the URL's server, or the one the sentinels name
/// (redis+sentinel://), or, in a Redis Cluster, the node that owns the lock's slot, learned from
/// the slot map (redis+cluster://) or from MOVED replies (all of a lock's keys share one slot).
/// Not thread-safe: the owner serialises
/// calls (ProcessLock holds a mutex).
class Connection {
 public:
  Connection(Endpoint endpoint, std::chrono::milliseconds connect_timeout, std::chrono::milliseconds command_timeout)
      : endpoint_(std::move(endpoint)), connect_timeout_(connect_timeout), command_timeout_(command_timeout) {
    target_ = seed();
  }
  // Destroyed in a forked child, it closes the inherited socket only if it is still ours.
  ~Connection() {
    if (ctx_ && owner_generation_ != fork_generation()) forget_inherited();
  }

  const Endpoint& endpoint() const noexcept { return endpoint_; }
  /// A new, unopened connection to the same master with the same settings.
  std::unique_ptr<Connection> clone() const {
    auto copy = std::make_unique<Connection>(endpoint_, connect_timeout_, command_timeout_);
    copy->target_ = target_;  // what was learned about the master's whereabouts still holds
    copy->slot_ = slot_;
    copy->cluster_nodes_ = cluster_nodes_;
    copy->answered_ = answered_;
    return copy;
  }
  std::chrono::milliseconds connect_timeout() const noexcept { return connect_timeout_; }
  std::chrono::milliseconds command_timeout() const noexcept { return command_timeout_; }

  /// The URL (passwords hidden) and, where it differs, the server actually reached.
  std::string where() const {
    std::string s = endpoint_.display();
    if (target_ && target_ != seed()) s += " (at " + target_->display() + ")";
    return s;
  }

  /// Runs a script with EVALSHA (falling back to EVAL when the server lacks it, e.g. after a
  /// restart or SCRIPT FLUSH): `keys` are its KEYS, `args` its ARGV. A reply of another type
  /// than `expected_type` is a protocol error. With `acks` and a URL that asks for replication
  /// checks (wait_replicas), a WAIT is pipelined after the script and its count stored in
  /// `*acks`. One round trip in steady state.
  ReplyPtr eval(const Script& script, std::initializer_list<std::string_view> keys,
                std::initializer_list<std::string_view> args, int expected_type, Retry retry,
                long long* acks = nullptr) {
    if (keys.size() > 0) route_by(*keys.begin());
    return run(retry, [&] {
      const std::string key_count = std::to_string(keys.size());
      std::array<std::string_view, max_args> argv{"EVALSHA", script.sha, key_count};
      if (3 + keys.size() + args.size() > argv.size())
        throw std::length_error("process_lock: too many script arguments");
      std::copy(args.begin(), args.end(), std::copy(keys.begin(), keys.end(), argv.begin() + 3));
      ReplyPtr reply = routed(argv.data(), 3 + keys.size() + args.size(), &script, acks);
      check_error(*reply);
      if (reply->type != expected_type) unexpected_reply();
      return reply;
    });
  }

  /// Whether the URL asks for a replication check after writes, and how many replicas.
  int wait_replicas() const noexcept { return endpoint_.wait_replicas; }
  /// The error the last WAIT answered, if it failed.
  const std::string& wait_error() const noexcept { return wait_error_; }

  /// GET: the value, or nullopt when the key does not exist.
  std::optional<std::string> get(std::string_view key, Retry retry) {
    route_by(key);
    return run(retry, [&]() -> std::optional<std::string> {
      std::string_view argv[] = {"GET", key};
      const ReplyPtr reply = routed(argv, 2, nullptr, nullptr);
      check_error(*reply);
      if (reply->type == REDIS_REPLY_NIL) return std::nullopt;
      if (reply->type != REDIS_REPLY_STRING) unexpected_reply();
      return std::string(reply->str, reply->len);
    });
  }

  /// Closes the connection; the next call opens a new one.
  void reset() noexcept {
    ctx_.reset();
    out_.clear();
    bounds_ = ReplyBounds();
    owed_ = 0;  // their replies went with the socket (a give-back not yet sent stays in deferred_)
  }

  /// Sends `argv` without waiting for its reply, which a later call reads and drops: for giving
  /// back what a master granted without making the caller wait. Without a usable connection it
  /// goes out first on the next one. Never throws: what is not given back expires.
  void post(const std::string_view* argv, std::size_t argc) noexcept {
    try {
      std::string request;
      encode(request, argv, argc);
      if (!ctx_ || ctx_->err != 0 || owner_generation_ != fork_generation()) {
        deferred_ = std::move(request);
        return;
      }
      out_ += request;
      try {
        flush(Bound{Clock::now(), std::chrono::milliseconds(0)});  // never waits: it fits the socket's buffer
        owe(1);
      } catch (const TransportFailure&) {
        reset();  // it may have been cut short: the next connection sends it whole
        deferred_ = std::move(request);
      }
    } catch (...) {
      reset();
    }
  }

  /// Bounds every later call, connecting included, by `deadline` as well as by the timeouts
  /// (nullopt: timeouts only). For a connection that one thread owns, such as the keeper's.
  void set_deadline(std::optional<std::chrono::steady_clock::time_point> deadline) noexcept { deadline_ = deadline; }

  /// Turns this connection into a subscriber of `channel`; afterwards use only wait_message().
  /// (In a Redis Cluster any node hears every PUBLISH, so no routing is needed.)
  void subscribe(std::string_view channel) {
    run(Retry::unsafe, [&] {
      const std::string_view argv[] = {"SUBSCRIBE", channel};
      const ReplyPtr reply = command(argv, 2);
      check_error(*reply);
      if (reply->type != REDIS_REPLY_ARRAY) unexpected_reply();
      return 0;
    });
  }

  enum class Wake { message, deadline, interrupted };

  /// On a subscribed connection: waits until a message arrives, `deadline` passes, or
  /// `interrupt_fd` becomes readable. Throws Error if the connection fails (it is then closed).
  Wake wait_message(std::chrono::steady_clock::time_point deadline, int interrupt_fd) {
    Wake why = Wake::deadline;
    (void)next_message(deadline, interrupt_fd, why);
    return why;
  }

  /// The same, returning the message (null if none came). A `deadline` already past takes only
  /// what has already arrived, without waiting.
  ReplyPtr next_message(std::chrono::steady_clock::time_point deadline, int interrupt_fd, Wake& why) {
    try {
      for (;;) {
        void* raw = nullptr;  // a message may already sit in hiredis's buffer
        if (redisGetReplyFromReader(ctx_.get(), &raw) != REDIS_OK) reader_failure();
        if (raw) {
          why = Wake::message;
          return ReplyPtr(static_cast<redisReply*>(raw));
        }
        const Arrival arrival = receive(deadline, interrupt_fd);
        why = arrival == Arrival::interrupted ? Wake::interrupted : Wake::deadline;
        if (arrival != Arrival::data) return nullptr;
      }
    } catch (const TransportFailure& failure) {
      const std::string at = where();
      reset();
      forget_route();
      throw Error(errc::connection_lost, "subscription to " + at + " lost: " + failure.cause);
    }
  }

 private:
  friend class FanOut;  // the quorum's parallel round: the steps of a call, one master at a time

  // Failures of the transport (not of the server's answer), which may leave the command
  // undelivered or its reply unread; the connection is always dropped after one.
  struct TransportFailure {
    Error error;
    std::string cause;  // what happened, without the server's name
  };

  using Clock = std::chrono::steady_clock;

  // When one step of a call (connecting with its handshake, or one round trip) must end: its
  // own timeout from now, or the end of the whole call if that comes first. `allowed` is that
  // time as the error messages state it.
  struct Bound {
    Clock::time_point at;
    std::chrono::milliseconds allowed;
  };
  Bound bound(std::chrono::milliseconds timeout) const noexcept {
    const auto now = Clock::now();
    if (call_deadline_ - now >= timeout) return {now + timeout, timeout};
    return {call_deadline_, std::max(std::chrono::ceil<std::chrono::milliseconds>(call_deadline_ - now),
                                     std::chrono::milliseconds(0))};
  }

  // Every call, whatever the server does, ends within one connect timeout plus one command
  // timeout of its start (or at the deadline set, if sooner): connecting, the handshake, the
  // round trip, redirections and a retry all share this one time point.
  void begin_call() noexcept {
    call_deadline_ = std::min(deadline_.value_or(no_deadline), Clock::now() + connect_timeout_ + command_timeout_);
  }

  // Where to go when nothing has been learned: the URL's server; for a sentinel URL, nowhere
  // until the sentinels have been asked; for a unix socket, its path (nullopt).
  std::optional<Address> seed() const {
    if (endpoint_.is_sentinel() || endpoint_.is_cluster() || endpoint_.transport == Endpoint::Transport::unix_socket)
      return std::nullopt;
    return endpoint_.address();
  }

  // After a failure, what was learned may be stale: ask the sentinels again, read the slot map
  // again (redis+cluster://; the node that failed is asked last), or go back to the URL's
  // cluster node (which redirects to the slot's current owner).
  void forget_route() noexcept {
    if (endpoint_.is_cluster() && target_) failed_node_ = target_;
    target_ = seed();
  }

  // redis+cluster://: the slot whose owner calls go to (a lock's keys share one). A connection
  // that has no slot yet (a subscriber) goes to any node.
  void route_by(std::string_view key) noexcept {
    if (endpoint_.is_cluster()) slot_ = key_slot(key);
  }

  template <class Fn>
  auto run(Retry retry, Fn&& attempt) -> decltype(attempt()) {
    begin_call();
    if (endpoint_.is_sentinel()) follow_sentinels();
    const bool reused = ensure_connected(retry == Retry::unsafe);
    try {
      return attempt_once(attempt);
    } catch (const TransportFailure& failure) {
      forget_route();
      // A connection that sat idle may have died without our noticing (server restart, idle
      // kill, a failover). If the call is one whose repetition cannot change its answer, one
      // fresh try is safe; a timeout is not retried, since the server may simply be slow.
      if (!reused || retry == Retry::unsafe || failure.error.code() != errc::connection_lost) throw failure.error;
    }
    ensure_connected();
    try {
      return attempt_once(attempt);
    } catch (const TransportFailure& failure) {
      forget_route();
      throw failure.error;
    }
  }

  // One attempt. Any failure other than an error reply may leave a reply unread or the context
  // flagged by hiredis (e.g. out of memory), so the connection is dropped.
  template <class Fn>
  auto attempt_once(Fn& attempt) -> decltype(attempt()) {
    try {
      catch_up();
      return attempt();
    } catch (const Error&) {
      throw;  // the server answered with an error: the connection is in step and healthy
    } catch (...) {
      reset();
      throw;
    }
  }

  // Sends `argv` (mutable: EVALSHA may become EVAL) to the master and returns its reply,
  // following Redis Cluster redirections (MOVED: the slot's owner is learned; ASK: one command
  // on the importing node; TRYAGAIN: the slot is mid-migration, so wait a little) and, behind
  // sentinels, a READONLY reply from a master demoted by a failover (the sentinels are asked
  // again). None of these replies means the command ran, so resending is always safe.
  ReplyPtr routed(std::string_view* argv, std::size_t argc, const Script* script, long long* acks) {
    const bool wait = acks != nullptr && endpoint_.wait_replicas > 0;
    std::unique_ptr<Connection> asking;  // ASK: a one-off connection to the importing node
    const auto give_up = call_deadline_;
    auto pause = std::chrono::milliseconds(2);
    int hops = 0;  // redirections and re-resolutions; TRYAGAIN waits are bounded by time alone
    for (;;) {
      ReplyPtr reply;
      if (asking) {
        asking->ensure_connected();
        reply = asking->send(argv, argc, true, wait ? acks : nullptr);
      } else {
        reply = send(argv, argc, false, wait ? acks : nullptr);
      }
      if (reply->type != REDIS_REPLY_ERROR) return reply;
      const std::string_view text(reply->str, reply->len);
      if (script && argv[0] == "EVALSHA" && text.substr(0, 8) == "NOSCRIPT") {
        argv[0] = "EVAL";
        argv[1] = script->text;
        continue;
      }
      if (hops++ >= max_hops || std::chrono::steady_clock::now() >= give_up) return reply;
      if (auto redirect = parse_redirect(text)) {
        if (redirect->address.host.empty()) redirect->address.host = target_ ? target_->host : endpoint_.host;
        if (redirect->ask) {
          asking = std::make_unique<Connection>(endpoint_at(redirect->address), connect_timeout_, command_timeout_);
          asking->call_deadline_ = call_deadline_;
        } else {
          asking.reset();
          target_ = redirect->address;
          reset();
          connect();
        }
        continue;
      }
      if (text.substr(0, 8) == "TRYAGAIN" && std::chrono::steady_clock::now() + pause < give_up) {
        --hops;
        std::this_thread::sleep_for(pause);
        pause = std::min(pause * 2, std::chrono::milliseconds(50));
        continue;
      }
      // Redis 7 answers READONLY; older versions wrap it in a script error ("ERR Error running
      // script ... -READONLY ...").
      if (endpoint_.is_sentinel() && !asking && text.find("READONLY") != std::string_view::npos) {
        forget_route();
        reset();
        connect();
        continue;
      }
      return reply;
    }
  }

  // Whether an error reply means the command did not run and routed() would send it elsewhere.
  bool rerouted(std::string_view text) const {
    return parse_redirect(text).has_value() || text.substr(0, 8) == "TRYAGAIN" ||
           (endpoint_.is_sentinel() && text.find("READONLY") != std::string_view::npos);
  }

  // Sends [ASKING] argv [WAIT] in one round trip; returns argv's reply and WAIT's count in *acks.
  ReplyPtr send(const std::string_view* argv, std::size_t argc, bool asking, long long* acks) {
    const Bound limit = bound(command_timeout_);  // the whole round trip, WAIT included
    const std::string_view asking_argv[] = {"ASKING"};
    const std::string replicas = std::to_string(endpoint_.wait_replicas);
    // WAIT must end within what the call may still take, or its reply would time out.
    const auto wait_for = std::min(endpoint_.wait_timeout.value_or(std::chrono::milliseconds(0)),
                                   std::max(limit.allowed / 2, std::chrono::milliseconds(1)));
    const std::string wait_ms = std::to_string(wait_for.count());
    const std::string_view wait_argv[] = {"WAIT", replicas, wait_ms};
    if (asking) append(asking_argv, 1);
    append(argv, argc);
    if (acks) append(wait_argv, 3);
    if (asking) read_reply(limit);  // +OK
    ReplyPtr reply = read_reply(limit);
    if (acks) {
      // A failed WAIT (e.g. an ACL user without +wait) counts as no acknowledgement, so that the
      // caller undoes the write it cannot vouch for; its text is kept for the message.
      const ReplyPtr waited = read_reply(limit);
      wait_error_.clear();
      if (waited->type == REDIS_REPLY_ERROR)
        wait_error_ = scrub(std::string(waited->str, waited->len));
      else if (waited->type != REDIS_REPLY_INTEGER)
        unexpected_reply();
      *acks = waited->type == REDIS_REPLY_INTEGER ? waited->integer : -1;
    }
    return reply;
  }

  // The same settings aimed at another node (an ASK target).
  Endpoint endpoint_at(const Address& address) const {
    Endpoint ep = endpoint_;
    ep.transport = Endpoint::Transport::tcp;
    ep.host = address.host;
    ep.port = address.port;
    ep.sentinels.clear();
    ep.cluster_seeds.clear();
    return ep;
  }

  // Returns true if an existing connection is reused, false if a new one was opened. With
  // `check_alive`, an idle connection the server has closed is noticed before anything is sent
  // on it (one poll() system call): for calls that may not be retried. A call that may be
  // retried needs no check: a dead connection fails it at once and run() retries it.
  bool ensure_connected(bool check_alive = true) {
    if (ctx_ && owner_generation_ != fork_generation()) forget_inherited();
    if (ctx_ && (ctx_->err != 0 || (check_alive && !looks_alive()))) {
      reset();
      // A new connection asks the sentinels first; in a cluster, the owner may be gone (a failover).
      if (endpoint_.is_sentinel() || endpoint_.is_cluster()) forget_route();
    }
    if (ctx_) return true;
    connect();
    return false;
  }

  // In a forked child the parent's socket must not be used (replies would interleave). Close
  // the child's copy, but only if the descriptor still is that socket: the child may have
  // closed it and reused the number (as daemons do), and then it is not ours to close.
  void forget_inherited() noexcept {
    struct stat st {};
    const bool still_ours =
        fstat(ctx_->fd, &st) == 0 && st.st_dev == socket_id_.first && st.st_ino == socket_id_.second;
    if (!still_ours) ctx_->fd = -1;  // redisFree closes only a descriptor >= 0
    reset();
  }

  // A healthy idle Redis connection has nothing to read: readable data or a hang-up means the
  // server closed it (restart, CLIENT KILL, idle timeout). A local check, no round trip.
  bool looks_alive() const noexcept {
    pollfd p{ctx_->fd, POLLIN, 0};
    const int n = poll(&p, 1, 0);
    return n == 0;
  }

  void connect() {
    try {
      if (!target_ && endpoint_.is_sentinel()) target_ = ask_sentinels();
      if (!target_ && endpoint_.is_cluster()) return locate_in_cluster();
      open();
    } catch (...) {
      forget_route();
      throw;
    }
  }

  void open() {
    const Bound limit = bound(connect_timeout_);  // connecting and the handshake
    if (limit.allowed.count() <= 0)
      throw Error(errc::timeout, "connecting to " + where() + " was not tried: the time for this call had run out");
    const auto connect_timeout = limit.allowed;
    const timeval tv = to_timeval(connect_timeout);
    ContextPtr ctx(target_ ? redisConnectWithTimeout(target_->host.c_str(), target_->port, tv)
                           : redisConnectUnixWithTimeout(endpoint_.path.c_str(), tv));
    if (!ctx) throw std::bad_alloc();
    if (ctx->err) {
      const int saved_errno = errno;
      const bool timed_out = saved_errno == ETIMEDOUT || ctx->errstr == std::generic_category().message(ETIMEDOUT);
      if (ctx->err == REDIS_ERR_IO && timed_out)
        throw Error(errc::timeout,
                    "connecting to " + where() + " timed out after " + std::to_string(connect_timeout.count()) + " ms");
      throw Error(errc::connect_failed, "cannot connect to " + where() + ": " + ctx->errstr);
    }
    // The socket must not leak into programs the caller later runs with exec.
    const int flags = fcntl(ctx->fd, F_GETFD);
    if (flags >= 0) fcntl(ctx->fd, F_SETFD, flags | FD_CLOEXEC);
    struct stat st {};
    fstat(ctx->fd, &st);
    socket_id_ = {st.st_dev, st.st_ino};
    ctx_ = std::move(ctx);
    owner_generation_ = fork_generation();
    try {
      handshake(limit);
    } catch (const TransportFailure& failure) {
      reset();
      throw failure.error;
    } catch (...) {
      reset();
      throw;
    }
  }

  // AUTH, SELECT and, behind sentinels, ROLE (is it really the master?), pipelined: one round
  // trip, and none at all when none is needed.
  void handshake(const Bound& limit) {
    const std::string db = std::to_string(endpoint_.db);
    std::array<std::array<std::string_view, 3>, 3> commands{};
    std::array<std::size_t, 3> sizes{};
    std::size_t count = 0;
    if (endpoint_.has_password) {
      if (endpoint_.user.empty()) {
        commands[count] = {"AUTH", endpoint_.password};
        sizes[count++] = 2;
      } else {
        commands[count] = {"AUTH", endpoint_.user, endpoint_.password};
        sizes[count++] = 3;
      }
    }
    if (endpoint_.db != 0) {
      commands[count] = {"SELECT", db};
      sizes[count++] = 2;
    }
    if (endpoint_.is_sentinel()) {
      commands[count] = {"ROLE"};
      sizes[count++] = 1;
    }
    for (std::size_t i = 0; i < count; ++i) append(commands[i].data(), sizes[i]);
    for (std::size_t i = 0; i < count; ++i) {
      const ReplyPtr reply = read_reply(limit);
      const std::string_view name = commands[i][0];
      if (name == "ROLE") {
        check_error(*reply);
        const std::optional<std::string> role =
            reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 && reply->element[0]->type == REDIS_REPLY_STRING
                ? std::optional<std::string>(std::string(reply->element[0]->str, reply->element[0]->len))
                : std::nullopt;
        if (role != "master")
          throw Error(errc::connect_failed,
                      where() + " was named master by the sentinels but is " +
                          (role ? "a " + Endpoint::printable(*role) : std::string("not a master")) +
                          " (a failover in progress?)");
        continue;
      }
      if (reply->type != REDIS_REPLY_ERROR) continue;
      const std::string_view raw(reply->str, reply->len);
      if (name == "AUTH") {
        // Never quoted, not even scrubbed: a short password cannot be told from other text.
        const AuthRefusal refusal = auth_refusal(raw);
        const std::string code(refusal.code);
        throw Error(errc::auth_failed,
                    "authentication to " + where() + " failed: " + std::string(refusal.reason) +
                        (code.empty() ? std::string(" (the reply to AUTH is not quoted)") : " (" + code + ")"),
                    code);
      }
      const std::string text = scrub(std::string(raw));
      if (raw.rfind("NOAUTH", 0) == 0)
        throw Error(errc::auth_failed, "authentication to " + where() + " failed: " + text, text);
      throw Error(errc::server_error, "SELECT " + db + " on " + where() + " failed: " + text, text);
    }
  }

  // redis+cluster://: reads the slot map (CLUSTER SLOTS, one round trip) from the first node
  // that gives one and connects to the owner of the lock's slot, keeping the connection when
  // the node asked is that owner. Asked in turn, within the call's deadline: the node that
  // answered last, the nodes of the last map, the URL's seeds, and last the node whose failure
  // brought us here. A connection without a slot (a subscriber) keeps the first node it reaches.
  // Called only when no owner is known: on the first call and after a failure, never per call
  // (a MOVED names the new owner itself).
  void locate_in_cluster() {
    std::vector<Address> order;
    auto add = [&](const Address& a) {
      if (std::find(order.begin(), order.end(), a) == order.end()) order.push_back(a);
    };
    if (answered_) add(*answered_);
    for (const Address& a : cluster_nodes_) add(a);
    for (const Address& a : endpoint_.cluster_seeds) add(a);
    if (failed_node_) {
      const auto failed = std::find(order.begin(), order.end(), *failed_node_);
      if (failed != order.end()) std::rotate(failed, failed + 1, order.end());
    }
    std::string failures;
    // The first failure other than not reaching a node (a malformed map, refused credentials, an
    // error reply) gives the call's error its kind; else connect_failed, or timeout if time ran out.
    std::optional<errc> kind;
    for (std::size_t i = 0; i < order.size(); ++i) {
      if (Clock::now() >= call_deadline_) {
        failures += "; " + std::to_string(order.size() - i) + " more not asked: the time for this call had run out";
        if (!kind) kind = errc::timeout;
        break;
      }
      target_ = order[i];
      try {
        open();
        if (!slot_) {
          answered_ = order[i];
          break;
        }
        const std::string_view argv[] = {"CLUSTER", "SLOTS"};
        const ReplyPtr reply = command(argv, 2);
        check_error(*reply);
        SlotRoute route;
        try {
          route = read_slot_map(*reply, *slot_, order[i].host);
        } catch (const Error& e) {
          throw TransportFailure{Error(errc::protocol_error, where() + " " + e.what()), e.what()};
        }
        answered_ = order[i];
        failed_node_.reset();
        if (!route.nodes.empty()) cluster_nodes_ = std::move(route.nodes);
        // No owner in the map (the slot is unassigned, or its master unreachable): the node that
        // answered takes the call, and its reply (CLUSTERDOWN, MOVED) tells the rest.
        if (!route.owner || *route.owner == order[i]) return;
        reset();
        target_ = *route.owner;
        open();  // a failure here propagates: connect() forgets the route, the next call asks again
        return;
      } catch (const TransportFailure& failure) {
        reset();
        failures += "; " + std::string(failure.error.what());
        if (!kind && failure.error.code() == errc::protocol_error) kind = errc::protocol_error;
      } catch (const Error& e) {
        if (target_ != order[i]) throw;  // the owner named by the map could not be reached
        reset();
        failures += "; " + std::string(e.what());
        const auto code = static_cast<errc>(e.code().value());
        if (!kind && code != errc::connect_failed && code != errc::timeout && code != errc::connection_lost) kind = code;
      }
    }
    if (ctx_) return;  // a subscriber reached a node
    target_.reset();
    throw Error(kind.value_or(errc::connect_failed),
                "no node of " + endpoint_.display() + (slot_ ? " gave the slot map" : " could be reached") + failures);
  }

  // Behind sentinels the master's address is kept between calls and followed through the
  // sentinels' `+switch-master` announcements, read from a subscription on a sentinel: a
  // local check, no round trip, so that clients move to a new master as soon as the sentinels
  // name it. The sentinels are asked (one round trip) when no address is known, before each
  // new connection to the master, and whenever the subscription is down; a connection error
  // or READONLY forgets the address. A switch between an answer and the subscription is
  // caught by the ROLE check on connecting and by READONLY.
  void follow_sentinels() {
    if (switch_watch_ && switch_watch_->owner_generation_ != fork_generation()) switch_watch_.reset();  // the parent's
    if (target_ && ctx_ && switch_watch_) {
      if (const std::optional<Address> moved = announced_switch()) {
        reset();
        target_ = *moved;
        return;
      }
      if (switch_watch_) return;  // still subscribed: no news is good news
    }
    const Address named = ask_sentinels();
    watch_switches();
    if (target_ == named) return;
    reset();
    target_ = named;
  }

  // Subscribes to `+switch-master` on the sentinel that answered last, unless already done.
  // Without it (no rights, a failing sentinel) every call asks; a new try is made at most once
  // a second, so that a sentinel that refuses costs no round trip per call.
  void watch_switches() {
    if (switch_watch_) return;
    const auto now = Clock::now();
    if (now < next_watch_try_) return;
    next_watch_try_ = now + std::chrono::seconds(1);
    try {
      switch_watch_ = std::make_unique<Connection>(sentinel_endpoint(sentinel_index_), connect_timeout_, command_timeout_);
      switch_watch_->deadline_ = call_deadline_;
      switch_watch_->subscribe(switch_channel);
      switch_watch_->deadline_.reset();
      watch_heard_ = Clock::now();
      watch_ping_sent_.reset();
    } catch (const Error&) {
      switch_watch_.reset();
    }
  }

  // The master's new address if the sentinels announced a switch of ours since the last look
  // (the last one wins); closes the subscription if it failed.
  // A sentinel that stops answering without closing the connection (stopped, or cut off by the
  // network) would leave the subscription silent forever, and a failover unannounced: when
  // nothing came for `watch_heartbeat` a PING is sent (without waiting for it), and a sentinel
  // that has not answered it a command timeout later is taken as gone.
  std::optional<Address> announced_switch() {
    std::optional<Address> moved;
    try {
      Wake why = Wake::deadline;
      // Bounded, so that a sentinel that never stops talking cannot hold the call.
      for (int looked = 0; looked < 64 && Clock::now() < call_deadline_; ++looked) {
        const ReplyPtr message = switch_watch_->next_message(Clock::time_point::min(), -1, why);
        if (!message) break;
        watch_heard_ = Clock::now();  // a message or the PING's answer: it is alive
        watch_ping_sent_.reset();
        if (message->type != REDIS_REPLY_ARRAY || message->elements != 3 ||
            message->element[2]->type != REDIS_REPLY_STRING)
          continue;
        if (auto a = parse_switch_master({message->element[2]->str, message->element[2]->len}, endpoint_.master_name))
          moved = std::move(a);
      }
      const auto now = Clock::now();
      if (watch_ping_sent_ && now - *watch_ping_sent_ >= command_timeout_) {
        switch_watch_.reset();  // silent: the sentinels are asked again
      } else if (!watch_ping_sent_ && now - watch_heard_ >= watch_heartbeat) {
        const std::string_view ping[] = {"PING"};
        switch_watch_->append(ping, 1);
        switch_watch_->flush(bound(command_timeout_));  // a few bytes: a live socket takes them at once
        watch_ping_sent_ = now;
      }
    } catch (const TransportFailure&) {
      switch_watch_.reset();
    } catch (const std::exception&) {  // a failed subscription (or its reader out of memory) is dropped
      switch_watch_.reset();
    }
    return moved;
  }

  // The settings for talking to sentinel `i`.
  Endpoint sentinel_endpoint(std::size_t i) const {
    Endpoint ep;
    ep.host = endpoint_.sentinels[i].host;
    ep.port = endpoint_.sentinels[i].port;
    ep.user = endpoint_.sentinel_user;
    ep.password = endpoint_.sentinel_password;
    ep.has_password = endpoint_.sentinel_has_password;
    return ep;
  }

  // Asks the sentinels for the master's address: the one that answered last first, then the
  // others in turn; the first answer wins.
  Address ask_sentinels() {
    std::string failures;
    const std::size_t count = endpoint_.sentinels.size();
    for (std::size_t n = 0; n < count; ++n) {
      const std::size_t i = (sentinel_index_ + n) % count;
      if (!sentinel_ || n > 0) sentinel_ = std::make_unique<Connection>(sentinel_endpoint(i), connect_timeout_, command_timeout_);
      sentinel_->deadline_ = call_deadline_;  // asking is part of this call
      try {
        Connection& sentinel = *sentinel_;
        const ReplyPtr reply = sentinel.run(Retry::safe, [&] {
          const std::string_view argv[] = {"SENTINEL", "get-master-addr-by-name", endpoint_.master_name};
          ReplyPtr r = sentinel.command(argv, 3);
          sentinel.check_error(*r);
          return r;
        });
        if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 && reply->element[0]->type == REDIS_REPLY_STRING &&
            reply->element[1]->type == REDIS_REPLY_STRING) {
          const auto port = parse_uint(std::string_view(reply->element[1]->str, reply->element[1]->len), 1, 65535);
          if (port && reply->element[0]->len > 0) {
            sentinel_index_ = i;
            return Address{std::string(reply->element[0]->str, reply->element[0]->len), static_cast<int>(*port)};
          }
        }
        failures += "; " + endpoint_.sentinels[i].display() +
                    (reply->type == REDIS_REPLY_NIL ? ": knows no such master" : ": answered nonsense");
      } catch (const Error& e) {
        failures += "; " + std::string(e.what());
      }
    }
    sentinel_.reset();
    throw Error(errc::connect_failed, "no sentinel of " + endpoint_.display() + " named the master " +
                                          Endpoint::printable(endpoint_.master_name) + failures);
  }

  ReplyPtr command(const std::string_view* argv, std::size_t argc) {
    append(argv, argc);
    return read_reply(bound(command_timeout_));
  }

  static constexpr std::size_t max_args = 12;  // the longest command here is EVAL with 11 arguments
  static constexpr int max_hops = 16;          // cluster redirections / retries followed per call

  // Queues a command, in the Redis protocol, to be sent by the next read_reply(). (Not
  // hiredis's own buffer: see flush().)
  void append(const std::string_view* argv, std::size_t argc) { encode(out_, argv, argc); }
  static void encode(std::string& out, const std::string_view* argv, std::size_t argc) {
    out += '*';
    out += std::to_string(argc);
    out += "\r\n";
    for (std::size_t i = 0; i < argc; ++i) {
      out += '$';
      out += std::to_string(argv[i].size());
      out += "\r\n";
      out += argv[i];
      out += "\r\n";
    }
  }

  // Replies owed by earlier calls that stopped waiting for this master (see FanOut) come before
  // any new one: `owed_` counts them. A connection that owes replies and has sent nothing for a
  // command timeout, or owes too many, is given up, as after a timeout.
  static constexpr std::size_t max_owed = 4096;
  void owe(std::size_t replies) noexcept {
    if (owed_ == 0) owed_progress_ = Clock::now();
    owed_ += replies;
  }
  // Reads and drops, without waiting, the owed replies that have arrived.
  void take_owed() {
    if (!ctx_ || owed_ == 0) return;
    try {
      for (;;) {
        void* raw = nullptr;
        if (redisGetReplyFromReader(ctx_.get(), &raw) != REDIS_OK) reader_failure();
        if (raw) {
          const ReplyPtr dropped(static_cast<redisReply*>(raw));
          owed_progress_ = Clock::now();
          if (--owed_ == 0) return;
          continue;
        }
        if (receive(Clock::time_point::min(), -1) != Arrival::data) break;
      }
    } catch (const TransportFailure&) {
      reset();
      forget_route();
      return;
    }
    if (owed_ > max_owed || Clock::now() - owed_progress_ >= command_timeout_) {
      reset();
      forget_route();
    }
  }
  // For a call that waits for its own reply: a give-back not yet sent goes first, and the owed
  // replies are read (within this call's time) and dropped.
  void catch_up() {
    if (!ctx_) return;
    if (!deferred_.empty()) {
      out_.insert(0, deferred_);
      deferred_.clear();
      owe(1);
    }
    if (owed_ == 0) return;
    const Bound limit = bound(command_timeout_);
    for (; owed_ > 0; --owed_) (void)read_reply(limit);
  }

  // Sends what append() queued with send(MSG_NOSIGNAL): a server that closed the connection
  // fails the call and never raises SIGPIPE, which would kill the process by default. (hiredis
  // writes with write(), so requests never go through it; it only parses the replies.)
  void flush(const Bound& limit) {
    std::size_t sent = 0;
    while (sent < out_.size()) {
      const ssize_t n = ::send(ctx_->fd, out_.data() + sent, out_.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n >= 0) {
        sent += static_cast<std::size_t>(n);
        continue;
      }
      const int saved_errno = errno;
      if (saved_errno == EINTR) continue;
      if ((saved_errno == EAGAIN || saved_errno == EWOULDBLOCK) && ready(POLLOUT, limit.at, -1) == Arrival::data)
        continue;
      out_.clear();
      if (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK)
        throw TransportFailure{Error(errc::timeout, where() + " did not take the request within " +
                                                        std::to_string(limit.allowed.count()) + " ms"),
                               "it did not take the request in time"};
      throw lost(std::generic_category().message(saved_errno));
    }
    out_.clear();
  }

  // Sends what is queued, then waits for the next reply until `limit`, however its bytes
  // arrive: the time is checked between reads, never per read.
  ReplyPtr read_reply(const Bound& limit) {
    if (!out_.empty()) flush(limit);
    for (;;) {
      void* raw = nullptr;
      if (redisGetReplyFromReader(ctx_.get(), &raw) != REDIS_OK) reader_failure();
      if (raw) return ReplyPtr(static_cast<redisReply*>(raw));
      if (receive(limit.at, -1) == Arrival::deadline)
        throw TransportFailure{
            Error(errc::timeout, where() + " did not reply within " + std::to_string(limit.allowed.count()) + " ms"),
            "no reply in time"};
    }
  }

  enum class Arrival { data, deadline, interrupted };

  // Waits until the socket is ready for `events`, `deadline` passes, or `interrupt_fd` (if
  // not -1) becomes readable. A deadline already past still looks once, without waiting.
  Arrival ready(short events, Clock::time_point deadline, int interrupt_fd) const {
    for (;;) {
      const auto now = Clock::now();
      const long long left =
          now >= deadline ? 0 : std::min<long long>(std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count(), 60000);
      pollfd fds[2] = {{ctx_->fd, events, 0}, {interrupt_fd, POLLIN, 0}};
      const int n = poll(fds, interrupt_fd >= 0 ? 2 : 1, static_cast<int>(left));
      if (n < 0 && errno != EINTR) throw lost(std::generic_category().message(errno));
      if (n == 0 && left == 0) return Arrival::deadline;
      if (n <= 0) continue;
      if (interrupt_fd >= 0 && fds[1].revents) return Arrival::interrupted;
      return Arrival::data;  // readable, writable, or a hang-up or error that the next read or write reports
    }
  }

  // Reads what the server has sent (waiting for it until `deadline`), checks it against the
  // reply limits, and hands it to hiredis's reader. Returns data once bytes were taken.
  Arrival receive(Clock::time_point deadline, int interrupt_fd) {
    for (;;) {
      const Arrival arrival = ready(POLLIN, deadline, interrupt_fd);
      if (arrival != Arrival::data) return arrival;
      char buf[16384];
      const ssize_t n = ::recv(ctx_->fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0) throw lost("Server closed the connection");
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
        throw lost(std::generic_category().message(errno));
      }
      const std::string fault = bounds_.check(std::string_view(buf, static_cast<std::size_t>(n)));
      if (!fault.empty()) throw TransportFailure{Error(errc::protocol_error, where() + " " + fault), fault};
      if (redisReaderFeed(ctx_->reader, buf, static_cast<std::size_t>(n)) != REDIS_OK) reader_failure();
      return Arrival::data;
    }
  }

  TransportFailure lost(const std::string& cause) const {
    return {Error(errc::connection_lost, "connection to " + where() + " lost: " + cause), cause};
  }

  // The reader refused the bytes: not the Redis protocol, or out of memory.
  [[noreturn]] void reader_failure() const {
    const redisReader& reader = *ctx_->reader;
    if (reader.err == REDIS_ERR_OOM || ctx_->err == REDIS_ERR_OOM) throw std::bad_alloc();
    const std::string cause = "does not speak the Redis protocol (" + std::string(reader.err ? reader.errstr : ctx_->errstr) + ")";
    throw TransportFailure{Error(errc::protocol_error, where() + " " + cause), cause};
  }

  // The server's text with any password of ours hidden (see detail::scrub).
  std::string scrub(std::string text) const {
    return detail::scrub(detail::scrub(std::move(text), endpoint_.password), endpoint_.sentinel_password);
  }

  // Turns an error reply into an Error of the right kind, keeping the server's text (scrubbed).
  void check_error(const redisReply& reply) const {
    if (reply.type != REDIS_REPLY_ERROR) return;
    const std::string_view raw(reply.str, reply.len);  // the kind is read before scrubbing
    const std::string text = scrub(std::string(raw));
    const std::string at = where();
    if (raw.rfind("NOAUTH", 0) == 0 || raw.rfind("WRONGPASS", 0) == 0)
      throw Error(errc::auth_failed, at + " requires authentication: " + text, text);
    if (raw.rfind("NOPERM", 0) == 0)
      throw Error(errc::permission_denied, at + " refused the command for this user: " + text, text);
    throw Error(errc::server_error, at + " replied with an error: " + text, text);
  }

  // A reply of a type no Redis sends for these commands: the connection cannot be trusted.
  [[noreturn]] void unexpected_reply() const {
    throw TransportFailure{
        Error(errc::protocol_error, where() + " sent a reply of an unexpected type; is it a Redis server?"),
        "a reply of an unexpected type"};
  }

  Endpoint endpoint_;
  std::chrono::milliseconds connect_timeout_;
  std::chrono::milliseconds command_timeout_;
  std::optional<Address> target_;         // the server to connect to; nullopt: the unix socket, or ask the sentinels
  std::unique_ptr<Connection> sentinel_;       // behind sentinels: the one that answered last
  std::size_t sentinel_index_ = 0;             // its place in endpoint_.sentinels
  std::unique_ptr<Connection> switch_watch_;   // subscribed to its +switch-master (see follow_sentinels())
  std::optional<int> slot_;                    // redis+cluster://: see route_by()
  std::vector<Address> cluster_nodes_;         // the nodes the last slot map named (see locate_in_cluster())
  std::optional<Address> answered_;            // the node that gave the last slot map
  std::optional<Address> failed_node_;         // the node whose failure made us forget the route
  Clock::time_point next_watch_try_{};         // after a failed subscription
  Clock::time_point watch_heard_{};            // when the subscription last showed the sentinel alive
  std::optional<Clock::time_point> watch_ping_sent_;  // a PING not yet answered there
  static constexpr std::chrono::seconds watch_heartbeat{1};
  ContextPtr ctx_;
  std::string out_;                                                // requests not yet sent (see append())
  std::size_t owed_ = 0;                                           // replies owed before the next (see owe())
  Clock::time_point owed_progress_{};                              // when an owed reply last came (or the first became owed)
  std::string deferred_;                                           // a give-back to send first on the next connection (see post())
  ReplyBounds bounds_;                                             // the limits on what the server sends to ctx_
  Clock::time_point call_deadline_ = no_deadline;                  // see begin_call()
  std::string wait_error_;                                         // see wait_error()
  std::optional<std::chrono::steady_clock::time_point> deadline_;  // see set_deadline()
  unsigned long owner_generation_ = 0;                             // fork_generation() when ctx_ was opened
  std::pair<dev_t, ino_t> socket_id_{0, 0};                        // identifies ctx_'s socket across a fork
};

/// What a quorum round sends to each of its masters (the same to all): a script, by EVALSHA
/// (EVAL after NOSCRIPT), or a plain command. Refers to the caller's strings: build it, use it
/// and drop it in one scope.
struct Ask {
  Ask(const Script& s, std::initializer_list<std::string_view> keys, std::initializer_list<std::string_view> args,
      int type, Retry how, bool check_replicas)
      : key_count(std::to_string(keys.size())), script(&s), expected_type(type), wait(check_replicas), retry(how) {
    if (3 + keys.size() + args.size() > argv.size()) throw std::length_error("process_lock: too many script arguments");
    argv[0] = "EVALSHA";
    argv[1] = s.sha;
    argv[2] = key_count;
    std::copy(args.begin(), args.end(), std::copy(keys.begin(), keys.end(), argv.begin() + 3));
    argc = 3 + keys.size() + args.size();
  }
  // GET key: NIL (absent) or a string.
  Ask(std::string_view command, std::string_view key) : expected_type(REDIS_REPLY_STRING), nil_ok(true) {
    argv[0] = command;
    argv[1] = key;
    argc = 2;
  }
  Ask(const Ask&) = delete;
  Ask& operator=(const Ask&) = delete;

  std::string key_count;
  std::array<std::string_view, 12> argv{};
  std::size_t argc = 0;
  const Script* script = nullptr;
  int expected_type;
  bool nil_ok = false;
  bool wait = false;  // followed by WAIT where the URL asks for replication checks
  Retry retry = Retry::safe;
};

/// A quorum round in parallel: the request goes to every master at once, the replies are read as
/// they arrive (one poll() over all the sockets), each master within its own time (the node
/// timeout from its start, the call's cap, and its own timeouts), and the round ends as soon as
/// the caller's `settled` says the outcome is certain. The policy of a call on one master is the
/// same as Connection::run()'s: one fresh retry of a reused connection that turned out dead (for
/// calls that may repeat), EVAL after NOSCRIPT; a reply that reroutes the call (Cluster MOVED,
/// ASK, TRYAGAIN; READONLY behind sentinels) finishes that master's call the ordinary way.
/// Connecting, where needed, is done before the round, one master after another.
///
/// A master still outstanding when the round ends keeps its connection with its replies marked
/// owed: the next call on it reads and drops them first, without waiting for them, so that
/// commands on one connection stay in order (a give-back sent after a late grant is run after it).
class FanOut {
 public:
  using Clock = std::chrono::steady_clock;

  /// answer(i, reply, acks) takes master i's reply (it may throw Error: that master failed);
  /// failed(i, error) a failure; settled(outstanding) says whether to stop waiting; for each
  /// master still outstanding then, gone(i).
  template <class Answer, class Failed, class Settled, class Gone>
  static void run(std::vector<std::unique_ptr<Connection>>& nodes, const std::vector<std::size_t>& which,
                  const Ask& ask, std::chrono::milliseconds per_master, Clock::time_point cap, Answer&& answer,
                  Failed&& failed, Settled&& settled, Gone&& gone) {
    static_assert(std::tuple_size<decltype(Ask::argv)>::value == Connection::max_args);
    std::vector<Call> calls;
    calls.reserve(which.size());
    for (const std::size_t i : which) calls.push_back(Call{i, nodes[i].get(), ask.argv});
    struct Unbound {  // each master's deadline is this round's only
      std::vector<Call>& calls;
      ~Unbound() {
        for (Call& c : calls) {
          c.node->set_deadline(std::nullopt);
          if (c.pending) c.node->reset();  // left by an exception (out of memory): out of step
        }
      }
    } const unbound{calls};
    auto finish = [&](Call& c, const ReplyPtr& reply, long long acks) {
      Connection& n = *c.node;
      c.pending = false;
      try {
        n.check_error(*reply);
        if (reply->type != ask.expected_type && !(ask.nil_ok && reply->type == REDIS_REPLY_NIL)) n.unexpected_reply();
        answer(c.index, *reply, acks);
      } catch (const Connection::TransportFailure& f) {
        n.reset();
        n.forget_route();
        failed(c.index, f.error);
      } catch (const Error& e) {
        failed(c.index, e);
      }
    };
    auto fail = [&](Call& c, const Connection::TransportFailure& f) {
      Connection& n = *c.node;
      n.reset();
      n.forget_route();
      // Not once a reply of this call has come (the script then ran; a resend would put the
      // next replies out of step, e.g. the script's taken for WAIT's count).
      if (c.reused && !c.retried && c.replies.empty() && ask.retry == Retry::safe &&
          f.error.code() == errc::connection_lost) {
        c.retried = true;  // as Connection::run(): an idle connection may have died unnoticed
        c.reused = false;
        try {
          n.ensure_connected();
          if (ask.script) {  // as on any new connection (see below)
            c.argv[0] = "EVAL";
            c.argv[1] = ask.script->text;
          }
          send(c, ask);
          return;
        } catch (const Connection::TransportFailure& again) {
          n.reset();
          n.forget_route();
          c.pending = false;
          return failed(c.index, again.error);
        } catch (const Error& e) {
          c.pending = false;
          return failed(c.index, e);
        }
      }
      c.pending = false;
      failed(c.index, f.error);
    };
    // The reply is in: a NOSCRIPT is answered with EVAL at once; a rerouting reply is followed
    // the ordinary way (a round trip or more, this master alone); anything else is the answer.
    // Like each step of the round, it handles its own failures.
    auto complete = [&](Call& c) {
      Connection& n = *c.node;
      try {
        long long acks = 0;
        if (c.replies.size() == 2) {
          const ReplyPtr& waited = c.replies[1];
          n.wait_error_.clear();
          if (waited->type == REDIS_REPLY_ERROR)
            n.wait_error_ = n.scrub(std::string(waited->str, waited->len));
          else if (waited->type != REDIS_REPLY_INTEGER)
            n.unexpected_reply();
          acks = waited->type == REDIS_REPLY_INTEGER ? waited->integer : -1;
        }
        const ReplyPtr reply = std::move(c.replies[0]);
        c.replies.clear();
        if (reply->type == REDIS_REPLY_ERROR) {
          const std::string_view text(reply->str, reply->len);
          if (ask.script && c.argv[0] == "EVALSHA" && text.substr(0, 8) == "NOSCRIPT") {
            c.argv[0] = "EVAL";
            c.argv[1] = ask.script->text;
            return send(c, ask);
          }
          if (n.rerouted(text)) {
            c.pending = false;
            try {
              long long routed_acks = 0;
              long long* want = c.expected == 2 ? &routed_acks : nullptr;
              const ReplyPtr routed = n.run(ask.retry, [&] { return n.routed(c.argv.data(), ask.argc, ask.script, want); });
              return finish(c, routed, routed_acks);
            } catch (const Error& e) {
              return failed(c.index, e);
            }
          }
        }
        finish(c, reply, acks);
      } catch (const Connection::TransportFailure& f) {
        fail(c, f);  // a WAIT reply of the wrong type, or the EVAL not sent
      }
    };
    // Takes what master c has sent, without waiting.
    auto progress = [&](Call& c) {
      Connection& n = *c.node;
      try {
        (void)n.receive(Clock::time_point::min(), -1);
        while (c.pending) {
          void* raw = nullptr;
          if (redisGetReplyFromReader(n.ctx_.get(), &raw) != REDIS_OK) n.reader_failure();
          if (!raw) return;
          ReplyPtr reply(static_cast<redisReply*>(raw));
          if (n.owed_ > 0) {  // an earlier call's
            --n.owed_;
            n.owed_progress_ = Clock::now();
            continue;
          }
          c.replies.push_back(std::move(reply));
          if (c.replies.size() == c.expected) complete(c);
        }
      } catch (const Connection::TransportFailure& f) {
        fail(c, f);
      }
    };

    for (Call& c : calls) {
      Connection& n = *c.node;
      // From its own start: a master that had to connect first (and took long) costs the others
      // no part of their time.
      const auto now = Clock::now();
      n.set_deadline(cap - now < per_master ? cap : now + per_master);
      n.begin_call();
      try {
        if (n.endpoint_.is_sentinel()) n.follow_sentinels();
        n.take_owed();
        c.reused = n.ensure_connected(ask.retry == Retry::unsafe && n.owed_ == 0);
        // A new connection may be to a server that never saw the script (fresh, restarted): the
        // text goes at once, since a NOSCRIPT from a master the round stops waiting for would
        // leave the lock untaken there (a 5-master lock on only 3 of them).
        if (!c.reused && ask.script) {
          c.argv[0] = "EVAL";
          c.argv[1] = ask.script->text;
        }
        if (!n.deferred_.empty()) {
          n.out_ += n.deferred_;
          n.deferred_.clear();
          n.owe(1);
        }
        c.expected = ask.wait && n.endpoint_.wait_replicas > 0 ? 2 : 1;
        c.pending = true;
        send(c, ask);
      } catch (const Connection::TransportFailure& f) {
        fail(c, f);
      } catch (const Error& e) {
        c.pending = false;
        failed(c.index, e);
      } catch (...) {
        n.reset();
        throw;
      }
    }
    std::vector<pollfd> fds;
    std::vector<Call*> polled;
    for (;;) {
      polled.clear();
      for (Call& c : calls)
        if (c.pending) polled.push_back(&c);
      if (polled.empty() || settled(polled.size())) break;
      fds.clear();
      auto earliest = Clock::time_point::max();
      for (Call* c : polled) {
        fds.push_back({c->node->ctx_->fd, POLLIN, 0});
        earliest = std::min(earliest, c->limit.at);
      }
      const auto now = Clock::now();
      const long long left =
          now >= earliest ? 0 : std::min<long long>(std::chrono::ceil<std::chrono::milliseconds>(earliest - now).count(), 60000);
      const int ready = poll(fds.data(), fds.size(), static_cast<int>(left));
      if (ready < 0 && errno != EINTR) {
        const std::string cause = std::generic_category().message(errno);
        for (Call* c : polled) fail(*c, c->node->lost(cause));
        continue;
      }
      for (std::size_t k = 0; k < polled.size(); ++k)
        if (ready > 0 && fds[k].revents) progress(*polled[k]);
      const auto after = Clock::now();
      for (Call* c : polled) {
        if (!c->pending || after < c->limit.at) continue;
        // As Connection::read_reply(): its time is up, so the connection is dropped.
        fail(*c, Connection::TransportFailure{Error(errc::timeout, c->node->where() + " did not reply within " +
                                                                    std::to_string(c->limit.allowed.count()) + " ms"),
                                              "no reply in time"});
      }
    }
    for (Call& c : calls) {
      if (!c.pending) continue;
      c.node->owe(c.expected - c.replies.size());
      c.pending = false;
      gone(c.index);
    }
  }

 private:
  struct Call {
    std::size_t index;
    Connection* node;
    std::array<std::string_view, 12> argv;  // EVALSHA may become EVAL
    std::vector<ReplyPtr> replies{};
    std::size_t expected = 1;  // the command's reply, and WAIT's
    bool reused = false, retried = false, pending = false;
    Connection::Bound limit{};
  };

  // Queues the command (and WAIT) and sends it, as Connection::send() does, without waiting.
  static void send(Call& c, const Ask& ask) {
    Connection& n = *c.node;
    c.limit = n.bound(n.command_timeout_);
    n.append(c.argv.data(), ask.argc);
    if (c.expected == 2) {
      const std::string replicas = std::to_string(n.endpoint_.wait_replicas);
      const auto wait_for = std::min(n.endpoint_.wait_timeout.value_or(std::chrono::milliseconds(0)),
                                     std::max(c.limit.allowed / 2, std::chrono::milliseconds(1)));
      const std::string wait_ms = std::to_string(wait_for.count());
      const std::string_view wait_argv[] = {"WAIT", replicas, wait_ms};
      n.append(wait_argv, 3);
    }
    n.flush(c.limit);
  }
};

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

}  // namespace detail

// ============================================================================================
// Definitions
// ============================================================================================

inline const std::error_category& category() noexcept {
  class Category final : public std::error_category {
   public:
    const char* name() const noexcept override { return "process_lock"; }
    std::string message(int value) const override {
      switch (static_cast<errc>(value)) {
        case errc::invalid_argument:
          return "invalid argument";
        case errc::invalid_url:
          return "invalid Redis URL";
        case errc::unsupported:
          return "not supported by this build";
        case errc::connect_failed:
          return "cannot connect to Redis";
        case errc::timeout:
          return "timed out";
        case errc::connection_lost:
          return "connection to Redis lost";
        case errc::auth_failed:
          return "authentication failed";
        case errc::permission_denied:
          return "permission denied";
        case errc::server_error:
          return "Redis replied with an error";
        case errc::protocol_error:
          return "protocol error";
        case errc::cancelled:
          return "cancelled";
        case errc::no_quorum:
          return "no quorum of Redis masters";
        case errc::not_replicated:
          return "not acknowledged by enough replicas";
      }
      return "unknown process_lock error";
    }
  };
  static const Category instance;
  return instance;
}

inline std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), category()}; }

inline Error::Error() : std::system_error(std::error_code{}) {}

inline Error::Error(errc kind, std::string message, std::string server_reply)
    : std::system_error(make_error_code(kind)),
      message_(std::make_shared<const std::string>(std::move(message))),
      server_reply_(std::make_shared<const std::string>(std::move(server_reply))) {}

inline const char* Error::what() const noexcept { return message_ ? message_->c_str() : "success"; }

inline const std::string& Error::server_reply() const noexcept {
  static const std::string none;
  return server_reply_ ? *server_reply_ : none;
}

template <class Seconds>
std::chrono::milliseconds ProcessLock::seconds_to_timeout(Seconds s) {
  // Fractional seconds are rounded to whole milliseconds; whole seconds are exact.
  return checked_timeout(static_cast<long double>(s) * 1000.0L, false);
}

template <class Rep, class Period>
std::chrono::milliseconds ProcessLock::duration_to_timeout(std::chrono::duration<Rep, Period> d) {
  const auto ms = std::chrono::duration<long double, std::milli>(d).count();
  return checked_timeout(ms, true);
}

inline std::chrono::milliseconds ProcessLock::checked_timeout(long double ms, bool must_be_whole) {
  if (!std::isfinite(ms) || ms <= 0.0L) throw Error(errc::invalid_argument, "timeout must be positive (at least 1 ms)");
  if (ms > static_cast<long double>(max_timeout.count()))
    throw Error(errc::invalid_argument, "timeout is absurdly large (the maximum is " +
                                            std::to_string(max_timeout.count() / 1000) + " s, one year)");
  const long double rounded = std::round(ms);
  if (must_be_whole && rounded != ms)
    throw Error(errc::invalid_argument, "timeout must be a whole number of milliseconds");
  if (rounded < 1.0L) throw Error(errc::invalid_argument, "timeout must be at least 1 ms");
  return std::chrono::milliseconds(static_cast<long long>(rounded));
}

namespace detail {
/// Makes every function-local static the library uses, so that none is first made while a
/// lock's threads exist. A process forked while another thread is inside a static's first
/// initialisation inherits the guard taken and not its owner: the first use in the child would
/// wait for it forever.
inline void make_statics() {
  (void)fork_generation();  // its fork handler in place before any socket exists
  (void)lock_script();
  (void)update_script();
  (void)clear_script();
  (void)inspect_script();
  (void)raise_fence_script();
  (void)crc16({});
  (void)category();
  (void)Error().server_reply();
}
}  // namespace detail

inline ProcessLock::ProcessLock(std::string name, std::chrono::milliseconds timeout, Options options, int)
    : name_(std::move(name)), timeout_(timeout), timeout_arg_(std::to_string(timeout.count())), creator_pid_(getpid()) {
  if (name_.empty()) throw Error(errc::invalid_argument, "the lock name must not be empty");
  keys_ = std::make_unique<const detail::LockKeys>(options.key_prefix + name_);
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  host_ = host;
  std::string_view url = options.url;
  std::string_view source = "Options::url";
  if (url.empty()) {
    const char* env = std::getenv("REDIS_URL");
    source = "REDIS_URL";
    url = env && *env ? std::string_view(env) : std::string_view("redis://127.0.0.1:6379");
  }
  std::vector<detail::Endpoint> endpoints = detail::parse_urls(url, source);
  detail::make_statics();  // before any thread of this lock exists
  if (options.wait_replicas && (*options.wait_replicas < 0 || *options.wait_replicas > 1000))
    throw Error(errc::invalid_argument, "Options::wait_replicas must be from 0 to 1000");
  // Checked even where unused (no replication check, one master), so that a nonsense value
  // never waits to fail until the URL changes.
  if (options.wait_timeout) (void)detail::checked_io_timeout(options.wait_timeout, std::nullopt, "wait_timeout");
  if (options.node_timeout) (void)detail::checked_io_timeout(options.node_timeout, std::nullopt, "node_timeout");
  token_ = detail::random_uuid_v4();
  for (detail::Endpoint& endpoint : endpoints) {
    const auto connect_timeout =
        detail::checked_io_timeout(options.connect_timeout, endpoint.connect_timeout, "connect_timeout");
    const auto command_timeout =
        detail::checked_io_timeout(options.command_timeout, endpoint.command_timeout, "command_timeout");
    if (options.wait_replicas) endpoint.wait_replicas = *options.wait_replicas;
    if (options.wait_timeout) endpoint.wait_timeout = options.wait_timeout;
    if (!endpoint.wait_timeout) endpoint.wait_timeout = command_timeout / 2;
    if (endpoint.wait_replicas > 0 &&
        (*endpoint.wait_timeout < std::chrono::milliseconds(1) || *endpoint.wait_timeout >= command_timeout))
      throw Error(errc::invalid_argument, "wait_timeout must be at least 1 ms and below the command timeout (" +
                                              std::to_string(command_timeout.count()) + " ms)");
    nodes_.push_back(std::make_unique<detail::Connection>(std::move(endpoint), connect_timeout, command_timeout));
  }
  if (nodes_.size() == 1) return;
  // Several masters: Options, else the smallest any URL gives, else a share of the timeout
  // small enough that a round over dead masters leaves half the validity.
  auto shortest_command = nodes_.front()->command_timeout();
  std::optional<std::chrono::milliseconds> chosen = options.node_timeout;
  for (const auto& node : nodes_) {
    shortest_command = std::min(shortest_command, node->command_timeout());
    if (!options.node_timeout && node->endpoint().node_timeout)
      chosen = std::min(chosen.value_or(*node->endpoint().node_timeout), *node->endpoint().node_timeout);
  }
  if (chosen && (*chosen < std::chrono::milliseconds(1) || *chosen > shortest_command))
    throw Error(errc::invalid_argument, "node_timeout must be from 1 ms to the command timeout (" +
                                            std::to_string(shortest_command.count()) + " ms)");
  node_timeout_ =
      chosen ? *chosen
             : std::clamp(std::chrono::milliseconds(timeout_.count() / (2 * static_cast<long long>(nodes_.size()))),
                          std::chrono::milliseconds(1), shortest_command);
}

/// What the threads of one process share in a ProcessLock. A forked child makes its own on its
/// first use there and never touches its parent's: at the fork a thread of the parent, which
/// does not exist in the child, may have held any of these mutexes (the child's copy stays
/// locked for ever), been in the middle of a call on a connection, or been the keeper that
/// `keeper->thread` names (joining it in the child would wait for whatever new thread reuses its
/// descriptor). So fork() waits for nothing, and the child never waits for the parent's threads.
/// The parent's part is left in the child as it was, never destroyed (its mutexes may be locked
/// and its std::thread joinable): a deliberate leak of one per object and fork.
struct ProcessLock::PerProcess {
  explicit PerProcess(unsigned long generation) noexcept : generation(generation) {}

  // In a child, on the parent's part: closes the child's copies of the parent's sockets (see
  // Connection::forget_inherited()), unless a thread of the parent was using the connections at
  // the fork; they may then be half-changed, and are left as they are, descriptors included.
  void close_inherited_connections() noexcept {
    if (!mutex.try_lock()) return;
    nodes.clear();
    mutex.unlock();
  }

  const unsigned long generation;                 // detail::fork_generation() of the process it belongs to
  std::mutex mutex;                               // guards nodes: a hiredis context is single-threaded
  Nodes nodes;                                    // this process's connections: clones of ProcessLock::nodes_
  std::mutex state_mutex;                         // orders updates of owner_, fence_, valid_until_, hold_epoch_
  std::mutex keeper_mutex;                        // guards keeper
  std::shared_ptr<detail::KeeperControl> keeper;  // a keeper this process started
  std::mutex waiters_mutex;                       // guards waiters
  std::vector<detail::WaitSlot*> waiters;         // the waits in progress, for cancel()
};

inline ProcessLock::PerProcess& ProcessLock::per_process() const {
  const unsigned long generation = detail::fork_generation();
  PerProcess* current = per_process_.load(std::memory_order_acquire);
  if (current && current->generation == generation) return *current;
  auto made = std::make_unique<PerProcess>(generation);
  for (const auto& node : nodes_) made->nodes.push_back(node->clone());
  if (current) current->close_inherited_connections();  // the parent's: left as it is otherwise
  if (!per_process_.compare_exchange_strong(current, made.get(), std::memory_order_acq_rel, std::memory_order_acquire))
    return *current;  // another thread of this process made it first
  return *made.release();
}

inline ProcessLock::PerProcess* ProcessLock::per_process_if_made() const noexcept {
  PerProcess* const current = per_process_.load(std::memory_order_acquire);
  return current && current->generation == detail::fork_generation() ? current : nullptr;
}

inline ProcessLock::~ProcessLock() {
  stop_keeping();
  if (PerProcess* const here = per_process_if_made()) {
    // Destroyed from the keeper's own callback: it cannot be waited for; it touches nothing of
    // this object once the callback returns.
    const std::lock_guard<std::mutex> guard(here->keeper_mutex);
    if (here->keeper && here->keeper->thread.joinable()) here->keeper->thread.detach();
    here->keeper.reset();
  }
  if (owner_ && creator_pid_ == getpid()) {
    try {
      (void)clear();
    } catch (...) {
      // Releasing is a courtesy; if it fails the lock still expires after its timeout.
    }
  }
  PerProcess* const here = per_process_if_made();
  PerProcess* const parents = here ? nullptr : per_process_.load();
  if (parents) parents->close_inherited_connections();  // a child that made no call: the rest is left (see PerProcess)
  delete here;
}

inline std::string ProcessLock::redacted_url() const {
  std::string url;
  for (const auto& node : nodes_) {
    if (!url.empty()) url += ',';  // not `(cond ? "," : "") + display()`: GCC 12's false -Wrestrict at -O3
    url += node->endpoint().display();
  }
  return url;
}

namespace detail {
/// The quorum's decisions read only the masters' answers (detail::Votes), so each rule is a
/// pure function with table tests (tests/quorum_tally_test.cpp).
namespace tally {

inline std::size_t majority(std::size_t masters) noexcept { return masters / 2 + 1; }

/// How the masters answered a yes-or-no question (granted / renewed).
struct Count {
  std::size_t yes = 0, no = 0, failed = 0;
};
template <class T, class Yes>
Count count(const Votes<T>& votes, Yes&& is_yes) {
  Count c;
  for (const auto& vote : votes) ++(!vote.first ? c.failed : is_yes(*vote.first) ? c.yes : c.no);
  return c;
}

/// agreed: a majority said yes in time. refused: the answer is no whatever the failed masters
/// would have said (every master answered, or so many said no that no majority was possible).
/// no_quorum: too many failed to tell.
enum class Outcome { agreed, refused, no_quorum };
inline Outcome decide(std::size_t masters, Count c, bool in_time) noexcept {
  if (c.yes >= majority(masters) && in_time) return Outcome::agreed;
  if (c.failed == 0 || c.no > masters - majority(masters)) return Outcome::refused;
  return Outcome::no_quorum;
}

/// Whether an acquire's round can stop waiting for the `outstanding` masters (counted in
/// `c.failed`, having no answer yet): decide() gives agreed, or refused, however they still
/// answer (yes, no, or not at all). A round bound for no_quorum waits for every master (within
/// its time), so that the error can name each one's fate.
inline bool acquire_decided(std::size_t masters, Count c, std::size_t outstanding) noexcept {
  if (outstanding == 0) return true;
  if (outstanding > c.failed) return false;  // not a count a round can give
  const std::size_t failed = c.failed - outstanding;
  const Outcome now = decide(masters, c, true);
  if (now == Outcome::no_quorum) return false;
  for (std::size_t yes = 0; yes <= outstanding; ++yes)
    for (std::size_t no = 0; yes + no <= outstanding; ++no)
      if (decide(masters, {c.yes + yes, c.no + no, failed + outstanding - yes - no}, true) != now) return false;
  return true;
}

/// The fencing token a granted majority hands out: the highest counter among the masters that
/// granted. Every master of the majority must count at least that far, so that any later
/// majority, which shares a master with this one, hands out a higher one.
inline std::uint64_t fence_to_hand_out(const Votes<LockReply>& votes) noexcept {
  std::uint64_t fence = 0;
  for (const auto& vote : votes)
    if (vote.first && vote.first->acquired) fence = std::max(fence, vote.first->fence);
  return fence;
}

/// The masters that granted but count below `fence`: they are raised to it.
inline std::vector<std::size_t> masters_to_raise(const Votes<LockReply>& votes, std::uint64_t fence) {
  std::vector<std::size_t> raise;
  for (std::size_t i = 0; i < votes.size(); ++i)
    if (votes[i].first && votes[i].first->acquired && votes[i].first->fence < fence) raise.push_back(i);
  return raise;
}

/// After an acquire that did not succeed: what may be ours is given back at once, not at
/// expiry: the masters that granted, and those whose answer was lost (the release checks the
/// token, so it is harmless where the lock is not ours).
inline std::vector<std::size_t> masters_to_release(const Votes<LockReply>& votes) {
  std::vector<std::size_t> release;
  for (std::size_t i = 0; i < votes.size(); ++i)
    if (!votes[i].first || votes[i].first->acquired) release.push_back(i);
  return release;
}

/// The shortest remaining TTL among the masters that refused (a waiter's hint), or -1.
inline long long shortest_holder_pttl(const Votes<LockReply>& votes) noexcept {
  long long pttl = -1;
  for (const auto& vote : votes)
    if (vote.first && !vote.first->acquired && vote.first->holder_pttl > 0 && (pttl < 0 || vote.first->holder_pttl < pttl))
      pttl = vote.first->holder_pttl;
  return pttl;
}

/// Renewals answer 1 (renewed), 2 (re-acquired) or 0 (not ours). A master that lost the lock
/// (restarted without its data) gets it back, but only while our hold is `valid` and a majority
/// still renewed it: then nobody else can have held a majority meanwhile. (A lock force-cleared
/// everywhere is not brought back: it is lost.)
inline std::vector<std::size_t> masters_to_reacquire(const Votes<long long>& votes, bool valid) {
  std::vector<std::size_t> reacquire;
  if (!valid || count(votes, [](long long r) { return r != 0; }).yes < majority(votes.size())) return reacquire;
  for (std::size_t i = 0; i < votes.size(); ++i)
    if (votes[i].first && *votes[i].first == 0) reacquire.push_back(i);
  return reacquire;
}

/// clear() over several masters, whose answers are 1 (deleted), 0 (another owner's, kept) or
/// -1 (absent): ours if a majority held our token; else any master another owner holds makes
/// it theirs; else ours if any master held it; else not locked. `quorum` is false when fewer
/// than a majority answered.
struct ClearVerdict {
  bool quorum = false;
  std::optional<bool> cleared;
};
/// clear() stops waiting (the releases still under way finish on their own) once clear_verdict()
/// cannot change however the `outstanding` masters answer: a majority released our token (the
/// usual case), or another owner's lock was found and too few can still release ours.
// What the masters answered to a release so far: how many, how many deleted our token, and
// whether any holds another owner's.
struct ClearCounts {
  std::size_t answered = 0, deleted = 0;
  bool any_other = false;
};
inline ClearCounts clear_counts(const Votes<long long>& votes) noexcept {
  ClearCounts c;
  for (const auto& vote : votes) {
    if (!vote.first) continue;
    ++c.answered;
    c.deleted += *vote.first == 1;
    c.any_other |= *vote.first == 0;
  }
  return c;
}

inline bool clear_decided(const Votes<long long>& votes, std::size_t outstanding) noexcept {
  if (outstanding == 0) return true;
  const auto [answered, deleted, any_other] = clear_counts(votes);
  const std::size_t needed = majority(votes.size());
  if (deleted >= needed) return true;
  return answered >= needed && any_other && deleted + outstanding < needed;
}

inline ClearVerdict clear_verdict(const Votes<long long>& votes) noexcept {
  const auto [answered, deleted, any_other] = clear_counts(votes);
  if (answered < majority(votes.size())) return {};
  if (deleted >= majority(votes.size())) return {true, true};
  if (any_other) return {true, false};
  if (deleted > 0) return {true, true};
  return {true, std::nullopt};
}

/// state() over several masters (each answers whether it holds the key): locked if any master
/// holds it (a lock on a minority still keeps others from a majority); open only when a
/// majority answered and none holds it; nullopt: no quorum.
/// state() is certain once any master holds the lock; "open" needs every answer there is.
inline bool state_settled(const Votes<bool>& votes, std::size_t outstanding) noexcept {
  if (outstanding == 0) return true;
  for (const auto& vote : votes)
    if (vote.first && *vote.first) return true;
  return false;
}

inline std::optional<State> state_verdict(const Votes<bool>& votes) noexcept {
  std::size_t answered = 0;
  for (const auto& vote : votes) {
    if (vote.first && *vote.first) return State::locked;
    answered += vote.first.has_value();
  }
  if (answered >= majority(votes.size())) return State::open;
  return std::nullopt;
}

/// inspect() over several masters: locked if any holds it; ours if a majority holds our token;
/// the holder and TTL as a master records them (ours if we hold a majority, else another's);
/// the highest counter. nullopt: no quorum (fewer than a majority answered and none holds it).
inline std::optional<Inspection> merge_inspections(const Votes<Inspection>& votes) {
  std::size_t answered = 0, ours = 0;
  std::uint64_t counter = 0;
  for (const auto& vote : votes) {
    if (!vote.first) continue;
    ++answered;
    ours += vote.first->ours;
    counter = std::max(counter, vote.first->fence_counter);
  }
  const bool prefer_ours = ours >= majority(votes.size());
  const Inspection* shown = nullptr;
  for (const auto& vote : votes)
    if (vote.first && vote.first->state == State::locked && (!shown || shown->ours != prefer_ours)) shown = &*vote.first;
  if (answered < majority(votes.size()) && !shown) return std::nullopt;
  Inspection result = shown ? *shown : Inspection{};
  result.ours = prefer_ours;
  result.fence_counter = counter;
  return result;
}

}  // namespace tally
}  // namespace detail

namespace detail {
// Prefixes an error's message with the call and lock name, keeping its kind and server text.
[[noreturn]] inline void rethrow_for(const Error& e, std::string_view call, const std::string& name) {
  throw Error(static_cast<errc>(e.code().value()), std::string(call) + "(" + printable_name(name) + "): " + e.what(),
              e.server_reply());
}

// Whether a master's failure means it could not be reached (rather than that it refused).
inline bool is_unreachable(const Error& e) {
  return e.code() == errc::connect_failed || e.code() == errc::timeout || e.code() == errc::connection_lost;
}

// "N of M masters <verb>, K needed: <url>: <fate>; ..." for a no_quorum error.
template <class T, class Describe>
std::string quorum_report(const std::vector<std::unique_ptr<Connection>>& nodes, const Votes<T>& votes,
                          std::size_t agreed, std::string_view verb, Describe&& describe) {
  std::string text = std::to_string(agreed) + " of " + std::to_string(nodes.size()) + " masters " + std::string(verb) +
                     ", " + std::to_string(nodes.size() / 2 + 1) + " needed";
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    text += i ? "; " : ": ";
    if (votes[i].first)
      text += nodes[i]->where() + ": " + describe(*votes[i].first);
    else
      text += std::string(is_unreachable(votes[i].second) ? "unreachable: " : "error: ") + votes[i].second.what();
  }
  return text;
}
}  // namespace detail

// `lock()` and `update()` are safe to retry on a stale connection: if the first attempt did
// run, the lock is ours and the retry answers true again. `clear()` is not (a retry after a
// delete that ran would answer nullopt), nor is it needed for `state()`'s meaning, but a
// read-only GET cannot change anything, so it retries too.

template <class Fn>
auto ProcessLock::with_nodes(std::string_view call, Fn&& fn) {
  try {
    PerProcess& here = per_process();
    const std::lock_guard<std::mutex> guard(here.mutex);
    return fn(here.nodes);
  } catch (const Error& e) {
    detail::rethrow_for(e, call, name_);
  }
}

inline ProcessLock::Nodes ProcessLock::clone_nodes() {
  PerProcess& here = per_process();
  const std::lock_guard<std::mutex> guard(here.mutex);  // a call may be updating what was learned
  Nodes copy;
  for (const auto& node : here.nodes) copy.push_back(node->clone());
  return copy;
}

namespace detail {
// Bounds a connection's calls by a deadline for one scope.
class DeadlineScope {
 public:
  DeadlineScope(Connection& node, std::chrono::steady_clock::time_point deadline) : node_(node) {
    node_.set_deadline(deadline);
  }
  ~DeadlineScope() { node_.set_deadline(std::nullopt); }
  DeadlineScope(const DeadlineScope&) = delete;
  DeadlineScope& operator=(const DeadlineScope&) = delete;

 private:
  Connection& node_;
};
}  // namespace detail

template <class T, class Read, class Settled>
void ProcessLock::fan_out(Nodes& nodes, detail::Votes<T>& votes, const std::vector<std::size_t>& which,
                          const detail::Ask& ask, std::chrono::steady_clock::time_point cap, Read&& read,
                          Settled&& settled) const {
  if (std::chrono::steady_clock::now() >= cap) {  // past it, an answer could no longer count: do not even ask
    for (const std::size_t i : which)
      // NOLINTNEXTLINE(bugprone-throw-keyword-missing): a vote's reason, reported later, not thrown here
      votes[i] = {std::nullopt, Error(errc::timeout, nodes[i]->where() + " was not asked: the time for this call had run out")};
    return;
  }
  detail::FanOut::run(
      nodes, which, ask, node_timeout_, cap,
      [&](std::size_t i, const redisReply& reply, long long acks) { votes[i].first.emplace(read(*nodes[i], reply, acks)); },
      [&](std::size_t i, const Error& e) { votes[i] = {std::nullopt, e}; },
      [&](std::size_t outstanding) { return settled(votes, outstanding); },
      [&](std::size_t i) {
        votes[i] = {std::nullopt,
                    Error(errc::timeout, nodes[i]->where() + " had not answered when the outcome was certain (not waited for)")};
      });
}

inline bool ProcessLock::note_ownership(bool ours, std::chrono::steady_clock::time_point sent, std::uint64_t fence,
                                        std::optional<std::uint64_t> epoch, bool released) {
  const std::lock_guard<std::mutex> guard(per_process().state_mutex);
  if (epoch && *epoch != hold_epoch_) return false;
  valid_until_ = ours ? (sent + timeout_ - drift()).time_since_epoch().count() : 0;
  if (ours && fence != 0) fence_ = fence;
  if (!ours) {
    fence_ = 0;
    if (owner_) {
      ++hold_epoch_;
      last_end_released_ = released;
    }
  }
  owner_ = ours;
  return true;
}

inline std::pair<bool, bool> ProcessLock::hold_end(std::uint64_t epoch) const {
  const std::lock_guard<std::mutex> guard(per_process().state_mutex);
  return {hold_epoch_ != epoch, last_end_released_};
}

inline std::uint64_t ProcessLock::hold_epoch() const {
  const std::lock_guard<std::mutex> guard(per_process().state_mutex);
  return hold_epoch_;
}

inline std::chrono::steady_clock::time_point ProcessLock::valid_until() const noexcept {
  return std::chrono::steady_clock::time_point(std::chrono::steady_clock::duration(valid_until_.load()));
}

namespace detail {
[[noreturn]] inline void throw_not_replicated(const Connection& node, long long acks) {
  if (acks < 0)
    throw Error(errc::not_replicated, node.where() + ": WAIT failed: " + node.wait_error(), node.wait_error());
  throw Error(errc::not_replicated, node.where() + ": only " + std::to_string(acks) + " of " +
                                        std::to_string(node.wait_replicas()) + " replicas acknowledged within " +
                                        std::to_string(node.endpoint().wait_timeout->count()) + " ms");
}
}  // namespace detail

inline void ProcessLock::release_node(detail::Connection& node) noexcept {
  try {
    std::optional<detail::DeadlineScope> scope;  // a stalled master must not hold up the others
    if (node_timeout_.count() > 0) scope.emplace(node, std::chrono::steady_clock::now() + node_timeout_);
    (void)node.eval(detail::clear_script(), {keys_->lock, keys_->owner}, {token_, "0", keys_->channel},
                    REDIS_REPLY_INTEGER, detail::Retry::unsafe);
  } catch (...) {
    // What is not released expires by itself.
  }
}

inline void ProcessLock::give_back(detail::Connection& node) const noexcept {
  // EVAL, not EVALSHA: no reply is read, so a NOSCRIPT would go unnoticed.
  const std::string_view argv[] = {"EVAL", detail::clear_script().text, "2", keys_->lock, keys_->owner,
                                   token_, "0",                         keys_->channel};
  node.post(argv, std::size(argv));
}

namespace detail {
inline std::vector<std::size_t> every_master(std::size_t masters) {
  std::vector<std::size_t> all(masters);
  for (std::size_t i = 0; i < masters; ++i) all[i] = i;
  return all;
}
// A round that waits for every master (within its time).
inline constexpr auto all_answers = [](const auto&, std::size_t outstanding) { return outstanding == 0; };
}  // namespace detail

// The lock script on one master; a write too few replicas acknowledged is undone and fails.
inline detail::LockReply ProcessLock::acquire_node(detail::Connection& node, bool listening) {
  const std::string& pid = detail::pid_text();
  long long acks = 0;
  const detail::ReplyPtr reply =
      listening ? node.eval(detail::lock_script(), {keys_->lock, keys_->fence, keys_->owner},
                            {token_, timeout_arg_, host_, pid, "1"}, REDIS_REPLY_ARRAY, detail::Retry::safe, &acks)
                : node.eval(detail::lock_script(), {keys_->lock, keys_->fence, keys_->owner},
                            {token_, timeout_arg_, host_, pid}, REDIS_REPLY_ARRAY, detail::Retry::safe, &acks);
  const detail::LockReply answer = detail::read_lock_reply(*reply);
  if (answer.acquired && acks < node.wait_replicas()) {
    release_node(node);
    detail::throw_not_replicated(node, acks);
  }
  return answer;
}

// The update script on one master: 1 renewed, 2 re-acquired, 0 refused.
inline long long ProcessLock::renew_node(detail::Connection& node, bool reacquire) {
  long long acks = 0;
  const std::string fence = std::to_string(fence_.load());
  const std::string& pid = detail::pid_text();
  const detail::ReplyPtr reply =
      reacquire ? node.eval(detail::update_script(), {keys_->lock, keys_->fence, keys_->owner},
                            {token_, timeout_arg_, fence, host_, pid}, REDIS_REPLY_INTEGER, detail::Retry::safe, &acks)
                : node.eval(detail::update_script(), {keys_->lock, keys_->fence, keys_->owner}, {token_, timeout_arg_},
                            REDIS_REPLY_INTEGER, detail::Retry::safe, &acks);
  if (reply->integer != 0 && acks < node.wait_replicas()) detail::throw_not_replicated(node, acks);
  return reply->integer;
}

inline ProcessLock::Attempt ProcessLock::acquire_on(Nodes& nodes, bool listening) {
  const auto sent = std::chrono::steady_clock::now();
  if (nodes.size() == 1) {
    detail::LockReply answer;
    try {
      answer = acquire_node(*nodes.front(), listening);
    } catch (const Error& e) {
      if (e.code() == errc::not_replicated) note_ownership(false, {}, 0);  // it was released
      throw;
    }
    note_ownership(answer.acquired, sent, answer.fence);
    return Attempt{answer.acquired, answer.holder_pttl};
  }
  // Redlock: the lock is ours if a majority granted it while it was still valid.
  const bool held = owner_ && sent < valid_until();  // a lock() while holding it: a renewal
  const auto deadline = sent + timeout_ - drift();
  detail::Votes<detail::LockReply> votes(nodes.size());
  auto is_granted = [](const detail::LockReply& r) { return r.acquired; };
  auto granted = [&] { return detail::tally::count(votes, is_granted); };
  {
    const std::string& pid = detail::pid_text();
    std::optional<detail::Ask> ask;  // a listening waiter marks the hold (see the lock script)
    if (listening)
      ask.emplace(detail::lock_script(), std::initializer_list<std::string_view>{keys_->lock, keys_->fence, keys_->owner},
                  std::initializer_list<std::string_view>{token_, timeout_arg_, host_, pid, "1"}, REDIS_REPLY_ARRAY,
                  detail::Retry::safe, true);
    else
      ask.emplace(detail::lock_script(), std::initializer_list<std::string_view>{keys_->lock, keys_->fence, keys_->owner},
                  std::initializer_list<std::string_view>{token_, timeout_arg_, host_, pid}, REDIS_REPLY_ARRAY,
                  detail::Retry::safe, true);
    fan_out(
        nodes, votes, detail::every_master(nodes.size()), *ask, deadline,
        [&](detail::Connection& node, const redisReply& reply, long long acks) {
          const detail::LockReply answer = detail::read_lock_reply(reply);
          if (answer.acquired && acks < node.wait_replicas()) {  // a write too few replicas acknowledged is undone
            give_back(node);
            detail::throw_not_replicated(node, acks);
          }
          return answer;
        },
        [&](const detail::Votes<detail::LockReply>& v, std::size_t outstanding) {
          return detail::tally::acquire_decided(nodes.size(), detail::tally::count(v, is_granted), outstanding);
        });
  }
  const std::uint64_t fence = detail::tally::fence_to_hand_out(votes);
  // Masters that were behind are raised (a second round trip only for them, together).
  if (granted().yes >= majority()) {
    const std::vector<std::size_t> behind = detail::tally::masters_to_raise(votes, fence);
    if (!behind.empty()) {
      const std::string token = std::to_string(fence);
      const detail::Ask ask(detail::raise_fence_script(), {keys_->lock, keys_->fence, keys_->owner}, {token_, token},
                            REDIS_REPLY_INTEGER, detail::Retry::safe, false);
      detail::Votes<bool> raised(nodes.size());
      fan_out(
          nodes, raised, behind, ask, deadline,
          [](detail::Connection&, const redisReply& reply, long long) { return reply.integer == 1; },
          detail::all_answers);
      for (const std::size_t i : behind) {
        if (raised[i].first && *raised[i].first)
          votes[i].first->fence = fence;
        else if (raised[i].first)
          votes[i] = {std::nullopt,
                      Error(errc::server_error, nodes[i]->where() + ": the lock expired before its fence was raised")};
        else
          votes[i] = {std::nullopt, raised[i].second};
      }
    }
  }
  const detail::tally::Count count = granted();
  const auto outcome = detail::tally::decide(nodes.size(), count, std::chrono::steady_clock::now() < deadline);
  if (outcome == detail::tally::Outcome::agreed) {
    note_ownership(true, sent, fence);
    return Attempt{true, 0};
  }
  auto no_quorum = [&] {
    return Error(errc::no_quorum, "no quorum: " + detail::quorum_report(nodes, votes, count.yes, "granted the lock",
                                                                        [](const detail::LockReply& r) {
                                                                          return r.acquired ? "granted"
                                                                                            : "held by another owner";
                                                                        }));
  };
  const bool contended = outcome == detail::tally::Outcome::refused;
  // A hold we still had is not given up because some masters failed to answer: errors change
  // nothing, as with one Redis (its keeper or the next update() will tell).
  if (held && !contended) throw no_quorum();
  // Given back without waiting: after a late grant on the same connection, it runs after it.
  for (const std::size_t i : detail::tally::masters_to_release(votes)) give_back(*nodes[i]);
  note_ownership(false, {}, 0);
  if (contended) return Attempt{false, std::max(detail::tally::shortest_holder_pttl(votes), 0LL)};
  throw no_quorum();
}

inline bool ProcessLock::renew_on(Nodes& nodes, std::chrono::steady_clock::time_point cap, bool release_on_loss) {
  const auto sent = std::chrono::steady_clock::now();
  if (nodes.size() == 1) {
    std::optional<detail::DeadlineScope> scope;
    if (cap != detail::no_deadline) scope.emplace(*nodes.front(), cap);
    return renew_node(*nodes.front(), false) == 1;
  }
  const bool valid = owner_ && sent < valid_until();
  const auto limit = valid ? valid_until() : sent + timeout_ - drift();
  const auto bound = std::min(cap, limit);
  auto renewed = [](detail::Connection& node, const redisReply& reply, long long acks) {
    if (reply.integer != 0 && acks < node.wait_replicas()) detail::throw_not_replicated(node, acks);
    return reply.integer;
  };
  // Every answer is waited for (in parallel): a master that lost the lock is told only by its own.
  detail::Votes<long long> votes(nodes.size());
  {
    const detail::Ask ask(detail::update_script(), {keys_->lock, keys_->fence, keys_->owner}, {token_, timeout_arg_},
                          REDIS_REPLY_INTEGER, detail::Retry::safe, true);
    fan_out(nodes, votes, detail::every_master(nodes.size()), ask, bound, renewed, detail::all_answers);
  }
  const std::vector<std::size_t> lost_data = detail::tally::masters_to_reacquire(votes, valid);
  if (!lost_data.empty()) {
    const std::string fence = std::to_string(fence_.load());
    const std::string& pid = detail::pid_text();
    const detail::Ask ask(detail::update_script(), {keys_->lock, keys_->fence, keys_->owner},
                          {token_, timeout_arg_, fence, host_, pid}, REDIS_REPLY_INTEGER, detail::Retry::safe, true);
    fan_out(nodes, votes, lost_data, ask, bound, renewed, detail::all_answers);
  }
  const detail::tally::Count count = detail::tally::count(votes, [](long long r) { return r != 0; });
  const auto outcome =
      detail::tally::decide(nodes.size(), count, std::chrono::steady_clock::now() < sent + timeout_ - drift());
  if (outcome == detail::tally::Outcome::agreed) return true;
  if (outcome == detail::tally::Outcome::refused) {
    // Lost. What is left of it on some masters is released, since nobody would renew it; not
    // by the keeper, whose connections are not the object's: a lock() racing it could lose keys.
    if (release_on_loss)
      for (std::size_t i = 0; i < nodes.size(); ++i)
        if (votes[i].first && *votes[i].first != 0) give_back(*nodes[i]);
    return false;
  }
  throw Error(errc::no_quorum,
              "no quorum: " + detail::quorum_report(nodes, votes, count.yes, "renewed the lock", [](long long r) {
                return r == 1 ? "renewed" : r == 2 ? "re-acquired" : "not ours";
              }));
}

inline std::optional<bool> ProcessLock::clear_on(Nodes& nodes, bool force) {
  auto clear_node = [&](detail::Connection& node) {
    return node
        .eval(detail::clear_script(), {keys_->lock, keys_->owner}, {token_, force ? "1" : "0", keys_->channel},
              REDIS_REPLY_INTEGER, detail::Retry::unsafe)
        ->integer;
  };
  if (nodes.size() == 1) {
    const long long cleared = clear_node(*nodes.front());
    note_ownership(false, {}, 0, std::nullopt, true);
    if (cleared < 0) return std::nullopt;
    return cleared == 1;
  }
  // Everywhere, whatever the others say: what is left would only block others until it expires.
  // Once the verdict is certain the rest are not waited for: they run on their own (see FanOut).
  detail::Votes<long long> votes(nodes.size());
  {
    const detail::Ask ask(detail::clear_script(), {keys_->lock, keys_->owner},
                          {token_, force ? "1" : "0", keys_->channel}, REDIS_REPLY_INTEGER, detail::Retry::unsafe, false);
    fan_out(
        nodes, votes, detail::every_master(nodes.size()), ask, detail::no_deadline,
        [](detail::Connection&, const redisReply& reply, long long) { return reply.integer; },
        detail::tally::clear_decided);
  }
  note_ownership(false, {}, 0, std::nullopt, true);
  const detail::tally::ClearVerdict verdict = detail::tally::clear_verdict(votes);
  if (!verdict.quorum) {
    const std::size_t answered = detail::tally::count(votes, [](long long) { return true; }).yes;
    throw Error(errc::no_quorum,
                "no quorum: " + detail::quorum_report(nodes, votes, answered, "answered", [](long long r) {
                  return r == 1 ? "released" : r == 0 ? "held by another owner" : "not locked";
                }));
  }
  return verdict.cleared;
}

inline ProcessLock::Attempt ProcessLock::attempt(std::string_view call, bool listening) {
  return with_nodes(call, [&](Nodes& nodes) { return acquire_on(nodes, listening); });
}

inline bool ProcessLock::lock() { return attempt("lock").acquired; }

inline bool ProcessLock::update() {
  return with_nodes("update", [&](Nodes& nodes) {
    const auto sent = std::chrono::steady_clock::now();
    const bool renewed = renew_on(nodes, detail::no_deadline, true);
    note_ownership(renewed, sent, renewed ? fence_.load() : 0);
    return renewed;
  });
}

inline std::optional<bool> ProcessLock::clear(bool force) {
  stop_keeping();  // renewing what we are releasing would fight the release
  return with_nodes("clear", [&](Nodes& nodes) { return clear_on(nodes, force); });
}

template <class Clock, class Duration>
bool ProcessLock::release_at(const std::chrono::time_point<Clock, Duration>& until) {
  return release_at_steady(to_steady(until));
}

inline bool ProcessLock::release_at_steady(std::chrono::steady_clock::time_point until) {
  stop_keeping();  // a renewal would put the lock's usual timeout back
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
  if (left <= std::chrono::milliseconds(0)) return clear() == std::optional<bool>(true);
  if (left > max_timeout)
    throw Error(errc::invalid_argument, "release_at: the time point is more than max_timeout (a year) away");
  const std::string ttl = std::to_string(left.count());
  // The renewal script with the time left as its TTL: ours only, the fence untouched.
  auto leave = [&](detail::Connection& node) {
    return node
        .eval(detail::update_script(), {keys_->lock, keys_->fence, keys_->owner}, {token_, ttl}, REDIS_REPLY_INTEGER,
              detail::Retry::safe)
        ->integer;
  };
  return with_nodes("release_at", [&](Nodes& nodes) {
    if (nodes.size() == 1) {
      const bool ours = leave(*nodes.front()) == 1;
      note_ownership(false, {}, 0, std::nullopt, false);
      return ours;
    }
    detail::Votes<long long> votes(nodes.size());
    {
      const detail::Ask ask(detail::update_script(), {keys_->lock, keys_->fence, keys_->owner}, {token_, ttl},
                            REDIS_REPLY_INTEGER, detail::Retry::safe, false);
      fan_out(nodes, votes, detail::every_master(nodes.size()), ask, detail::no_deadline,
              [](detail::Connection&, const redisReply& reply, long long) { return reply.integer; },
              detail::all_answers);
    }
    note_ownership(false, {}, 0, std::nullopt, false);
    const detail::tally::Count count = detail::tally::count(votes, [](long long r) { return r == 1; });
    const auto outcome = detail::tally::decide(nodes.size(), count, true);
    // Without a majority, what a minority still holds for us is nobody's: given back at once,
    // instead of blocking others until `until`.
    if (outcome != detail::tally::Outcome::agreed)
      for (std::size_t i = 0; i < nodes.size(); ++i)
        if (votes[i].first && *votes[i].first == 1) give_back(*nodes[i]);
    if (outcome == detail::tally::Outcome::no_quorum)
      throw Error(errc::no_quorum, "no quorum: " + detail::quorum_report(nodes, votes, count.yes, "kept the lock",
                                                                         [](long long r) {
                                                                           return r == 1 ? "kept" : "not ours";
                                                                         }));
    return outcome == detail::tally::Outcome::agreed;
  });
}

inline State ProcessLock::state() {
  return with_nodes("state", [&](Nodes& nodes) {
    auto held = [&](detail::Connection& node) { return node.get(keys_->lock, detail::Retry::safe).has_value(); };
    if (nodes.size() == 1) return held(*nodes.front()) ? State::locked : State::open;
    // Locked if any master holds it (a lock on a minority still blocks others from a
    // majority); open only when a majority answered and none holds it.
    detail::Votes<bool> votes(nodes.size());
    const detail::Ask ask("GET", keys_->lock);
    fan_out(
        nodes, votes, detail::every_master(nodes.size()), ask, detail::no_deadline,
        [](detail::Connection&, const redisReply& reply, long long) { return reply.type != REDIS_REPLY_NIL; },
        detail::tally::state_settled);
    if (const std::optional<State> verdict = detail::tally::state_verdict(votes)) return *verdict;
    const std::size_t answered = detail::tally::count(votes, [](bool) { return true; }).yes;
    throw Error(errc::no_quorum, "no quorum: " + detail::quorum_report(nodes, votes, answered, "answered",
                                                                       [](bool) { return "not locked"; }));
  });
}

inline Inspection ProcessLock::inspect() {
  return with_nodes("inspect", [&](Nodes& nodes) {
    auto look = [&](detail::Connection& node) {
      const detail::ReplyPtr reply =
          node.eval(detail::inspect_script(), {keys_->lock, keys_->fence, keys_->owner, keys_->holder}, {},
                    REDIS_REPLY_ARRAY, detail::Retry::safe);
      return detail::read_inspection(*reply, token_);
    };
    if (nodes.size() == 1) return look(*nodes.front());
    detail::Votes<Inspection> votes(nodes.size());
    const detail::Ask ask(detail::inspect_script(), {keys_->lock, keys_->fence, keys_->owner, keys_->holder}, {}, REDIS_REPLY_ARRAY,
                          detail::Retry::safe, false);
    fan_out(
        nodes, votes, detail::every_master(nodes.size()), ask, detail::no_deadline,
        [&](detail::Connection&, const redisReply& reply, long long) { return detail::read_inspection(reply, token_); },
        detail::all_answers);
    if (std::optional<Inspection> merged = detail::tally::merge_inspections(votes)) return std::move(*merged);
    const std::size_t answered = detail::tally::count(votes, [](const Inspection&) { return true; }).yes;
    throw Error(errc::no_quorum, "no quorum: " + detail::quorum_report(nodes, votes, answered, "answered",
                                                                       [](const Inspection&) { return "answered"; }));
  });
}

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
  using clock = std::chrono::steady_clock;
  // Reachable by cancel() from before the first attempt to the end.
  PerProcess& here = per_process();
  {
    const std::lock_guard<std::mutex> guard(here.waiters_mutex);
    here.waiters.push_back(&slot);
  }
  struct Unregister {
    PerProcess& here;
    detail::WaitSlot& slot;
    ~Unregister() {
      const std::lock_guard<std::mutex> guard(here.waiters_mutex);
      here.waiters.erase(std::find(here.waiters.begin(), here.waiters.end(), &slot));
    }
  } const unregister{here, slot};
  if (slot.cancelled()) return false;
  Attempt last = attempt("try_lock");
  if (last.acquired || clock::now() >= deadline) return last.acquired;
  slot.prepare();
  if (slot.cancelled()) return false;

  std::unique_ptr<detail::Connection> notices;  // subscribed to this lock's release notices
  bool can_subscribe = true;
  for (int retries = 0; !slot.cancelled() && clock::now() < deadline; ++retries) {
    if (!notices && can_subscribe) {
      // The first master that accepts: its attempts mark the record there, so that a release
      // is announced (one that is not is found at the holder's expiry).
      for (auto& node : clone_nodes()) {
        try {
          node->set_deadline(deadline);  // a slow server must not hold the wait past its deadline
          node->subscribe(keys_->channel);
          notices = std::move(node);
          break;
        } catch (const Error&) {
          // try the next master
        }
      }
      can_subscribe = notices != nullptr;  // no channel rights, or the servers are failing: poll instead
      // A release between the last attempt and the subscription sent a notice nobody heard.
      // Subscribed, the attempt marks the holder's record so that its release is announced.
      last = attempt("try_lock", notices != nullptr);
      if (last.acquired) return true;
      continue;
    }
    const auto delay = detail::retry_delay(last.holder_pttl, retries, notices != nullptr);
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
    last = attempt("try_lock", notices != nullptr);
    if (last.acquired) return true;
  }
  return false;
}

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
  const std::uint64_t f = fence_.load();
  if (!owner_ || f == 0) return std::nullopt;
  return f;
}

inline std::chrono::milliseconds ProcessLock::valid_for() const noexcept {
  if (!owner_) return std::chrono::milliseconds(0);
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(valid_until() - std::chrono::steady_clock::now());
  return std::max(left, std::chrono::milliseconds(0));
}

inline void ProcessLock::keep(KeepOptions options) {
  using std::chrono::milliseconds;
  auto invalid = [&](const std::string& what) {
    return Error(errc::invalid_argument, "keep(" + detail::printable_name(name_) + "): " + what);
  };
  const milliseconds interval = options.interval.value_or(timeout_ / 3);
  const milliseconds margin = options.margin.value_or(timeout_ / 5);
  if (interval <= milliseconds(0) || margin < milliseconds(0) ||
      (options.max_hold && *options.max_hold < milliseconds(0)))
    throw invalid("interval must be positive, margin and max_hold not negative");
  // A renewal must fit between the last one and the moment a failure would be reported. (Each
  // below the timeout first, so that the sum cannot overflow.)
  if (interval >= timeout_ || margin >= timeout_ || interval + margin >= timeout_ - drift())
    throw invalid("interval + margin must be below the timeout less drift");
  {
    PerProcess& here = per_process();
    const std::lock_guard<std::mutex> guard(here.keeper_mutex);
    if (here.keeper && here.keeper->id.load() == std::this_thread::get_id())
      throw invalid("cannot start a keeper from its own on_lost or on_renewed");
  }
  const std::uint64_t epoch = hold_epoch();
  if (!owner_) throw invalid("the lock is not held");
  auto control = std::make_shared<detail::KeeperControl>();
  control->thread = std::thread([this, control, options = std::move(options), epoch, interval, margin] {
    keep_loop(*control, options, epoch, interval, margin);
  });
  std::shared_ptr<detail::KeeperControl> previous;
  {
    PerProcess& here = per_process();
    const std::lock_guard<std::mutex> guard(here.keeper_mutex);
    previous = std::exchange(here.keeper, control);
  }
  retire(previous);
}

inline void ProcessLock::retire(const std::shared_ptr<detail::KeeperControl>& control) noexcept {
  if (!control) return;
  {
    const std::lock_guard<std::mutex> guard(control->mutex);
    control->stop = true;
  }
  control->cv.notify_all();
  // From its own callback the keeper cannot wait for itself; it ends when the callback returns,
  // and whoever stops it next (at the latest the destructor) waits for it.
  if (control->id.load() == std::this_thread::get_id()) return;
  const std::lock_guard<std::mutex> guard(control->join_mutex);  // concurrent stoppers all wait
  if (control->thread.joinable()) control->thread.join();
}

inline void ProcessLock::stop_keeping() noexcept {
  PerProcess* const here = per_process_if_made();
  if (!here) return;  // in a child: the parent's keeper does not exist here
  std::shared_ptr<detail::KeeperControl> control;
  {
    const std::lock_guard<std::mutex> guard(here->keeper_mutex);
    control = here->keeper;
  }
  if (!control) return;
  retire(control);
  const std::lock_guard<std::mutex> guard(here->keeper_mutex);
  if (here->keeper == control && control->id.load() != std::this_thread::get_id()) here->keeper.reset();
}

inline bool ProcessLock::keeping() const noexcept {
  PerProcess* const here = per_process_if_made();
  if (!here) return false;  // in a child, until it starts a keeper of its own
  const std::lock_guard<std::mutex> guard(here->keeper_mutex);
  return here->keeper && !here->keeper->finished;
}

inline std::chrono::milliseconds ProcessLock::drift() const noexcept {
  // Redlock's allowance: the server's and our clocks may run at slightly different rates.
  return timeout_ / 100 + std::chrono::milliseconds(2);
}

inline void ProcessLock::keep_loop(detail::KeeperControl& control, const KeepOptions& options, std::uint64_t epoch,
                                   std::chrono::milliseconds interval, std::chrono::milliseconds margin) noexcept {
  using clock = std::chrono::steady_clock;
  using std::chrono::milliseconds;
  control.id = std::this_thread::get_id();
  const unsigned long generation = detail::fork_generation();
  std::string shown_name;  // a copy: the object may be gone once a callback returns
  auto report_callback_failure = [&](const char* which, const char* what) {
    std::fprintf(stderr, "process_lock: the %s callback of %s threw%s%s\n", which, shown_name.c_str(), what ? ": " : "",
                 what ? what : "");
  };
  try {
    shown_name = detail::printable_name(name_);
    const milliseconds retry_step = std::max(interval / 4, milliseconds(5));
    Nodes nodes = clone_nodes();
    const auto started = clock::now();
    unsigned long renewals = 0;
    bool retrying = false;  // after a failed renewal, the next try is at retry_at
    clock::time_point retry_at{};
    Error last_error;

    // Ends the keeper, reporting the loss once. `taken` and `expired` end the hold locally; after
    // `unreachable` or `limit_reached` the lock may still be ours until the validity runs out,
    // so the object keeps it (its clear() or destructor can still release it).
    auto finish = [&](std::unique_lock<std::mutex>& held, LostReason reason, clock::time_point valid_until,
                      bool already_ended) {
      control.finished = true;
      held.unlock();
      const bool ends_hold = reason == LostReason::taken || reason == LostReason::expired;
      if (ends_hold && !already_ended && !note_ownership(false, {}, 0, epoch)) return;  // released meanwhile
      if (!options.on_lost) return;
      Lost lost;
      lost.reason = reason;
      if (!ends_hold)
        lost.remaining =
            std::max(std::chrono::duration_cast<milliseconds>(valid_until - clock::now()), milliseconds(0));
      if (reason == LostReason::unreachable) lost.error = last_error;
      try {
        options.on_lost(lost);
      } catch (const std::exception& e) {
        report_callback_failure("on_lost", e.what());
      } catch (...) {
        report_callback_failure("on_lost", nullptr);
      }
    };

    std::unique_lock<std::mutex> held(control.mutex);
    while (!control.stop) {
      const auto [ended, released] = hold_end(epoch);
      // The user's own call ended the hold: a release is not a loss; anything else is.
      if (ended && released) break;
      if (ended) return finish(held, LostReason::taken, {}, true);
      const auto now = clock::now();
      const auto valid_until = this->valid_until();
      if (now >= valid_until) return finish(held, LostReason::expired, valid_until, false);
      const bool capped = (options.max_hold && now >= detail::saturating_deadline(started, *options.max_hold)) ||
                          (options.max_renewals && renewals >= *options.max_renewals);
      const auto report_at = valid_until - margin;
      if (now >= report_at)
        return finish(held, capped ? LostReason::limit_reached : LostReason::unreachable, valid_until, false);
      // Due `interval` after the last acquire or renewal (ours or the user's), whenever keep() began.
      const auto due = retrying ? retry_at : valid_until + drift() - timeout_ + interval;
      if (!capped && now >= due) {
        held.unlock();
        std::optional<bool> renewed;
        const auto sent = clock::now();
        try {
          renewed = renew_on(nodes, report_at, false);  // never wait past the time to report
        } catch (const Error& e) {
          last_error =
              Error(static_cast<errc>(e.code().value()), "keep(" + shown_name + "): " + e.what(), e.server_reply());
        }
        held.lock();
        if (!renewed) {
          retrying = true;  // try again soon, until the report time
          retry_at = clock::now() + retry_step;
          continue;
        }
        if (!*renewed) return finish(held, LostReason::taken, valid_until, false);
        if (!note_ownership(true, sent, fence_.load(), epoch)) continue;  // ended meanwhile: see above
        retrying = false;
        ++renewals;
        if (options.on_renewed) {
          held.unlock();
          try {
            options.on_renewed();
          } catch (const std::exception& e) {
            report_callback_failure("on_renewed", e.what());
          } catch (...) {
            report_callback_failure("on_renewed", nullptr);
          }
          // The callback forked and this is the child, where this thread is the only one: the
          // keeper ends (the child starts its own with keep()); `control` is the parent's.
          if (detail::fork_generation() != generation) {
            control.finished = true;
            return;
          }
          held.lock();
        }
        continue;
      }
      control.cv.wait_until(held, capped ? report_at : std::min(due, report_at), [&] { return control.stop; });
    }
    control.finished = true;
  } catch (...) {
    // Only allocation can fail here; the lock then simply expires if nobody renews it.
    control.finished = true;
    std::fprintf(stderr, "process_lock: the keeper of %s stopped: out of memory\n", shown_name.c_str());
  }
}

inline const std::string& ProcessLock::key() const noexcept { return keys_->lock; }

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

#endif  // PROCESS_LOCK_HPP_
