// process-lock: one holder at a time across processes and hosts, with Redis holding the lock.
// SPDX-License-Identifier: Apache-2.0
// Header-only, C++17, over hiredis (0.14 or 1.x). The README is the manual.

#ifndef PROCESS_LOCK_HPP_
#define PROCESS_LOCK_HPP_

#define PROCESS_LOCK_VERSION_MAJOR 0
#define PROCESS_LOCK_VERSION_MINOR 2
#define PROCESS_LOCK_VERSION_PATCH 0
#define PROCESS_LOCK_VERSION_STRING "0.2.0"
// What the scripts keep in Redis (README "Wire versions"): 0.1.0 wrote 1; development builds of
// 0.2.0 up to commit f036ebe wrote 2; 0.2.0 writes 3. Processes of any of these on one lock
// exclude each other and share its fencing counter; version 3 adds the notices that watchers
// (ProcessLock::watch_for) listen to.
#define PROCESS_LOCK_WIRE_VERSION 3
// TLS (rediss://) needs OpenSSL: define PROCESS_LOCK_WITH_TLS=1 and link libssl and libcrypto
// (the CMake target and the pkg-config file do both where OpenSSL was found).
#ifndef PROCESS_LOCK_WITH_TLS
#define PROCESS_LOCK_WITH_TLS 0
#endif

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

#include <arpa/inet.h>
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
#if PROCESS_LOCK_WITH_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#endif

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
/// TLS for `rediss://` URLs (also `rediss+sentinel://`, `rediss+cluster://`). The server's
/// certificate and name are verified by default against the system's CAs. Each field set here
/// overrides the URL's query key named beside it. Needs a build with TLS (PROCESS_LOCK_WITH_TLS).
struct TlsOptions {
  std::string ca_file;      ///< `tls_ca_file`: PEM file of the CAs to trust instead of the system's
  std::string ca_dir;       ///< `tls_ca_dir`: a directory of CA certificates (hashed, as c_rehash makes)
  std::string cert_file;    ///< `tls_cert`: a client certificate (PEM chain), for servers that ask for one
  std::string key_file;     ///< `tls_key`: its private key (PEM, without a passphrase)
  /// `tls_server_name`: the name sent as SNI and checked against the certificate; empty: the
  /// host the link connects to (for an IP address, the certificate must name that address).
  std::string server_name;
  /// `tls_insecure_skip_verify=yes`: accept any certificate from anyone. Encrypts, but does not
  /// authenticate the server: for tests only.
  bool insecure_skip_verify = false;
};

struct Options {
  /// Where Redis is. Empty (the default) means the `REDIS_URL` environment variable, read at
  /// construction, or `redis://127.0.0.1:6379` when that is unset or empty. Grammar:
  /// `redis://[[user][:password]@]host[:port][/db][?query]`, `unix://[[user][:password]@]/path
  /// [?query]`, `redis+sentinel://[[user][:password]@]host[:port][,host[:port]...]/master[/db]
  /// [?query]`; several `redis://`/`unix://` URLs separated by commas are independent masters
  /// locked by majority (see the README); `rediss://` (and `rediss+sentinel://`,
  /// `rediss+cluster://`) is the same over TLS. Query keys: `db`, `user`, `password`,
  /// `connect_timeout`, `command_timeout`, `node_timeout`, `wait_replicas`, `wait_timeout`,
  /// for sentinels `sentinel_user`, `sentinel_password`, and for TLS `tls_ca_file`,
  /// `tls_ca_dir`, `tls_cert`, `tls_key`, `tls_server_name`, `tls_insecure_skip_verify`.
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
  /// What this object records about itself with each acquisition, beside host, pid and since,
  /// for others to read with `inspect()` (`Holder::info`): for example the active instance's
  /// address. Any bytes, at most `max_holder_info`; empty records nothing.
  std::string holder_info;
  /// TLS settings for `rediss://` URLs; each field set overrides the URL's (see TlsOptions).
  /// Setting one with a URL that is not `rediss://` is an error.
  TlsOptions tls;
  /// Prepended to the lock name to form the Redis key. Empty by default, which is what
  /// process-lock-node processes use; set it only if every party uses the same prefix.
  std::string key_prefix;
};

/// The longest `Options::holder_info` accepted, in bytes.
inline constexpr std::size_t max_holder_info = 4096;

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
  std::string info;  ///< its `Options::holder_info` (empty if none, or recorded by 0.1.0)
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

