// A worker in the shape of process-lock-node's README: wait for the lock, refresh it at half
// the timeout while working, and clear it when done or on SIGINT/SIGTERM. Start two copies
// with the same name and only one works at a time; examples/demo.sh does exactly that.
//
//   worker NAME LABEL [TIMEOUT_SECONDS=2] [WORK_SECONDS=4]
#include <process_lock.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <string>
#include <thread>

namespace {

volatile std::sig_atomic_t stop_requested = 0;
void request_stop(int) { stop_requested = 1; }

std::string label;

template <class... Args>
void say(const char* format, Args... args) {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  char stamp[16];
  tm local{};
  localtime_r(&now.tv_sec, &local);  // not localtime(): the lock's keeper may run a thread
  std::strftime(stamp, sizeof stamp, "%H:%M:%S", &local);
  std::printf("%s.%03ld %-8s ", stamp, now.tv_nsec / 1000000, label.c_str());
  if constexpr (sizeof...(Args) == 0)
    std::fputs(format, stdout);  // a format without arguments is a plain string (clang's -Wformat-security)
  else
    std::printf(format, args...);
  std::printf("\n");
  std::fflush(stdout);
}

// Sleeps up to `d`, returning early when a stop was requested.
void nap(std::chrono::milliseconds d) {
  const auto until = std::chrono::steady_clock::now() + d;
  while (!stop_requested && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s NAME LABEL [TIMEOUT_SECONDS=2] [WORK_SECONDS=4]\n", argv[0]);
    return 2;
  }
  label = argv[2];
  const double timeout_s = argc > 3 ? std::atof(argv[3]) : 2.0;
  const double work_s = argc > 4 ? std::atof(argv[4]) : 4.0;
  std::signal(SIGINT, request_stop);
  std::signal(SIGTERM, request_stop);

  try {
    process_lock::ProcessLock lock(argv[1], timeout_s);
    const auto refresh_every = lock.timeout() / 2;  // the node README's advice

    // Wait for the lock, retrying every quarter timeout.
    bool said_waiting = false;
    while (!stop_requested) {
      bool owner = false;
      lock.lock([&](const process_lock::Error& err, bool got) {
        if (err) say("lock failed: %s", err.what());
        owner = got;
      });
      if (owner) break;
      if (!said_waiting) say("waiting: another worker holds \"%s\"", argv[1]);
      said_waiting = true;
      nap(lock.timeout() / 4);
    }
    if (stop_requested) return 0;
    say("acquired \"%s\", working for %.1f s", argv[1], work_s);

    // Work in slices; refresh the lock at half the timeout; stop at once if it was lost.
    const auto work_until = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<long>(work_s * 1000));
    auto next_refresh = std::chrono::steady_clock::now() + refresh_every;
    int slice = 0;
    while (!stop_requested && std::chrono::steady_clock::now() < work_until) {
      say("working (%d)", ++slice);
      nap(std::chrono::milliseconds(500));
      if (std::chrono::steady_clock::now() >= next_refresh) {
        if (!lock.update()) {
          say("lost the lock: stopping work");
          return 1;
        }
        next_refresh = std::chrono::steady_clock::now() + refresh_every;
      }
    }

    const std::optional<bool> cleared = lock.clear();
    say(stop_requested ? "stopped by signal; released the lock (%s)" : "done; released the lock (%s)",
        !cleared ? "it had expired" : *cleared ? "cleared" : "held by someone else");
    return 0;
  } catch (const std::exception& e) {  // process_lock::Error, or e.g. out of memory
    say("error: %s", e.what());
    return 1;
  }
}
