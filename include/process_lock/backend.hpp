// process-lock: the lock's algorithm: the answer of one master (SingleMaster), or of a majority
// of several (Quorum), behind one interface (Backend).
// SPDX-License-Identifier: Apache-2.0
// One part of <process_lock.hpp>, which includes its parts in order; include that, not this.
#ifndef PROCESS_LOCK_HPP_
#error "include <process_lock.hpp>; process_lock/backend.hpp is one of its parts"
#endif
#ifndef PROCESS_LOCK_BACKEND_HPP_
#define PROCESS_LOCK_BACKEND_HPP_

namespace process_lock {
namespace detail {

/// The constants of one lock that its scripts take: keys, owner token, TTL argument, and the
/// holder text recorded with each acquisition (the host name with no newline, then, if
/// Options::holder_info is set, a newline and that info; see inspect_script_text).
struct LockIdentity {
  LockKeys keys;
  std::string token;
  std::string timeout_arg;  // the timeout in ms
  std::string holder_text;
};

/// What an acquire attempt found, for the caller to record in the Hold and then report.
struct Acquired {
  enum class Hold { taken, ended, unchanged };
  Hold hold = Hold::unchanged;  // taken: the lock is ours now
  std::uint64_t fence = 0;      // taken: the fence to hold
  long long holder_pttl = 0;    // not acquired: how long the holder's lock still lives, in ms
  std::optional<Error> error;   // thrown once the hold is recorded
};

/// What a release found: the answer, or an error to throw once the hold is recorded as ended.
template <class T>
struct Released {
  T value{};
  std::optional<Error> error;
};

/// The lock's algorithm over its masters. Each call is given the lock's identity, the masters to
/// use, and (where it needs it) the hold to read; it records nothing: it returns what happened
/// (or throws Error for a failure that changes nothing), and the caller (ProcessLock) records it
/// in the Hold. So a backend is safe to call from the keeper's thread on the keeper's own clones.
class Backend {
 public:
  virtual ~Backend() = default;

  /// The lock script. `sent`: when the attempt began (the validity counts from it);
  /// `listening`: the caller is subscribed to release notices (see lock_script_text).
  [[nodiscard]] virtual Acquired acquire(const LockIdentity& id, Masters& masters, const Hold& hold,
                                         std::chrono::steady_clock::time_point sent, bool listening) const = 0;
  /// The update script: whether the lock is still ours, renewed. Renewals end by `cap`.
  /// `release_on_loss`: what is left of a lost lock on some masters is given back.
  [[nodiscard]] virtual bool renew(const LockIdentity& id, Masters& masters, const Hold& hold,
                                   std::chrono::steady_clock::time_point sent,
                                   std::chrono::steady_clock::time_point cap, bool release_on_loss) const = 0;
  /// The clear script: true released, false held by another owner, nullopt not locked.
  [[nodiscard]] virtual Released<std::optional<bool>> clear(const LockIdentity& id, Masters& masters,
                                                            bool force) const = 0;
  /// The update script with `ttl_ms` as the TTL: whether the lock was ours and is left to expire then.
  [[nodiscard]] virtual Released<bool> release_at(const LockIdentity& id, Masters& masters,
                                                  const std::string& ttl_ms) const = 0;
  [[nodiscard]] virtual State state(const LockIdentity& id, Masters& masters) const = 0;
  [[nodiscard]] virtual Inspection inspect(const LockIdentity& id, Masters& masters) const = 0;
};

// Bounds a master's calls by a deadline for one scope.
class DeadlineScope {
 public:
  DeadlineScope(Master& node, std::chrono::steady_clock::time_point deadline) : node_(node) {
    node_.set_deadline(deadline);
  }
  ~DeadlineScope() { node_.set_deadline(std::nullopt); }
  DeadlineScope(const DeadlineScope&) = delete;
  DeadlineScope& operator=(const DeadlineScope&) = delete;

