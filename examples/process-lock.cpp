// process-lock: run a command on one host at a time, with the lock held (and renewed) in Redis.
// See `process-lock --help` and the README's "The process-lock command" section.
#include "process_lock_cli.hpp"

#include <process_lock.hpp>

#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>
#include <string_view>
#include <system_error>
#include <thread>

namespace {

using namespace process_lock;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace code = cli::exit_code;

bool verbose = false;

// A timestamped line on stderr (always for errors, with -v for progress).
template <class... Args>
void say(bool always, const char* format, Args... args) {
  if (!always && !verbose) return;
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  char stamp[32];
  tm local{};
  localtime_r(&now.tv_sec, &local);
  std::strftime(stamp, sizeof stamp, "%H:%M:%S", &local);
  std::fprintf(stderr, "%s.%03ld process-lock: ", stamp, now.tv_nsec / 1000000);
  if constexpr (sizeof...(Args) == 0)
    std::fputs(format, stderr);  // a format without arguments is a plain string (clang's -Wformat-security)
  else
    std::fprintf(stderr, format, args...);
  std::fputc('\n', stderr);
}

std::string describe_holder(const Inspection& seen) {
  if (seen.state == State::open) return "nobody";
  std::string s;
  if (seen.holder) {
    const auto since = std::chrono::system_clock::to_time_t(seen.holder->since);
    tm local{};
    localtime_r(&since, &local);
    char when[32];
    std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &local);
    s = "pid " + std::to_string(seen.holder->pid) + " on " + seen.holder->host + " since " + when;
    if (!seen.holder->info.empty()) s += ", info " + cli::json_string(seen.holder->info);  // quoted, escaped
  } else {
    s = "a holder that recorded no details (e.g. process-lock-node)";
  }
  if (seen.ttl) s += ", " + std::to_string(seen.ttl->count()) + " ms left";
  return s;
}

// Signals that must reach the command (or stop the wait) arrive here, on a thread of their own,
// through sigwait: no async-signal-safety worries, and the lock library is free to use.
const int forwarded_signals[] = {SIGINT, SIGTERM, SIGHUP};
std::atomic<int> received_signal{0};
std::atomic<pid_t> command_group{0};
std::atomic<ProcessLock*> waiting_lock{nullptr};
std::atomic<bool> watch_stop{false};  // a signal ends `watch` (see watch())

sigset_t forwarded_set() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : forwarded_signals) sigaddset(&set, s);
  return set;
}

// Who holds the lock, for a message; a Redis error here must not change the outcome.
std::string holder_of(ProcessLock& lock) {
  try {
    return describe_holder(lock.inspect());
  } catch (const Error& e) {
    return std::string("(unknown: ") + e.what() + ")";
  }
}

void start_signal_thread() {
  // A signal ignored by whoever started us would never reach sigwait: take them back.
  for (int s : forwarded_signals) std::signal(s, SIG_DFL);
  const sigset_t set = forwarded_set();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // before any other thread exists: all inherit it
  std::thread([set] {
    for (;;) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0) continue;
      received_signal = sig;
      watch_stop = true;  // before cancel(): a watch just starting sees one or the other
      if (const pid_t group = command_group.load(); group > 0)
        kill(-group, sig);
      else if (ProcessLock* lock = waiting_lock.load())
        lock->cancel();
    }
  }).detach();
}

// `state --json`: one object on one line (see `process-lock state --help`).
std::string state_json(const ProcessLock& lock, const Inspection& seen) {
  std::string out = "{\"name\":" + cli::json_string(lock.name()) + ",\"state\":\"" + std::string(to_string(seen.state)) + "\"";
  out += ",\"ttl_ms\":" + (seen.ttl ? std::to_string(seen.ttl->count()) : std::string("null"));
  out += ",\"fence_counter\":" + std::to_string(seen.fence_counter) + ",\"holder\":";
  return out + (seen.holder ? cli::holder_json(*seen.holder) : std::string("null")) + "}";
}

// While a call may wait, the signal thread may cancel it through waiting_lock: cleared on every
// way out of the call (an exception too), before the lock it points to can be destroyed.
class WaitingOn {
 public:
  explicit WaitingOn(ProcessLock& lock) noexcept { waiting_lock = &lock; }
  ~WaitingOn() { waiting_lock = nullptr; }
  WaitingOn(const WaitingOn&) = delete;
  WaitingOn& operator=(const WaitingOn&) = delete;
};

