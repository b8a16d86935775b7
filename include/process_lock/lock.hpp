// process-lock: ProcessLock: construction, fork handling, and the calls (lock, update, clear,
// release_at, state, inspect) on one master or a quorum.
// SPDX-License-Identifier: Apache-2.0
// One part of <process_lock.hpp>, which includes its parts in order; include that, not this.
#ifndef PROCESS_LOCK_HPP_
#error "include <process_lock.hpp>; process_lock/lock.hpp is one of its parts"
#endif
#ifndef PROCESS_LOCK_LOCK_HPP_
#define PROCESS_LOCK_LOCK_HPP_

namespace process_lock {

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
  holder_text_ = host;
  std::replace(holder_text_.begin(), holder_text_.end(), '\n', '?');  // the newline ends the host
  if (options.holder_info.size() > max_holder_info)
    throw Error(errc::invalid_argument, "Options::holder_info is " + std::to_string(options.holder_info.size()) +
                                            " bytes; at most " + std::to_string(max_holder_info) + " are recorded");
  if (!options.holder_info.empty()) holder_text_ += '\n' + options.holder_info;
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
    nodes_.push_back(std::make_unique<detail::Master>(std::move(endpoint), connect_timeout, command_timeout));
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
  // Link::forget_inherited()), unless a thread of the parent was using the connections at
  // the fork; they may then be half-changed, and are left as they are, descriptors included.
  void close_inherited_connections() noexcept {
    if (!mutex.try_lock()) return;
    nodes.clear();
    mutex.unlock();
  }

