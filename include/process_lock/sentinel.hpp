// process-lock: behind Redis Sentinel, where the master is: asking the sentinels, and following
// their +switch-master announcements.
// SPDX-License-Identifier: Apache-2.0
// One part of <process_lock.hpp>, which includes its parts in order; include that, not this.
#ifndef PROCESS_LOCK_HPP_
#error "include <process_lock.hpp>; process_lock/sentinel.hpp is one of its parts"
#endif
#ifndef PROCESS_LOCK_SENTINEL_HPP_
#define PROCESS_LOCK_SENTINEL_HPP_

namespace process_lock {
namespace detail {

/// Where a redis+sentinel:// URL's master is. The address is kept between calls and followed
/// through the sentinels' `+switch-master` announcements, read from a subscription on a sentinel:
/// a local check, no round trip, so that clients move to a new master as soon as the sentinels
/// name it. The sentinels are asked (one round trip) when no address is known, before each new
/// connection to the master, and whenever the subscription is down; the owner forgets the
/// address on a connection error or READONLY. A switch between an answer and the subscription is
/// caught by the ROLE check on connecting (LinkSettings::confirm_master) and by READONLY.
/// Not thread-safe; its owner (a Master) serialises calls.
class SentinelLocator {
 public:
  using Clock = std::chrono::steady_clock;

  SentinelLocator(const Endpoint& endpoint, std::chrono::milliseconds connect_timeout,
                  std::chrono::milliseconds command_timeout)
      : endpoint_(endpoint),
        connect_timeout_(connect_timeout),
        command_timeout_(command_timeout),
        asked_(settings(endpoint)),
        watch_(settings(endpoint)) {}

  /// The master's address for a call that ends by `deadline`, given the one in use (`known`,
  /// with a connection to it or not): the announced new one if the sentinels switched; `known`
  /// while the subscription is up and the connection open; else the sentinels' answer.
  Address locate(const std::optional<Address>& known, bool connected, Clock::time_point deadline) {
    if (watch_.inherited()) watch_.forget_inherited();  // the parent's subscription
    if (known && connected && watch_.is_open()) {
      if (std::optional<Address> moved = announced_switch(deadline)) return *moved;
      if (watch_.is_open()) return *known;  // still subscribed: no news is good news
    }
    Address named = ask(deadline);
    watch_switches(deadline);
    return named;
  }

  /// Asks the sentinels for the master's address: the one that answered last first, then the
  /// others in turn; the first answer wins.
  Address ask(Clock::time_point deadline) {
    std::string failures;
    const std::size_t count = endpoint_.sentinels.size();
    for (std::size_t n = 0; n < count; ++n) {
      const std::size_t i = (index_ + n) % count;
      if (n > 0) asked_.close();
      try {
        const ReplyPtr reply = query(i, deadline);
        if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 && reply->element[0]->type == REDIS_REPLY_STRING &&
            reply->element[1]->type == REDIS_REPLY_STRING) {
          const auto port = parse_uint(std::string_view(reply->element[1]->str, reply->element[1]->len), 1, 65535);
          if (port && reply->element[0]->len > 0) {
            index_ = i;
            return Address{std::string(reply->element[0]->str, reply->element[0]->len), static_cast<int>(*port)};
          }
        }
        failures += "; " + endpoint_.sentinels[i].display() +
                    (reply->type == REDIS_REPLY_NIL ? ": knows no such master" : ": answered nonsense");
      } catch (const Error& e) {
        failures += "; " + std::string(e.what());
      }
    }
    asked_.close();
    throw Error(errc::connect_failed, "no sentinel of " + endpoint_.display() + " named the master " +
                                          Endpoint::printable(endpoint_.master_name) + failures);
  }

 private:
  // What a link to a sentinel says on connecting: the sentinels' own credentials, and both
  // passwords hidden from messages.
  static LinkSettings settings(const Endpoint& endpoint) {
    LinkSettings s;
    s.user = endpoint.sentinel_user;
    s.password = endpoint.sentinel_password;
    s.has_password = endpoint.sentinel_has_password;
    s.other_secret = endpoint.password;
    s.tls = endpoint.tls_context;  // rediss+sentinel://: the sentinels speak TLS too
    return s;
  }

  // How messages name sentinel `i`.
  std::string sentinel_name(std::size_t i) const {
    Endpoint ep;
    ep.host = endpoint_.sentinels[i].host;
    ep.port = endpoint_.sentinels[i].port;
    ep.user = endpoint_.sentinel_user;
    ep.password = endpoint_.sentinel_password;
    ep.has_password = endpoint_.sentinel_has_password;
    ep.tls = endpoint_.tls;
    return ep.display();
  }