 private:
  Master& node_;
};

[[noreturn]] inline void throw_not_replicated(const Master& node, long long acks) {
  if (acks < 0)
    throw Error(errc::not_replicated, node.where() + ": WAIT failed: " + node.wait_error(), node.wait_error());
  throw Error(errc::not_replicated, node.where() + ": only " + std::to_string(acks) + " of " +
                                        std::to_string(node.wait_replicas()) + " replicas acknowledged within " +
                                        std::to_string(node.endpoint().wait_timeout->count()) + " ms");
}

/// The scripts on one master, waiting for each answer.
namespace on_master {

// The clear script, not forced; a master that stalls gives up after `node_timeout` (0: its own
// timeouts only). Never throws: what is not released expires by itself.
inline void release(const LockIdentity& id, Master& node, std::chrono::milliseconds node_timeout) noexcept {
  try {
    std::optional<DeadlineScope> scope;  // a stalled master must not hold up the others
    if (node_timeout.count() > 0) scope.emplace(node, std::chrono::steady_clock::now() + node_timeout);
    (void)node.eval(clear_script(), {id.keys.lock, id.keys.owner, id.keys.watch}, {id.token, "0", id.keys.channel},
                    REDIS_REPLY_INTEGER, Retry::unsafe);
  } catch (...) {
  }
}

// The lock script; a write too few replicas acknowledged is undone and fails (not_replicated).
inline LockReply acquire(const LockIdentity& id, Master& node, bool listening) {
  const std::string& pid = pid_text();
  long long acks = 0;
  const ReplyPtr reply =
      listening ? node.eval(lock_script(), {id.keys.lock, id.keys.fence, id.keys.owner},
                            {id.token, id.timeout_arg, id.holder_text, pid, "1"}, REDIS_REPLY_ARRAY, Retry::safe, &acks)
                : node.eval(lock_script(), {id.keys.lock, id.keys.fence, id.keys.owner},
                            {id.token, id.timeout_arg, id.holder_text, pid}, REDIS_REPLY_ARRAY, Retry::safe, &acks);
  const LockReply answer = read_lock_reply(*reply);
  if (answer.acquired && acks < node.wait_replicas()) {
    release(id, node, std::chrono::milliseconds(0));
    throw_not_replicated(node, acks);
  }
  return answer;
}

// The update script: 1 renewed, 0 refused (a renewal only: no re-acquisition on one master).
inline long long renew(const LockIdentity& id, Master& node) {
  long long acks = 0;
  const ReplyPtr reply = node.eval(update_script(), {id.keys.lock, id.keys.fence, id.keys.owner},
                                   {id.token, id.timeout_arg}, REDIS_REPLY_INTEGER, Retry::safe, &acks);
  if (reply->integer != 0 && acks < node.wait_replicas()) throw_not_replicated(node, acks);
  return reply->integer;
}

// Sends our release without waiting for it (see Master::post()).
inline void give_back(const LockIdentity& id, Master& node) noexcept {
  // EVAL, not EVALSHA: no reply is read, so a NOSCRIPT would go unnoticed.
  const std::string_view argv[] = {"EVAL",   clear_script().text, "3", id.keys.lock, id.keys.owner, id.keys.watch,
                                   id.token, "0",                 id.keys.channel};
  node.post(argv, std::size(argv));
}

}  // namespace on_master

/// One master (plain, Sentinel or Cluster): its answer is the lock's.
class SingleMaster final : public Backend {
 public:
  Acquired acquire(const LockIdentity& id, Masters& masters, const Hold&, std::chrono::steady_clock::time_point,
                   bool listening) const override {
    LockReply answer;
    try {
      answer = on_master::acquire(id, *masters.front(), listening);
    } catch (const Error& e) {
      if (e.code() != errc::not_replicated) throw;
      Acquired undone;  // it was released
      undone.hold = Acquired::Hold::ended;
      undone.error = e;
      return undone;
    }
    Acquired a;
    a.hold = answer.acquired ? Acquired::Hold::taken : Acquired::Hold::ended;
    a.fence = answer.fence;
    a.holder_pttl = answer.holder_pttl;
    return a;
  }

  bool renew(const LockIdentity& id, Masters& masters, const Hold&, std::chrono::steady_clock::time_point,
             std::chrono::steady_clock::time_point cap, bool) const override {
    std::optional<DeadlineScope> scope;
    if (cap != no_deadline) scope.emplace(*masters.front(), cap);
    return on_master::renew(id, *masters.front()) == 1;
  }

