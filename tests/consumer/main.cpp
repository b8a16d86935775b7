// Links against the library as a user would and makes one real (failing) call, so hiredis
// must be found, linked and loaded. Exit 0 when the error is the expected one.
//   consumer          redis://, nothing listening: connect_failed
//   consumer tls      rediss://, nothing listening: connect_failed (TLS is built in and linked)
//   consumer no-tls   rediss:// in a build without TLS: unsupported
#include <process_lock.hpp>

#include <iostream>
#include <string>

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  process_lock::Options options;
  options.url = mode.empty() ? "redis://127.0.0.1:1" : "rediss://127.0.0.1:1";  // nothing listens on port 1
  options.connect_timeout = std::chrono::milliseconds(500);
  try {
    process_lock::ProcessLock lock("consumer", 5, options);
    (void)lock.state();
  } catch (const process_lock::Error& e) {
    std::cout << "process-lock " << PROCESS_LOCK_VERSION_STRING << ": " << e.what() << "\n";
    const auto expected = mode == "no-tls" ? process_lock::errc::unsupported : process_lock::errc::connect_failed;
    return e.code() == expected ? 0 : 1;
  }
  return 1;
}
