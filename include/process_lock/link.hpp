// process-lock: one socket to one server: connecting and the handshake, deadline-bounded I/O,
// error mapping, fork safety.
// SPDX-License-Identifier: Apache-2.0
// One part of <process_lock.hpp>, which includes its parts in order; include that, not this.
#ifndef PROCESS_LOCK_HPP_
#error "include <process_lock.hpp>; process_lock/link.hpp is one of its parts"
#endif
#ifndef PROCESS_LOCK_LINK_HPP_
#define PROCESS_LOCK_LINK_HPP_

namespace process_lock {
namespace detail {

/// A failure of the transport (not of the server's answer), which may leave a command
/// undelivered or its reply unread; the link is always closed after one.
struct TransportFailure {
  Error error;
  std::string cause;  // what happened, without the server's name
};

/// When one step of a call (connecting with its handshake, or one round trip) must end, and that
/// time as the error messages state it.
struct Bound {
  std::chrono::steady_clock::time_point at;
  std::chrono::milliseconds allowed;
};

/// The end of a step (connecting, or one round trip) that may take `timeout` in a call that must
/// end by `call_deadline`: whichever comes first, and that time as messages state it.
inline Bound bound_by(std::chrono::steady_clock::time_point call_deadline, std::chrono::milliseconds timeout) noexcept {
  const auto now = std::chrono::steady_clock::now();
  if (call_deadline - now >= timeout) return {now + timeout, timeout};
  return {call_deadline,
          std::max(std::chrono::ceil<std::chrono::milliseconds>(call_deadline - now), std::chrono::milliseconds(0))};
}

/// What a wait on a socket ended with.
enum class Arrival { data, deadline, interrupted };

/// What a link says when it connects: the handshake, and the secrets no message may show.
struct LinkSettings {
  std::string user;
  std::string password;
  bool has_password = false;    // AUTH (an empty password is a password)
  int db = 0;                   // SELECT, unless 0
  bool confirm_master = false;  // ROLE: behind sentinels, is the server named really the master?
  std::string other_secret;     // a second password (the sentinels'), hidden like the first
  std::shared_ptr<const TlsContext> tls;  // rediss://: speak TLS with this context (null: plain text)
};

/// One connection to one server, opened by open() and closed by close() or after any transport
/// failure. Requests are written by the link itself (send() with MSG_NOSIGNAL, never hiredis's
/// write()) and replies read under a time bound (hiredis only parses them). Over TLS the same
/// send() and recv() carry the records a TlsSession makes and reads (see tls.hpp). It keeps count of
/// replies owed by calls that stopped waiting (see owe()) and of a give-back to send first (see
/// post()). A link opened before a fork is never used by the child (see inherited()).
/// Not thread-safe; its owner serialises calls.
class Link {
 public:
  using Clock = std::chrono::steady_clock;

  explicit Link(LinkSettings settings) : settings_(std::move(settings)) {}
  // Destroyed in a forked child, it closes the inherited socket only if it is still ours.
  ~Link() {
    if (inherited()) forget_inherited();
  }
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

  const LinkSettings& settings() const noexcept { return settings_; }