  Released<std::optional<bool>> clear(const LockIdentity& id, Masters& masters, bool force) const override {
    const long long cleared =
        masters.front()
            ->eval(clear_script(), {id.keys.lock, id.keys.owner, id.keys.watch}, {id.token, force ? "1" : "0", id.keys.channel},
                   REDIS_REPLY_INTEGER, Retry::unsafe)
            ->integer;
    Released<std::optional<bool>> r;
    if (cleared >= 0) r.value = cleared == 1;
    return r;
  }

  Released<bool> release_at(const LockIdentity& id, Masters& masters, const std::string& ttl_ms) const override {
    // The renewal script with the time left as its TTL: ours only, the fence untouched.
    const long long kept = masters.front()
                               ->eval(update_script(), {id.keys.lock, id.keys.fence, id.keys.owner}, {id.token, ttl_ms},
                                      REDIS_REPLY_INTEGER, Retry::safe)
                               ->integer;
    return {kept == 1, std::nullopt};
  }

  State state(const LockIdentity& id, Masters& masters) const override {
    return masters.front()->get(id.keys.lock, Retry::safe).has_value() ? State::locked : State::open;
  }

  Inspection inspect(const LockIdentity& id, Masters& masters) const override {
    const ReplyPtr reply =
        masters.front()->eval(inspect_script(), {id.keys.lock, id.keys.fence, id.keys.owner, id.keys.holder}, {},
                              REDIS_REPLY_ARRAY, Retry::safe);
    return read_inspection(*reply, id.token);
  }
};

/// Several independent masters (Redlock): the lock is ours while a majority holds it for us,
/// within its validity (the timeout less the clock drift allowance). Each call asks every
/// master at once (see FanOut); what the answers mean is decided by the pure functions in
/// tally.hpp.
class Quorum final : public Backend {
 public:
  /// `validity`: how long a grant counts from when it was asked for; `node_timeout`: how long
  /// any one master may take in a call.
  Quorum(std::chrono::milliseconds validity, std::chrono::milliseconds node_timeout)
      : validity_(validity), node_timeout_(node_timeout) {}

