// process-lock: one logical master: its socket, deadline-bounded I/O, Sentinel and Cluster
// routing, fork safety.
// SPDX-License-Identifier: Apache-2.0
// One part of <process_lock.hpp>, which includes its parts in order; include that, not this.
#ifndef PROCESS_LOCK_HPP_
#error "include <process_lock.hpp>; process_lock/connection.hpp is one of its parts"
#endif
#ifndef PROCESS_LOCK_CONNECTION_HPP_
#define PROCESS_LOCK_CONNECTION_HPP_

namespace process_lock {
namespace detail {

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

}  // namespace detail
}  // namespace process_lock

#endif  // PROCESS_LOCK_CONNECTION_HPP_