  /// Connects to `address` (nullopt: the unix socket `path`) and shakes hands, all by `limit`.
  /// `name` is how messages name the server (the URL with its passwords hidden).
  void open(const std::optional<Address>& address, const std::string& path, const Bound& limit, std::string name) {
    close();
    name_ = std::move(name);
    if (limit.allowed.count() <= 0)
      throw Error(errc::timeout, "connecting to " + name_ + " was not tried: the time for this call had run out");
    const auto connect_timeout = limit.allowed;
    const timeval tv = to_timeval(connect_timeout);
    ContextPtr ctx(address ? redisConnectWithTimeout(address->host.c_str(), address->port, tv)
                           : redisConnectUnixWithTimeout(path.c_str(), tv));
    if (!ctx) throw std::bad_alloc();
    if (ctx->err) {
      const int saved_errno = errno;
      const bool timed_out = saved_errno == ETIMEDOUT || ctx->errstr == std::generic_category().message(ETIMEDOUT);
      if (ctx->err == REDIS_ERR_IO && timed_out)
        throw Error(errc::timeout,
                    "connecting to " + name_ + " timed out after " + std::to_string(connect_timeout.count()) + " ms");
      throw Error(errc::connect_failed, "cannot connect to " + name_ + ": " + ctx->errstr);
    }
    // The socket must not leak into programs the caller later runs with exec.
    const int flags = fcntl(ctx->fd, F_GETFD);
    if (flags >= 0) fcntl(ctx->fd, F_SETFD, flags | FD_CLOEXEC);
    // Blocking, so that a read may wait in recv() under a receive timeout (see receive()); every
    // other read and write says MSG_DONTWAIT.
    int status = fcntl(ctx->fd, F_GETFL);
    if (status >= 0 && (status & O_NONBLOCK) && fcntl(ctx->fd, F_SETFL, status & ~O_NONBLOCK) == 0) status &= ~O_NONBLOCK;
    socket_blocks_ = status >= 0 && !(status & O_NONBLOCK);
    struct stat st {};
    fstat(ctx->fd, &st);
    socket_id_ = {st.st_dev, st.st_ino};
    ctx_ = std::move(ctx);
    owner_generation_ = fork_generation();
    try {
#if PROCESS_LOCK_WITH_TLS
      if (settings_.tls) start_tls(address ? address->host : std::string(), limit);
#endif
      handshake(limit);
    } catch (const TransportFailure& failure) {
      close();
      throw failure.error;
    } catch (...) {
      close();
      throw;
    }
  }

  /// Closes the connection; its owed replies go with it (a give-back not yet sent stays).
  void close() noexcept {
#if PROCESS_LOCK_WITH_TLS
    tls_.reset();  // memory only: its buffers never touch the socket
#endif
    ctx_.reset();
    out_.clear();
    wire_.clear();
    plain_received_ = 0;
    bounds_ = ReplyBounds();
    owed_ = 0;
    read_timeout_ = std::chrono::milliseconds(0);
  }

  bool is_open() const noexcept { return ctx_ != nullptr; }
  /// Open, but flagged by hiredis (e.g. out of memory): to be closed.
  bool broken() const noexcept { return ctx_ && ctx_->err != 0; }
  /// Opened by the parent of this (forked) process: never to be used here.
  bool inherited() const noexcept { return ctx_ && owner_generation_ != fork_generation(); }
  int fd() const noexcept { return ctx_->fd; }
  /// How messages name the server this link was last opened to.
  const std::string& name() const noexcept { return name_; }

  /// In a forked child the parent's socket must not be used (replies would interleave). Closes
  /// the child's copy, but only if the descriptor still is that socket: the child may have
  /// closed it and reused the number (as daemons do), and then it is not ours to close.
  void forget_inherited() noexcept {
    struct stat st {};
    const bool still_ours =
        fstat(ctx_->fd, &st) == 0 && st.st_dev == socket_id_.first && st.st_ino == socket_id_.second;
    if (!still_ours) ctx_->fd = -1;  // redisFree closes only a descriptor >= 0
    close();
  }

  /// A healthy idle Redis connection has nothing to read: readable data or a hang-up means the
  /// server closed it (restart, CLIENT KILL, idle timeout). A local check, no round trip.
  bool looks_alive() noexcept {
    pollfd p{ctx_->fd, POLLIN, 0};
    return poll(&p, 1, 0) == 0 || still_alive(p.revents);
  }

  /// Whether the link is alive after all, where a poll() of it (`revents`; FanOut polls several
  /// links at once) found something. Over TLS, records that carry no data (session tickets
  /// after the handshake) are taken first and do not count.
  bool still_alive([[maybe_unused]] short revents) noexcept {
#if PROCESS_LOCK_WITH_TLS
    if (tls_ && !(revents & (POLLHUP | POLLERR))) {
      try {
        const std::size_t before = plain_received_;
        while (receive(Clock::time_point::min(), -1) == Arrival::data) {
        }
        return plain_received_ == before;
      } catch (...) {
        return false;
      }
    }
#endif
    return false;
  }

  /// Queues a command, in the Redis protocol, to be sent by the next flush() or read_reply().
  void append(const std::string_view* argv, std::size_t argc) { encode(out_, argv, argc); }

