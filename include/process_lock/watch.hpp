// process-lock: watching a lock: what changed between two reads and when to read again (pure
// functions), and the loop of watch_for / watch_until (reads, notices, reconnection).
// SPDX-License-Identifier: Apache-2.0
// One part of <process_lock.hpp>, which includes its parts in order; include that, not this.
#ifndef PROCESS_LOCK_HPP_
#error "include <process_lock.hpp>; process_lock/watch.hpp is one of its parts"
#endif
#ifndef PROCESS_LOCK_WATCH_HPP_
#define PROCESS_LOCK_WATCH_HPP_

namespace process_lock {
namespace detail {

/// The lock as one read of the watch script found it.
struct WatchView {
  bool locked = false;
  std::string token;       // the key's value; empty when open
  std::uint64_t fence = 0;  // the holder's recorded fence; 0 when it recorded none
  std::optional<Holder> holder;
  std::optional<std::chrono::milliseconds> ttl;  // nullopt: open, or no expiry
  std::uint64_t fence_counter = 0;
  std::chrono::steady_clock::time_point sent_at{};  // when the read was sent: the key expires no sooner than sent_at + ttl
  std::chrono::steady_clock::time_point read_at{};  // when its answer came: the key expires no later than read_at + ttl
};

/// What notices said, since the last read, about the end of a hold.
enum class EndNotice { none, released, forced };

/// How late, after the holder's TTL runs out, the watch reads again.
inline constexpr std::chrono::milliseconds watch_expiry_margin{5};

/// The same hold: same owner token and same fence (an owner that took the lock again between
/// two reads has a new fence).
inline bool same_hold(const WatchView& a, const WatchView& b) noexcept {
  return a.locked && b.locked && a.token == b.token && a.fence == b.fence;
}

/// The events between two reads, in order: the end of the hold `before` showed (forced or
/// released by a notice; else expired if `after` was read once its TTL could have run out,
/// else released), the holds that came and went unseen (one `released` event about the latest,
/// with `missed` the others, from the fencing counter), and the hold `after` shows if it is
/// new. With no `before`, one `current` event. `resumed`: the read follows a lost connection.
inline std::vector<WatchEvent> watch_changes(const WatchView* before, const WatchView& after, EndNotice notice,
                                             bool resumed) {
  std::vector<WatchEvent> events;
  auto about = [&](WatchEvent::Kind kind, const WatchView& v) {
    WatchEvent e;
    e.kind = kind;
    e.state = after.locked ? State::locked : State::open;
    e.token = v.token;
    e.fence = v.fence;
    e.holder = v.holder;
    if (kind == WatchEvent::Kind::current || kind == WatchEvent::Kind::acquired) e.ttl = v.ttl;
    e.fence_counter = after.fence_counter;
    e.resumed = resumed;
    return e;
  };
  if (!before) {
    events.push_back(about(WatchEvent::Kind::current, after));
    return events;
  }
  if (same_hold(*before, after)) return events;
  if (before->locked) {
    WatchEvent::Kind end = WatchEvent::Kind::released;
    if (notice == EndNotice::forced)
      end = WatchEvent::Kind::forced;
    else if (notice == EndNotice::none && before->ttl && after.read_at >= before->sent_at + *before->ttl)
      end = WatchEvent::Kind::expired;
    events.push_back(about(end, *before));
  }
  // Acquisitions by process-lock holders since `before`, less the one `after` shows.
  const bool new_fenced = after.locked && after.fence > before->fence_counter;
  std::uint64_t unseen =
      after.fence_counter > before->fence_counter ? after.fence_counter - before->fence_counter : 0;
  if (new_fenced && unseen > 0) --unseen;
  if (unseen > 0) {
    WatchView gone;
    gone.fence = new_fenced ? after.fence - 1 : after.fence_counter;
    WatchEvent e = about(WatchEvent::Kind::released, gone);
    e.missed = unseen - 1;
    events.push_back(std::move(e));
  }
  if (after.locked) events.push_back(about(WatchEvent::Kind::acquired, after));
  return events;
}

/// When the watch reads next, after a read that found `view`: at the holder's TTL end plus
/// watch_expiry_margin (measured from the answer, so that the key is surely gone if it was not
/// renewed), or after `poll_interval`, whichever is first.
inline std::chrono::steady_clock::time_point next_watch_read(const WatchView& view,
                                                            std::chrono::milliseconds poll_interval) noexcept {
  std::chrono::milliseconds wait = poll_interval;
  if (view.locked && view.ttl) wait = std::min(wait, *view.ttl + watch_expiry_margin);  // poll_interval <= 1 h: no overflow
  return view.read_at + wait;
}

/// Whether the watch recovers from `e` by itself (reconnecting): the server went away or is
/// busy; not refused credentials, missing rights or a peer that is not Redis.
inline bool watch_recovers_from(const Error& e) noexcept {
  const std::error_code c = e.code();
  return c == errc::connect_failed || c == errc::timeout || c == errc::connection_lost || c == errc::server_error;
}

}  // namespace detail

template <class Rep, class Period>
void ProcessLock::watch_for(const std::chrono::duration<Rep, Period>& timeout,
                            const std::function<void(const WatchEvent&)>& on_change, const WatchOptions& options) {
  detail::WaitSlot slot;
  watch_steady(deadline_after(timeout), slot, on_change, options);
}

template <class Clock, class Duration>
void ProcessLock::watch_until(const std::chrono::time_point<Clock, Duration>& deadline,
                              const std::function<void(const WatchEvent&)>& on_change, const WatchOptions& options) {
  detail::WaitSlot slot;
  watch_steady(to_steady(deadline), slot, on_change, options);
}

#if defined(__cpp_lib_jthread)
inline void ProcessLock::watch(std::stop_token stop, const std::function<void(const WatchEvent&)>& on_change,
                               const WatchOptions& options) {
  detail::WaitSlot slot;
  const std::stop_callback on_stop(stop, [&slot]() noexcept { slot.interrupt(); });
  watch_steady(std::chrono::steady_clock::time_point::max(), slot, on_change, options);
}
#endif

inline void ProcessLock::watch_steady(std::chrono::steady_clock::time_point deadline, detail::WaitSlot& slot,
                                      const std::function<void(const WatchEvent&)>& on_change,
                                      const WatchOptions& options) {
  using clock = std::chrono::steady_clock;
  using std::chrono::milliseconds;
  if (options.poll_interval < milliseconds(10) || options.poll_interval > std::chrono::hours(1))
    throw Error(errc::invalid_argument, "watch " + detail::printable_name(name_) + ": poll_interval must be 10 ms .. 1 h");
  if (nodes_.size() != 1)
    throw Error(errc::unsupported,
                "watch " + detail::printable_name(name_) + ": not supported for a lock on several masters");
  PerProcess& here = per_process();
  {
    const std::lock_guard<std::mutex> guard(here.waiters_mutex);
    here.waiters.push_back(&slot);
  }
  struct Unregister {
    PerProcess& here;
    detail::WaitSlot& slot;
    ~Unregister() {
      const std::lock_guard<std::mutex> guard(here.waiters_mutex);
      here.waiters.erase(std::find(here.waiters.begin(), here.waiters.end(), &slot));
    }
  } const unregister{here, slot};
  slot.prepare();
  auto stopped = [&] { return slot.cancelled() || (options.stop && options.stop->load()); };
  auto report = [&](const Error& e) {
    if (options.on_error) options.on_error(e);
  };
  const detail::LockKeys& keys = identity_->keys;
  // The lease outlives a few reads, so that a slow read does not let it lapse between two.
  const std::string lease = std::to_string((options.poll_interval * 3 + std::chrono::seconds(1)).count());
  const std::optional<clock::time_point> bound =
      deadline == clock::time_point::max() ? std::nullopt : std::optional<clock::time_point>(deadline);

  std::unique_ptr<detail::Master> reader = nodes_.front()->clone();
  reader->set_deadline(bound);
  std::unique_ptr<detail::Master> listener;  // subscribed to both channels, or nullptr: polling
  bool may_subscribe = true;                 // false once the server refused (no channel rights)
  std::optional<detail::WatchView> last;
  bool away = false;  // the last read or the subscription failed: the next read resumes
  detail::EndNotice notice = detail::EndNotice::none;
  milliseconds backoff(50);
  while (!stopped() && clock::now() < deadline) {
    // Subscribed before the read, so that nothing that happens after it goes unheard.
    if (!listener && may_subscribe) {
      try {
        auto node = nodes_.front()->clone();
        node->set_deadline(bound);
        node->subscribe(keys.channel);
        node->subscribe(keys.acquired_channel);
        listener = std::move(node);
      } catch (const Error& e) {
        if (e.code() == errc::permission_denied) may_subscribe = false;  // poll instead
        else if (!detail::watch_recovers_from(e)) throw;
        report(e);
      }
    }
    detail::WatchView view;
    try {
      view.sent_at = clock::now();
      const detail::ReplyPtr reply =
          reader->eval(detail::watch_script(), {keys.lock, keys.fence, keys.owner, keys.holder, keys.watch}, {lease},
                       REDIS_REPLY_ARRAY, detail::Retry::safe);
      view.read_at = clock::now();
      Inspection seen = detail::read_inspection(*reply, identity_->token);
      view.locked = seen.state == State::locked;
      view.token = detail::string_at(*reply, 0).value_or("");
      view.ttl = seen.ttl;
      view.fence_counter = seen.fence_counter;
      if (seen.holder) view.fence = seen.holder->fence;
      view.holder = std::move(seen.holder);
    } catch (const Error& e) {
      if (!detail::watch_recovers_from(e)) throw;
      report(e);
      away = true;
      listener.reset();  // subscribe again with the next read, so that both resume together
      slot.sleep_until(std::min(deadline, clock::now() + backoff));
      backoff = std::min(backoff * 2, std::max(options.poll_interval, milliseconds(50)));
      continue;
    }
    backoff = milliseconds(50);
    for (const WatchEvent& event : detail::watch_changes(last ? &*last : nullptr, view, notice, away && last))
      on_change(event);
    last = std::move(view);
    notice = detail::EndNotice::none;
    away = false;
    // Sleep until the next read is due, a notice comes, or the watch is stopped.
    const clock::time_point wake = std::min(deadline, detail::next_watch_read(*last, options.poll_interval));
    while (!stopped() && clock::now() < wake) {
      if (!listener) {
        slot.sleep_until(wake);
        break;
      }
      std::string text;
      try {
        if (listener->wait_message(wake, slot.fd(), &text) != detail::Master::Wake::message) break;
      } catch (const Error& e) {
        report(e);
        listener.reset();
        away = true;
        break;
      }
      if (text == "forced")
        notice = detail::EndNotice::forced;
      else if (text == "released" && notice == detail::EndNotice::none)
        notice = detail::EndNotice::released;
      if (!text.empty()) break;  // a notice: read now (an empty one is a SUBSCRIBE's confirmation)
    }
  }
}

}  // namespace process_lock

#endif  // PROCESS_LOCK_WATCH_HPP_
