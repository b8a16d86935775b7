// process-lock: one logical master: where it is, the link to it, and the policy of a call.
// SPDX-License-Identifier: Apache-2.0
// One part of <process_lock.hpp>, which includes its parts in order; include that, not this.
#ifndef PROCESS_LOCK_HPP_
#error "include <process_lock.hpp>; process_lock/master.hpp is one of its parts"
#endif
#ifndef PROCESS_LOCK_MASTER_HPP_
#define PROCESS_LOCK_MASTER_HPP_

namespace process_lock {
namespace detail {

/// One logical Redis master: the URL's server, or the one the sentinels name (redis+sentinel://,
/// see SentinelLocator), or, in a Redis Cluster, the node that owns the lock's slot (see
/// ClusterLocator; all of a lock's keys share one slot). It is reached through one Link, opened
/// lazily and replaced after any failure, and owns the policy of a call: its time bound, one
/// retry of a reused connection found dead, EVAL after NOSCRIPT, WAIT, and following Cluster
/// redirections and a demoted master. Not thread-safe: the owner serialises calls
/// (ProcessLock holds a mutex).
class Master {
 public:
  Master(Endpoint endpoint, std::chrono::milliseconds connect_timeout, std::chrono::milliseconds command_timeout)
      : endpoint_(std::move(endpoint)),
        connect_timeout_(connect_timeout),
        command_timeout_(command_timeout),
        link_(link_settings(endpoint_)) {
    target_ = seed();
    if (endpoint_.is_sentinel()) sentinels_.emplace(endpoint_, connect_timeout_, command_timeout_);
    if (endpoint_.is_cluster()) cluster_.emplace();
  }

  const Endpoint& endpoint() const noexcept { return endpoint_; }
  /// A new, unopened connection to the same master with the same settings.
  std::unique_ptr<Master> clone() const {
    auto copy = std::make_unique<Master>(endpoint_, connect_timeout_, command_timeout_);
    copy->target_ = target_;  // what was learned about the master's whereabouts still holds
    copy->cluster_ = cluster_;
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
      link_.check_error(*reply);
      if (reply->type != expected_type) link_.unexpected_reply();
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
      link_.check_error(*reply);
      if (reply->type == REDIS_REPLY_NIL) return std::nullopt;
      if (reply->type != REDIS_REPLY_STRING) link_.unexpected_reply();
      return std::string(reply->str, reply->len);
    });
  }

  /// Closes the connection; the next call opens a new one.
  void reset() noexcept { link_.close(); }

  /// Sends `argv` without waiting for its reply (see Link::post()): for giving back what a
  /// master granted without making the caller wait. Never throws: what is not given back expires.
  void post(const std::string_view* argv, std::size_t argc) noexcept { link_.post(argv, argc); }

  /// Bounds every later call, connecting included, by `deadline` as well as by the timeouts
  /// (nullopt: timeouts only). For a connection that one thread owns, such as the keeper's.
  void set_deadline(std::optional<std::chrono::steady_clock::time_point> deadline) noexcept { deadline_ = deadline; }

  /// Turns this connection into a subscriber of `channel`; afterwards use only wait_message().
  /// (In a Redis Cluster any node hears every PUBLISH, so no routing is needed.)
  void subscribe(std::string_view channel) { (void)subscribe({channel}); }

  /// As subscribe(channel), for up to 4 channels in one SUBSCRIBE, so that no message on one
  /// can be taken for the confirmation of another. Returns the texts of the messages that
  /// arrived before the last confirmation, in order (they are not lost).
  [[nodiscard]] std::vector<std::string> subscribe(std::initializer_list<std::string_view> channels) {
    if (channels.size() == 0 || channels.size() > 4) throw std::length_error("process_lock: 1 to 4 channels");
    return run(Retry::unsafe, [&] {
      std::array<std::string_view, 5> argv{"SUBSCRIBE"};
      std::copy(channels.begin(), channels.end(), argv.begin() + 1);
      const Bound limit = bound(command_timeout_);
      ReplyPtr reply = link_.command(argv.data(), 1 + channels.size(), limit);
      std::vector<std::string> early;
      for (std::size_t confirmed = 0;;) {
        link_.check_error(*reply);
        if (is_confirmation(*reply, channels)) {
          if (++confirmed == channels.size()) return early;
        } else if (is_message(*reply)) {
          early.push_back(message_text(*reply));
        } else {
          link_.unexpected_reply();
        }
        reply = link_.read_reply(limit);
      }
    });
  }