  /// Sends what append() queued (over TLS, encrypted first) by `limit`.
  void flush(const Bound& limit) {
#if PROCESS_LOCK_WITH_TLS
    if (tls_) {
      try {
        tls_->send(out_);
      } catch (const TlsFailure& failure) {
        out_.clear();
        throw tls_failed(failure);
      }
      out_.clear();
      tls_->output(wire_);
      return transmit(wire_, limit);
    }
#endif
    transmit(out_, limit);
  }

  /// Sends `bytes` with send(MSG_NOSIGNAL), and clears them: a server that closed the
  /// connection fails the call and never raises SIGPIPE, which would kill the process by default.
  void transmit(std::string& bytes, const Bound& limit) {
    std::size_t sent = 0;
    while (sent < bytes.size()) {
      const ssize_t n = ::send(ctx_->fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n >= 0) {
        sent += static_cast<std::size_t>(n);
        continue;
      }
      const int saved_errno = errno;
      if (saved_errno == EINTR) continue;
      if ((saved_errno == EAGAIN || saved_errno == EWOULDBLOCK) && ready(POLLOUT, limit.at, -1) == Arrival::data)
        continue;
      bytes.clear();
      if (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK)
        throw TransportFailure{Error(errc::timeout, name_ + " did not take the request within " +
                                                        std::to_string(limit.allowed.count()) + " ms"),
                               "it did not take the request in time"};
      throw lost(std::generic_category().message(saved_errno));
    }
    bytes.clear();
  }

  /// Sends what is queued, then waits for the next reply until `limit`, however its bytes
  /// arrive: the time is checked between reads, never per read.
  ReplyPtr read_reply(const Bound& limit) {
    if (!out_.empty()) flush(limit);
    for (;;) {
      if (ReplyPtr reply = buffered_reply()) return reply;
      if (receive(limit.at, -1) == Arrival::deadline) throw timed_out(limit);
    }
  }

  /// Sends `argv` and waits for its reply, by `limit`.
  ReplyPtr command(const std::string_view* argv, std::size_t argc, const Bound& limit) {
    append(argv, argc);
    return read_reply(limit);
  }

  /// A reply already received and parsed, or null: takes no bytes from the socket.
  ReplyPtr buffered_reply() {
    void* raw = nullptr;
    if (redisGetReplyFromReader(ctx_.get(), &raw) != REDIS_OK) reader_failure();
    return ReplyPtr(static_cast<redisReply*>(raw));
  }

  /// The next reply already received that is not owed to an earlier call (those are dropped),
  /// or null.
  ReplyPtr own_buffered_reply() {
    for (;;) {
      ReplyPtr reply = buffered_reply();
      if (!reply || owed_ == 0) return reply;
      --owed_;
      owed_progress_ = Clock::now();
    }
  }

  /// Waits until the socket is ready for `events`, `deadline` passes, or `interrupt_fd` (if
  /// not -1) becomes readable. A deadline already past still looks once, without waiting.
  Arrival ready(short events, Clock::time_point deadline, int interrupt_fd) const {
    for (;;) {
      const auto now = Clock::now();
      const long long left =
          now >= deadline
              ? 0
              : std::min<long long>(std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count(), 60000);
      pollfd fds[2] = {{ctx_->fd, events, 0}, {interrupt_fd, POLLIN, 0}};
      const int n = poll(fds, interrupt_fd >= 0 ? 2 : 1, static_cast<int>(left));
      if (n < 0 && errno != EINTR) throw lost(std::generic_category().message(errno));
      if (n == 0 && left == 0) return Arrival::deadline;
      if (n <= 0) continue;
      if (interrupt_fd >= 0 && fds[1].revents) return Arrival::interrupted;
      return Arrival::data;  // readable, writable, or a hang-up or error that the next read or write reports
    }
  }

