// Waiting, keeping and fencing: wait up to a minute for the lock, keep it renewed in the
// background while working, stop at once if it is lost, and tag every write with the fencing
// token so a resource can refuse a holder whose lock has passed to someone else.
//
//   keeper NAME [WORK_SECONDS=5]
#include <process_lock.hpp>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <thread>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s NAME [WORK_SECONDS=5]\n", argv[0]);
    return 2;
  }
  const int work_seconds = argc > 2 ? std::atoi(argv[2]) : 5;
  using namespace std::chrono_literals;
  try {
    process_lock::ProcessLock lock(argv[1], 3);  // 3 s timeout: a crashed holder blocks others 3 s at most

    std::atomic<bool> lost{false};
    process_lock::KeepOptions keep;  // renew every second, report 600 ms before validity ends
    keep.on_lost = [&](const process_lock::Lost& why) {
      std::printf("lock lost (%s), %lld ms left: stopping\n", std::string(to_string(why.reason)).c_str(),
                  static_cast<long long>(why.remaining.count()));
      lost = true;
    };

    process_lock::Guard guard(lock, 60s, keep);  // waits; a release elsewhere wakes it at once
    if (!guard) {
      std::printf("still held by someone else after a minute: giving up\n");
      return 1;
    }
    const auto info = lock.inspect();
    std::printf("acquired with fence %llu (held by pid %ld on %s)\n", static_cast<unsigned long long>(*guard.fence()),
                info.holder ? info.holder->pid : 0L, info.holder ? info.holder->host.c_str() : "?");
    for (int i = 0; i < work_seconds * 4 && !lost; ++i) {
      // A real job would send the fence with each write: the resource refuses lower ones.
      std::printf("write #%d with fence %llu (lock valid for %lld ms more)\n", i + 1,
                  static_cast<unsigned long long>(*guard.fence()), static_cast<long long>(lock.valid_for().count()));
      std::this_thread::sleep_for(250ms);
    }
    return lost ? 1 : 0;  // the guard releases the lock here
  } catch (const std::exception& e) {  // process_lock::Error, or e.g. no thread for the keeper
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