  Acquired acquire(const LockIdentity& id, Masters& nodes, const Hold& hold, std::chrono::steady_clock::time_point sent,
                   bool listening) const override {
    // The lock is ours if a majority granted it while it was still valid.
    const bool held = hold.valid_at(sent);  // a lock() while holding it: a renewal
    const auto deadline = sent + validity_;
    Votes<LockReply> votes(nodes.size());
    auto is_granted = [](const LockReply& r) { return r.acquired; };
    auto granted = [&] { return tally::count(votes, is_granted); };
    {
      const std::string& pid = pid_text();
      std::optional<Ask> ask;  // a listening waiter marks the hold (see the lock script)
      if (listening)
        ask.emplace(lock_script(), std::initializer_list<std::string_view>{id.keys.lock, id.keys.fence, id.keys.owner},
                    std::initializer_list<std::string_view>{id.token, id.timeout_arg, id.holder_text, pid, "1"},
                    REDIS_REPLY_ARRAY, Retry::safe, true);
      else
        ask.emplace(lock_script(), std::initializer_list<std::string_view>{id.keys.lock, id.keys.fence, id.keys.owner},
                    std::initializer_list<std::string_view>{id.token, id.timeout_arg, id.holder_text, pid},
                    REDIS_REPLY_ARRAY, Retry::safe, true);
      fan_out(
          nodes, votes, every_master(nodes.size()), *ask, deadline,
          [&](Master& node, const redisReply& reply, long long acks) {
            const LockReply answer = read_lock_reply(reply);
            if (answer.acquired && acks < node.wait_replicas()) {  // a write too few replicas acknowledged is undone
              on_master::give_back(id, node);
              throw_not_replicated(node, acks);
            }
            return answer;
          },
          [&](const Votes<LockReply>& v, std::size_t outstanding) {
            return tally::acquire_decided(nodes.size(), tally::count(v, is_granted), outstanding);
          });
    }
    const std::uint64_t fence = tally::fence_to_hand_out(votes);
    // Masters that were behind are raised (a second round trip only for them, together).
    if (granted().yes >= tally::majority(nodes.size())) {
      const std::vector<std::size_t> behind = tally::masters_to_raise(votes, fence);
      if (!behind.empty()) {
        const std::string token = std::to_string(fence);
        const Ask ask(raise_fence_script(), {id.keys.lock, id.keys.fence, id.keys.owner}, {id.token, token},
                      REDIS_REPLY_INTEGER, Retry::safe, false);
        Votes<bool> raised(nodes.size());
        fan_out(
            nodes, raised, behind, ask, deadline,
            [](Master&, const redisReply& reply, long long) { return reply.integer == 1; }, all_answers);
        for (const std::size_t i : behind) {
          if (raised[i].first && *raised[i].first)
            votes[i].first->fence = fence;
          else if (raised[i].first)
            votes[i] = {std::nullopt, Error(errc::server_error,
                                            nodes[i]->where() + ": the lock expired before its fence was raised")};
          else
            votes[i] = {std::nullopt, raised[i].second};
        }
      }
    }
    const tally::Count count = granted();
    const auto outcome = tally::decide(nodes.size(), count, std::chrono::steady_clock::now() < deadline);
    Acquired a;
    if (outcome == tally::Outcome::agreed) {
      a.hold = Acquired::Hold::taken;
      a.fence = fence;
      return a;
    }
    auto no_quorum = [&] {
      return Error(errc::no_quorum,
                   "no quorum: " + quorum_report(nodes, votes, count.yes, "granted the lock", [](const LockReply& r) {
                     return r.acquired ? "granted" : "held by another owner";
                   }));
    };
    const bool contended = outcome == tally::Outcome::refused;
    // A hold we still had is not given up because some masters failed to answer: errors change
    // nothing, as with one Redis (its keeper or the next update() will tell).
    if (held && !contended) {
      a.error = no_quorum();
      return a;
    }
    // Given back without waiting: after a late grant on the same connection, it runs after it.
    for (const std::size_t i : tally::masters_to_release(votes)) on_master::give_back(id, *nodes[i]);
    a.hold = Acquired::Hold::ended;
    if (contended)
      a.holder_pttl = std::max(tally::shortest_holder_pttl(votes), 0LL);
    else
      a.error = no_quorum();
    return a;
  }

  bool renew(const LockIdentity& id, Masters& nodes, const Hold& hold, std::chrono::steady_clock::time_point sent,
             std::chrono::steady_clock::time_point cap, bool release_on_loss) const override {
    const bool valid = hold.valid_at(sent);
    const auto limit = valid ? hold.valid_until() : sent + validity_;
    const auto bound = std::min(cap, limit);
    auto renewed = [](Master& node, const redisReply& reply, long long acks) {
      if (reply.integer != 0 && acks < node.wait_replicas()) throw_not_replicated(node, acks);
      return reply.integer;
    };
    // Every answer is waited for (in parallel): a master that lost the lock is told only by its own.
    Votes<long long> votes(nodes.size());
    {
      const Ask ask(update_script(), {id.keys.lock, id.keys.fence, id.keys.owner}, {id.token, id.timeout_arg},
                    REDIS_REPLY_INTEGER, Retry::safe, true);
      fan_out(nodes, votes, every_master(nodes.size()), ask, bound, renewed, all_answers);
    }
    const std::vector<std::size_t> lost_data = tally::masters_to_reacquire(votes, valid);
    if (!lost_data.empty()) {
      const std::string fence = std::to_string(hold.fence());
      const std::string& pid = pid_text();
      const Ask ask(update_script(), {id.keys.lock, id.keys.fence, id.keys.owner},
                    {id.token, id.timeout_arg, fence, id.holder_text, pid}, REDIS_REPLY_INTEGER, Retry::safe, true);
      fan_out(nodes, votes, lost_data, ask, bound, renewed, all_answers);
    }
    const tally::Count count = tally::count(votes, [](long long r) { return r != 0; });
    const auto outcome = tally::decide(nodes.size(), count, std::chrono::steady_clock::now() < sent + validity_);
    if (outcome == tally::Outcome::agreed) return true;
    if (outcome == tally::Outcome::refused) {
      // Lost. What is left of it on some masters is released, since nobody would renew it; not
      // by the keeper, whose connections are not the object's: a lock() racing it could lose keys.
      if (release_on_loss)
        for (std::size_t i = 0; i < nodes.size(); ++i)
          if (votes[i].first && *votes[i].first != 0) on_master::give_back(id, *nodes[i]);
      return false;
    }
    throw Error(errc::no_quorum,
                "no quorum: " + quorum_report(nodes, votes, count.yes, "renewed the lock", [](long long r) {
                  return r == 1 ? "renewed" : r == 2 ? "re-acquired" : "not ours";
                }));
  }