  /// Reads what the server has sent (waiting for it until `deadline`), checks it against the
  /// reply limits, and hands it to hiredis's reader. Returns data once bytes were taken.
  /// Without an interrupt to watch, it reads at once when the deadline has passed (a look that
  /// finds nothing is Arrival::deadline), and otherwise waits in recv() itself where it can (see
  /// plan_read_wait); after a receive timeout that ran out (EAGAIN) the wait is planned again
  /// from the time left, ending in poll() below 100 ms. So a read costs one system call, not
  /// poll() and recv().
  Arrival receive(Clock::time_point deadline, int interrupt_fd) {
    for (;;) {
      const bool look = interrupt_fd < 0 && deadline <= Clock::now();
      const bool blocking = !look && interrupt_fd < 0 && may_block_until(deadline);
      if (!look && !blocking) {
        const Arrival arrival = ready(POLLIN, deadline, interrupt_fd);
        if (arrival != Arrival::data) return arrival;
      }
      char buf[16384];
      const ssize_t n = ::recv(ctx_->fd, buf, sizeof buf, blocking ? 0 : MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && look) return Arrival::deadline;
      if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
      if (n == 0) throw lost("Server closed the connection");
      if (n < 0) throw lost(std::generic_category().message(errno));
      const std::string_view bytes(buf, static_cast<std::size_t>(n));
#if PROCESS_LOCK_WITH_TLS
      if (tls_) {
        decrypt(bytes);
        return Arrival::data;
      }
#endif
      feed(bytes);
      return Arrival::data;
    }
  }

  /// Sends `argv` without waiting for its reply, which a later call reads and drops: for giving
  /// back what a master granted without making the caller wait. Without a usable connection it
  /// goes out first on the next one. Never throws: what is not given back expires.
  void post(const std::string_view* argv, std::size_t argc) noexcept {
    try {
      std::string request;
      encode(request, argv, argc);
      if (!ctx_ || broken() || inherited()) {
        deferred_ = std::move(request);
        return;
      }
      out_ += request;
      try {
        flush(Bound{Clock::now(), std::chrono::milliseconds(0)});  // never waits: it fits the socket's buffer
        owe(1);
      } catch (const TransportFailure&) {
        close();  // it may have been cut short: the next connection sends it whole
        deferred_ = std::move(request);
      }
    } catch (...) {
      close();
    }
  }

  // Replies owed by earlier calls that stopped waiting for this server (see FanOut) come before
  // any new one. A link that owes replies and has received none for a command timeout, or owes
  // too many, is given up, as after a timeout.
  static constexpr std::size_t max_owed = 4096;
  /// `replies` more will come before the next call's own.
  void owe(std::size_t replies) noexcept {
    if (owed_ == 0) owed_progress_ = Clock::now();
    owed_ += replies;
  }
  std::size_t owed() const noexcept { return owed_; }

  /// Reads and drops, without waiting, the owed replies that have arrived. Returns false if it
  /// closed the link: it failed, or owed replies stopped coming for `patience`.
  [[nodiscard]] bool take_owed(std::chrono::milliseconds patience) {
    if (!ctx_ || owed_ == 0) return true;
    try {
      for (;;) {
        if (const ReplyPtr dropped = buffered_reply()) {
          owed_progress_ = Clock::now();
          if (--owed_ == 0) return true;
          continue;
        }
        if (receive(Clock::time_point::min(), -1) != Arrival::data) break;
      }
    } catch (const TransportFailure&) {
      close();
      return false;
    }
    if (owed_ > max_owed || Clock::now() - owed_progress_ >= patience) {
      close();
      return false;
    }
    return true;
  }

  /// The give-back not yet sent (see post()) goes out with the next request, and its reply is owed.
  void queue_deferred() {
    if (deferred_.empty()) return;
    out_.insert(0, deferred_);
    deferred_.clear();
    owe(1);
  }

  /// For a call that waits for its own reply: a give-back not yet sent goes first, and the owed
  /// replies are read (by `limit`) and dropped.
  void catch_up(const Bound& limit) {
    if (!ctx_) return;
    queue_deferred();
    for (; owed_ > 0; --owed_) (void)read_reply(limit);
  }

  TransportFailure lost(const std::string& cause) const {
#if PROCESS_LOCK_WITH_TLS
    // Closed after the TLS handshake, before any data: certainly a refusal if the server asked
    // for a certificate we lack; perhaps one of the certificate we gave (its alert may be lost
    // to the reset), though the server may also have died after running the request.
    if (tls_ && tls_->established() && plain_received_ == 0) {
      if (tls_->asked_for_missing_certificate())
        return tls_failed(
            TlsFailure{tls_failure_cause(X509_V_OK, SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED, "", tls_->name())});
      if (!settings_.tls->options().cert_file.empty())
        return {Error(errc::connection_lost, "connection to " + name_ + " lost: " + cause +
                                                 " right after the TLS handshake (did it refuse our client certificate?)"),
                cause};
    }
#endif
    return {Error(errc::connection_lost, "connection to " + name_ + " lost: " + cause), cause};
  }
  TransportFailure timed_out(const Bound& limit) const {
    return {Error(errc::timeout, name_ + " did not reply within " + std::to_string(limit.allowed.count()) + " ms"),
            "no reply in time"};
  }