  enum class Wake { message, deadline, interrupted };

  /// On a subscribed connection: waits until a message arrives, `deadline` passes, or
  /// `interrupt_fd` becomes readable. Throws Error if the connection fails (it is then closed).
  /// With `payload`, a message's text is stored there (empty for a reply that is no message,
  /// such as a later SUBSCRIBE's confirmation).
  Wake wait_message(std::chrono::steady_clock::time_point deadline, int interrupt_fd, std::string* payload = nullptr) {
    try {
      for (;;) {
        if (const ReplyPtr message = link_.buffered_reply()) {  // it may already be buffered
          if (payload) *payload = message_text(*message);
          return Wake::message;
        }
        const Arrival arrival = link_.receive(deadline, interrupt_fd);
        if (arrival != Arrival::data) return arrival == Arrival::interrupted ? Wake::interrupted : Wake::deadline;
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

  using Clock = std::chrono::steady_clock;

  static bool word_at(const redisReply& r, std::size_t i, std::string_view word) {
    return r.element[i]->type == REDIS_REPLY_STRING && std::string_view(r.element[i]->str, r.element[i]->len) == word;
  }
  // ["subscribe", one of `channels`, count]
  static bool is_confirmation(const redisReply& r, std::initializer_list<std::string_view> channels) {
    if (r.type != REDIS_REPLY_ARRAY || r.elements != 3 || !word_at(r, 0, "subscribe") ||
        r.element[1]->type != REDIS_REPLY_STRING || r.element[2]->type != REDIS_REPLY_INTEGER)
      return false;
    const std::string_view ch(r.element[1]->str, r.element[1]->len);
    return std::find(channels.begin(), channels.end(), ch) != channels.end();
  }
  // ["message", channel, text]
  static bool is_message(const redisReply& r) {
    return r.type == REDIS_REPLY_ARRAY && r.elements == 3 && word_at(r, 0, "message") &&
           r.element[2]->type == REDIS_REPLY_STRING;
  }

  // The text of a pub/sub message ["message", channel, text]; empty for anything else.
  static std::string message_text(const redisReply& r) {
    if (r.type != REDIS_REPLY_ARRAY || r.elements != 3 || r.element[0]->type != REDIS_REPLY_STRING ||
        std::string_view(r.element[0]->str, r.element[0]->len) != "message" || r.element[2]->type != REDIS_REPLY_STRING)
      return {};
    return std::string(r.element[2]->str, r.element[2]->len);
  }

  // What the link says on connecting: our credentials and database; behind sentinels, a check
  // that the server is the master. Both passwords are hidden from messages.
  static LinkSettings link_settings(const Endpoint& endpoint) {
    LinkSettings s;
    s.user = endpoint.user;
    s.password = endpoint.password;
    s.has_password = endpoint.has_password;
    s.db = endpoint.db;
    s.confirm_master = endpoint.is_sentinel();
    s.other_secret = endpoint.sentinel_password;
    s.tls = endpoint.tls_context;
    return s;
  }

  // When one step of the current call must end (see bound_by()).
  Bound bound(std::chrono::milliseconds timeout) const noexcept { return bound_by(call_deadline_, timeout); }

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
    if (cluster_ && target_) cluster_->failed(*target_);
    target_ = seed();
  }

  // redis+cluster://: calls go to the owner of this key's slot. A connection that has no slot
  // yet (a subscriber) goes to any node.
  void route_by(std::string_view key) noexcept {
    if (cluster_) cluster_->route_by(key);
  }

  template <class Fn>
  auto run(Retry retry, Fn&& attempt) -> decltype(attempt()) {
    begin_call();
    if (sentinels_) follow_sentinels();
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
      link_.catch_up(bound(command_timeout_));
      return attempt();
    } catch (const Error&) {
      throw;  // the server answered with an error: the connection is in step and healthy
    } catch (...) {
      reset();
      throw;
    }
  }

  // Sends `argv` (mutable: EVALSHA may become EVAL) to the master and returns its reply,
  // following what a redirecting reply asks for (see Reroute): MOVED, the slot's owner is
  // learned; ASK, one command on the importing node; TRYAGAIN, wait a little; READONLY behind
  // sentinels, they are asked again. None of these replies means the command ran, so resending
  // is always safe.
  ReplyPtr routed(std::string_view* argv, std::size_t argc, const Script* script, long long* acks) {
    const bool wait = acks != nullptr && endpoint_.wait_replicas > 0;
    std::optional<Link> asking;  // ASK: a one-off connection to the importing node
    Address ask_at;
    const auto give_up = call_deadline_;
    auto pause = std::chrono::milliseconds(2);
    int hops = 0;  // redirections and re-resolutions; TRYAGAIN waits are bounded by time alone
    for (;;) {
      ReplyPtr reply;
      if (asking) {
        if (!asking->is_open()) asking->open(ask_at, {}, bound(connect_timeout_), endpoint_at(ask_at).display());
        reply = send(*asking, argv, argc, true, wait ? acks : nullptr);
      } else {
        reply = send(link_, argv, argc, false, wait ? acks : nullptr);
      }
      if (reply->type != REDIS_REPLY_ERROR) return reply;
      const std::string_view text(reply->str, reply->len);
      if (script && argv[0] == "EVALSHA" && text.substr(0, 8) == "NOSCRIPT") {
        argv[0] = "EVAL";
        argv[1] = script->text;
        continue;
      }
      if (hops++ >= max_hops || std::chrono::steady_clock::now() >= give_up) return reply;
      Reroute reroute = reroute_of(text, endpoint_.is_sentinel());
      if (reroute.kind == Reroute::moved || reroute.kind == Reroute::ask) {
        if (reroute.to.host.empty()) reroute.to.host = target_ ? target_->host : endpoint_.host;
        asking.reset();
        if (reroute.kind == Reroute::ask) {
          ask_at = std::move(reroute.to);
          asking.emplace(link_.settings());
        } else {
          target_ = std::move(reroute.to);
          reset();
          connect();
        }
        continue;
      }
      if (reroute.kind == Reroute::try_again && std::chrono::steady_clock::now() + pause < give_up) {
        --hops;
        std::this_thread::sleep_for(pause);
        pause = std::min(pause * 2, std::chrono::milliseconds(50));
        continue;
      }
      if (reroute.kind == Reroute::master_moved && !asking) {
        forget_route();
        reset();
        connect();
        continue;
      }
      return reply;
    }
  }

  // Whether an error reply means the command did not run and routed() would send it elsewhere.
  bool rerouted(std::string_view text) const { return reroute_of(text, endpoint_.is_sentinel()).kind != Reroute::none; }

  // Sends [ASKING] argv [WAIT] on `link` in one round trip; returns argv's reply and WAIT's
  // count in *acks.
  ReplyPtr send(Link& link, const std::string_view* argv, std::size_t argc, bool asking, long long* acks) {
    const Bound limit = bound(command_timeout_);  // the whole round trip, WAIT included
    const std::string_view asking_argv[] = {"ASKING"};
    const std::string replicas = std::to_string(endpoint_.wait_replicas);
    // WAIT must end within what the call may still take, or its reply would time out.
    const auto wait_for = std::min(endpoint_.wait_timeout.value_or(std::chrono::milliseconds(0)),
                                   std::max(limit.allowed / 2, std::chrono::milliseconds(1)));
    const std::string wait_ms = std::to_string(wait_for.count());
    const std::string_view wait_argv[] = {"WAIT", replicas, wait_ms};
    if (asking) link.append(asking_argv, 1);
    link.append(argv, argc);
    if (acks) link.append(wait_argv, 3);
    if (asking) link.read_reply(limit);  // +OK
    ReplyPtr reply = link.read_reply(limit);
    if (acks) *acks = read_wait(link, link.read_reply(limit));
    return reply;
  }

  // WAIT's count. A failed WAIT (e.g. an ACL user without +wait) counts as no acknowledgement
  // (-1), so that the caller undoes the write it cannot vouch for; its text is kept for the
  // message (see wait_error()).
  long long read_wait(const Link& link, const ReplyPtr& waited) {
    wait_error_.clear();
    if (waited->type == REDIS_REPLY_ERROR)
      wait_error_ = link.scrub(std::string(waited->str, waited->len));
    else if (waited->type != REDIS_REPLY_INTEGER)
      link.unexpected_reply();
    return waited->type == REDIS_REPLY_INTEGER ? waited->integer : -1;
  }

  // The same settings aimed at another node (an ASK target), for naming it.
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
  // on it (one poll() system call; `alive`: what the caller's own poll() of it found): for calls
  // that may not be retried. A call that may be retried needs no check: a dead connection fails
  // it at once and run() retries it.
  bool ensure_connected(bool check_alive = true, std::optional<bool> alive = std::nullopt) {
    if (link_.inherited()) link_.forget_inherited();
    if (link_.is_open() && (link_.broken() || (check_alive && !(alive ? *alive : link_.looks_alive())))) {
      reset();
      // A new connection asks the sentinels first; in a cluster, the owner may be gone (a failover).
      if (endpoint_.is_sentinel() || endpoint_.is_cluster()) forget_route();
    }
    if (link_.is_open()) return true;
    connect();
    return false;
  }

  void connect() {
    try {
      if (!target_ && sentinels_) target_ = sentinels_->ask(call_deadline_);
      if (!target_ && cluster_) return locate_in_cluster();
      open();
    } catch (...) {
      forget_route();
      throw;
    }
  }

  void open() { link_.open(target_, endpoint_.path, bound(connect_timeout_), where()); }

  // redis+cluster://: connects to the owner of the lock's slot (see ClusterLocator::locate()).
  void locate_in_cluster() {
    try {
      target_ = cluster_->locate(
          link_,
          [&](const Address& node) {
            target_ = node;
            open();
          },
          endpoint_.cluster_seeds, endpoint_.display(), call_deadline_, command_timeout_);
    } catch (...) {
      target_.reset();  // the locator has noted which node failed
      throw;
    }
  }

  // Behind sentinels: moves to the master the sentinels name now (see SentinelLocator::locate()).
  void follow_sentinels() {
    const Address named = sentinels_->locate(target_, link_.is_open(), call_deadline_);
    if (target_ == named) return;
    reset();
    target_ = named;
  }

  // Reads and drops the replies owed by earlier calls that have arrived (see Link::take_owed()).
  void take_owed() {
    if (!link_.take_owed(command_timeout_)) forget_route();
  }

  static constexpr std::size_t max_args = 12;  // the longest command here is EVAL with 11 arguments
  static constexpr int max_hops = 16;          // cluster redirections / retries followed per call

  Endpoint endpoint_;
  std::chrono::milliseconds connect_timeout_;
  std::chrono::milliseconds command_timeout_;
  Link link_;
  std::optional<Address> target_;  // the server to connect to; nullopt: the unix socket, or ask the sentinels
  std::optional<SentinelLocator> sentinels_;                       // redis+sentinel://
  std::optional<ClusterLocator> cluster_;                          // redis+cluster://
  Clock::time_point call_deadline_ = no_deadline;                  // see begin_call()
  std::string wait_error_;                                         // see wait_error()
  std::optional<std::chrono::steady_clock::time_point> deadline_;  // see set_deadline()
};

}  // namespace detail
}  // namespace process_lock

#endif  // PROCESS_LOCK_MASTER_HPP_
