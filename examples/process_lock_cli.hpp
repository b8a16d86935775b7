// Command-line parsing for the process-lock tool, kept apart from main() so tests can call it.
#ifndef PROCESS_LOCK_CLI_HPP_
#define PROCESS_LOCK_CLI_HPP_

#include <chrono>
#include <cmath>
#include <cstdint>
#include <ctime>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <process_lock.hpp>

namespace process_lock::cli {

/// Exit codes of the tool itself; a command's own status passes through unchanged.
namespace exit_code {
inline constexpr int usage = 64;         // bad arguments (EX_USAGE)
inline constexpr int redis_error = 69;   // Redis unreachable, bad URL, refused (EX_UNAVAILABLE)
inline constexpr int internal = 70;      // an internal error, e.g. out of memory or threads (EX_SOFTWARE)
inline constexpr int output_failed = 74; // watch: standard output could not be written (EX_IOERR)
inline constexpr int conflict = 75;      // the lock is held: -n, or -w ran out (EX_TEMPFAIL)
inline constexpr int lock_lost = 76;     // the lock was lost while the command ran; it was stopped
inline constexpr int cannot_run = 126;   // the command could not be executed
inline constexpr int not_found = 127;    // the command was not found
}  // namespace exit_code

/// A usage error: the message is printed with a hint to --help.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Parses "500ms", "30s", "5m", "2h", or a bare number of seconds ("10", "0.5", as flock's -w).
inline std::chrono::milliseconds parse_duration(std::string_view text, std::string_view option) {
  auto fail = [&] {
    return UsageError(std::string(option) + ": '" + std::string(text) +
                      "' is not a duration (e.g. 500ms, 30s, 5m, 2h, or seconds: 10, 0.5)");
  };
  double scale = 1000;  // bare numbers are seconds
  std::string_view number = text;
  if (number.size() > 2 && number.substr(number.size() - 2) == "ms") {
    scale = 1, number.remove_suffix(2);
  } else if (!number.empty() && number.back() == 's') {
    number.remove_suffix(1);
  } else if (!number.empty() && number.back() == 'm') {
    scale = 60e3, number.remove_suffix(1);
  } else if (!number.empty() && number.back() == 'h') {
    scale = 3600e3, number.remove_suffix(1);
  }
  if (number.empty() || number.size() > 20 || number.find_first_not_of("0123456789.") != std::string_view::npos ||
      number.find('.') != number.rfind('.') || number.front() == '.' || number.back() == '.')
    throw fail();
  const double ms = std::round(std::stod(std::string(number)) * scale);
  if (!std::isfinite(ms) || ms > 365.0 * 24 * 3600e3) throw fail();
  return std::chrono::milliseconds(static_cast<long long>(ms));
}

/// A whole number in [lo, hi].
inline int parse_int(std::string_view text, std::string_view option, int lo, int hi) {
  if (text.empty() || text.size() > 9 || text.find_first_not_of("0123456789") != std::string_view::npos)
    throw UsageError(std::string(option) + ": '" + std::string(text) + "' is not a whole number");
  const int v = std::stoi(std::string(text));
  if (v < lo || v > hi)
    throw UsageError(std::string(option) + " must be from " + std::to_string(lo) + " to " + std::to_string(hi));
  return v;
}

enum class Action { run, state, clear, watch, help, version };

/// Everything the command line says.
struct Arguments {
  Action action = Action::help;
  std::string help_topic;  // for `process-lock help run` / `run --help`
  std::string name;
  std::vector<std::string> command;  // run: COMMAND ARG...
  std::optional<std::string> url;    // --url, else REDIS_URL
  bool no_wait = false;              // -n
  std::optional<std::chrono::milliseconds> wait;  // -w; unset: wait as long as it takes
  int conflict_exit_code = exit_code::conflict;   // -E
  std::chrono::milliseconds ttl{30000};           // --ttl
  std::optional<std::chrono::milliseconds> refresh;  // --refresh; unset: ttl / 3
  std::chrono::milliseconds kill_after{5000};        // --kill-after
  std::optional<std::chrono::milliseconds> min_hold;  // --min-hold: taken at least this long
  std::optional<std::chrono::milliseconds> max_hold;  // --max-hold: the command stopped as lost after it
  std::string holder_info;                           // --holder-info: recorded with the acquisition
  bool force = false;                                // clear --force
  bool json = false;                                 // state --json, watch --json
  std::optional<std::chrono::milliseconds> poll;     // watch --poll: WatchOptions::poll_interval
  bool verbose = false;                              // -v
};

/// Parses argv (without argv[0]). Throws UsageError.
inline Arguments parse(const std::vector<std::string>& args) {
  Arguments a;
  if (args.empty()) throw UsageError("missing command: run, state, watch or clear");
  const std::string& verb = args[0];
  if (verb == "--help" || verb == "-h" || verb == "help") {
    a.action = Action::help;
    if (args.size() > 1) a.help_topic = args[1];
    return a;
  }
  if (verb == "--version" || verb == "-V") {
    a.action = Action::version;
    return a;
  }
  if (verb == "run")
    a.action = Action::run;
  else if (verb == "state")
    a.action = Action::state;
  else if (verb == "clear")
    a.action = Action::clear;
  else if (verb == "watch")
    a.action = Action::watch;
  else
    throw UsageError("unknown command '" + verb + "' (expected run, state, watch or clear)");

  bool ttl_given = false;
  for (std::size_t i = 1; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (a.action == Action::run && arg == "--") {
      a.command.assign(args.begin() + static_cast<long>(i) + 1, args.end());
      break;
    }
    // "--opt=value" and "--opt value"; short options take their value from the next word.
    std::string option = arg, value;
    bool inline_value = false;
    if (arg.rfind("--", 0) == 0 && arg.find('=') != std::string::npos) {
      option = arg.substr(0, arg.find('='));
      value = arg.substr(arg.find('=') + 1);
      inline_value = true;
    }
    auto take_value = [&]() -> std::string {
      if (inline_value) return value;
      if (i + 1 >= args.size()) throw UsageError(option + " needs a value");
      return args[++i];
    };
    auto only_for_run = [&] {
      if (a.action != Action::run) throw UsageError(option + " applies to 'run' only");
    };
    auto no_value = [&] {
      if (inline_value) throw UsageError(option + " takes no value");
    };
    if (option == "--help" || option == "-h") {
      a.help_topic = verb;
      a.action = Action::help;
      return a;
    } else if (option == "--url") {
      a.url = take_value();
      if (a.url->empty()) throw UsageError("--url needs a value");
    } else if (option == "-v" || option == "--verbose") {
      no_value();
      a.verbose = true;
    } else if (option == "-n" || option == "--no-wait" || option == "--nb" || option == "--nonblock") {
      only_for_run();
      no_value();
      a.no_wait = true;
    } else if (option == "-w" || option == "--wait" || option == "--timeout") {
      only_for_run();
      a.wait = parse_duration(take_value(), option);
    } else if (option == "-E" || option == "--conflict-exit-code") {
      only_for_run();
      a.conflict_exit_code = parse_int(take_value(), option, 0, 255);
    } else if (option == "--ttl") {
      only_for_run();
      a.ttl = parse_duration(take_value(), option);
      ttl_given = true;
    } else if (option == "--refresh") {
      only_for_run();
      a.refresh = parse_duration(take_value(), option);
    } else if (option == "--kill-after") {
      only_for_run();
      a.kill_after = parse_duration(take_value(), option);
    } else if (option == "--min-hold") {
      only_for_run();
      a.min_hold = parse_duration(take_value(), option);
    } else if (option == "--max-hold") {
      only_for_run();
      a.max_hold = parse_duration(take_value(), option);
      if (*a.max_hold <= std::chrono::milliseconds(0)) throw UsageError("--max-hold must be positive");
    } else if (option == "--holder-info") {
      only_for_run();
      a.holder_info = take_value();
      if (a.holder_info.size() > process_lock::max_holder_info)
        throw UsageError("--holder-info is " + std::to_string(a.holder_info.size()) + " bytes; at most " +
                         std::to_string(process_lock::max_holder_info));
    } else if (option == "--json") {
      if (a.action != Action::state && a.action != Action::watch)
        throw UsageError(option + " applies to 'state' and 'watch' only");
      no_value();
      a.json = true;
    } else if (option == "--poll") {
      if (a.action != Action::watch) throw UsageError(option + " applies to 'watch' only");
      a.poll = parse_duration(take_value(), option);
      if (*a.poll < std::chrono::milliseconds(10) || *a.poll > std::chrono::hours(1))
        throw UsageError("--poll must be from 10ms to 1h");
    } else if (option == "--force" || option == "-f") {
      if (a.action != Action::clear) throw UsageError(option + " applies to 'clear' only");
      no_value();
      a.force = true;
    } else if (!arg.empty() && arg[0] == '-' && arg != "-") {
      throw UsageError("unknown option '" + arg + "'");
    } else if (a.name.empty()) {
      a.name = arg;
    } else {
      throw UsageError(a.action == Action::run ? "unexpected '" + arg + "': put the command after '--'"
                                               : "unexpected argument '" + arg + "'");
    }
  }
  if (a.name.empty()) throw UsageError("missing the lock NAME");
  if (a.action == Action::run) {
    if (a.command.empty()) throw UsageError("missing the command to run after '--'");
    if (a.no_wait && a.wait) throw UsageError("-n and -w exclude each other");
    if (a.ttl < std::chrono::milliseconds(10)) throw UsageError("--ttl must be at least 10ms");
    // The keeper reports a loss a fifth of the TTL before it ends; a renewal must fit before.
    const auto room = a.ttl - a.ttl / 100 - std::chrono::milliseconds(2) - a.ttl / 5;
    if (a.min_hold && a.max_hold && *a.min_hold > *a.max_hold)
      throw UsageError("--min-hold must not be longer than --max-hold");
    if (a.refresh && (*a.refresh <= std::chrono::milliseconds(0) || *a.refresh >= room))
      throw UsageError("--refresh must be positive and below about 80% of --ttl" + std::string(ttl_given ? "" : " (30s)"));
  }
  return a;
}

inline const char* usage_text(const std::string& topic) {
  if (topic == "run")
    return R"usage(usage: process-lock run NAME [options] -- COMMAND [ARG...]

Takes the lock NAME in Redis, runs COMMAND while holding and renewing it, releases it when the
command ends, and exits with the command's status (128+N if it died of signal N).

  -n, --no-wait             fail at once if the lock is held (exit code: see -E)
  -w, --wait DURATION       give up waiting after DURATION (default: wait as long as it takes)
  -E, --conflict-exit-code N  exit code when the lock stays held (default 75)
      --ttl DURATION        the lock's timeout: how long others wait if this host dies (default 30s)
      --refresh DURATION    renewal interval (default: ttl/3)
      --kill-after DURATION if the lock is lost, SIGKILL the command this long after SIGTERM (default 5s)
      --min-hold DURATION   keep the lock taken until DURATION after it was taken, however soon the
                            command ends; it then expires by itself (once per cron tick: with -n)
      --max-hold DURATION   stop the command as if the lock were lost once it has held it DURATION
      --holder-info TEXT    recorded with the acquisition for 'state' to show (e.g. this instance's
                            address); at most 4096 bytes
      --url URL             Redis URL (default: $REDIS_URL, else redis://127.0.0.1:6379); rediss://
                            for TLS, e.g. rediss://host:6380?tls_ca_file=/path/ca.pem (README: TLS)
  -v, --verbose             timestamped progress on stderr

DURATION: 500ms, 30s, 5m, 2h, or a number of seconds (10, 0.5).
The command gets PROCESS_LOCK_NAME, PROCESS_LOCK_FENCE (the fencing token) and, with
--holder-info, PROCESS_LOCK_HOLDER_INFO in its environment.
Exit codes: the command's own; 75 lock held (-n, -w); 76 lock lost while running (the command was
stopped); 64 usage; 69 Redis error; 126 command not executable; 127 command not found.
)usage";
  if (topic == "state")
    return R"usage(usage: process-lock state NAME [--json] [--url URL]

Prints "open", or "locked" with the time left, the fencing counter and who holds it (host, pid,
since, and its --holder-info) when the holder recorded it. Exit code 0, or 69 on a Redis error.

