// process-lock: reading replies: AUTH refusals, error codes (wrapped script errors too), the
// scripts' answers, MOVED/ASK, CLUSTER SLOTS, +switch-master.
// SPDX-License-Identifier: Apache-2.0
// One part of <process_lock.hpp>, which includes its parts in order; include that, not this.
#ifndef PROCESS_LOCK_HPP_
#error "include <process_lock.hpp>; process_lock/replies.hpp is one of its parts"
#endif
#ifndef PROCESS_LOCK_REPLIES_HPP_
#define PROCESS_LOCK_REPLIES_HPP_

namespace process_lock {
namespace detail {

/// What a server's error reply to AUTH says, in words of our own: a server or proxy may echo
/// AUTH's arguments in it, so the reply itself is never quoted. `code` is its error code when
/// it is one Redis uses for AUTH (else empty), `reason` a fixed description.
struct AuthRefusal {
  std::string_view code;
  std::string_view reason;
};
[[nodiscard]] inline AuthRefusal auth_refusal(std::string_view reply) noexcept {
  const std::string_view first_word = reply.substr(0, reply.find(' '));
  auto says = [&](std::string_view words) { return reply.find(words) != std::string_view::npos; };
  if (first_word == "WRONGPASS") return {"WRONGPASS", "wrong user or password, or the user is disabled"};
  if (first_word == "ERR") {
    // The texts of Redis 6+ and of older versions, matched only to choose our words.
    if (says("without any password configured") || says("no password is set"))
      return {"ERR", "the server has no password set"};
    if (says("invalid password")) return {"ERR", "wrong password"};
    return {"ERR", "the server refused the credentials"};
  }
  return {"", "the server refused the credentials"};
}

/// An error reply split into its error code and the message after it, read the same from every
/// server: Redis 7+ and Valkey pass a script's failed redis.call through with its own code
/// ("WRONGTYPE Operation against ... script: <sha>, on @user_script:1."), while Redis 2.6 to
/// 6.2 wrap it in ERR:
///
///     ERR Error running script (call to f_<sha>): @user_script:1: WRONGTYPE Operation ...
///     ERR Error running script (call to f_<sha>): @user_script:1: @user_script: 1: -READONLY You ...
///
/// (the command's own reply with its "-" removed, or an error the server raised itself, behind
/// a second position and with its "-"). The rule:
/// - the code is the first word of the text (up to the first space, or the end);
/// - if that is ERR and the text goes on "Error running script (call to <name>): ", what follows
///   is read instead: at most one "@<source>:<line>: " (the error handler's), then at most one
///   "@<source>: <line>: " (the server's own), then at most one "-"; if the next word is all
///   capital letters A-Z and is followed by a space or the end, it is the code. Otherwise the
///   code stays ERR and `message` is that text (e.g. "The user executing the script can't ...").
/// Only those positions are looked at: a code word further on is part of a message (a script's
/// own error(), whose position has no "@", or "NOPERM" quoted inside another error's text).
struct ErrorReply {
  std::string_view code;     // "NOPERM", "READONLY", "ERR", ...; empty only for an empty text
  std::string_view message;  // what follows the code and its space
};
[[nodiscard]] inline ErrorReply read_error_reply(std::string_view text) noexcept {
  auto split = [](std::string_view s, std::size_t code_size) {
    const std::string_view rest = s.substr(code_size);
    return ErrorReply{s.substr(0, code_size), rest.empty() ? rest : rest.substr(1)};
  };
  const ErrorReply plain = split(text, std::min(text.find(' '), text.size()));
  constexpr std::string_view wrapped = "Error running script (call to ";
  if (plain.code != "ERR" || plain.message.substr(0, wrapped.size()) != wrapped) return plain;
  std::string_view rest = plain.message.substr(wrapped.size());
  const std::size_t close = rest.find("): ");
  if (close == 0 || close == std::string_view::npos || rest.substr(0, close).find(' ') != std::string_view::npos)
    return plain;
  rest.remove_prefix(close + 3);
  // "@<source>:<line>: " or, with `spaced`, "@<source>: <line>: "; removed if `rest` starts with it.
  auto skip_position = [&rest](bool spaced) {
    if (rest.empty() || rest.front() != '@') return;
    const std::size_t colon = rest.find(':');
    if (colon == std::string_view::npos || colon == 1 || rest.substr(1, colon - 1).find(' ') != std::string_view::npos)
      return;
    std::size_t i = colon + 1;
    if (spaced && (i >= rest.size() || rest[i++] != ' ')) return;
    const std::size_t digits = i;
    while (i < rest.size() && rest[i] >= '0' && rest[i] <= '9') ++i;
    if (i == digits || rest.substr(i, 2) != ": ") return;
    rest.remove_prefix(i + 2);
  };
  skip_position(false);
  skip_position(true);
  if (!rest.empty() && rest.front() == '-') rest.remove_prefix(1);
  std::size_t word = 0;
  while (word < rest.size() && rest[word] >= 'A' && rest[word] <= 'Z') ++word;
  if (word > 0 && (word == rest.size() || rest[word] == ' ')) return split(rest, word);
  return {plain.code, rest};
}

/// What kind of failure an error reply is, from its code (read_error_reply), so that a wrapped
/// script error counts the same as the unwrapped one: NOAUTH and WRONGPASS are auth_failed,
/// NOPERM is permission_denied, and so is ERR whose message is a server's own sentence for a
/// script's command refused by the ACL, which carries no code: "The user executing the script
/// can't ..." (Redis 6.0 to 7.0, wrapped or not) or "ACL failure in script: ..." (Redis 7.2+,
/// Valkey). Anything else is server_error.
[[nodiscard]] inline errc error_reply_kind(std::string_view text) noexcept {
  const ErrorReply e = read_error_reply(text);
  if (e.code == "NOAUTH" || e.code == "WRONGPASS") return errc::auth_failed;
  if (e.code == "NOPERM") return errc::permission_denied;
  auto starts = [&](std::string_view words) { return e.message.substr(0, words.size()) == words; };
  if (e.code == "ERR" && (starts("The user executing the script can't ") || starts("ACL failure in script: ")))
    return errc::permission_denied;
  return errc::server_error;
}

/// Whether an error reply is READONLY (by the same rule): the server is a replica, as a master
/// demoted by a failover becomes, so the command did not run there.
[[nodiscard]] inline bool is_readonly_error(std::string_view text) noexcept {
  return read_error_reply(text).code == "READONLY";
}

/// Element `i` of an array reply, which must have type `type`; else a protocol error.
inline const redisReply& element(const redisReply& array, std::size_t i, int type) {
  if (array.type != REDIS_REPLY_ARRAY || i >= array.elements || array.element[i]->type != type)
    throw Error(errc::protocol_error, "a script's reply has an unexpected shape; is the server Redis?");
  return *array.element[i];
}
inline long long integer_at(const redisReply& array, std::size_t i) {
  return element(array, i, REDIS_REPLY_INTEGER).integer;
}
/// A string element, or nullopt for nil.
inline std::optional<std::string> string_at(const redisReply& array, std::size_t i) {
  if (array.type == REDIS_REPLY_ARRAY && i < array.elements && array.element[i]->type == REDIS_REPLY_NIL)
    return std::nullopt;
  const redisReply& e = element(array, i, REDIS_REPLY_STRING);
  return std::string(e.str, e.len);
}
/// A decimal written by one of our scripts; 0 if it is not one.
inline std::uint64_t to_u64(const std::string& s) noexcept {
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return 0;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return v;
}

/// The lock script's answer.
struct LockReply {
  bool acquired = false;
  std::uint64_t fence = 0;    // of our hold, when acquired (0 if the counter is unknown)
  long long holder_pttl = 0;  // the holder's remaining TTL in ms, when not acquired
};
inline LockReply read_lock_reply(const redisReply& reply) {
  const bool acquired = integer_at(reply, 0) == 1;
  const long long second = integer_at(reply, 1);
  LockReply r;
  r.acquired = acquired;
  if (acquired && second > 0) r.fence = static_cast<std::uint64_t>(second);
  if (!acquired) r.holder_pttl = second;
  return r;
}

/// The inspect script's answer, seen by the owner of `token`.
inline Inspection read_inspection(const redisReply& reply, std::string_view token) {
  const std::optional<std::string> holder_token = string_at(reply, 0);
  const long long pttl = integer_at(reply, 1);
  Inspection result;
  result.state = holder_token ? State::locked : State::open;
  result.ours = holder_token == token;
  if (holder_token && pttl >= 0) result.ttl = std::chrono::milliseconds(pttl);
  result.fence_counter = to_u64(string_at(reply, 2).value_or("0"));
  const redisReply& info = element(reply, 3, REDIS_REPLY_ARRAY);
  // The details count only if they were written by the current holder.
  if (holder_token && string_at(info, 0) == holder_token) {
    Holder h;
    h.fence = to_u64(string_at(info, 1).value_or("0"));
    h.host = string_at(info, 2).value_or("");
    if (info.elements > 5) h.info = string_at(info, 5).value_or("");  // none from a 0.1.0 holder
    h.pid = static_cast<long>(to_u64(string_at(info, 3).value_or("0")));
    // A since_ms beyond what system_clock holds (only a broken peer sends one) would overflow: unknown, 0.
    const std::uint64_t since_ms = to_u64(string_at(info, 4).value_or("0"));
    const auto since_max =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::duration::max());
    h.since = std::chrono::system_clock::time_point(
        std::chrono::milliseconds(since_ms <= static_cast<std::uint64_t>(since_max.count()) ? since_ms : 0));
    result.holder = std::move(h);
  }
  return result;
}

/// Whether a retry after a lost connection could change the answer's meaning.
enum class Retry { safe, unsafe };

/// A Redis Cluster redirection: the slot lives (MOVED) or, during a migration, is being moved
/// (ASK) to `address`. An empty host means "the host you are talking to".
struct Redirect {
  bool ask = false;
  Address address;
};

/// Parses "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>"; nullopt for any other text.
inline std::optional<Redirect> parse_redirect(std::string_view text) {
  Redirect r;
  if (text.substr(0, 6) == "MOVED ") {
    text.remove_prefix(6);
  } else if (text.substr(0, 4) == "ASK ") {
    r.ask = true;
    text.remove_prefix(4);
  } else {
    return std::nullopt;
  }
  const auto space = text.find(' ');
  if (space == std::string_view::npos || !parse_uint(text.substr(0, space), 0, 16383)) return std::nullopt;
  const std::string_view where = text.substr(space + 1);
  const auto colon = where.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  const auto port = parse_uint(where.substr(colon + 1), 1, 65535);
  std::string_view host = where.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (!port || host.find_first_of(" []") != std::string_view::npos || host == "?") return std::nullopt;
  r.address = {std::string(host), static_cast<int>(*port)};
  return r;
}

/// What a Redis Cluster's slot map (the reply to CLUSTER SLOTS) says about one slot.
struct SlotRoute {
  std::optional<Address> owner;  // the slot's master; nullopt: no node serves it (or none can be reached)
  std::vector<Address> nodes;    // every node the map names, masters and replicas, each once
};

/// Reads a CLUSTER SLOTS reply: an array of ranges {start, end, master, replica...}, each node
/// {host, port, ...} (Redis 7 adds an id and metadata, ignored here). A node whose host is empty
/// or nil is reached at `asked_host`, the host of the node that answered; one whose host is "?"
/// (an unknown endpoint) cannot be reached and is left out. Any other shape throws
/// errc::protocol_error naming what is wrong: the map decides where our writes go.
inline SlotRoute read_slot_map(const redisReply& reply, int slot, std::string_view asked_host) {
  auto malformed = [](const std::string& what) -> Error {
    return Error(errc::protocol_error, "sent a malformed CLUSTER SLOTS reply: " + what);
  };
  if (reply.type != REDIS_REPLY_ARRAY) throw malformed("not an array");
  SlotRoute route;
  bool covered = false;
  // nullopt: a node that cannot be reached ("?").
  auto node_at = [&](const redisReply& node, const std::string& which) -> std::optional<Address> {
    if (node.type != REDIS_REPLY_ARRAY || node.elements < 2) throw malformed(which + " is not an array {host, port, ...}");
    const redisReply& host = *node.element[0];
    const redisReply& port = *node.element[1];
    if (host.type != REDIS_REPLY_STRING && host.type != REDIS_REPLY_NIL) throw malformed(which + "'s host is not a string");
    if (port.type != REDIS_REPLY_INTEGER || port.integer < 1 || port.integer > 65535)
      throw malformed(which + "'s port is not a number from 1 to 65535");
    std::string_view name = host.type == REDIS_REPLY_STRING ? std::string_view(host.str, host.len) : std::string_view();
    if (name == "?") return std::nullopt;
    if (name.empty()) name = asked_host;
    // The host goes to getaddrinfo() and into messages: a host name or an address, nothing else.
    if (name.empty() || name.size() > 255) throw malformed(which + "'s host is empty or too long");
    for (char c : name)
      if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f || c == '[' || c == ']' || c == '%' || c == '/')
        throw malformed(which + "'s host contains characters a host name cannot have");
    return Address{std::string(name), static_cast<int>(port.integer)};
  };
  auto remember = [&](const Address& a) {
    if (std::find(route.nodes.begin(), route.nodes.end(), a) == route.nodes.end()) route.nodes.push_back(a);
  };
  for (std::size_t i = 0; i < reply.elements; ++i) {
    const redisReply& range = *reply.element[i];
    const std::string which = "range " + std::to_string(i + 1);
    if (range.type != REDIS_REPLY_ARRAY || range.elements < 3)
      throw malformed(which + " is not an array {start, end, master, replica...}");
    const redisReply& start = *range.element[0];
    const redisReply& end = *range.element[1];
    if (start.type != REDIS_REPLY_INTEGER || end.type != REDIS_REPLY_INTEGER || start.integer < 0 ||
        end.integer > 16383 || start.integer > end.integer)
      throw malformed(which + " does not span slots within 0..16383");
    const bool ours = start.integer <= slot && slot <= end.integer;
    if (ours && covered) throw malformed("slot " + std::to_string(slot) + " is in two ranges");
    covered = covered || ours;
    for (std::size_t n = 2; n < range.elements; ++n) {
      const std::optional<Address> node =
          node_at(*range.element[n], which + (n == 2 ? "'s master" : "'s replica " + std::to_string(n - 2)));
      if (!node) continue;
      if (ours && n == 2) route.owner = *node;
      remember(*node);
    }
  }
  // The owner first, then the other nodes: the order in which they are asked after a failure.
  if (route.owner) {
    route.nodes.erase(std::find(route.nodes.begin(), route.nodes.end(), *route.owner));
    route.nodes.insert(route.nodes.begin(), *route.owner);
  }
  return route;
}

/// The sentinels' channel announcing a failover, and its payload: "<master name> <old ip>
/// <old port> <new ip> <new port>". Returns the new address if the announcement is about
/// `master_name`.
inline constexpr std::string_view switch_channel = "+switch-master";
inline std::optional<Address> parse_switch_master(std::string_view payload, std::string_view master_name) {
  std::string_view words[5];
  for (auto& word : words) {
    const auto space = payload.find(' ');
    word = payload.substr(0, space);
    payload = space == std::string_view::npos ? std::string_view() : payload.substr(space + 1);
  }
  for (const auto& word : words)
    if (word.empty()) return std::nullopt;
  if (!payload.empty() || words[0] != master_name) return std::nullopt;
  const auto port = parse_uint(words[4], 1, 65535);
  if (!port) return std::nullopt;
  return Address{std::string(words[3]), static_cast<int>(*port)};
}

}  // namespace detail
}  // namespace process_lock

#endif  // PROCESS_LOCK_REPLIES_HPP_