  // SENTINEL get-master-addr-by-name on sentinel `i`, reusing the link to it if open. As on a
  // master: a reused link that turns out dead gets one fresh retry (asking cannot change anything).
  ReplyPtr query(std::size_t i, Clock::time_point deadline) {
    const auto call_deadline = std::min(deadline, Clock::now() + connect_timeout_ + command_timeout_);
    if (asked_.inherited()) asked_.forget_inherited();
    if (asked_.broken()) asked_.close();
    bool reused = asked_.is_open();
    const std::string_view argv[] = {"SENTINEL", "get-master-addr-by-name", endpoint_.master_name};
    for (;;) {
      if (!asked_.is_open())
        asked_.open(endpoint_.sentinels[i], {}, bound_by(call_deadline, connect_timeout_), sentinel_name(i));
      try {
        ReplyPtr reply = asked_.command(argv, 3, bound_by(call_deadline, command_timeout_));
        asked_.check_error(*reply);
        return reply;
      } catch (const TransportFailure& failure) {
        asked_.close();
        if (!reused || failure.error.code() != errc::connection_lost) throw failure.error;
        reused = false;
      } catch (const Error&) {
        throw;  // the sentinel answered with an error: the link is in step
      } catch (...) {
        asked_.close();
        throw;
      }
    }
  }

  // Subscribes to `+switch-master` on the sentinel that answered last, unless already done.
  // Without it (no rights, a failing sentinel) every call asks; a new try is made at most once
  // a second, so that a sentinel that refuses costs no round trip per call.
  void watch_switches(Clock::time_point deadline) {
    if (watch_.is_open()) return;
    const auto now = Clock::now();
    if (now < next_watch_try_) return;
    next_watch_try_ = now + std::chrono::seconds(1);
    const auto call_deadline = std::min(deadline, now + connect_timeout_ + command_timeout_);
    try {
      watch_.open(endpoint_.sentinels[index_], {}, bound_by(call_deadline, connect_timeout_), sentinel_name(index_));
      const std::string_view argv[] = {"SUBSCRIBE", switch_channel};
      const ReplyPtr reply = watch_.command(argv, 2, bound_by(call_deadline, command_timeout_));
      watch_.check_error(*reply);
      if (reply->type != REDIS_REPLY_ARRAY) watch_.unexpected_reply();
      heard_ = Clock::now();
      ping_sent_.reset();
    } catch (const TransportFailure&) {
      watch_.close();
    } catch (const Error&) {
      watch_.close();
    }
  }

  // The master's new address if the sentinels announced a switch of ours since the last look
  // (the last one wins); closes the subscription if it failed.
  // A sentinel that stops answering without closing the connection (stopped, or cut off by the
  // network) would leave the subscription silent forever, and a failover unannounced: when
  // nothing came for `heartbeat` a PING is sent (without waiting for it), and a sentinel
  // that has not answered it a command timeout later is taken as gone.
  std::optional<Address> announced_switch(Clock::time_point deadline) {
    std::optional<Address> moved;
    try {
      // Bounded, so that a sentinel that never stops talking cannot hold the call.
      for (int looked = 0; looked < 64 && Clock::now() < deadline; ++looked) {
        ReplyPtr message = watch_.buffered_reply();
        if (!message) {
          if (watch_.receive(Clock::time_point::min(), -1) != Arrival::data) break;
          message = watch_.buffered_reply();
          if (!message) continue;
        }
        heard_ = Clock::now();  // a message or the PING's answer: it is alive
        ping_sent_.reset();
        if (message->type != REDIS_REPLY_ARRAY || message->elements != 3 ||
            message->element[2]->type != REDIS_REPLY_STRING)
          continue;
        if (auto a = parse_switch_master({message->element[2]->str, message->element[2]->len}, endpoint_.master_name))
          moved = std::move(a);
      }
      const auto now = Clock::now();
      if (ping_sent_ && now - *ping_sent_ >= command_timeout_) {
        watch_.close();  // silent: the sentinels are asked again
      } else if (!ping_sent_ && now - heard_ >= heartbeat) {
        const std::string_view ping[] = {"PING"};
        watch_.append(ping, 1);
        watch_.flush(bound_by(deadline, command_timeout_));  // a few bytes: a live socket takes them at once
        ping_sent_ = now;
      }
    } catch (const TransportFailure&) {
      watch_.close();
    } catch (const std::exception&) {  // its reader out of memory: the subscription is dropped
      watch_.close();
    }
    return moved;
  }

  static constexpr std::chrono::seconds heartbeat{1};

  const Endpoint endpoint_;  // the sentinels, the master's name, the sentinels' credentials
  const std::chrono::milliseconds connect_timeout_;
  const std::chrono::milliseconds command_timeout_;
  Link asked_;                                  // to the sentinel that answered last
  std::size_t index_ = 0;                       // its place in endpoint_.sentinels
  Link watch_;                                  // subscribed to its +switch-master
  Clock::time_point next_watch_try_{};          // after a failed subscription
  Clock::time_point heard_{};                   // when the subscription last showed the sentinel alive
  std::optional<Clock::time_point> ping_sent_;  // a PING not yet answered there
};

}  // namespace detail
}  // namespace process_lock

#endif  // PROCESS_LOCK_SENTINEL_HPP_
