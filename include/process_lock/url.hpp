// process-lock: Redis URLs: Address, Endpoint, parse_url / parse_urls and their query keys.
// SPDX-License-Identifier: Apache-2.0
// One part of <process_lock.hpp>, which includes its parts in order; include that, not this.
#ifndef PROCESS_LOCK_HPP_
#error "include <process_lock.hpp>; process_lock/url.hpp is one of its parts"
#endif
#ifndef PROCESS_LOCK_URL_HPP_
#define PROCESS_LOCK_URL_HPP_

namespace process_lock {
namespace detail {

class TlsContext;  // tls.hpp: defined in builds with TLS

/// A TCP server's address.
struct Address {
  std::string host;
  int port = 0;
  /// host:port, with an IPv6 host in brackets.
  std::string display() const {
    return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ':' + std::to_string(port);
  }
  bool operator==(const Address& o) const noexcept { return host == o.host && port == o.port; }
  bool operator!=(const Address& o) const noexcept { return !(*this == o); }
};

/// Where and how to connect, parsed from a URL. Holds passwords; print only `display()`.
struct Endpoint {
  enum class Transport { tcp, unix_socket };
  Transport transport = Transport::tcp;
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string path;  // unix socket
  std::string user;
  std::string password;
  bool has_password = false;
  long db = 0;
  bool db_in_path = false;
  std::optional<std::chrono::milliseconds> connect_timeout;
  std::optional<std::chrono::milliseconds> command_timeout;
  /// Several masters: how long one of them may take per call (see Options::node_timeout).
  std::optional<std::chrono::milliseconds> node_timeout;
  /// After an acquire or renewal, wait for this many replicas to acknowledge it (0: don't).
  int wait_replicas = 0;
  std::optional<std::chrono::milliseconds> wait_timeout;
  /// redis+sentinel://: the sentinels to ask, the master's name, and the sentinels' own
  /// credentials (the URL's user/password are the master's).
  std::vector<Address> sentinels;
  std::string master_name;
  std::string sentinel_user;
  std::string sentinel_password;
  bool sentinel_has_password = false;
  /// redis+cluster://: the nodes to ask for the slot map (any nodes of one Redis Cluster).
  std::vector<Address> cluster_seeds;
  /// rediss://: every link of this endpoint (to the master, the sentinels, any cluster node)
  /// speaks TLS with these settings; the context is loaded from them once, by ProcessLock.
  bool tls = false;
  TlsOptions tls_options;
  std::shared_ptr<const TlsContext> tls_context;

  bool is_sentinel() const noexcept { return !sentinels.empty(); }
  bool is_cluster() const noexcept { return !cluster_seeds.empty(); }
  Address address() const { return {host, port}; }

  /// The URL with every password replaced by `***`, safe for messages and logs.
  std::string display() const {
    std::string s = is_sentinel()                 ? (tls ? "rediss+sentinel://" : "redis+sentinel://")
                    : is_cluster()                ? (tls ? "rediss+cluster://" : "redis+cluster://")
                    : transport == Transport::tcp ? (tls ? "rediss://" : "redis://")
                                                  : "unix://";
    if (!user.empty() || has_password) {
      s += user;
      if (has_password) s += ":***";
      s += '@';
    }
    if (transport == Transport::unix_socket) {
      s += path;
      if (db != 0) s += "?db=" + std::to_string(db);
      return s;
    }
    if (is_sentinel()) {
      // Appended piece by piece: `(i ? "," : "") + display()` trips GCC 12's false -Wrestrict at -O3.
      for (std::size_t i = 0; i < sentinels.size(); ++i) {
        if (i) s += ',';
        s += sentinels[i].display();
      }
      s += '/' + printable(master_name);
    } else if (is_cluster()) {
      for (std::size_t i = 0; i < cluster_seeds.size(); ++i) {
        if (i) s += ',';
        s += cluster_seeds[i].display();
      }
    } else {
      s += address().display();
    }
    if (db != 0) s += '/' + std::to_string(db);
    return s;
  }

