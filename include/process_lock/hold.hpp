// process-lock: Hold, this object's hold on the lock (ours or not, its fence, until when it is
// valid, which hold it is), changed only by named methods.
// SPDX-License-Identifier: Apache-2.0
// One part of <process_lock.hpp>, which includes its parts in order; include that, not this.
#ifndef PROCESS_LOCK_HPP_
#error "include <process_lock.hpp>; process_lock/hold.hpp is one of its parts"
#endif
#ifndef PROCESS_LOCK_HOLD_HPP_
#define PROCESS_LOCK_HOLD_HPP_

namespace process_lock {
namespace detail {

/// What this object knows of its hold on the lock. Reads take no lock (each value is atomic, so
/// `owner()`, `fence()` and `valid_for()` never wait for a call in progress). Changes are ordered
/// by `writers`, a mutex the caller passes in (ProcessLock::PerProcess::state_mutex: one per
/// process, so that a forked child never waits for a mutex its parent's threads held), and each
/// change names what happened: taken (acquired or renewed) or ended (lost or released).
///
/// Holds are counted by an epoch that grows each time one ends, so that an answer that arrives
/// late for a hold that has meanwhile ended (the keeper's renewal crossing a clear()) cannot
/// revive it: a change made for a given epoch is refused once that hold has ended.
class Hold {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  using Epoch = std::uint64_t;

  bool ours() const noexcept { return ours_.load(); }
  /// The fencing token of the current hold; 0 when none (not ours, or not known).
  std::uint64_t fence() const noexcept { return fence_.load(); }
  /// Until when the current hold is valid by our clock; the clock's epoch when not ours.
  time_point valid_until() const noexcept { return time_point(time_point::duration(valid_until_.load())); }
  /// Whether it is ours and still valid at `t`.
  bool valid_at(time_point t) const noexcept { return ours() && t < valid_until(); }

  /// The lock is ours (acquired, or renewed) until `valid_until`; `fence` 0 keeps the one known.
  /// With `epoch`, only if that hold has not ended; returns whether it was recorded.
  bool taken(std::mutex& writers, time_point valid_until, std::uint64_t fence,
               std::optional<Epoch> epoch = std::nullopt) {
    const std::lock_guard<std::mutex> guard(writers);
    if (epoch && *epoch != epoch_) return false;
    valid_until_ = valid_until.time_since_epoch().count();
    if (fence != 0) fence_ = fence;
    ours_ = true;
    return true;
  }
  /// The hold ended: `released` by our own release (clear(), release_at()), else lost. Ending a
  /// hold that was not ours changes nothing. With `epoch`, only if that hold has not ended yet.
  bool ended(std::mutex& writers, bool released, std::optional<Epoch> epoch = std::nullopt) {
    const std::lock_guard<std::mutex> guard(writers);
    if (epoch && *epoch != epoch_) return false;
    valid_until_ = 0;
    fence_ = 0;
    if (ours_) {
      ++epoch_;
      last_end_released_ = released;
    }
    ours_ = false;
    return true;
  }

  /// The current hold's epoch (for a keeper, which renews only that one).
  Epoch epoch(std::mutex& writers) const {
    const std::lock_guard<std::mutex> guard(writers);
    return epoch_;
  }
  struct End {
    bool ended = false;     // the hold `epoch` is over
    bool released = false;  // and the last hold to end did so by our own release
  };
  End end_of(std::mutex& writers, Epoch epoch) const {
    const std::lock_guard<std::mutex> guard(writers);
    return {epoch_ != epoch, last_end_released_};
  }

 private:
  std::atomic<bool> ours_{false};
  std::atomic<std::uint64_t> fence_{0};
  std::atomic<time_point::rep> valid_until_{0};
  Epoch epoch_ = 0;                 // under `writers`
  bool last_end_released_ = false;  // under `writers`
};

}  // namespace detail
}  // namespace process_lock

#endif  // PROCESS_LOCK_HOLD_HPP_
