// libFuzzer harness for the process-lock command's argument parsing (examples/process_lock_cli.hpp).
//
// The input is split at NUL bytes into argv (without argv[0]); each word also goes through
// parse_duration and parse_int on its own. Checked, besides the absence of crashes and sanitizer
// reports:
//   - only cli::UsageError is thrown, always with a message;
//   - a duration is never negative nor above the documented bound of 365 days;
//   - a whole number is within the bounds asked for;
//   - parsed Arguments keep the promises main() relies on: a run has a NAME, a command, a TTL of
//     at least 10 ms, a refresh interval below the TTL, and no -n together with -w; state and
//     clear have a NAME and no command.
#include "process_lock_cli.hpp"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace cli = process_lock::cli;
using std::chrono::milliseconds;

[[noreturn]] void fail(const char* what, std::string_view detail) {
  std::fprintf(stderr, "fuzz_cli: %s: %.*s\n", what, static_cast<int>(detail.size()), detail.data());
  std::abort();
}

constexpr milliseconds year{365LL * 24 * 3600 * 1000};

void check_duration(const std::string& word) {
  try {
    const milliseconds d = cli::parse_duration(word, "--ttl");
    if (d < milliseconds(0) || d > year) fail("duration out of range", word);
  } catch (const cli::UsageError& e) {
    if (std::string_view(e.what()).empty()) fail("empty usage message", word);
  }
}

void check_int(const std::string& word) {
  try {
    const int v = cli::parse_int(word, "-E", 0, 255);
    if (v < 0 || v > 255) fail("whole number out of range", word);
  } catch (const cli::UsageError& e) {
    if (std::string_view(e.what()).empty()) fail("empty usage message", word);
  }
}

void check_arguments(const std::vector<std::string>& args) {
  cli::Arguments a;
  try {
    a = cli::parse(args);
  } catch (const cli::UsageError& e) {
    if (std::string_view(e.what()).empty()) fail("empty usage message", args.empty() ? "" : args[0]);
    return;
  }
  if (cli::usage_text(a.help_topic) == nullptr) fail("no usage text", a.help_topic);
  const std::string first = args.empty() ? "" : args[0];
  switch (a.action) {
    case cli::Action::help:
    case cli::Action::version:
      return;
    case cli::Action::run:
      if (a.name.empty()) fail("run without a NAME", first);
      if (a.command.empty()) fail("run without a command", first);
      if (a.ttl < milliseconds(10) || a.ttl > year) fail("ttl out of range", first);
      if (a.refresh && (*a.refresh <= milliseconds(0) || *a.refresh >= a.ttl)) fail("refresh out of range", first);
      if (a.no_wait && a.wait) fail("-n with -w accepted", first);
      if (a.wait && (*a.wait < milliseconds(0) || *a.wait > year)) fail("wait out of range", first);
      if (a.kill_after < milliseconds(0) || a.kill_after > year) fail("kill-after out of range", first);
      if (a.conflict_exit_code < 0 || a.conflict_exit_code > 255) fail("exit code out of range", first);
      if (a.url && a.url->empty()) fail("empty --url accepted", first);
      return;
    case cli::Action::watch:
      if (a.name.empty()) fail("watch without a NAME", first);
      if (!a.command.empty()) fail("watch with a command", first);
      if (a.poll && (*a.poll < milliseconds(10) || *a.poll > std::chrono::hours(1))) fail("poll out of range", first);
      return;
    case cli::Action::state:
    case cli::Action::clear:
      if (a.name.empty()) fail("state/clear without a NAME", first);
      if (!a.command.empty()) fail("state/clear with a command", first);
      if (a.force && a.action != cli::Action::clear) fail("--force outside clear", first);
      return;
  }
  fail("unknown action", first);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> args;
  if (!input.empty()) {
    std::size_t start = 0;
    for (;;) {
      const auto nul = input.find('\0', start);
      args.emplace_back(input.substr(start, nul == std::string_view::npos ? std::string_view::npos : nul - start));
      if (nul == std::string_view::npos) break;
      start = nul + 1;
    }
  }
  if (args.size() > 64) return 0;  // long argument lists add nothing but time
  for (const auto& word : args) {
    check_duration(word);
    check_int(word);
  }
  check_arguments(args);
  return 0;
}