  // A master name as shown in messages: its printable ASCII, other bytes as '?'.
  static std::string printable(std::string_view name) {
    std::string out(name.substr(0, 64));
    for (char& c : out)
      if (c <= ' ' || c == 0x7f) c = '?';
    return out;
  }
};

[[noreturn]] inline void throw_url_error(std::string_view source, std::string_view problem) {
  throw Error(errc::invalid_url, "invalid " + std::string(source) + ": " + std::string(problem));
}

inline int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/// Decodes %XX escapes. The value is never quoted in errors: it may be a password.
inline std::string percent_decode(std::string_view in, std::string_view source, std::string_view what) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    const int hi = i + 2 < in.size() ? hex_value(in[i + 1]) : -1;
    const int lo = i + 2 < in.size() ? hex_value(in[i + 2]) : -1;
    if (hi < 0 || lo < 0)
      throw_url_error(source, "bad percent-encoding in the " + std::string(what) + " (use %XX with two hex digits)");
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

/// Parses an unsigned decimal in [lo, hi]; nullopt if it is not one.
inline std::optional<long long> parse_uint(std::string_view s, long long lo, long long hi) noexcept {
  if (s.empty() || s.size() > 18) return std::nullopt;
  long long v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  if (v < lo || v > hi) return std::nullopt;
  return v;
}

/// Parses "250", "250ms", "2s" or "1m" (a bare number is milliseconds) within 1 ms .. 1 h.
inline std::optional<std::chrono::milliseconds> parse_duration(std::string_view s) noexcept {
  long long scale = 1;
  if (s.size() > 2 && s.substr(s.size() - 2) == "ms") {
    s.remove_suffix(2);
  } else if (!s.empty() && s.back() == 's') {
    s.remove_suffix(1);
    scale = 1000;
  } else if (!s.empty() && s.back() == 'm') {
    s.remove_suffix(1);
    scale = 60 * 1000;
  }
  const auto v = parse_uint(s, 1, max_io_timeout.count());
  if (!v || *v * scale > max_io_timeout.count()) return std::nullopt;
  return std::chrono::milliseconds(*v * scale);
}

inline constexpr std::string_view known_query_keys =
    "db, user, password, connect_timeout, command_timeout, node_timeout, wait_replicas, wait_timeout, "
    "sentinel_user, sentinel_password, tls_ca_file, tls_ca_dir, tls_cert, tls_key, tls_server_name, "
    "tls_insecure_skip_verify";

inline void apply_query(Endpoint& ep, std::string_view query, std::string_view source, bool may_quote = true) {
  const bool may_hold_secret = !may_quote || query.find('@') != std::string_view::npos;
  std::vector<std::string> seen;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (item.empty()) continue;
    const auto eq = item.find('=');
    if (eq == std::string_view::npos) throw_url_error(source, "query parameter without '=' (expected key=value)");
    std::string key = percent_decode(item.substr(0, eq), source, "query");
    if (key == "username") key = "user";
    const bool is_known = key == "db" || key == "user" || key == "password" || key == "connect_timeout" ||
                          key == "command_timeout" || key == "node_timeout" || key == "wait_replicas" ||
                          key == "wait_timeout" || key == "sentinel_user" || key == "sentinel_password" ||
                          key == "tls_ca_file" || key == "tls_ca_dir" || key == "tls_cert" || key == "tls_key" ||
                          key == "tls_server_name" || key == "tls_insecure_skip_verify";
    if (!is_known) {
      // Quote the key only if it cannot be a piece of a password: an unencoded '?' in a password
      // starts a "query" that runs on to the '@'.
      const bool quotable = !key.empty() && key.size() <= 32 && !may_hold_secret &&
                            key.find_first_not_of("abcdefghijklmnopqrstuvwxyz_") == std::string::npos;
      throw_url_error(source, "unknown query parameter" + (quotable ? " '" + key + "'" : std::string()) +
                                  " (known: " + std::string(known_query_keys) + ")");
    }
    const bool secret = key == "password" || key == "sentinel_password";
    const std::string raw = percent_decode(item.substr(eq + 1), source, secret ? "password" : "query");
    if (std::find(seen.begin(), seen.end(), key) != seen.end())
      throw_url_error(source, "query parameter '" + key + "' given twice");
    seen.push_back(key);
    if (key.rfind("sentinel_", 0) == 0 && !ep.is_sentinel())
      throw_url_error(source, key + " applies only to redis+sentinel:// URLs");
    if (key.rfind("tls_", 0) == 0 && !ep.tls) throw_url_error(source, key + " applies only to rediss:// URLs");
    if (key == "db") {
      const auto db = parse_uint(raw, 0, 1000000);
      if (!db) throw_url_error(source, "db must be a non-negative number");
      if (ep.db_in_path && ep.db != *db) throw_url_error(source, "db given twice with different values");
      ep.db = static_cast<long>(*db);
    } else if (key == "user") {
      if (!ep.user.empty()) throw_url_error(source, "user given both before '@' and as a query parameter");
      ep.user = raw;
    } else if (key == "password") {
      if (ep.has_password) throw_url_error(source, "password given both before '@' and as a query parameter");
      ep.password = raw;
      ep.has_password = !raw.empty();  // an empty password means none, as before '@'
    } else if (key == "sentinel_user") {
      ep.sentinel_user = raw;
    } else if (key == "sentinel_password") {
      ep.sentinel_password = raw;
      ep.sentinel_has_password = !raw.empty();
    } else if (key == "tls_ca_file" || key == "tls_ca_dir" || key == "tls_cert" || key == "tls_key" ||
               key == "tls_server_name") {
      if (raw.empty()) throw_url_error(source, key + " is empty");
      (key == "tls_ca_file"  ? ep.tls_options.ca_file
       : key == "tls_ca_dir" ? ep.tls_options.ca_dir
       : key == "tls_cert"   ? ep.tls_options.cert_file
       : key == "tls_key"    ? ep.tls_options.key_file
                             : ep.tls_options.server_name) = raw;
    } else if (key == "tls_insecure_skip_verify") {
      if (raw != "yes" && raw != "no" && raw != "true" && raw != "false" && raw != "1" && raw != "0")
        throw_url_error(source, "tls_insecure_skip_verify must be yes or no");
      ep.tls_options.insecure_skip_verify = raw == "yes" || raw == "true" || raw == "1";
    } else if (key == "wait_replicas") {
      const auto n = parse_uint(raw, 0, 1000);
      if (!n) throw_url_error(source, "wait_replicas must be a number from 0 to 1000");
      ep.wait_replicas = static_cast<int>(*n);
    } else {
      const auto d = parse_duration(raw);
      if (!d) throw_url_error(source, key + " must be a duration from 1ms to 1h, e.g. 500ms, 2s, 1m");
      (key == "connect_timeout"   ? ep.connect_timeout
       : key == "command_timeout" ? ep.command_timeout
       : key == "node_timeout"    ? ep.node_timeout
                                  : ep.wait_timeout) = d;
    }
  }
  if (!ep.sentinel_user.empty() && !ep.sentinel_has_password)
    throw_url_error(source, "sentinel_user needs a sentinel_password");
}

inline void apply_userinfo(Endpoint& ep, std::string_view userinfo, std::string_view source) {
  const auto colon = userinfo.find(':');
  ep.user = percent_decode(userinfo.substr(0, colon), source, "user");
  if (colon != std::string_view::npos) {
    ep.password = percent_decode(userinfo.substr(colon + 1), source, "password");
    ep.has_password = !ep.password.empty();  // "redis://:@host" has no password
  }
}

/// Parses "host[:port]" or "[v6]:port"; `default_port` when the port is omitted.
inline Address parse_host_port(std::string_view authority, int default_port, std::string_view source) {
  Address a{{}, default_port};
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) throw_url_error(source, "unterminated '[' in an IPv6 host");
    a.host = std::string(authority.substr(1, close - 1));
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') throw_url_error(source, "unexpected characters after the IPv6 host");
      port = after.substr(1);
      if (port.empty()) throw_url_error(source, "empty port after ':'");
    }
    if (a.host.empty() || a.host.find_first_not_of("0123456789abcdefABCDEF:.") != std::string::npos)
      throw_url_error(source, "the IPv6 host between '[' and ']' is not an IPv6 address");
  } else {
    const auto colon = authority.find(':');
    a.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) throw_url_error(source, "empty port after ':'");
      if (port.find(':') != std::string_view::npos)
        throw_url_error(source,
                        "more than one ':' in the host; write IPv6 addresses in brackets, e.g. redis://[::1]:6379");
    }
    if (a.host.find_first_of("[]%") != std::string::npos)
      throw_url_error(source, "the host contains characters a host name cannot have");
  }
  if (a.host.empty()) throw_url_error(source, "missing host, e.g. redis://127.0.0.1:6379");
  if (!port.empty()) {
    const auto p = parse_uint(port, 1, 65535);
    if (!p) throw_url_error(source, "port must be a number from 1 to 65535");
    a.port = static_cast<int>(*p);
  }
  return a;
}

