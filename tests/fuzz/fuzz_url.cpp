// libFuzzer harness for the REDIS_URL parser, process_lock::detail::parse_url.
//
// The first input byte picks a mode:
//   even: the rest of the input is the URL, as is;
//   odd:  the rest is split at the first two '\n' into USER, PASSWORD and REST, and the URL is
//         SCHEME://USER:zqxpw<PASSWORD>@REST with SCHEME chosen by the mode byte. The marker
//         "zqxpw" stands for password text that must never be shown.
// Checked, besides the absence of crashes and sanitizer reports:
//   - the parser throws nothing but process_lock::Error, with errc::invalid_url or
//     errc::unsupported;
//   - a parsed Endpoint is consistent (port range, transport fields, db range, has_password);
//   - display() does not depend on the password, and shows the marker only where the user,
//     host or socket path themselves contain it;
//   - no error message contains the marker.
#include <process_lock.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

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

void check(const std::string& url, bool marked) {
  using process_lock::detail::Endpoint;
  // Only the marker placed in the password counts; a URL that spells it elsewhere too (or could,
  // through percent-encoding) would make the marker checks report the other occurrence.
  const bool watch_marker = marked && count(url, marker) == 1 && !contains(url, "%");
  Endpoint ep;
  try {
    ep = process_lock::detail::parse_url(url, "REDIS_URL");
  } catch (const process_lock::Error& e) {
    const std::string_view message = e.what();
    if (e.code() != process_lock::errc::invalid_url && e.code() != process_lock::errc::unsupported)
      fail("unexpected error code", url, message);
    if (message.empty()) fail("empty error message", url, message);
    if (watch_marker && contains(message, marker)) fail("error message shows password text", url, message);
    return;
  }
  // Anything else thrown escapes to libFuzzer, which reports it as a crash.

  if (ep.transport == Endpoint::Transport::tcp) {
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
  for (const auto& t : {ep.connect_timeout, ep.command_timeout})
    if (t && (t->count() < 1 || t->count() > 3600 * 1000)) fail("timeout out of range", url, std::to_string(t->count()));

  const std::string shown = ep.display();
  Endpoint other = ep;
  other.password = ep.password == "x" ? "y" : "x";
  if (other.display() != shown) fail("display() depends on the password", url, shown);
  if (watch_marker && contains(shown, marker) && !contains(ep.user, marker) && !contains(ep.host, marker) &&
      !contains(ep.path, marker))
    fail("display() shows password text", url, shown);
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
  static constexpr std::string_view schemes[] = {"redis", "unix", "REDIS", "Unix"};
  const auto nl1 = input.find('\n');
  const auto nl2 = nl1 == std::string_view::npos ? nl1 : input.find('\n', nl1 + 1);
  if (nl2 == std::string_view::npos) return 0;
  const std::string_view user = input.substr(0, nl1), password = input.substr(nl1 + 1, nl2 - nl1 - 1),
                         rest = input.substr(nl2 + 1);
  std::string url(schemes[(mode / 2) % 4]);
  url += "://";
  url += user;
  url += ':';
  url += marker;
  url += password;
  url += '@';
  url += rest;
  check(url, true);
  return 0;
}