  --json   one JSON object on one line instead: {"name", "state" ("open"/"locked"), "ttl_ms"
           (null: open or no expiry), "fence_counter", "holder" (null, or {"host", "pid",
           "since" (RFC 3339, UTC), "since_ms" (Unix milliseconds), "fence", "info" (the
           holder's --holder-info; "" if none)})}
)usage";
  if (topic == "watch")
    return R"usage(usage: process-lock watch NAME [--json] [--poll DURATION] [--url URL]

Follows the lock NAME: prints one line for the lock as it is now, then one line per change
(acquired, released, forced, expired) as it happens, until interrupted (SIGINT, SIGTERM or
SIGHUP: exit code 0). Acquisitions and releases by process-lock holders are seen at once (the
lock's scripts announce them while someone watches); an expiry about 5 ms plus 1.5 round trips
after it; a
holder that announces nothing (process-lock-node) within --poll (default 1s). After a lost
connection it reconnects and reports what changed meanwhile ("while disconnected").
Exit code 0; 69 on a Redis error it cannot recover from (refused credentials, no rights, a
key of another type); 74 if standard output cannot be written (e.g. a closed pipe).

  --json          one JSON object per line instead: {"event" ("current", "acquired",
                  "released", "forced", "expired"), "at" (RFC 3339, UTC), "at_ms", "name",
                  "state", "ttl_ms", "fence_counter" and "holder" as 'state --json' prints them
                  ("holder": the hold the event is about, null if it recorded nothing), "token",
                  "fence", "missed" (holds that came and went unseen), "resumed" (seen after a
                  reconnection)}
  --poll DURATION the longest time between two reads of the lock (10ms .. 1h)
)usage";
  if (topic == "clear")
    return R"usage(usage: process-lock clear NAME [--force] [--url URL]

Releases the lock NAME. Without --force only a lock this command holds could be released, which
from the command line is none: use --force to release anyone's (e.g. a stuck holder's).
Prints "cleared", "not cleared (held by another owner)" or "not held". Exit code 0, or 69.
)usage";
  return R"usage(usage: process-lock COMMAND ...

  process-lock run NAME [options] -- COMMAND [ARG...]   run a command while holding a Redis lock
  process-lock state NAME [--json]                         show whether the lock is held, and by whom
  process-lock watch NAME [--json] [--poll DURATION]       print each change of the lock as it happens
  process-lock clear NAME [--force]                        release the lock
  process-lock --version

Run 'process-lock COMMAND --help' for the options of each.
)usage";
}