/// Parses one Redis URL. `source` names where it came from ("REDIS_URL" or "Options::url").
/// Errors never quote the URL or any part of it that could be a password.
inline Endpoint parse_url(std::string_view url, std::string_view source, bool may_quote = true) {
  Endpoint ep;
  const auto sep = url.find("://");
  if (sep == std::string_view::npos)
    throw_url_error(source, "expected a URL starting with redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://");
  std::string scheme(url.substr(0, sep));
  for (char& c : scheme) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);  // RFC 3986: any case
  std::string_view rest = url.substr(sep + 3);
  if (scheme == "rediss" || scheme == "rediss+sentinel" || scheme == "rediss+cluster") {
    if (!PROCESS_LOCK_WITH_TLS)
      throw Error(errc::unsupported,
                  "rediss:// (TLS) needs a process-lock built with TLS: install OpenSSL's headers (libssl-dev) and "
                  "build with PROCESS_LOCK_WITH_TLS=1 linking libssl and libcrypto (the CMake package and "
                  "pkg-config file do so where they found OpenSSL)");
    ep.tls = true;
    scheme.erase(5, 1);  // rediss... -> redis...
  }
  if (scheme != "redis" && scheme != "unix" && scheme != "redis+sentinel" && scheme != "redis+cluster") {
    const bool printable = may_quote && scheme.size() <= 16 &&
                           scheme.find_first_not_of("abcdefghijklmnopqrstuvwxyz+.-") == std::string_view::npos;
    throw_url_error(
        source, (printable ? "unsupported scheme '" + std::string(scheme) + "'" : std::string("unsupported scheme")) +
                    " (expected redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://)");
  }
  for (char c : rest)
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f)
      throw_url_error(source, "spaces and control characters must be percent-encoded");
  if (const auto hash = rest.find('#'); hash != std::string_view::npos)
    throw_url_error(source, "fragments ('#') are not allowed; percent-encode '#' as %23");

  std::string_view query;
  if (const auto q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }

  if (scheme == "unix") {
    ep.transport = Endpoint::Transport::unix_socket;
    // unix://[userinfo@]/path: the path starts at the first '/'; userinfo before it.
    const auto slash = rest.find('/');
    if (slash == std::string_view::npos)
      throw_url_error(source, "unix:// needs an absolute socket path, e.g. unix:///run/redis.sock");
    const std::string_view authority = rest.substr(0, slash);
    if (!authority.empty()) {
      if (authority.back() != '@')
        throw_url_error(source, "unix:// takes no host; write unix:///path or unix://:password@/path");
      apply_userinfo(ep, authority.substr(0, authority.size() - 1), source);
    }
    ep.path = percent_decode(rest.substr(slash), source, "socket path");
    if (ep.path.size() < 2) throw_url_error(source, "the unix socket path is empty");
    if (ep.path.find('\0') != std::string::npos) throw_url_error(source, "the unix socket path contains a NUL byte");
    if (ep.path.size() >= sizeof(sockaddr_un::sun_path))
      throw_url_error(source, "the unix socket path is longer than the system allows (" +
                                  std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes)");
    ep.host.clear();
    ep.port = 0;
  } else {
    const auto slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    std::string_view path = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
    if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
      apply_userinfo(ep, authority.substr(0, at), source);
      authority = authority.substr(at + 1);
    }
    if (scheme == "redis+sentinel") {
      // host1[:port1],host2[:port2]/MASTERNAME[/db]
      while (true) {
        const auto comma = authority.find(',');
        ep.sentinels.push_back(parse_host_port(authority.substr(0, comma), 26379, source));
        if (comma == std::string_view::npos) break;
        authority = authority.substr(comma + 1);
      }
      const auto db_slash = path.find('/');
      ep.master_name = percent_decode(path.substr(0, db_slash), source, "master name");
      if (ep.master_name.empty())
        throw_url_error(source, "redis+sentinel:// needs the master's name, e.g. redis+sentinel://host:26379/mymaster");
      path = db_slash == std::string_view::npos ? std::string_view{} : path.substr(db_slash + 1);
      ep.host.clear();
      ep.port = 0;
    } else if (scheme == "redis+cluster") {
      // host1[:port1],host2[:port2][/0]: seeds, any nodes of the cluster (see ClusterLocator::locate)
      while (true) {
        const auto comma = authority.find(',');
        ep.cluster_seeds.push_back(parse_host_port(authority.substr(0, comma), 6379, source));
        if (comma == std::string_view::npos) break;
        authority = authority.substr(comma + 1);
      }
      ep.host.clear();
      ep.port = 0;
    } else {
      if (authority.find(',') != std::string_view::npos)
        throw_url_error(source,
                        "a comma in the host; to list several masters, write whole URLs separated by "
                        "commas: redis://host1:6379,redis://host2:6379");
      const Address a = parse_host_port(authority, 6379, source);
      ep.host = a.host;
      ep.port = a.port;
    }
    if (!path.empty()) {
      const auto db = parse_uint(path, 0, 1000000);
      if (!db) throw_url_error(source, "the path must be a database number, e.g. redis://host:6379/2");
      ep.db = static_cast<long>(*db);
      ep.db_in_path = true;
    }
  }
  apply_query(ep, query, source, may_quote);
  if (ep.is_cluster() && ep.db != 0) throw_url_error(source, "a Redis Cluster has only database 0");
  if (!ep.user.empty() && !ep.has_password)
    throw_url_error(source, "a user needs a password (redis://user:password@host)");
  return ep;
}