/// One change of a lock, as `ProcessLock::watch_for` reports it.
struct WatchEvent {
  enum class Kind {
    current,   ///< the first report: the lock as the watch found it (open, or held by `token`)
    acquired,  ///< taken by `token`
    released,  ///< `token`'s hold ended before its expiry: cleared by its holder (or, with no
               ///< notice, deleted by someone, e.g. a process-lock-node holder's release)
    forced,    ///< `token`'s hold was removed by another's `clear(true)`
    expired,   ///< `token`'s hold ran out: it was gone by the time its TTL had run out
  };
  Kind kind = Kind::current;
  /// The lock as the read that found this change left it: every event from one read (say a
  /// `released` then an `acquired`, for a hand-over between two reads) has the state after the
  /// last of them.
  State state = State::open;
  /// The hold this event is about (for `current` open: none, empty): its owner token (the key's
  /// value), its fencing token (0 if it recorded none: a process-lock-node holder), and who
  /// holds it where the holder recorded that.
  std::string token;
  std::uint64_t fence = 0;
  std::optional<Holder> holder;
  /// `current` and `acquired`: the hold's time left when it was read; nullopt: no expiry.
  std::optional<std::chrono::milliseconds> ttl;
  /// The fencing counter when this was read.
  std::uint64_t fence_counter = 0;
  /// Holds that began and ended between two reads without being seen (counted by the fencing
  /// counter, so only those of process-lock holders) are reported as one `released` event about
  /// the latest of them, with only its fence known; on that event, `missed` counts the others
  /// (0 on every other event).
  std::uint64_t missed = 0;
  /// Found by the first read after the watch's connection was lost: it happened meanwhile.
  bool resumed = false;
};

/// "current", "acquired", "released", "forced" or "expired".
constexpr std::string_view to_string(WatchEvent::Kind k) noexcept {
  switch (k) {
    case WatchEvent::Kind::current:
      return "current";
    case WatchEvent::Kind::acquired:
      return "acquired";
    case WatchEvent::Kind::released:
      return "released";
    case WatchEvent::Kind::forced:
      return "forced";
    case WatchEvent::Kind::expired:
      return "expired";
  }
  return "unknown";
}

/// How `ProcessLock::watch_for` watches.
struct WatchOptions {
  /// The longest time between two reads of the lock, whatever the notices say: it bounds how
  /// late a change that announces nothing is seen (a process-lock-node holder's, or one by a
  /// process of wire version 2). Must be 10 ms .. 1 h.
  std::chrono::milliseconds poll_interval{1000};
  /// Called, on the watching thread, with each failure the watch recovers from by itself (a
  /// lost connection, an unreachable or loading server); the watch then reconnects with backoff
  /// and reports what changed meanwhile (`WatchEvent::resumed`). Also, once each, with
  /// `errc::permission_denied` when the server refuses the notices' channels: the watch then
  /// hears fewer notices (or none) and finds the rest by polling, for good.
  std::function<void(const Error&)> on_error;
  /// When set, the watch ends once `*stop` is true: checked when it starts and each time it
  /// wakes. To stop at once from another thread (e.g. a signal-handling thread that sigwait()s;
  /// not from a signal handler: `cancel()` is not async-signal-safe), store true, then call
  /// `cancel()`; the pair cannot miss a watch that is just starting, as `cancel()` alone could.
  const std::atomic<bool>* stop = nullptr;
};

}  // namespace process_lock
#include "process_lock/hold.hpp"  // a member of ProcessLock, so before its declaration
namespace process_lock {

namespace detail {
class Master;
/// The masters a call runs on: the process's own connections, or a keeper's clones of them.
using Masters = std::vector<std::unique_ptr<Master>>;
class FanOut;
struct Ask;
struct LockReply;
struct Script;
struct LockKeys;
struct LockIdentity;
class Backend;
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
  /// false promptly, and every `watch_for`/`watch_until` return. Safe from any thread and from a
  /// signal-free context; waits that start later are not affected.
  void cancel() noexcept;

  /// Reports each change of the lock, whoever makes it, to `on_change` (on the calling thread),
  /// until `timeout` has passed, `cancel()` or `WatchOptions::stop` ends it; first the lock as
  /// found (`WatchEvent::Kind::current`), then each acquisition, release, forced release and
  /// expiry, in order. It listens, on a connection of its own, to the notices the lock's scripts
  /// publish while someone watches (wire version 3: acquisitions, releases and forced releases
  /// of process-lock holders are seen within a round trip), reads the lock again when the
  /// holder's TTL runs out (an expiry is reported about 5 ms plus 1.5 round trips, plus
  /// scheduling delays, after it), and in any case every `poll_interval` (so that holders that
  /// announce nothing, such as process-lock-node's, are seen within `poll_interval` plus a
  /// round trip). After a lost
  /// connection it reconnects with backoff and reports what changed while it was away
  /// (`resumed`). Throws `Error` for a failure it cannot recover from (refused credentials,
  /// missing permissions, a peer that is not Redis), `errc::invalid_argument` for a bad
  /// `poll_interval`, `errc::unsupported` for a lock on several masters; an exception from
  /// `on_change` propagates. Does not hold, take or change the lock; it only marks it so that
  /// its changes are announced while the watch lasts (see the README's "Watching").
  template <class Rep, class Period>
  void watch_for(const std::chrono::duration<Rep, Period>& timeout, const std::function<void(const WatchEvent&)>& on_change,
                 const WatchOptions& options = {});
  /// As `watch_for`, until a point in time of any clock (`::max()`: until stopped).
  template <class Clock, class Duration>
  void watch_until(const std::chrono::time_point<Clock, Duration>& deadline,
                   const std::function<void(const WatchEvent&)>& on_change, const WatchOptions& options = {});
#if defined(__cpp_lib_jthread)
  /// C++20: as `watch_for` with no time limit, until `stop` is requested (or cancel()).
  void watch(const std::stop_token& stop, const std::function<void(const WatchEvent&)>& on_change,
             const WatchOptions& options = {});
#endif

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
  bool owner() const noexcept { return hold_.ours(); }

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
  const std::string& token() const noexcept;
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