/// `text` as a JSON string, quotes included. Text from Redis may hold any bytes: `"`, `\` and
/// control characters are escaped, valid UTF-8 passes through, and each byte that is not part
/// of a valid UTF-8 sequence is written as \u00XX (its value as a code point), so the output is
/// always valid JSON.
inline std::string json_string(std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "\"";
  auto escaped_byte = [&](unsigned char c) {
    out += "\\u00";
    out += hex[c >> 4];
    out += hex[c & 15];
  };
  // The length of the valid UTF-8 sequence starting at `i` (0 if none), per RFC 3629.
  auto sequence_at = [&](std::size_t i) -> std::size_t {
    const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
    const unsigned char c = byte(i);
    std::size_t n = 0;
    unsigned lo = 0x80, hi = 0xbf;  // the range of the second byte
    if (c >= 0xc2 && c <= 0xdf) {
      n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 3;
      lo = c == 0xe0 ? 0xa0 : 0x80;  // no overlong forms
      hi = c == 0xed ? 0x9f : 0xbf;  // no surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 4;
      lo = c == 0xf0 ? 0x90 : 0x80;  // no overlong forms
      hi = c == 0xf4 ? 0x8f : 0xbf;  // nothing past U+10FFFF
    } else {
      return 0;
    }
    if (i + n > text.size() || byte(i + 1) < lo || byte(i + 1) > hi) return 0;
    for (std::size_t k = 2; k < n; ++k)
      if (byte(i + k) < 0x80 || byte(i + k) > 0xbf) return 0;
    return n;
  };
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c >= 0x20 && c < 0x80) {
      out += static_cast<char>(c);
    } else if (const std::size_t n = c >= 0x80 ? sequence_at(i) : 0) {
      out.append(text.substr(i, n));
      i += n;
      continue;
    } else {
      escaped_byte(c);
    }
    ++i;
  }
  return out + "\"";
}