// stdout could not take a line (a closed pipe with SIGPIPE ignored, a full disk).
struct OutputFailed {};

// `watch`: a line per change until SIGINT/SIGTERM/SIGHUP (the signal thread sets watch_stop and
// cancels the watch), which is the normal end: exit code 0. If stdout fails (`watch | head -1`
// with SIGPIPE ignored), exit code 74 (EX_IOERR) rather than watching for nobody.
int watch(ProcessLock& lock, const cli::Arguments& args) {
  WatchOptions options;
  if (args.poll) options.poll_interval = *args.poll;
  options.stop = &watch_stop;
  options.on_error = [&](const Error& e) {
    // A refused subscription is for good (the watch polls instead); the rest it retries.
    say(true, "watch: %s%s", e.what(), e.code() == errc::permission_denied ? "" : " (reconnecting)");
  };
  const WaitingOn waiting(lock);
  try {
    lock.watch_until(Clock::time_point::max(), [&](const WatchEvent& e) {
      const auto now = std::chrono::system_clock::now();
      const std::string line = args.json ? cli::watch_json(lock.name(), e, now) : cli::watch_line(e, now);
      std::printf("%s\n", line.c_str());
      // One line per change as it happens, even into a pipe; a reader gone ends the watch.
      if (std::fflush(stdout) != 0 || std::ferror(stdout)) throw OutputFailed{};
    }, options);
  } catch (const OutputFailed&) {
    say(true, "watch: cannot write to standard output: %s", std::generic_category().message(errno).c_str());
    return code::output_failed;
  }
  return 0;
}

int state(ProcessLock& lock, bool json) {
  const Inspection seen = lock.inspect();
  if (json) {
    std::printf("%s\n", state_json(lock, seen).c_str());
    return 0;
  }
  if (seen.state == State::open) {
    std::printf("open (fence counter %llu)\n", static_cast<unsigned long long>(seen.fence_counter));
    return 0;
  }
  std::printf("locked by %s; fence counter %llu\n", describe_holder(seen).c_str(),
              static_cast<unsigned long long>(seen.fence_counter));
  return 0;
}

int clear(ProcessLock& lock, bool force) {
  const std::optional<bool> cleared = lock.clear(force);
  std::printf("%s\n", !cleared ? "not held" : *cleared ? "cleared" : "not cleared (held by another owner; use --force)");
  return 0;
}

// Waits as the options say; true once the lock is ours.
bool acquire(ProcessLock& lock, const cli::Arguments& args) {
  if (args.no_wait) return lock.lock();
  if (lock.lock()) return true;
  const auto deadline = args.wait ? Clock::now() + *args.wait : Clock::time_point::max();
  const WaitingOn waiting(lock);
  bool acquired = false;
  while (!received_signal && Clock::now() < deadline) {
    if (verbose) say(false, "waiting: \"%s\" is held by %s", lock.name().c_str(), holder_of(lock).c_str());
    // Slices of 5 s, so a person watching a long wait sees who holds it every few seconds.
    const auto slice_end = deadline - Clock::now() > 5s ? Clock::now() + 5s : deadline;
    if ((acquired = lock.try_lock_until(slice_end))) break;
  }
  return acquired;
}

// Exit status of a command as a shell reports it.
int status_code(int status) { return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status); }

pid_t spawn(const cli::Arguments& args, std::uint64_t fence, bool on_terminal) {
  // Everything that allocates happens before the fork (other threads exist). The command's
  // environment is ours plus the lock's name and fence, built here: setenv() would change the
  // environment under the keeper's and the signal handler's feet.
  std::vector<std::string> environment;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    if (entry.rfind("PROCESS_LOCK_NAME=", 0) != 0 && entry.rfind("PROCESS_LOCK_FENCE=", 0) != 0 &&
        entry.rfind("PROCESS_LOCK_HOLDER_INFO=", 0) != 0)
      environment.emplace_back(entry);
  }
  environment.push_back("PROCESS_LOCK_NAME=" + args.name);
  environment.push_back("PROCESS_LOCK_FENCE=" + std::to_string(fence));
  if (!args.holder_info.empty()) environment.push_back("PROCESS_LOCK_HOLDER_INFO=" + args.holder_info);
  std::vector<char*> envp;
  envp.reserve(environment.size() + 1);
  for (auto& entry : environment) envp.push_back(entry.data());
  envp.push_back(nullptr);
  std::vector<char*> argv;
  argv.reserve(args.command.size() + 1);
  for (const auto& a : args.command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t child = fork();
  if (child != 0) {
    if (child > 0) setpgid(child, child);  // as the child does: whichever runs first
    return child;
  }
  // The command dies with process-lock (even by SIGKILL); re-checked in case it died already.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(code::lock_lost);
  setpgid(0, 0);
  if (on_terminal) tcsetpgrp(STDIN_FILENO, getpid());  // before it can read: no SIGTTIN race
  std::signal(SIGTTOU, SIG_DFL);  // ignored in process-lock for tcsetpgrp(); not for the command
  const sigset_t set = forwarded_set();
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  execvpe(argv[0], argv.data(), envp.data());
  const int err = errno;
  // NOLINTNEXTLINE(concurrency-mt-unsafe): the forked child has one thread
  std::fprintf(stderr, "process-lock: cannot run '%s': %s\n", argv[0], std::strerror(err));
  _exit(err == ENOENT ? code::not_found : code::cannot_run);
}