  /// The reader refused the bytes: not the Redis protocol, or out of memory.
  [[noreturn]] void reader_failure() const {
    const redisReader& reader = *ctx_->reader;
    if (reader.err == REDIS_ERR_OOM || ctx_->err == REDIS_ERR_OOM) throw std::bad_alloc();
    const std::string cause =
        "does not speak the Redis protocol (" + std::string(reader.err ? reader.errstr : ctx_->errstr) + ")";
    throw TransportFailure{Error(errc::protocol_error, name_ + " " + cause), cause};
  }

  /// A reply of a type no Redis sends for these commands: the connection cannot be trusted.
  [[noreturn]] void unexpected_reply() const {
    throw TransportFailure{
        Error(errc::protocol_error, name_ + " sent a reply of an unexpected type; is it a Redis server?"),
        "a reply of an unexpected type"};
  }

  /// The server's text with any password of ours hidden (see detail::scrub).
  std::string scrub(std::string text) const {
    return detail::scrub(detail::scrub(std::move(text), settings_.password), settings_.other_secret);
  }

  /// Turns an error reply into an Error of the right kind, keeping the server's text (scrubbed).
  void check_error(const redisReply& reply) const {
    if (reply.type != REDIS_REPLY_ERROR) return;
    const std::string_view raw(reply.str, reply.len);  // the kind is read before scrubbing
    const std::string text = scrub(std::string(raw));
    switch (error_reply_kind(raw)) {  // a script error wrapped by an older server counts the same
      case errc::auth_failed:
        throw Error(errc::auth_failed, name_ + " requires authentication: " + text, text);
      case errc::permission_denied:
        throw Error(errc::permission_denied, name_ + " refused the command for this user: " + text, text);
      default:
        break;
    }
    throw Error(errc::server_error, name_ + " replied with an error: " + text, text);
  }

