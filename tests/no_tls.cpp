// A build without TLS (PROCESS_LOCK_WITH_TLS not defined, as with the plain include and no
// OpenSSL): every rediss:// form is errc::unsupported, saying what to install, with no password.
#include <process_lock.hpp>

#include <cstdio>
#include <string>

static_assert(!PROCESS_LOCK_WITH_TLS, "this check is built without TLS");

int main() {
  int failures = 0;
  for (const char* url : {"rediss://:s3cret@h:6380", "rediss+sentinel://:s3cret@s/mymaster", "rediss+cluster://a,b"}) {
    process_lock::Options options;
    options.url = url;
    try {
      process_lock::ProcessLock lock("job", 10, options);
      std::printf("FAIL %s: accepted\n", url);
      ++failures;
    } catch (const process_lock::Error& e) {
      const std::string text = e.what();
      const bool ok = e.code() == process_lock::errc::unsupported && text.find("libssl-dev") != std::string::npos &&
                      text.find("PROCESS_LOCK_WITH_TLS=1") != std::string::npos &&
                      text.find("s3cret") == std::string::npos;
      std::printf("%s %s: %s\n", ok ? "ok" : "FAIL", url, text.c_str());
      failures += ok ? 0 : 1;
    }
  }
  return failures == 0 ? 0 : 1;
}
