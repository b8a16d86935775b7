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

/// Whether the watch recovers from `e` by itself (reconnecting): the server went away, or
/// answered that it is busy or between roles (LOADING, BUSY, MASTERDOWN, TRYAGAIN, CLUSTERDOWN,
/// OOM, "ERR max number of clients reached" on a new connection; READONLY only where
/// `reroutes`: behind Sentinel or in a Cluster, where the master moves). Anything else
/// (WRONGTYPE, a script error, READONLY from a replica named by the URL, refused credentials or
/// rights, a peer that is not Redis) would fail again at every read.
inline bool watch_recovers_from(const Error& e, bool reroutes) noexcept {
  const std::error_code c = e.code();
  if (c == errc::connect_failed || c == errc::timeout || c == errc::connection_lost) return true;
  if (c != errc::server_error) return false;
  const ErrorReply reply = read_error_reply(e.server_reply());
  for (const std::string_view busy : {"LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "OOM"})
    if (reply.code == busy) return true;
  if (reply.code == "ERR" && reply.message.substr(0, 26) == "max number of clients reac") return true;
  const std::string_view code = reply.code;
  return reroutes && code == "READONLY";
}

/// The longest pause between two reconnection attempts: the poll interval (a watch never
/// pauses longer than it would between reads), at most 2 s (so that a watch is back soon after
/// its server), at least 50 ms.
inline std::chrono::milliseconds watch_backoff_cap(std::chrono::milliseconds poll_interval) noexcept {
  return std::max(std::min(poll_interval, std::chrono::milliseconds(2000)), std::chrono::milliseconds(50));
}

/// The pause before a reconnection attempt, for a backoff of `backoff` and `permille` drawn
/// at random from 0..999: between half the backoff and all of it, so that the watchers of a
/// server that restarts do not all come back at the same moment.
inline std::chrono::milliseconds watch_retry_pause(std::chrono::milliseconds backoff, unsigned permille) noexcept {
  return backoff / 2 + backoff / 2 * std::min(permille, 999u) / 1000;
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
inline void ProcessLock::watch(const std::stop_token& stop, const std::function<void(const WatchEvent&)>& on_change,
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
  const PerProcess::Reachable reachable(per_process(), slot);
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
  const detail::Endpoint& endpoint = nodes_.front()->endpoint();
  const bool reroutes = endpoint.is_sentinel() || endpoint.is_cluster();
  // Whether the watch is over: a failure then is no news (a read cut short by the deadline).
  auto ending = [&] { return stopped() || clock::now() >= deadline; };
  // A connection that starts from what the lock's calls learned (Sentinel's master, the slots).
  auto connection = [&] {
    std::unique_ptr<detail::Master> node = std::move(clone_nodes().front());
    node->set_deadline(bound);
    return node;
  };
  // Reconnection pauses: doubling up to watch_backoff_cap, with jitter.
  struct Backoff {
    milliseconds next{50};
    milliseconds cap;
    std::minstd_rand random;
    milliseconds pause() {
      const milliseconds p = detail::watch_retry_pause(next, static_cast<unsigned>(random() % 1000));
      next = std::min(next * 2, cap);
      return p;
    }
  };
  const milliseconds cap = detail::watch_backoff_cap(options.poll_interval);
  const auto seed = static_cast<std::minstd_rand::result_type>(clock::now().time_since_epoch().count());
  Backoff read_backoff{milliseconds(50), cap, std::minstd_rand(seed)};
  Backoff listen_backoff{milliseconds(50), cap, std::minstd_rand(seed + 1)};

  std::unique_ptr<detail::Master> reader = connection();
  std::unique_ptr<detail::Master> listener;  // subscribed, or nullptr
  // The channels the server lets this user hear: 2 (releases and acquisitions), 1 (releases
  // only: NOPERM for the acquisitions' channel), 0 (none: polling only).
  int channels = 2;
  bool deaf = false;  // subscribing failed: changes meanwhile went unannounced
  std::optional<detail::WatchView> last;
  bool away = false;  // the next read resumes: a read or the subscription failed before it
  detail::EndNotice notice = detail::EndNotice::none;
  auto hear = [&](const std::string& text) {
    if (text == "forced")
      notice = detail::EndNotice::forced;
    else if (text == "released" && notice == detail::EndNotice::none)
      notice = detail::EndNotice::released;
  };
  // Subscribes `listener` to what `channels` allows; false if that failed for now (reported).
  auto subscribe = [&]() -> bool {
    while (channels > 0) {
      try {
        std::unique_ptr<detail::Master> node = connection();
        // One SUBSCRIBE for both: no notice is taken for a confirmation; those that came
        // before the last confirmation count as heard.
        const std::vector<std::string> early = channels == 2
                                                   ? node->subscribe({keys.channel, keys.acquired_channel})
                                                   : node->subscribe({keys.channel});
        for (const std::string& text : early) hear(text);
        listener = std::move(node);
        listen_backoff.next = milliseconds(50);
        if (deaf) away = true;  // what happened while deaf is found by the next read
        deaf = false;
        return true;
      } catch (const Error& e) {
        if (e.code() == errc::permission_denied) {
          // A user allowed the release channel only still hears releases; with neither, polling.
          --channels;
          report(Error(errc::permission_denied,
                       std::string(e.what()) + (channels == 1
                                                    ? "; listening to release notices only (acquisitions found by polling)"
                                                    : "; no notices: watching by polling from now on"),
                       e.server_reply()));
          continue;
        }
        if (!detail::watch_recovers_from(e, reroutes)) throw;
        if (!ending()) report(e);
        deaf = true;
        return false;
      }
    }
    return false;
  };

  while (!ending()) {
    // Subscribed before the read, so that nothing that happens after it goes unheard.
    if (!listener && channels > 0) (void)subscribe();
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
      if (!detail::watch_recovers_from(e, reroutes)) throw;
      if (ending()) break;  // cut short by the deadline or a stop: nothing to report
      report(e);
      away = true;
      listener.reset();  // subscribe again with the next read, so that both resume together
      slot.sleep_until(std::min(deadline, clock::now() + read_backoff.pause()));
      continue;
    }
    read_backoff.next = milliseconds(50);
    for (const WatchEvent& event : detail::watch_changes(last ? &*last : nullptr, view, notice, away && last))
      on_change(event);
    last = std::move(view);
    notice = detail::EndNotice::none;
    away = false;
    // Sleep until the next read is due, a notice comes, or the watch is stopped.
    const clock::time_point wake = std::min(deadline, detail::next_watch_read(*last, options.poll_interval));
    while (!stopped() && clock::now() < wake) {
      if (!listener) {
        if (channels == 0) {
          slot.sleep_until(wake);
          break;
        }
        // Subscribing failed: try again with backoff, and once it works read at once.
        slot.sleep_until(std::min(wake, clock::now() + listen_backoff.pause()));
        if (stopped() || clock::now() >= wake || subscribe()) break;
        continue;
      }
      std::string text;
      try {
        if (listener->wait_message(wake, slot.fd(), &text) != detail::Master::Wake::message) break;
        if (text.empty()) continue;  // not a notice
        hear(text);
        // One read for every notice already here: a burst of changes costs one EVAL.
        while (listener->wait_message(clock::time_point::min(), -1, &text) == detail::Master::Wake::message) hear(text);
      } catch (const Error& e) {
        if (!ending()) report(e);
        listener.reset();
        away = true;
      }
      break;  // a notice, or a lost listener: read now
    }
  }
}

}  // namespace process_lock

#endif  // PROCESS_LOCK_WATCH_HPP_
