// process-lock: the keeper (the thread that renews a hold) and the calls that start and stop it.
// SPDX-License-Identifier: Apache-2.0
// One part of <process_lock.hpp>, which includes its parts in order; include that, not this.
#ifndef PROCESS_LOCK_HPP_
#error "include <process_lock.hpp>; process_lock/keeper.hpp is one of its parts"
#endif
#ifndef PROCESS_LOCK_KEEPER_HPP_
#define PROCESS_LOCK_KEEPER_HPP_

namespace process_lock {

namespace detail {

/// The keeper: a thread that renews a hold on its own connections until told to stop, and
/// reports the loss once (see ProcessLock::keep()). It shares with the lock only what `Lock`
/// names: it reads the identity and the algorithm, and changes the hold only through Hold's
/// methods, under its writers' mutex, and only while the hold it keeps (`epoch`) is current.
/// Its timing is next_keeper_step's.
class Keeper {
 public:
  /// What of the lock the keeper uses; all of it outlives the keeper's use of it (the lock stops
  /// its keeper before it goes, or, from the keeper's own callback, the keeper touches none of it
  /// once the callback returns).
  struct Lock {
    const Backend& backend;
    const LockIdentity& identity;
    Hold& hold;
    std::mutex& hold_mutex;              // PerProcess::state_mutex
    std::chrono::milliseconds validity;  // of a renewal, from when it was sent: the timeout less drift
  };

  Keeper(Lock lock, Masters masters, KeepOptions options, Hold::Epoch epoch, std::chrono::milliseconds interval,
         std::chrono::milliseconds margin, std::string shown_name)
      : lock_(lock),
        masters_(std::move(masters)),
        options_(std::move(options)),
        epoch_(epoch),
        interval_(interval),
        margin_(margin),
        shown_name_(std::move(shown_name)) {}

  /// The keeper thread's body; `control` stops it and records that it finished.
  void run(KeeperControl& control) noexcept {
    using clock = std::chrono::steady_clock;
    using std::chrono::milliseconds;
    control.id = std::this_thread::get_id();
    const unsigned long generation = fork_generation();
    auto report_callback_failure = [&](const char* which, const char* what) {
      std::fprintf(stderr, "process_lock: the %s callback of %s threw%s%s\n", which, shown_name_.c_str(),
                   what ? ": " : "", what ? what : "");
    };
    try {
      const milliseconds retry_step = std::max(interval_ / 4, milliseconds(5));
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
        if (ends_hold && !already_ended && !lock_.hold.ended(lock_.hold_mutex, false, epoch_))
          return;  // released meanwhile
        if (!options_.on_lost) return;
        Lost lost;
        lost.reason = reason;
        if (!ends_hold)
          lost.remaining =
              std::max(std::chrono::duration_cast<milliseconds>(valid_until - clock::now()), milliseconds(0));
        if (reason == LostReason::unreachable) lost.error = last_error;
        try {
          options_.on_lost(lost);
        } catch (const std::exception& e) {
          report_callback_failure("on_lost", e.what());
        } catch (...) {
          report_callback_failure("on_lost", nullptr);
        }
      };

      std::unique_lock<std::mutex> held(control.mutex);
      while (!control.stop) {
        const auto [ended, released] = lock_.hold.end_of(lock_.hold_mutex, epoch_);
        // The user's own call ended the hold: a release is not a loss; anything else is.
        if (ended && released) break;
        if (ended) return finish(held, LostReason::taken, {}, true);
        const auto now = clock::now();
        const auto valid_until = lock_.hold.valid_until();
        const bool capped = (options_.max_hold && now >= detail::saturating_deadline(started, *options_.max_hold)) ||
                            (options_.max_renewals && renewals >= *options_.max_renewals);
        // Due `interval` after the last acquire or renewal (ours or the user's), whenever keep() began.
        const auto due = retrying ? retry_at : valid_until - lock_.validity + interval_;
        const KeeperStep step = next_keeper_step(now, valid_until, margin_, due, capped);
        if (step.kind == KeeperStep::Kind::report) return finish(held, step.reason, valid_until, false);
        if (step.kind == KeeperStep::Kind::renew) {
          held.unlock();
          std::optional<bool> renewed;
          const auto sent = clock::now();
          try {
            renewed = lock_.backend.renew(lock_.identity, masters_, lock_.hold, sent, step.until,
                                          false);  // never wait past the time to report
          } catch (const Error& e) {
            last_error =
                Error(static_cast<errc>(e.code().value()), "keep(" + shown_name_ + "): " + e.what(), e.server_reply());
          }
          held.lock();
          if (!renewed) {
            retrying = true;  // try again soon, until the report time
            retry_at = clock::now() + retry_step;
            continue;
          }
          if (!*renewed) return finish(held, LostReason::taken, valid_until, false);
          if (!lock_.hold.taken(lock_.hold_mutex, sent + lock_.validity, 0, epoch_))
            continue;  // ended meanwhile: see above
          retrying = false;
          ++renewals;
          if (options_.on_renewed) {
            held.unlock();
            try {
              options_.on_renewed();
            } catch (const std::exception& e) {
              report_callback_failure("on_renewed", e.what());
            } catch (...) {
              report_callback_failure("on_renewed", nullptr);
            }
            // The callback forked and this is the child, where this thread is the only one: the
            // keeper ends (the child starts its own with keep()); `control` is the parent's.
            if (fork_generation() != generation) {
              control.finished = true;
              return;
            }
            held.lock();
          }
          continue;
        }
        control.cv.wait_until(held, step.until, [&] { return control.stop; });
      }
      control.finished = true;
    } catch (...) {
      // Only allocation can fail here; the lock then simply expires if nobody renews it.
      control.finished = true;
      std::fprintf(stderr, "process_lock: the keeper of %s stopped: out of memory\n", shown_name_.c_str());
    }
  }

 private:
  Lock lock_;
  Masters masters_;  // the keeper's own connections: clones of the lock's
  KeepOptions options_;
  Hold::Epoch epoch_;  // the hold it keeps
  std::chrono::milliseconds interval_;
  std::chrono::milliseconds margin_;
  std::string shown_name_;  // a copy: the object may be gone once a callback returns
};

}  // namespace detail

inline std::chrono::milliseconds ProcessLock::valid_for() const noexcept {
  if (!hold_.ours()) return std::chrono::milliseconds(0);
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(hold_.valid_until() - std::chrono::steady_clock::now());
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
  const detail::Hold::Epoch epoch = hold_.epoch(per_process().state_mutex);
  if (!hold_.ours()) throw invalid("the lock is not held");
  auto control = std::make_shared<detail::KeeperControl>();
  auto keeper = std::make_unique<detail::Keeper>(
      detail::Keeper::Lock{*backend_, *identity_, hold_, per_process().state_mutex, timeout_ - drift()}, clone_nodes(),
      std::move(options), epoch, interval, margin, detail::printable_name(name_));
  control->thread = std::thread([control, keeper = std::move(keeper)] { keeper->run(*control); });
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

inline const std::string& ProcessLock::key() const noexcept { return identity_->keys.lock; }

}  // namespace process_lock

#endif  // PROCESS_LOCK_KEEPER_HPP_