  using Nodes = detail::Masters;
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
  struct Attempt;
  // One acquire on the given connections (the object's or a waiter's), recorded in the hold.
  // `listening`: the caller is subscribed to release notices (see lock_script_text).
  Attempt acquire_on(Nodes& nodes, bool listening = false);
  // The hold, as an acquire or renewal sent at `sent` found it: ours, valid until `sent` plus
  // the timeout less drift, with `fence` (0: the one known). With `epoch`, only if that hold is
  // still the current one; returns whether it was recorded. (See detail::Hold.)
  bool note_taken(std::chrono::steady_clock::time_point sent, std::uint64_t fence,
                  std::optional<detail::Hold::Epoch> epoch = std::nullopt);
  // The hold ended: `released` by our own release, else lost. With `epoch`, as above.
  bool note_ended(bool released, std::optional<detail::Hold::Epoch> epoch = std::nullopt);
  std::chrono::milliseconds drift() const noexcept;
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
  // The loop of watch_for/until (see watch.hpp).
  void watch_steady(std::chrono::steady_clock::time_point deadline, detail::WaitSlot& slot,
                    const std::function<void(const WatchEvent&)>& on_change, const WatchOptions& options);
  template <class Clock, class Duration>
  static std::chrono::steady_clock::time_point to_steady(const std::chrono::time_point<Clock, Duration>& t);
  template <class Rep, class Period>
  static std::chrono::steady_clock::time_point deadline_after(const std::chrono::duration<Rep, Period>& timeout);

  // Runs `fn` for the callback forms: the callback is called once, outside any try block, so a
  // throwing callback is never called a second time.
  template <class T, class Fn, class Callback>
  static void deliver(Fn&& fn, Callback& cb);

  std::string name_;
  std::chrono::milliseconds timeout_{};
  // Keys, token, the scripts' TTL argument, the holder text (see detail::LockIdentity).
  std::unique_ptr<const detail::LockIdentity> identity_;
  detail::Hold hold_;  // ours or not, fence, validity, epoch; changed under PerProcess::state_mutex
  pid_t creator_pid_ = 0;  // the destructor releases only in this process, never in a forked child
  // One master, or several (majority): settings only, never connected; each process's
  // connections (PerProcess::nodes) are clones of these.
  detail::Masters nodes_;
  // The algorithm: one master's answer, or the majority's (see detail::Backend). It records
  // nothing; the calls record what it found in hold_.
  std::unique_ptr<const detail::Backend> backend_;
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

}  // namespace process_lock

// The implementation, one part per file in the order each needs the ones before it (the
// README's "How the code is laid out" gives one line per file).
#include "process_lock/handles.hpp"
#include "process_lock/url.hpp"
#include "process_lock/tls.hpp"
#include "process_lock/keys.hpp"
#include "process_lock/scripts.hpp"
#include "process_lock/support.hpp"
#include "process_lock/replies.hpp"
#include "process_lock/reply_bounds.hpp"
#include "process_lock/time.hpp"
#include "process_lock/link.hpp"
#include "process_lock/sentinel.hpp"
#include "process_lock/cluster.hpp"
#include "process_lock/master.hpp"
#include "process_lock/fanout.hpp"
#include "process_lock/tally.hpp"
#include "process_lock/backend.hpp"
#include "process_lock/wakeups.hpp"
#include "process_lock/waiter.hpp"
#include "process_lock/error.hpp"
#include "process_lock/lock.hpp"
#include "process_lock/wait.hpp"
#include "process_lock/watch.hpp"
#include "process_lock/guard.hpp"
#include "process_lock/keeper.hpp"
#include "process_lock/callbacks.hpp"


#endif  // PROCESS_LOCK_HPP_