  Released<std::optional<bool>> clear(const LockIdentity& id, Masters& nodes, bool force) const override {
    // Everywhere, whatever the others say: what is left would only block others until it expires.
    // Once the verdict is certain the rest are not waited for: they run on their own (see FanOut).
    Votes<long long> votes(nodes.size());
    {
      const Ask ask(clear_script(), {id.keys.lock, id.keys.owner, id.keys.watch}, {id.token, force ? "1" : "0", id.keys.channel},
                    REDIS_REPLY_INTEGER, Retry::unsafe, false);
      fan_out(
          nodes, votes, every_master(nodes.size()), ask, no_deadline,
          [](Master&, const redisReply& reply, long long) { return reply.integer; }, tally::clear_decided);
    }
    const tally::ClearVerdict verdict = tally::clear_verdict(votes);
    Released<std::optional<bool>> r;
    r.value = verdict.cleared;
    if (!verdict.quorum) {
      const std::size_t answered = tally::count(votes, [](long long) { return true; }).yes;
      r.error =
          Error(errc::no_quorum, "no quorum: " + quorum_report(nodes, votes, answered, "answered", [](long long v) {
                                   return v == 1 ? "released" : v == 0 ? "held by another owner" : "not locked";
                                 }));
    }
    return r;
  }

  Released<bool> release_at(const LockIdentity& id, Masters& nodes, const std::string& ttl_ms) const override {
    Votes<long long> votes(nodes.size());
    {
      const Ask ask(update_script(), {id.keys.lock, id.keys.fence, id.keys.owner}, {id.token, ttl_ms},
                    REDIS_REPLY_INTEGER, Retry::safe, false);
      fan_out(
          nodes, votes, every_master(nodes.size()), ask, no_deadline,
          [](Master&, const redisReply& reply, long long) { return reply.integer; }, all_answers);
    }
    const tally::Count count = tally::count(votes, [](long long r) { return r == 1; });
    const auto outcome = tally::decide(nodes.size(), count, true);
    // Without a majority, what a minority still holds for us is nobody's: given back at once,
    // instead of blocking others until then.
    if (outcome != tally::Outcome::agreed)
      for (std::size_t i = 0; i < nodes.size(); ++i)
        if (votes[i].first && *votes[i].first == 1) on_master::give_back(id, *nodes[i]);
    Released<bool> r;
    r.value = outcome == tally::Outcome::agreed;
    if (outcome == tally::Outcome::no_quorum)
      r.error = Error(errc::no_quorum,
                      "no quorum: " + quorum_report(nodes, votes, count.yes, "kept the lock",
                                                    [](long long v) { return v == 1 ? "kept" : "not ours"; }));
    return r;
  }

  State state(const LockIdentity& id, Masters& nodes) const override {
    // Locked if any master holds it (a lock on a minority still blocks others from a
    // majority); open only when a majority answered and none holds it.
    Votes<bool> votes(nodes.size());
    const Ask ask("GET", id.keys.lock);
    fan_out(
        nodes, votes, every_master(nodes.size()), ask, no_deadline,
        [](Master&, const redisReply& reply, long long) { return reply.type != REDIS_REPLY_NIL; },
        tally::state_settled);
    if (const std::optional<State> verdict = tally::state_verdict(votes)) return *verdict;
    const std::size_t answered = tally::count(votes, [](bool) { return true; }).yes;
    throw Error(errc::no_quorum,
                "no quorum: " + quorum_report(nodes, votes, answered, "answered", [](bool) { return "not locked"; }));
  }

