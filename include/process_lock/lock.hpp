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
    : name_(std::move(name)), timeout_(timeout), creator_pid_(getpid()) {
  if (name_.empty()) throw Error(errc::invalid_argument, "the lock name must not be empty");
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  std::string holder_text = host;
  std::replace(holder_text.begin(), holder_text.end(), '\n', '?');  // the newline ends the host
  if (options.holder_info.size() > max_holder_info)
    throw Error(errc::invalid_argument, "Options::holder_info is " + std::to_string(options.holder_info.size()) +
                                            " bytes; at most " + std::to_string(max_holder_info) + " are recorded");
  if (!options.holder_info.empty()) holder_text += '\n' + options.holder_info;
  std::string_view url = options.url;
  std::string_view source = "Options::url";
  if (url.empty()) {
    const char* env = std::getenv("REDIS_URL");
    source = "REDIS_URL";
    url = env && *env ? std::string_view(env) : std::string_view("redis://127.0.0.1:6379");
  }
  std::vector<detail::Endpoint> endpoints = detail::parse_urls(url, source);
  detail::settle_tls(endpoints, options.tls);
  detail::make_statics();  // before any thread of this lock exists
  if (options.wait_replicas && (*options.wait_replicas < 0 || *options.wait_replicas > 1000))
    throw Error(errc::invalid_argument, "Options::wait_replicas must be from 0 to 1000");
  // Checked even where unused (no replication check, one master), so that a nonsense value
  // never waits to fail until the URL changes.
  if (options.wait_timeout) (void)detail::checked_io_timeout(options.wait_timeout, std::nullopt, "wait_timeout");
  if (options.node_timeout) (void)detail::checked_io_timeout(options.node_timeout, std::nullopt, "node_timeout");
  identity_ = std::make_unique<const detail::LockIdentity>(detail::LockIdentity{
      detail::LockKeys(options.key_prefix + name_), detail::random_uuid_v4(), std::to_string(timeout.count()),
      std::move(holder_text)});
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
  if (nodes_.size() == 1) {
    backend_ = std::make_unique<const detail::SingleMaster>();
    return;
  }
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
  const auto node_timeout =
      chosen ? *chosen
             : std::clamp(std::chrono::milliseconds(timeout_.count() / (2 * static_cast<long long>(nodes_.size()))),
                          std::chrono::milliseconds(1), shortest_command);
  backend_ = std::make_unique<const detail::Quorum>(timeout_ - drift(), node_timeout);
}

/// What the threads of one process share in a ProcessLock. A forked child makes its own on its
/// first use there and never touches its parent's: at the fork a thread of the parent, which
/// does not exist in the child, may have held any of these mutexes (the child's copy stays
/// locked for ever), been in the middle of a call on a connection, or been the keeper that
/// `keeper->thread` names (joining it in the child would wait for whatever new thread reuses its
/// descriptor). So fork() waits for nothing, and the child never waits for the parent's threads.
/// The parent's part is left in the child as it was, never destroyed (its mutexes may be locked
/// and its std::thread joinable): a deliberate leak of one per object and fork.
/// Lock order: `mutex` (a call) or a keeper's KeeperControl::mutex, then `state_mutex` (the
/// hold's writers), which is always taken last; `keeper_mutex`, `waiters_mutex` and
/// KeeperControl::join_mutex are never held while another of these is taken.
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
  std::vector<detail::WaitSlot*> waiters;         // the waits and watches in progress, for cancel()

  /// Makes a wait or a watch reachable by cancel() for as long as it lives.
  class Reachable {
   public:
    Reachable(PerProcess& here, detail::WaitSlot& slot) : here_(here), slot_(slot) {
      const std::lock_guard<std::mutex> guard(here_.waiters_mutex);
      here_.waiters.push_back(&slot_);
    }
    ~Reachable() {
      const std::lock_guard<std::mutex> guard(here_.waiters_mutex);
      here_.waiters.erase(std::find(here_.waiters.begin(), here_.waiters.end(), &slot_));
    }
    Reachable(const Reachable&) = delete;
    Reachable& operator=(const Reachable&) = delete;

   private:
    PerProcess& here_;
    detail::WaitSlot& slot_;
  };
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

inline bool ProcessLock::note_taken(std::chrono::steady_clock::time_point sent, std::uint64_t fence,
                                    std::optional<detail::Hold::Epoch> epoch) {
  return hold_.taken(per_process().state_mutex, sent + timeout_ - drift(), fence, epoch);
}

inline bool ProcessLock::note_ended(bool released, std::optional<detail::Hold::Epoch> epoch) {
  return hold_.ended(per_process().state_mutex, released, epoch);
}

inline const std::string& ProcessLock::token() const noexcept { return identity_->token; }

inline ProcessLock::Attempt ProcessLock::acquire_on(Nodes& nodes, bool listening) {
  const auto sent = std::chrono::steady_clock::now();
  const detail::Acquired found = backend_->acquire(*identity_, nodes, hold_, sent, listening);
  if (found.hold == detail::Acquired::Hold::taken) note_taken(sent, found.fence);
  if (found.hold == detail::Acquired::Hold::ended) note_ended(false);
  if (found.error) throw Error(*found.error);  // a copy: thrown by value
  return Attempt{found.hold == detail::Acquired::Hold::taken, found.holder_pttl};
}

inline ProcessLock::Attempt ProcessLock::attempt(std::string_view call, bool listening) {
  return with_nodes(call, [&](Nodes& nodes) { return acquire_on(nodes, listening); });
}

inline bool ProcessLock::lock() { return attempt("lock").acquired; }

inline bool ProcessLock::update() {
  return with_nodes("update", [&](Nodes& nodes) {
    const auto sent = std::chrono::steady_clock::now();
    const bool renewed = backend_->renew(*identity_, nodes, hold_, sent, detail::no_deadline, true);
    if (renewed)
      note_taken(sent, 0);  // the fence known stays
    else
      note_ended(false);
    return renewed;
  });
}

inline std::optional<bool> ProcessLock::clear(bool force) {
  stop_keeping();  // renewing what we are releasing would fight the release
  return with_nodes("clear", [&](Nodes& nodes) {
    const detail::Released<std::optional<bool>> cleared = backend_->clear(*identity_, nodes, force);
    note_ended(true);
    if (cleared.error) throw Error(*cleared.error);  // a copy: thrown by value
    return cleared.value;
  });
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
  return with_nodes("release_at", [&](Nodes& nodes) {
    const detail::Released<bool> kept = backend_->release_at(*identity_, nodes, ttl);
    note_ended(false);
    if (kept.error) throw Error(*kept.error);  // a copy: thrown by value
    return kept.value;
  });
}

inline State ProcessLock::state() {
  return with_nodes("state", [&](Nodes& nodes) { return backend_->state(*identity_, nodes); });
}

inline Inspection ProcessLock::inspect() {
  return with_nodes("inspect", [&](Nodes& nodes) { return backend_->inspect(*identity_, nodes); });
}

}  // namespace process_lock

#endif  // PROCESS_LOCK_LOCK_HPP_
