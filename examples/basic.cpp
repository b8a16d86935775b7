// The smallest use: take the lock once, do the job if we got it, release it.
// Run with REDIS_URL set (default redis://127.0.0.1:6379).
#include <process_lock.hpp>

#include <exception>
#include <iostream>

int main() try {
  process_lock::ProcessLock lock("nightly-report", 60);  // name, timeout in seconds
  try {
    if (!lock.lock()) {
      std::cout << "another process is running the report; state: " << lock.state() << "\n";
      return 0;
    }
    std::cout << "running the report as " << lock.token() << "\n";
    // ... the job; call lock.update() at least every 60 s while it runs ...
    lock.clear();
  } catch (const process_lock::Error& e) {
    std::cerr << "lock error: " << e.what() << "\n";
    return 1;
  }

  // The same calls in node style: the callback runs before the call returns.
  lock.state([](const process_lock::Error& err, process_lock::State s) {
    if (err)
      std::cerr << "state failed: " << err.what() << "\n";
    else
      std::cout << "now " << s << "\n";
  });
  return 0;
} catch (const std::exception& e) {  // e.g. a malformed REDIS_URL, from the constructor
  std::cerr << "error: " << e.what() << "\n";
  return 1;
}