  Inspection inspect(const LockIdentity& id, Masters& nodes) const override {
    Votes<Inspection> votes(nodes.size());
    const Ask ask(inspect_script(), {id.keys.lock, id.keys.fence, id.keys.owner, id.keys.holder}, {}, REDIS_REPLY_ARRAY,
                  Retry::safe, false);
    fan_out(
        nodes, votes, every_master(nodes.size()), ask, no_deadline,
        [&](Master&, const redisReply& reply, long long) { return read_inspection(reply, id.token); }, all_answers);
    if (std::optional<Inspection> merged = tally::merge_inspections(votes)) return std::move(*merged);
    const std::size_t answered = tally::count(votes, [](const Inspection&) { return true; }).yes;
    throw Error(errc::no_quorum, "no quorum: " + quorum_report(nodes, votes, answered, "answered",
                                                               [](const Inspection&) { return "answered"; }));
  }

 private:
  static std::vector<std::size_t> every_master(std::size_t masters) {
    std::vector<std::size_t> all(masters);
    for (std::size_t i = 0; i < masters; ++i) all[i] = i;
    return all;
  }
  // A round that waits for every master (within its time).
  static constexpr auto all_answers = [](const auto&, std::size_t outstanding) { return outstanding == 0; };

  // Whether a master's failure means it could not be reached (rather than that it refused).
  static bool is_unreachable(const Error& e) {
    return e.code() == errc::connect_failed || e.code() == errc::timeout || e.code() == errc::connection_lost;
  }

  // "N of M masters <verb>, K needed: <url>: <fate>; ..." for a no_quorum error.
  template <class T, class Describe>
  static std::string quorum_report(const Masters& nodes, const Votes<T>& votes, std::size_t agreed,
                                   std::string_view verb, Describe&& describe) {
    std::string text = std::to_string(agreed) + " of " + std::to_string(nodes.size()) + " masters " +
                       std::string(verb) + ", " + std::to_string(tally::majority(nodes.size())) + " needed";
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      text += i ? "; " : ": ";
      if (votes[i].first)
        text += nodes[i]->where() + ": " + describe(*votes[i].first);
      else
        text += std::string(is_unreachable(votes[i].second) ? "unreachable: " : "error: ") + votes[i].second.what();
    }
    return text;
  }

  // Asks the masters `which` at once (see FanOut), each bounded by the node timeout and `cap`:
  // `read(node, reply, acks)` makes a master's vote; the round ends once `settled(votes,
  // outstanding)` (the masters not waited for get a vote that says so).
  template <class T, class Read, class Settled>
  void fan_out(Masters& nodes, Votes<T>& votes, const std::vector<std::size_t>& which, const Ask& ask,
               std::chrono::steady_clock::time_point cap, Read&& read, Settled&& settled) const {
    if (std::chrono::steady_clock::now() >= cap) {  // past it, an answer could no longer count: do not even ask
      for (const std::size_t i : which) {
        const std::string why = nodes[i]->where() + " was not asked: the time for this call had run out";
        // NOLINTNEXTLINE(bugprone-throw-keyword-missing): a vote's reason, reported later, not thrown here
        votes[i] = {std::nullopt, Error(errc::timeout, why)};
      }
      return;
    }
    FanOut::run(
        nodes, which, ask, node_timeout_, cap,
        [&](std::size_t i, const redisReply& reply, long long acks) {
          votes[i].first.emplace(read(*nodes[i], reply, acks));
        },
        [&](std::size_t i, const Error& e) {
          votes[i] = {std::nullopt, e};
        },
        [&](std::size_t outstanding) { return settled(votes, outstanding); },
        [&](std::size_t i) {
          votes[i] = {std::nullopt,
                      Error(errc::timeout,
                            nodes[i]->where() + " had not answered when the outcome was certain (not waited for)")};
        });
  }

  std::chrono::milliseconds validity_;
  std::chrono::milliseconds node_timeout_;
};

}  // namespace detail
}  // namespace process_lock

#endif  // PROCESS_LOCK_BACKEND_HPP_