int run(ProcessLock& lock, const cli::Arguments& args) {
  if (!acquire(lock, args)) {
    if (const int sig = received_signal.load()) return 128 + sig;
    say(true, "\"%s\" is held by %s", lock.name().c_str(), holder_of(lock).c_str());
    return args.conflict_exit_code;
  }
  const Clock::time_point acquired_at = Clock::now();
  const std::uint64_t fence = lock.fence().value_or(0);
  say(false, "acquired \"%s\" (fence %llu, ttl %lld ms)", lock.name().c_str(), static_cast<unsigned long long>(fence),
      static_cast<long long>(lock.timeout().count()));

  std::atomic<bool> lost{false};
  std::string lost_reason;
  KeepOptions keep;
  keep.interval = args.refresh;
  // Report a loss early enough that even a command ignoring SIGTERM is killed (after
  // --kill-after) before the lock's validity runs out, where the TTL leaves room for it.
  const auto interval = args.refresh.value_or(lock.timeout() / 3);
  const auto wanted_margin = args.kill_after + 500ms;
  if (interval + wanted_margin < lock.timeout() - lock.timeout() / 100 - 2ms && wanted_margin > lock.timeout() / 5)
    keep.margin = wanted_margin;
  keep.on_renewed = [&] { say(false, "renewed \"%s\"", lock.name().c_str()); };
  keep.on_lost = [&](const Lost& why) {
    lost_reason = std::string(to_string(why.reason)) + (why.error ? std::string(": ") + why.error.what() : "");
    lost = true;  // the main loop stops the command at once
  };
  lock.keep(keep);

  // Orphaned descendants of the command are reparented to us, so we know when all are gone.
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  // An interactive command in its own group must own the terminal, or reading it would stop it.
  const bool on_terminal = isatty(STDIN_FILENO) && tcgetpgrp(STDIN_FILENO) == getpgrp();
  const pid_t child = spawn(args, fence, on_terminal);
  if (child < 0) {
    say(true, "cannot start the command: %s", std::generic_category().message(errno).c_str());
    return code::cannot_run;
  }
  command_group = child;
  if (const int sig = received_signal.load()) kill(-child, sig);  // arrived while spawning
  if (on_terminal) tcsetpgrp(STDIN_FILENO, child);

  std::optional<int> command_status;
  std::optional<Clock::time_point> done_at, term_at, kill_at;
  bool over_max_hold = false;
  for (;;) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, WNOHANG | WUNTRACED);
    if (pid == child && WIFSTOPPED(status)) {
      // Job control (Ctrl-Z): stop with the command, so the shell gets control back; the lock
      // is not renewed meanwhile. When the shell continues us, continue the command.
      if (on_terminal) tcsetpgrp(STDIN_FILENO, getpgrp());
      kill(getpid(), SIGSTOP);
      if (on_terminal) tcsetpgrp(STDIN_FILENO, child);
      kill(-child, SIGCONT);
      continue;
    }
    if (pid == child) {
      command_status = status;
      done_at = Clock::now();
    }
    if (pid < 0 && errno == ECHILD) break;  // the command and everything it left behind are gone
    if (pid > 0) continue;
    const auto now = Clock::now();
    if (lost && !term_at) {
      say(true, "lost the lock \"%s\" (%s): stopping the command", lock.name().c_str(), lost_reason.c_str());
      kill(-child, SIGTERM);
      term_at = now;
    }
    // Past --max-hold the command is stopped as if the lock were lost; the lock is still renewed
    // until the command is gone (it may ignore SIGTERM), then released as at a normal end.
    if (args.max_hold && !over_max_hold && !term_at && !done_at && now >= acquired_at + *args.max_hold) {
      say(true, "held \"%s\" for the --max-hold of %lld ms: stopping the command", lock.name().c_str(),
          static_cast<long long>(args.max_hold->count()));
      kill(-child, SIGTERM);
      term_at = now;
      over_max_hold = true;
    }
    if (done_at && !term_at && now - *done_at > args.kill_after) {
      say(false, "the command left processes behind: stopping them");
      kill(-child, SIGTERM);
      term_at = now;
    }
    if (term_at && !kill_at && now - *term_at > args.kill_after) {
      kill(-child, SIGKILL);
      kill_at = now;
    }
    if (kill_at && now - *kill_at > 1s) break;  // left the group (setsid): not ours to wait for
    std::this_thread::sleep_for(10ms);
  }
  command_group = 0;
  if (on_terminal) tcsetpgrp(STDIN_FILENO, getpgrp());

  if (lost) {
    say(true, term_at ? "the command was stopped because the lock \"%s\" was lost"
                      : "the lock \"%s\" was lost as the command ended",
        lock.name().c_str());
    return code::lock_lost;
  }
  if (!command_status) {
    say(true, "the command's exit status was lost (was SIGCHLD ignored?)");
    return code::cannot_run;
  }
  try {
    if (args.min_hold && Clock::now() < acquired_at + *args.min_hold) {
      // Left taken, expiring by itself at the end of the minimum hold: a host whose cron tick
      // comes late finds it taken and skips this tick, instead of running the job again.
      const Clock::time_point until = acquired_at + *args.min_hold;
      const bool left = lock.release_at(until);
      const auto in = std::chrono::ceil<std::chrono::milliseconds>(until - Clock::now());
      if (left)
        say(false, "left \"%s\" taken until the minimum hold ends, in %lld ms", lock.name().c_str(),
            static_cast<long long>(in.count()));
      else
        say(false, "the lock \"%s\" had already gone", lock.name().c_str());
    } else {
      const std::optional<bool> released = lock.clear();
      say(false, "released \"%s\" (%s)", lock.name().c_str(), released && *released ? "cleared" : "it had already gone");
    }
  } catch (const Error& e) {
    // The command's status matters more; the lock expires after its TTL.
    say(true, "could not release the lock (it expires after its TTL): %s", e.what());
  }
  return over_max_hold ? code::lock_lost : status_code(*command_status);
}

}  // namespace

