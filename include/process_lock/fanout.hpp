// process-lock: a quorum round in parallel over several masters (Ask, FanOut).
// SPDX-License-Identifier: Apache-2.0
// One part of <process_lock.hpp>, which includes its parts in order; include that, not this.
#ifndef PROCESS_LOCK_HPP_
#error "include <process_lock.hpp>; process_lock/fanout.hpp is one of its parts"
#endif
#ifndef PROCESS_LOCK_FANOUT_HPP_
#define PROCESS_LOCK_FANOUT_HPP_

namespace process_lock {
namespace detail {

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
/// same as Master::run()'s: one fresh retry of a reused connection that turned out dead (for
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
  static void run(Masters& nodes, const std::vector<std::size_t>& which,
                  const Ask& ask, std::chrono::milliseconds per_master, Clock::time_point cap, Answer&& answer,
                  Failed&& failed, Settled&& settled, Gone&& gone) {
    static_assert(std::tuple_size<decltype(Ask::argv)>::value == Master::max_args);
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
      Master& n = *c.node;
      c.pending = false;
      try {
        n.link_.check_error(*reply);
        if (reply->type != ask.expected_type && !(ask.nil_ok && reply->type == REDIS_REPLY_NIL)) n.link_.unexpected_reply();
        answer(c.index, *reply, acks);
      } catch (const TransportFailure& f) {
        n.reset();
        n.forget_route();
        failed(c.index, f.error);
      } catch (const Error& e) {
        failed(c.index, e);
      }
    };
    auto fail = [&](Call& c, const TransportFailure& f) {
      Master& n = *c.node;
      n.reset();
      n.forget_route();
      // Not once a reply of this call has come (the script then ran; a resend would put the
      // next replies out of step, e.g. the script's taken for WAIT's count).
      if (c.reused && !c.retried && c.replies.empty() && ask.retry == Retry::safe &&
          f.error.code() == errc::connection_lost) {
        c.retried = true;  // as Master::run(): an idle connection may have died unnoticed
        c.reused = false;
        try {
          n.ensure_connected();
          if (ask.script) {  // as on any new connection (see below)
            c.argv[0] = "EVAL";
            c.argv[1] = ask.script->text;
          }
          send(c, ask);
          return;
        } catch (const TransportFailure& again) {
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
      Master& n = *c.node;
      try {
        long long acks = 0;
        if (c.replies.size() == 2) {
          acks = n.read_wait(n.link_, c.replies[1]);
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
      } catch (const TransportFailure& f) {
        fail(c, f);  // a WAIT reply of the wrong type, or the EVAL not sent
      }
    };
    // Takes what master c has sent, without waiting.
    auto progress = [&](Call& c) {
      Master& n = *c.node;
      try {
        (void)n.link_.receive(Clock::time_point::min(), -1);
        while (c.pending) {
          ReplyPtr reply = n.link_.own_buffered_reply();  // an earlier call's are dropped
          if (!reply) return;
          c.replies.push_back(std::move(reply));
          if (c.replies.size() == c.expected) complete(c);
        }
      } catch (const TransportFailure& f) {
        fail(c, f);
      }
    };

    // A call that may not be repeated first looks for a close the server already sent on each
    // reused connection (see Master::ensure_connected): one poll() over all the idle ones before
    // the round. A master trusts that look only while it is fresh; after anything slow (a
    // master connecting, the sentinels asked, a failure) the rest look on their own again.
    const std::vector<std::optional<bool>> alive =
        ask.retry == Retry::unsafe ? alive_links(calls) : std::vector<std::optional<bool>>(calls.size());
    const auto looked_at = Clock::now();
    for (std::size_t k = 0; k < calls.size(); ++k) {
      Call& c = calls[k];
      Master& n = *c.node;
      // From its own start: a master that had to connect first (and took long) costs the others
      // no part of their time.
      const auto now = Clock::now();
      n.set_deadline(cap - now < per_master ? cap : now + per_master);
      n.begin_call();
      try {
        if (n.sentinels_) n.follow_sentinels();
        n.take_owed();
        const bool fresh = Clock::now() - looked_at < alive_look_lasts;
        c.reused = n.ensure_connected(ask.retry == Retry::unsafe && n.link_.owed() == 0,
                                      fresh ? alive[k] : std::nullopt);
        // A new connection may be to a server that never saw the script (fresh, restarted): the
        // text goes at once, since a NOSCRIPT from a master the round stops waiting for would
        // leave the lock untaken there (a 5-master lock on only 3 of them).
        if (!c.reused && ask.script) {
          c.argv[0] = "EVAL";
          c.argv[1] = ask.script->text;
        }
        n.link_.queue_deferred();
        c.expected = ask.wait && n.endpoint_.wait_replicas > 0 ? 2 : 1;
        c.pending = true;
        send(c, ask);
      } catch (const TransportFailure& f) {
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
        fds.push_back({c->node->link_.fd(), POLLIN, 0});
        earliest = std::min(earliest, c->limit.at);
      }
      const auto now = Clock::now();
      const long long left =
          now >= earliest ? 0 : std::min<long long>(std::chrono::ceil<std::chrono::milliseconds>(earliest - now).count(), 60000);
      const int ready = poll(fds.data(), fds.size(), static_cast<int>(left));
      if (ready < 0 && errno != EINTR) {
        const std::string cause = std::generic_category().message(errno);
        for (Call* c : polled) fail(*c, c->node->link_.lost(cause));
        continue;
      }
      for (std::size_t k = 0; k < polled.size(); ++k)
        if (ready > 0 && fds[k].revents) progress(*polled[k]);
      const auto after = Clock::now();
      for (Call* c : polled) {
        if (!c->pending || after < c->limit.at) continue;
        // As Link::read_reply(): its time is up, so the connection is dropped.
        fail(*c, c->node->link_.timed_out(c->limit));
      }
    }
    for (Call& c : calls) {
      if (!c.pending) continue;
      c.node->link_.owe(c.expected - c.replies.size());
      c.pending = false;
      gone(c.index);
    }
  }

 private:
  struct Call {
    std::size_t index;
    Master* node;
    std::array<std::string_view, 12> argv;  // EVALSHA may become EVAL
    std::vector<ReplyPtr> replies{};
    std::size_t expected = 1;  // the command's reply, and WAIT's
    bool reused = false, retried = false, pending = false;
    Bound limit{};
  };

  // How long one look at the masters' connections is trusted: far longer than a master's turn
  // takes in the steady state (about 10 µs), far shorter than opening a connection or asking a
  // sentinel.
  static constexpr std::chrono::milliseconds alive_look_lasts{1};

  // For each call whose connection is open, ours and idle (no reply owed): whether it looks
  // alive, from one poll() over all of them (nullopt: not looked at, as where that poll()
  // failed; ensure_connected() then looks on its own).
  static std::vector<std::optional<bool>> alive_links(const std::vector<Call>& calls) {
    std::vector<std::optional<bool>> alive(calls.size());
    std::vector<pollfd> fds;
    std::vector<std::size_t> looked;
    for (std::size_t k = 0; k < calls.size(); ++k) {
      const Link& link = calls[k].node->link_;
      if (!link.is_open() || link.broken() || link.inherited() || link.owed() != 0) continue;
      fds.push_back({link.fd(), POLLIN, 0});
      looked.push_back(k);
    }
    if (fds.empty() || poll(fds.data(), fds.size(), 0) < 0) return alive;
    for (std::size_t j = 0; j < looked.size(); ++j)
      alive[looked[j]] = fds[j].revents == 0 || calls[looked[j]].node->link_.still_alive(fds[j].revents);
    return alive;
  }

  // Queues the command (and WAIT) and sends it, as Master::send() does, without waiting.
  static void send(Call& c, const Ask& ask) {
    Master& n = *c.node;
    c.limit = n.bound(n.command_timeout_);
    n.link_.append(c.argv.data(), ask.argc);
    if (c.expected == 2) {
      const std::string replicas = std::to_string(n.endpoint_.wait_replicas);
      const auto wait_for = std::min(n.endpoint_.wait_timeout.value_or(std::chrono::milliseconds(0)),
                                     std::max(c.limit.allowed / 2, std::chrono::milliseconds(1)));
      const std::string wait_ms = std::to_string(wait_for.count());
      const std::string_view wait_argv[] = {"WAIT", replicas, wait_ms};
      n.link_.append(wait_argv, 3);
    }
    n.link_.flush(c.limit);
  }
};

}  // namespace detail
}  // namespace process_lock

#endif  // PROCESS_LOCK_FANOUT_HPP_