/// A time point as RFC 3339 in UTC with milliseconds: 2026-12-02T01:30:00.123Z.
inline std::string rfc3339_utc(std::chrono::system_clock::time_point t) {
  const auto ms = std::chrono::floor<std::chrono::milliseconds>(t.time_since_epoch()).count();
  const auto seconds = static_cast<std::time_t>(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  const auto millis = static_cast<int>(ms - static_cast<long long>(seconds) * 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[40];
  const std::size_t n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
  std::string out(text, n);
  out += '.';
  out += static_cast<char>('0' + millis / 100);
  out += static_cast<char>('0' + millis / 10 % 10);
  out += static_cast<char>('0' + millis % 10);
  return out + "Z";
}

/// A holder as `state --json` and `watch --json` print it.
inline std::string holder_json(const Holder& h) {
  const auto since_ms = std::chrono::floor<std::chrono::milliseconds>(h.since.time_since_epoch()).count();
  return "{\"host\":" + json_string(h.host) + ",\"pid\":" + std::to_string(h.pid) + ",\"since\":\"" +
         rfc3339_utc(h.since) + "\",\"since_ms\":" + std::to_string(since_ms) + ",\"fence\":" + std::to_string(h.fence) +
         ",\"info\":" + json_string(h.info) + "}";
}

/// `watch --json`: one event as one object on one line, seen at `at`.
inline std::string watch_json(std::string_view name, const WatchEvent& e, std::chrono::system_clock::time_point at) {
  const auto at_ms = std::chrono::floor<std::chrono::milliseconds>(at.time_since_epoch()).count();
  std::string out = "{\"event\":\"" + std::string(to_string(e.kind)) + "\",\"at\":\"" + rfc3339_utc(at) +
                    "\",\"at_ms\":" + std::to_string(at_ms) + ",\"name\":" + json_string(name) + ",\"state\":\"" +
                    std::string(to_string(e.state)) + "\"";
  out += ",\"ttl_ms\":" + (e.ttl ? std::to_string(e.ttl->count()) : std::string("null"));
  out += ",\"fence_counter\":" + std::to_string(e.fence_counter);
  out += ",\"holder\":" + (e.holder ? holder_json(*e.holder) : std::string("null"));
  out += ",\"token\":" + (e.token.empty() ? std::string("null") : json_string(e.token));
  out += ",\"fence\":" + std::to_string(e.fence) + ",\"missed\":" + std::to_string(e.missed) +
         ",\"resumed\":" + (e.resumed ? "true" : "false") + "}";
  return out;
}

/// `watch`: one event as one line of text, seen at `at` (UTC, as `--json`'s "at").
inline std::string watch_line(const WatchEvent& e, std::chrono::system_clock::time_point at) {
  std::string who;
  if (e.holder) {
    who = "pid " + std::to_string(e.holder->pid) + " on " + e.holder->host;
    if (!e.holder->info.empty()) who += ", info " + json_string(e.holder->info);
  } else if (!e.token.empty()) {
    who = "a holder that recorded no details (e.g. process-lock-node)";
  }
  const std::string fence = e.fence ? "fence " + std::to_string(e.fence) : std::string("no fence");
  std::string text;
  switch (e.kind) {
    case WatchEvent::Kind::current:
    case WatchEvent::Kind::acquired:
      if (e.state == State::open && e.kind == WatchEvent::Kind::current) {
        text = "open (fence counter " + std::to_string(e.fence_counter) + ")";
        break;
      }
      text = std::string(e.kind == WatchEvent::Kind::current ? "locked" : "acquired") + " by " + who + ", " + fence;
      if (e.ttl) text += ", " + std::to_string(e.ttl->count()) + " ms left";
      break;
    case WatchEvent::Kind::released:
      text = e.token.empty() ? "released (" + fence + "; taken and released unseen)" : "released (" + fence + ", " + who + ")";
      if (e.missed) text += ", and " + std::to_string(e.missed) + " more holds unseen";
      break;
    case WatchEvent::Kind::forced:
      text = "force-cleared (" + fence + ", " + who + ")";
      break;
    case WatchEvent::Kind::expired:
      text = "expired (" + fence + ", " + who + ")";
      break;
  }
  if (e.resumed) text += " (while disconnected)";
  return rfc3339_utc(at) + " " + text;
}

}  // namespace process_lock::cli

#endif  // PROCESS_LOCK_CLI_HPP_
