// process-lock: in a Redis Cluster, which node owns the lock's slot: the slot map, and what a
// redirecting reply asks for.
// SPDX-License-Identifier: Apache-2.0
// One part of <process_lock.hpp>, which includes its parts in order; include that, not this.
#ifndef PROCESS_LOCK_HPP_
#error "include <process_lock.hpp>; process_lock/cluster.hpp is one of its parts"
#endif
#ifndef PROCESS_LOCK_CLUSTER_HPP_
#define PROCESS_LOCK_CLUSTER_HPP_

namespace process_lock {
namespace detail {

/// What an error reply asks of the caller about where its command goes. None of these replies
/// means the command ran, so resending it is always safe.
struct Reroute {
  enum Kind {
    none,          // an answer like any other
    moved,         // Cluster MOVED: the slot's owner is `to`; learn it
    ask,           // Cluster ASK: one command on the importing node `to`
    try_again,     // Cluster TRYAGAIN: the slot is mid-migration; wait a little
    master_moved,  // READONLY behind sentinels: a failover demoted the master; ask them again
  };
  Kind kind = none;
  Address to;  // for moved and ask; an empty host is the node that answered (see parse_redirect())
};

/// Reads an error reply's text. READONLY counts only `behind_sentinels` (elsewhere it is an
/// ordinary error); Redis 7 answers it plainly, older versions wrap it in a script error
/// ("ERR Error running script ... -READONLY ..."): see is_readonly_error().
[[nodiscard]] inline Reroute reroute_of(std::string_view text, bool behind_sentinels) {
  if (auto redirect = parse_redirect(text))
    return {redirect->ask ? Reroute::ask : Reroute::moved, std::move(redirect->address)};
  if (text.substr(0, 8) == "TRYAGAIN") return {Reroute::try_again, {}};
  if (behind_sentinels && is_readonly_error(text)) return {Reroute::master_moved, {}};
  return {};
}

/// redis+cluster://: what is known of the cluster's layout, and how to find the owner of the
/// lock's slot (all of a lock's keys share one). The slot map is read (CLUSTER SLOTS, one round
/// trip) only when no owner is known: on the first call and after a failure, never per call (a
/// MOVED names the new owner itself). Not thread-safe; its owner (a Master) serialises calls.
class ClusterLocator {
 public:
  using Clock = std::chrono::steady_clock;

  /// The slot whose owner calls go to. A locator with no slot (a subscriber's) takes any node.
  void route_by(std::string_view key) noexcept { slot_ = key_slot(key); }

  /// After a failure of `node`: it is asked last next time.
  void failed(const Address& node) { failed_node_ = node; }

  /// Finds the owner of the slot and leaves `link` open to it; returns its address.
  /// `open_at(address)` opens `link` to a node (it throws Error on failure). Asked in turn,
  /// within `call_deadline`: the node that answered last, the nodes of the last map, the
  /// URL's `seeds`, and last the node whose failure brought us here. With no slot, the first
  /// node reached is kept. Error messages name the cluster as `cluster_name`.
  template <class OpenAt>
  Address locate(Link& link, OpenAt&& open_at, const std::vector<Address>& seeds, const std::string& cluster_name,
                 Clock::time_point call_deadline, std::chrono::milliseconds command_timeout) {
    const std::vector<Address> order = asking_order(seeds);
    std::string failures;
    // The first failure other than not reaching a node (a malformed map, refused credentials, an
    // error reply) gives the call's error its kind; else connect_failed, or timeout if time ran out.
    std::optional<errc> kind;
    for (std::size_t i = 0; i < order.size(); ++i) {
      if (Clock::now() >= call_deadline) {
        failures += "; " + std::to_string(order.size() - i) + " more not asked: the time for this call had run out";
        if (!kind) kind = errc::timeout;
        break;
      }
      std::optional<Address> owner;  // named by the map, elsewhere
      try {
        open_at(order[i]);
        if (!slot_) {
          answered_ = order[i];
          return order[i];
        }
        const std::string_view argv[] = {"CLUSTER", "SLOTS"};
        const ReplyPtr reply = link.command(argv, 2, bound_by(call_deadline, command_timeout));
        link.check_error(*reply);
        SlotRoute route;
        try {
          route = read_slot_map(*reply, *slot_, order[i].host);
        } catch (const Error& e) {
          throw TransportFailure{Error(errc::protocol_error, link.name() + " " + e.what()), e.what()};
        }
        answered_ = order[i];
        failed_node_.reset();
        if (!route.nodes.empty()) nodes_ = std::move(route.nodes);
        // No owner in the map (the slot is unassigned, or its master unreachable): the node that
        // answered takes the call, and its reply (CLUSTERDOWN, MOVED) tells the rest.
        if (!route.owner || *route.owner == order[i]) return order[i];
        link.close();
        owner = route.owner;
      } catch (const TransportFailure& failure) {
        link.close();
        failures += "; " + std::string(failure.error.what());
        if (!kind && failure.error.code() == errc::protocol_error) kind = errc::protocol_error;
        continue;
      } catch (const Error& e) {
        link.close();
        failures += "; " + std::string(e.what());
        const auto code = static_cast<errc>(e.code().value());
        if (!kind && code != errc::connect_failed && code != errc::timeout && code != errc::connection_lost)
          kind = code;
        continue;
      }
      try {
        open_at(*owner);
      } catch (...) {
        failed_node_ = *owner;  // the owner could not be reached: the next call reads the map again
        throw;
      }
      return *owner;
    }
    throw Error(kind.value_or(errc::connect_failed),
                "no node of " + cluster_name + (slot_ ? " gave the slot map" : " could be reached") + failures);
  }

 private:
  std::vector<Address> asking_order(const std::vector<Address>& seeds) const {
    std::vector<Address> order;
    auto add = [&](const Address& a) {
      if (std::find(order.begin(), order.end(), a) == order.end()) order.push_back(a);
    };
    if (answered_) add(*answered_);
    for (const Address& a : nodes_) add(a);
    for (const Address& a : seeds) add(a);
    if (failed_node_) {
      const auto failed = std::find(order.begin(), order.end(), *failed_node_);
      if (failed != order.end()) std::rotate(failed, failed + 1, order.end());
    }
    return order;
  }

  std::optional<int> slot_;             // see route_by()
  std::vector<Address> nodes_;          // the nodes the last slot map named
  std::optional<Address> answered_;     // the node that gave the last slot map
  std::optional<Address> failed_node_;  // the node whose failure made us forget the route
};

}  // namespace detail
}  // namespace process_lock

#endif  // PROCESS_LOCK_CLUSTER_HPP_