/// Parses `url`, which may list several masters as whole URLs separated by commas
/// ("redis://a:6379,redis://b:6379"). A comma counts as a separator only where a new URL
/// (scheme://) follows it, so a comma inside a password needs no encoding.
inline std::vector<Endpoint> parse_urls(std::string_view url, std::string_view source) {
  std::vector<std::string_view> pieces;
  std::size_t start = 0;
  for (std::size_t comma = url.find(','); comma != std::string_view::npos; comma = url.find(',', comma + 1)) {
    const std::string_view next = url.substr(comma + 1);
    const auto sep = next.find("://");
    const bool scheme_follows =
        sep != std::string_view::npos && sep > 0 &&
        next.substr(0, sep).find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-") ==
            std::string_view::npos;
    if (!scheme_follows) continue;
    pieces.push_back(url.substr(start, comma - start));
    start = comma + 1;
  }
  pieces.push_back(url.substr(start));
  if (pieces.size() == 1) return {parse_url(url, source)};
  if (pieces.size() > max_masters)
    throw_url_error(source, "lists " + std::to_string(pieces.size()) + " masters; at most " +
                                std::to_string(max_masters) + " are supported");
  std::vector<Endpoint> endpoints;
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    const std::string where =
        std::string(source) + " (master " + std::to_string(i + 1) + " of " + std::to_string(pieces.size()) + ")";
    Endpoint ep = parse_url(pieces[i], where, false);  // a piece may start or end inside a password: quote nothing
    if (ep.is_sentinel())
      throw_url_error(where, "a redis+sentinel:// URL cannot be one of several masters; give it alone");
    if (ep.is_cluster())
      throw_url_error(where, "a redis+cluster:// URL cannot be one of several masters; give it alone");
    for (const Endpoint& other : endpoints)
      if (other.transport == ep.transport && other.host == ep.host && other.port == ep.port && other.path == ep.path &&
          other.db == ep.db)
        throw_url_error(where, "names the same server as an earlier master; a quorum needs distinct servers");
    endpoints.push_back(std::move(ep));
  }
  return endpoints;
}

}  // namespace detail
}  // namespace process_lock

#endif  // PROCESS_LOCK_URL_HPP_
