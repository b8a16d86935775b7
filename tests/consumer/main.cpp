// Links against the library as a user would and makes one real (failing) call, so hiredis
// must be found, linked and loaded. Exit 0 when the error is the expected one.
#include <process_lock.hpp>

#include <iostream>

int main(int argc, char** argv) {
  process_lock::Options options;
  options.url = argc > 1 ? argv[1] : "redis://127.0.0.1:1";  // nothing listens on port 1
  options.connect_timeout = std::chrono::milliseconds(500);
  process_lock::ProcessLock lock("consumer", 5, options);
  try {
    (void)lock.state();
  } catch (const process_lock::Error& e) {
    std::cout << "process-lock " << PROCESS_LOCK_VERSION_STRING << ": " << e.what() << "\n";
    return e.code() == process_lock::errc::connect_failed ? 0 : 1;
  }
  return 1;
}