int main(int argc, char** argv) try {
  cli::Arguments args;
  try {
    args = cli::parse(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const cli::UsageError& e) {
    // One line: what is wrong, the synopsis, and where to read more.
    const std::string topic = argc > 1 ? argv[1] : "";
    const std::string text = cli::usage_text(topic);
    std::fprintf(stderr, "process-lock: %s (%s; see --help)\n", e.what(), text.substr(0, text.find('\n')).c_str());
    return code::usage;
  }
  if (args.action == cli::Action::help) {
    std::fputs(cli::usage_text(args.help_topic), stdout);
    return 0;
  }
  if (args.action == cli::Action::version) {
    std::printf("process-lock %s (hiredis %d.%d)\n", PROCESS_LOCK_VERSION_STRING, HIREDIS_MAJOR, HIREDIS_MINOR);
    return 0;
  }
  verbose = args.verbose;
  std::signal(SIGCHLD, SIG_DFL);  // an inherited SIG_IGN would make the kernel discard exit statuses
  std::signal(SIGTTOU, SIG_IGN);  // lets process-lock hand the terminal to the command and back
  start_signal_thread();
  try {
    Options options;
    if (args.url) options.url = *args.url;
    options.holder_info = args.holder_info;
    ProcessLock lock(args.name, args.ttl, options);
    switch (args.action) {
      case cli::Action::state: return state(lock, args.json);
      case cli::Action::clear: return clear(lock, args.force);
      case cli::Action::watch: return watch(lock, args);
      default: return run(lock, args);
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "process-lock: %s\n", e.what());
    return e.code() == errc::invalid_argument ? code::usage : code::redis_error;
  }
} catch (const std::exception& e) {
  // Not Redis's fault nor the user's: no memory, no threads left. Never std::terminate's core dump.
  std::fprintf(stderr, "process-lock: internal error: %s\n", e.what());
  return code::internal;
}
