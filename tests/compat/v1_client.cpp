// A process-lock 0.1.0 client (wire version 1) for compat_test.cpp. Built against the 0.1.0
// header taken from git history (tests/CMakeLists.txt), so the suite can show that a 0.1.0
// process and today's exclude each other on one lock.
//
//   process_lock_v1_client URL NAME TIMEOUT_MS
//
// Reads one command a line from stdin and answers one line on stdout:
//   lock | update       1 or 0
//   clear | force       1, 0 or null (clear(), clear(true))
//   wait MS             try_lock_for(MS ms): 1 or 0
//   fence               the fence of our hold, or none
//   token               our owner token
//   inspect             "<open|locked> <ours 1|0> <holder's fence or -> <holder's pid or ->"
// A call that throws answers "error: <message>".
#include <process_lock.hpp>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s URL NAME TIMEOUT_MS\n", argv[0]);
    return 64;
  }
  process_lock::Options options;
  options.url = argv[1];
  process_lock::ProcessLock lock(argv[2], std::chrono::milliseconds(std::stoll(argv[3])), options);
  std::string line;
  while (std::getline(std::cin, line)) {
    std::string answer;
    try {
      if (line == "lock") {
        answer = lock.lock() ? "1" : "0";
      } else if (line == "update") {
        answer = lock.update() ? "1" : "0";
      } else if (line == "clear" || line == "force") {
        const std::optional<bool> cleared = lock.clear(line == "force");
        answer = !cleared ? "null" : *cleared ? "1" : "0";
      } else if (line.rfind("wait ", 0) == 0) {
        answer = lock.try_lock_for(std::chrono::milliseconds(std::stoll(line.substr(5)))) ? "1" : "0";
      } else if (line == "fence") {
        answer = lock.fence() ? std::to_string(*lock.fence()) : "none";
      } else if (line == "token") {
        answer = lock.token();
      } else if (line == "inspect") {
        const process_lock::Inspection seen = lock.inspect();
        answer = std::string(seen.state == process_lock::State::locked ? "locked" : "open") + " " +
                 (seen.ours ? "1" : "0") + " " + (seen.holder ? std::to_string(seen.holder->fence) : "-") + " " +
                 (seen.holder ? std::to_string(seen.holder->pid) : "-");
      } else {
        answer = "error: unknown command " + line;
      }
    } catch (const std::exception& e) {
      answer = std::string("error: ") + e.what();
    }
    std::cout << answer << std::endl;
  }
  return 0;
}
