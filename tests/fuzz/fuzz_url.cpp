// libFuzzer harness for the REDIS_URL parser: process_lock::detail::parse_urls, which splits a
// list of masters and parses each with detail::parse_url.
//
// The first input byte picks a mode:
//   even: the rest of the input is the URL, as is;
//   odd:  the rest is split at the first three '\n' into USER, BEFORE, AFTER and REST, and the
//         URL is SCHEME://USER:BEFOREzqxpwAFTER@REST with SCHEME chosen by the mode byte
//         (redis+cluster from 129 up). The marker "zqxpw" stands for password text that must
//         never be shown.
// Checked, besides the absence of crashes and sanitizer reports:
//   - the parser throws nothing but process_lock::Error, with errc::invalid_url or
//     errc::unsupported;
//   - each parsed Endpoint is consistent (port ranges, transport, sentinel and cluster fields, db
//     range, has_password), and a list has 1 to max_masters of them, none a sentinel or cluster
//     URL if several;
//   - display() depends on neither the password nor the sentinels' password, and shows the
//     marker only where the user, host, socket path, master name or a seed's host contain it;
//   - no error message contains the marker.
#include <process_lock.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr std::string_view marker = "zqxpw";

[[noreturn]] void fail(const char* what, std::string_view url, std::string_view detail) {
  std::fprintf(stderr, "fuzz_url: %s\n  url:    %.*s\n  detail: %.*s\n", what, static_cast<int>(url.size()),
               url.data(), static_cast<int>(detail.size()), detail.data());
  std::abort();
}

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

std::size_t count(std::string_view haystack, std::string_view needle) {
  std::size_t n = 0;
  for (auto pos = haystack.find(needle); pos != std::string_view::npos; pos = haystack.find(needle, pos + 1)) ++n;
  return n;
}

void check_endpoint(const process_lock::detail::Endpoint& ep, const std::string& url, bool watch_marker);

void check(const std::string& url, bool marked) {
  // Only the marker placed in the password counts; a URL that spells it elsewhere too (or could,
  // through percent-encoding) would make the marker checks report the other occurrence.
  const bool watch_marker = marked && count(url, marker) == 1 && !contains(url, "%");
  std::vector<process_lock::detail::Endpoint> endpoints;
  try {
    endpoints = process_lock::detail::parse_urls(url, "REDIS_URL");
  } catch (const process_lock::Error& e) {
    const std::string_view message = e.what();
    if (e.code() != process_lock::errc::invalid_url && e.code() != process_lock::errc::unsupported)
      fail("unexpected error code", url, message);
    if (message.empty()) fail("empty error message", url, message);
    if (watch_marker && contains(message, marker)) fail("error message shows password text", url, message);
    return;
  }
  // Anything else thrown escapes to libFuzzer, which reports it as a crash.
  if (endpoints.empty() || endpoints.size() > process_lock::detail::max_masters)
    fail("number of masters out of range", url, std::to_string(endpoints.size()));
  for (const auto& ep : endpoints) {
    if (endpoints.size() > 1 && ep.is_sentinel()) fail("a sentinel URL among several masters", url, "");
    if (endpoints.size() > 1 && ep.is_cluster()) fail("a cluster URL among several masters", url, "");
    check_endpoint(ep, url, watch_marker);
  }
}

void check_endpoint(const process_lock::detail::Endpoint& ep, const std::string& url, bool watch_marker) {
  using process_lock::detail::Endpoint;
  if (ep.is_sentinel() && ep.is_cluster()) fail("both a sentinel and a cluster endpoint", url, "");
  if (ep.is_cluster()) {
    if (ep.transport != Endpoint::Transport::tcp) fail("cluster endpoint not over tcp", url, "");
    if (ep.db != 0) fail("cluster endpoint with a database other than 0", url, std::to_string(ep.db));
    for (const auto& s : ep.cluster_seeds)
      if (s.host.empty() || s.port < 1 || s.port > 65535) fail("bad cluster seed address", url, s.display());
  } else if (ep.is_sentinel()) {
    if (ep.transport != Endpoint::Transport::tcp) fail("sentinel endpoint not over tcp", url, "");
    if (ep.master_name.empty()) fail("sentinel endpoint without a master name", url, "");
    for (const auto& s : ep.sentinels)
      if (s.host.empty() || s.port < 1 || s.port > 65535) fail("bad sentinel address", url, s.display());
    if (ep.sentinel_has_password != !ep.sentinel_password.empty())
      fail("sentinel_has_password disagrees with sentinel_password", url, "");
  } else if (ep.transport == Endpoint::Transport::tcp) {
    if (ep.port < 1 || ep.port > 65535) fail("port out of range", url, std::to_string(ep.port));
    if (ep.host.empty()) fail("empty host", url, "");
    if (!ep.path.empty()) fail("tcp endpoint with a socket path", url, ep.path);
  } else {
    if (ep.path.size() < 2 || ep.path.front() != '/') fail("bad socket path", url, ep.path);
    if (ep.path.find('\0') != std::string::npos) fail("NUL in socket path", url, "");
  }
  if (ep.db < 0 || ep.db > 1000000) fail("db out of range", url, std::to_string(ep.db));
  if (ep.has_password != !ep.password.empty()) fail("has_password disagrees with password", url, "");
  if (!ep.user.empty() && !ep.has_password) fail("user without password accepted", url, ep.user);
  for (const auto& t : {ep.connect_timeout, ep.command_timeout, ep.node_timeout, ep.wait_timeout})
    if (t && (t->count() < 1 || t->count() > 3600 * 1000)) fail("timeout out of range", url, std::to_string(t->count()));

  const std::string shown = ep.display();
  Endpoint other = ep;
  other.password = ep.password == "x" ? "y" : "x";
  other.sentinel_password = ep.sentinel_password == "x" ? "y" : "x";
  if (other.display() != shown) fail("display() depends on a password", url, shown);
  bool elsewhere = contains(ep.user, marker) || contains(ep.host, marker) || contains(ep.path, marker) ||
                   contains(ep.master_name, marker);
  for (const auto& s : ep.sentinels) elsewhere = elsewhere || contains(s.host, marker);
  for (const auto& s : ep.cluster_seeds) elsewhere = elsewhere || contains(s.host, marker);
  if (watch_marker && contains(shown, marker) && !elsewhere) fail("display() shows password text", url, shown);
  if (ep.has_password && !contains(shown, ":***@")) fail("display() hides that there is a password", url, shown);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t mode = data[0];
  const std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
  if (mode % 2 == 0) {
    check(std::string(input), false);
    return 0;
  }
  static constexpr std::string_view schemes[] = {"redis", "unix", "redis+sentinel", "REDIS"};
  std::string_view parts[4];
  std::string_view rest = input;
  for (int i = 0; i < 3; ++i) {
    const auto nl = rest.find('\n');
    if (nl == std::string_view::npos) return 0;
    parts[i] = rest.substr(0, nl);
    rest = rest.substr(nl + 1);
  }
  parts[3] = rest;
  // Mode bytes from 128 up build redis+cluster:// URLs (the seeds below 128 keep their schemes).
  std::string url(mode >= 128 ? std::string_view("redis+cluster") : schemes[(mode / 2) % 4]);
  url += "://";
  url += parts[0];
  url += ':';
  url += parts[1];
  url += marker;
  url += parts[2];
  url += '@';
  url += parts[3];
  check(url, true);
  return 0;
}