 private:
  // Whether a read may block in recv() under the socket's receive timeout, set here if need be,
  // and still end by `deadline` (see plan_read_wait).
  bool may_block_until(Clock::time_point deadline) {
    if (!socket_blocks_) return false;
    const auto now = Clock::now();
    const ReadWait plan = plan_read_wait(read_timeout_, std::chrono::duration_cast<std::chrono::microseconds>(deadline - now));
    if (plan.timeout.count() == 0) return false;
    if (plan.set) {
      const timeval tv = to_timeval(plan.timeout);
      if (setsockopt(ctx_->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0) return false;
      read_timeout_ = plan.timeout;
    }
    return true;
  }

  // Checks what the server sent against the reply limits, then hands it to hiredis's reader.
  void feed(std::string_view bytes) {
    plain_received_ += bytes.size();
    const std::string fault = bounds_.check(bytes);
    if (!fault.empty()) throw TransportFailure{Error(errc::protocol_error, name_ + " " + fault), fault};
    if (redisReaderFeed(ctx_->reader, bytes.data(), bytes.size()) != REDIS_OK) reader_failure();
  }

#if PROCESS_LOCK_WITH_TLS
  // A TLS failure. Before the server's first data it is a refused connection (a TLS 1.3 server
  // refuses a client certificate only after the handshake, on the first read).
  TransportFailure tls_failed(const TlsFailure& failure) const {
    return {Error(plain_received_ == 0 ? errc::connect_failed : errc::connection_lost,
                  "TLS to " + name_ + " failed: " + failure.cause),
            failure.cause};
  }

  // The TLS handshake, by the connect's `limit`: the time to connect includes it.
  void start_tls(const std::string& host, const Bound& limit) {
    tls_ = std::make_unique<TlsSession>(*settings_.tls, host);
    bool answered = false;
    try {
      for (;;) {
        const bool done = tls_->handshake();
        tls_->output(wire_);
        transmit(wire_, limit);
        if (done) return;
        if (ready(POLLIN, limit.at, -1) == Arrival::deadline)
          throw TransportFailure{Error(errc::timeout, "the TLS handshake with " + name_ + " did not finish within " +
                                                          std::to_string(limit.allowed.count()) + " ms (a slow server; or " +
                                                          std::string(plain_port_hint) + ")"),
                                 "the TLS handshake did not finish in time"};
        char buf[16384];
        const ssize_t n = ::recv(ctx_->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (n < 0) throw lost(std::generic_category().message(errno));
        const std::string_view bytes(buf, static_cast<std::size_t>(n));
        if (n == 0 || (!answered && looks_like_plain_redis(bytes)))
          throw tls_failed(TlsFailure{std::string(n == 0 ? "the server closed the connection during the handshake"
                                                         : "it answered in plain text") +
                                      " (" + std::string(plain_port_hint) + ")"});
        answered = true;
        tls_->take(bytes);
      }
    } catch (const TlsFailure& failure) {
      throw tls_failed(failure);
    }
  }

  // Decrypts what the server sent and feeds the plain text to the reader; sends what OpenSSL
  // answers (a key update) at once, without waiting.
  void decrypt(std::string_view bytes) {
    bool still_open = false;
    try {
      still_open = tls_->receive(bytes, [this](std::string_view plain) { feed(plain); });
    } catch (const TlsFailure& failure) {
      throw tls_failed(failure);
    }
    tls_->output(wire_);
    if (!wire_.empty()) transmit(wire_, Bound{Clock::now(), std::chrono::milliseconds(0)});
    if (!still_open) throw lost("Server closed the connection");
  }
#endif

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

  // AUTH, SELECT and ROLE, as the settings ask, pipelined: one round trip, and none at all when
  // none is needed.
  void handshake(const Bound& limit) {
    const std::string db = std::to_string(settings_.db);
    std::array<std::array<std::string_view, 3>, 3> commands{};
    std::array<std::size_t, 3> sizes{};
    std::size_t count = 0;
    if (settings_.has_password) {
      if (settings_.user.empty()) {
        commands[count] = {"AUTH", settings_.password};
        sizes[count++] = 2;
      } else {
        commands[count] = {"AUTH", settings_.user, settings_.password};
        sizes[count++] = 3;
      }
    }
    if (settings_.db != 0) {
      commands[count] = {"SELECT", db};
      sizes[count++] = 2;
    }
    if (settings_.confirm_master) {
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
                      name_ + " was named master by the sentinels but is " +
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
                    "authentication to " + name_ + " failed: " + std::string(refusal.reason) +
                        (code.empty() ? std::string(" (the reply to AUTH is not quoted)") : " (" + code + ")"),
                    code);
      }
      const std::string text = scrub(std::string(raw));
      if (raw.rfind("NOAUTH", 0) == 0)
        throw Error(errc::auth_failed, "authentication to " + name_ + " failed: " + text, text);
      throw Error(errc::server_error, "SELECT " + db + " on " + name_ + " failed: " + text, text);
    }
  }

  LinkSettings settings_;
  std::string name_;
  ContextPtr ctx_;
  std::string out_;                          // requests not yet sent (see append())
  std::string wire_;                         // TLS records not yet sent
  std::size_t plain_received_ = 0;           // bytes of the Redis protocol received on this connection
#if PROCESS_LOCK_WITH_TLS
  std::unique_ptr<TlsSession> tls_;          // over TLS: the session (see start_tls())
#endif
  std::chrono::milliseconds read_timeout_{0};  // the socket's SO_RCVTIMEO (see may_block_until())
  bool socket_blocks_ = false;               // O_NONBLOCK is off: recv() without MSG_DONTWAIT waits
  std::size_t owed_ = 0;                     // replies owed before the next (see owe())
  Clock::time_point owed_progress_{};        // when an owed reply last came (or the first became owed)
  std::string deferred_;                     // a give-back to send first on the next connection (see post())
  ReplyBounds bounds_;                       // the limits on what the server sends
  unsigned long owner_generation_ = 0;       // fork_generation() when ctx_ was opened
  std::pair<dev_t, ino_t> socket_id_{0, 0};  // identifies ctx_'s socket across a fork
};

}  // namespace detail
}  // namespace process_lock

#endif  // PROCESS_LOCK_LINK_HPP_