  const unsigned long generation;                 // detail::fork_generation() of the process it belongs to
  std::mutex mutex;                               // guards nodes: a hiredis context is single-threaded
  Nodes nodes;                                    // this process's connections: clones of ProcessLock::nodes_
  std::mutex state_mutex;                         // orders the changes of ProcessLock::hold_
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
  if (hold_.ours() && creator_pid_ == getpid()) {
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
std::string quorum_report(const std::vector<std::unique_ptr<Master>>& nodes, const Votes<T>& votes,
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
  DeadlineScope(Master& node, std::chrono::steady_clock::time_point deadline) : node_(node) {
    node_.set_deadline(deadline);
  }
  ~DeadlineScope() { node_.set_deadline(std::nullopt); }
  DeadlineScope(const DeadlineScope&) = delete;
  DeadlineScope& operator=(const DeadlineScope&) = delete;

 private:
  Master& node_;
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

inline bool ProcessLock::note_taken(std::chrono::steady_clock::time_point sent, std::uint64_t fence,
                                    std::optional<detail::Hold::Epoch> epoch) {
  return hold_.taken(per_process().state_mutex, sent + timeout_ - drift(), fence, epoch);
}

inline bool ProcessLock::note_ended(bool released, std::optional<detail::Hold::Epoch> epoch) {
  return hold_.ended(per_process().state_mutex, released, epoch);
}

namespace detail {
[[noreturn]] inline void throw_not_replicated(const Master& node, long long acks) {
  if (acks < 0)
    throw Error(errc::not_replicated, node.where() + ": WAIT failed: " + node.wait_error(), node.wait_error());
  throw Error(errc::not_replicated, node.where() + ": only " + std::to_string(acks) + " of " +
                                        std::to_string(node.wait_replicas()) + " replicas acknowledged within " +
                                        std::to_string(node.endpoint().wait_timeout->count()) + " ms");
}
}  // namespace detail

inline void ProcessLock::release_node(detail::Master& node) noexcept {
  try {
    std::optional<detail::DeadlineScope> scope;  // a stalled master must not hold up the others
    if (node_timeout_.count() > 0) scope.emplace(node, std::chrono::steady_clock::now() + node_timeout_);
    (void)node.eval(detail::clear_script(), {keys_->lock, keys_->owner}, {token_, "0", keys_->channel},
                    REDIS_REPLY_INTEGER, detail::Retry::unsafe);
  } catch (...) {
    // What is not released expires by itself.
  }
}

inline void ProcessLock::give_back(detail::Master& node) const noexcept {
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
inline detail::LockReply ProcessLock::acquire_node(detail::Master& node, bool listening) {
  const std::string& pid = detail::pid_text();
  long long acks = 0;
  const detail::ReplyPtr reply =
      listening ? node.eval(detail::lock_script(), {keys_->lock, keys_->fence, keys_->owner},
                            {token_, timeout_arg_, holder_text_, pid, "1"}, REDIS_REPLY_ARRAY, detail::Retry::safe, &acks)
                : node.eval(detail::lock_script(), {keys_->lock, keys_->fence, keys_->owner},
                            {token_, timeout_arg_, holder_text_, pid}, REDIS_REPLY_ARRAY, detail::Retry::safe, &acks);
  const detail::LockReply answer = detail::read_lock_reply(*reply);
  if (answer.acquired && acks < node.wait_replicas()) {
    release_node(node);
    detail::throw_not_replicated(node, acks);
  }
  return answer;
}

// The update script on one master: 1 renewed, 2 re-acquired, 0 refused.
inline long long ProcessLock::renew_node(detail::Master& node, bool reacquire) {
  long long acks = 0;
  const std::string fence = std::to_string(hold_.fence());
  const std::string& pid = detail::pid_text();
  const detail::ReplyPtr reply =
      reacquire ? node.eval(detail::update_script(), {keys_->lock, keys_->fence, keys_->owner},
                            {token_, timeout_arg_, fence, holder_text_, pid}, REDIS_REPLY_INTEGER, detail::Retry::safe, &acks)
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
      if (e.code() == errc::not_replicated) note_ended(false);  // it was released
      throw;
    }
    if (answer.acquired)
      note_taken(sent, answer.fence);
    else
      note_ended(false);
    return Attempt{answer.acquired, answer.holder_pttl};
  }
  // Redlock: the lock is ours if a majority granted it while it was still valid.
  const bool held = hold_.valid_at(sent);  // a lock() while holding it: a renewal
  const auto deadline = sent + timeout_ - drift();
  detail::Votes<detail::LockReply> votes(nodes.size());
  auto is_granted = [](const detail::LockReply& r) { return r.acquired; };
  auto granted = [&] { return detail::tally::count(votes, is_granted); };
  {
    const std::string& pid = detail::pid_text();
    std::optional<detail::Ask> ask;  // a listening waiter marks the hold (see the lock script)
    if (listening)
      ask.emplace(detail::lock_script(), std::initializer_list<std::string_view>{keys_->lock, keys_->fence, keys_->owner},
                  std::initializer_list<std::string_view>{token_, timeout_arg_, holder_text_, pid, "1"}, REDIS_REPLY_ARRAY,
                  detail::Retry::safe, true);
    else
      ask.emplace(detail::lock_script(), std::initializer_list<std::string_view>{keys_->lock, keys_->fence, keys_->owner},
                  std::initializer_list<std::string_view>{token_, timeout_arg_, holder_text_, pid}, REDIS_REPLY_ARRAY,
                  detail::Retry::safe, true);
    fan_out(
        nodes, votes, detail::every_master(nodes.size()), *ask, deadline,
        [&](detail::Master& node, const redisReply& reply, long long acks) {
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
          [](detail::Master&, const redisReply& reply, long long) { return reply.integer == 1; },
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
    note_taken(sent, fence);
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
  note_ended(false);
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
  const bool valid = hold_.valid_at(sent);
  const auto limit = valid ? hold_.valid_until() : sent + timeout_ - drift();
  const auto bound = std::min(cap, limit);
  auto renewed = [](detail::Master& node, const redisReply& reply, long long acks) {
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
    const std::string fence = std::to_string(hold_.fence());
    const std::string& pid = detail::pid_text();
    const detail::Ask ask(detail::update_script(), {keys_->lock, keys_->fence, keys_->owner},
                          {token_, timeout_arg_, fence, holder_text_, pid}, REDIS_REPLY_INTEGER, detail::Retry::safe, true);
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
  auto clear_node = [&](detail::Master& node) {
    return node
        .eval(detail::clear_script(), {keys_->lock, keys_->owner}, {token_, force ? "1" : "0", keys_->channel},
              REDIS_REPLY_INTEGER, detail::Retry::unsafe)
        ->integer;
  };
  if (nodes.size() == 1) {
    const long long cleared = clear_node(*nodes.front());
    note_ended(true);
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
        [](detail::Master&, const redisReply& reply, long long) { return reply.integer; },
        detail::tally::clear_decided);
  }
  note_ended(true);
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
    if (renewed)
      note_taken(sent, 0);  // the fence known stays
    else
      note_ended(false);
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
  auto leave = [&](detail::Master& node) {
    return node
        .eval(detail::update_script(), {keys_->lock, keys_->fence, keys_->owner}, {token_, ttl}, REDIS_REPLY_INTEGER,
              detail::Retry::safe)
        ->integer;
  };
  return with_nodes("release_at", [&](Nodes& nodes) {
    if (nodes.size() == 1) {
      const bool ours = leave(*nodes.front()) == 1;
      note_ended(false);
      return ours;
    }
    detail::Votes<long long> votes(nodes.size());
    {
      const detail::Ask ask(detail::update_script(), {keys_->lock, keys_->fence, keys_->owner}, {token_, ttl},
                            REDIS_REPLY_INTEGER, detail::Retry::safe, false);
      fan_out(nodes, votes, detail::every_master(nodes.size()), ask, detail::no_deadline,
              [](detail::Master&, const redisReply& reply, long long) { return reply.integer; },
              detail::all_answers);
    }
    note_ended(false);
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
    auto held = [&](detail::Master& node) { return node.get(keys_->lock, detail::Retry::safe).has_value(); };
    if (nodes.size() == 1) return held(*nodes.front()) ? State::locked : State::open;
    // Locked if any master holds it (a lock on a minority still blocks others from a
    // majority); open only when a majority answered and none holds it.
    detail::Votes<bool> votes(nodes.size());
    const detail::Ask ask("GET", keys_->lock);
    fan_out(
        nodes, votes, detail::every_master(nodes.size()), ask, detail::no_deadline,
        [](detail::Master&, const redisReply& reply, long long) { return reply.type != REDIS_REPLY_NIL; },
        detail::tally::state_settled);
    if (const std::optional<State> verdict = detail::tally::state_verdict(votes)) return *verdict;
    const std::size_t answered = detail::tally::count(votes, [](bool) { return true; }).yes;
    throw Error(errc::no_quorum, "no quorum: " + detail::quorum_report(nodes, votes, answered, "answered",
                                                                       [](bool) { return "not locked"; }));
  });
}

inline Inspection ProcessLock::inspect() {
  return with_nodes("inspect", [&](Nodes& nodes) {
    auto look = [&](detail::Master& node) {
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
        [&](detail::Master&, const redisReply& reply, long long) { return detail::read_inspection(reply, token_); },
        detail::all_answers);
    if (std::optional<Inspection> merged = detail::tally::merge_inspections(votes)) return std::move(*merged);
    const std::size_t answered = detail::tally::count(votes, [](const Inspection&) { return true; }).yes;
    throw Error(errc::no_quorum, "no quorum: " + detail::quorum_report(nodes, votes, answered, "answered",
                                                                       [](const Inspection&) { return "answered"; }));
  });
}

}  // namespace process_lock

#endif  // PROCESS_LOCK_LOCK_HPP_
