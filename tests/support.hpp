// Test support: a throwaway redis-server, a raw hiredis client to play other parties (such as
// process-lock-node), and a scripted fake server for faults a real Redis cannot be made to
// show on demand (garbage replies, a close in the middle of a call).
#ifndef PROCESS_LOCK_TESTS_SUPPORT_HPP_
#define PROCESS_LOCK_TESTS_SUPPORT_HPP_

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <process_lock.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace test {

using namespace std::chrono_literals;

/// Polls `pred` every millisecond until it holds or `limit` passes; returns its last value.
inline bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds limit = 5000ms) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return pred();
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

/// A port on 127.0.0.1 that was free a moment ago.
inline int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw std::runtime_error("bind failed");
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

/// A URL where nothing listens: port 1 is privileged and no test server can get it.
inline std::string closed_port_url() { return "redis://127.0.0.1:1"; }

/// Whether this host has an IPv6 loopback address (many containers do not).
inline bool has_ipv6_loopback() {
  const int fd = socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_addr = in6addr_loopback;
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

/// A plain hiredis connection for the test's own commands.
class RawClient {
 public:
  explicit RawClient(int port) : ctx_(redisConnect("127.0.0.1", port)) { check_ctx(); }
  explicit RawClient(const std::string& unix_path) : ctx_(redisConnectUnix(unix_path.c_str())) { check_ctx(); }

  /// Runs a command; throws on a transport failure, returns error replies as they are.
  process_lock::detail::ReplyPtr run(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* reply =
        static_cast<redisReply*>(redisCommandArgv(ctx_.get(), static_cast<int>(argv.size()), argv.data(), lens.data()));
    if (!reply) throw std::runtime_error(std::string("raw client: ") + ctx_->errstr);
    return process_lock::detail::ReplyPtr(reply);
  }
  long long integer(const std::vector<std::string>& args) {
    auto r = run(args);
    if (r->type != REDIS_REPLY_INTEGER)
      throw std::runtime_error("expected an integer from " + args[0] + ": " + describe(*r));
    return r->integer;
  }
  /// A string or status reply; nullopt for nil.
  std::optional<std::string> string(const std::vector<std::string>& args) {
    auto r = run(args);
    if (r->type == REDIS_REPLY_NIL) return std::nullopt;
    if (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS)
      throw std::runtime_error("expected a string from " + args[0] + ": " + describe(*r));
    return std::string(r->str, r->len);
  }
  /// `INFO commandstats` as command -> calls, without the test's own INFO and CONFIG calls.
  std::map<std::string, long long> command_calls() {
    std::map<std::string, long long> calls;
    std::istringstream in(*string({"INFO", "commandstats"}));
    for (std::string line; std::getline(in, line);) {
      const auto colon = line.find(':');
      if (line.rfind("cmdstat_", 0) != 0 || colon == std::string::npos) continue;
      const std::string name = line.substr(8, colon - 8);
      if (name == "info" || name.rfind("config", 0) == 0) continue;
      calls[name] = std::stoll(line.substr(line.find("calls=") + 6));
    }
    return calls;
  }
  void reset_stats() { run({"CONFIG", "RESETSTAT"}); }

 private:
  static std::string describe(const redisReply& r) {
    return r.type == REDIS_REPLY_ERROR ? std::string(r.str, r.len) : "reply type " + std::to_string(r.type);
  }
  void check_ctx() {
    if (!ctx_ || ctx_->err)
      throw std::runtime_error(std::string("raw client cannot connect: ") + (ctx_ ? ctx_->errstr : "oom"));
  }
  process_lock::detail::ContextPtr ctx_;
};

/// A redis-server of the test's own, on a free loopback port and a unix socket in a private
/// directory; stopped and removed by the destructor. A missing redis-server fails the test.
class RedisServer {
 public:
  /// A server with `extra_args` after the defaults (later arguments win). With
  /// `sentinel_config`, a Redis Sentinel instead, started from a file with that text.
  explicit RedisServer(std::vector<std::string> extra_args = {}, std::string sentinel_config = {})
      : extra_args_(std::move(extra_args)), sentinel_config_(std::move(sentinel_config)) {
    char tmpl[] = "/tmp/process-lock-test-XXXXXX";
    if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    try {
      if (!sentinel_config_.empty()) std::ofstream(dir_ + "/sentinel.conf") << sentinel_config_;
      start();
    } catch (...) {
      remove_dir();
      throw;
    }
  }
  ~RedisServer() {
    stop();
    remove_dir();
  }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  int port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }
  std::string socket_path() const { return dir_ + "/redis.sock"; }
  const std::string& dir() const { return dir_; }
  RawClient client() const { return RawClient(port_); }

  /// Starts the server. The first start picks a free port (another if it was taken meanwhile);
  /// a restart after stop() or kill() insists on the same port, which clients know.
  void start() {
    const bool restart = port_ != 0;
    for (int attempt = 0; attempt < 20; ++attempt) {
      if (!restart) port_ = free_port();
      if (spawn()) return;
      if (restart) std::this_thread::sleep_for(50ms);
    }
    throw std::runtime_error("redis-server did not start on port " + std::to_string(port_) + "; its log:\n" +
                             log_tail());
  }
  /// SIGTERM and wait: a clean shutdown.
  void stop() { signal_and_reap(SIGTERM); }
  /// SIGKILL and wait: a crash.
  void kill() { signal_and_reap(SIGKILL); }
  /// SIGSTOP / SIGCONT: a server that stops answering but keeps its connections.
  void pause() { ::kill(pid_, SIGSTOP); }
  void resume() { ::kill(pid_, SIGCONT); }

 private:
  bool spawn() {
    std::vector<std::string> args = {"redis-server"};
    if (!sentinel_config_.empty()) args.insert(args.end(), {dir_ + "/sentinel.conf", "--sentinel"});
    args.insert(args.end(), {"--port", std::to_string(port_), "--bind", "127.0.0.1", "--unixsocket", socket_path(),
                             "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", dir_, "--logfile",
                             dir_ + "/redis.log", "--daemonize", "no"});
    args.insert(args.end(), extra_args_.begin(), extra_args_.end());
    std::vector<char*> argv;  // made before the fork: the child of a threaded process must not allocate
    argv.reserve(args.size() + 1);
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a crashed test
      if (getppid() != parent) _exit(1);
      execvp("redis-server", argv.data());
      std::perror("cannot run redis-server (apt-get install redis-server)");
      _exit(127);
    }
    const bool ready = wait_until([&] {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;
        return true;  // exited: port taken, or redis-server missing
      }
      // The unix socket exists whatever --bind says (a test may bind ::1 only).
      process_lock::detail::ContextPtr c(redisConnectUnix(socket_path().c_str()));
      if (!c || c->err) return false;
      process_lock::detail::ReplyPtr r(static_cast<redisReply*>(redisCommand(c.get(), "PING")));
      return r != nullptr;  // any reply, even NOAUTH, means it is serving
    });
    if (!ready) {
      signal_and_reap(SIGKILL);
      return false;
    }
    return pid_ != 0;
  }
  void signal_and_reap(int sig) {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGCONT);
    ::kill(pid_, sig);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = 0;
  }
  void remove_dir() const {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  std::string log_tail() const {
    std::ifstream in(dir_ + "/redis.log");
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return all.size() > 2000 ? all.substr(all.size() - 2000) : all;
  }

  std::vector<std::string> extra_args_;
  std::string sentinel_config_;
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = 0;
};

/// A scripted server: for each accepted connection, in order, a list of actions, one per
/// received request (a request is whatever one read() returns: our commands are small).
class FakeServer {
 public:
  enum class Act { reply, close, hang };
  struct Step {
    Act act;
    std::string bytes;  // for reply: sent as is
  };
  using Script = std::vector<Step>;

  /// Listens on 127.0.0.1 (or on a unix socket at `unix_path` when given).
  explicit FakeServer(std::vector<Script> connections, std::string unix_path = {})
      : connections_(std::move(connections)), unix_path_(std::move(unix_path)) {
    if (unix_path_.empty()) {
      listener_ = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw std::runtime_error("bind");
      socklen_t len = sizeof addr;
      getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
      port_ = ntohs(addr.sin_port);
    } else {
      listener_ = socket(AF_UNIX, SOCK_STREAM, 0);
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", unix_path_.c_str());
      unlink(unix_path_.c_str());
      if (bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw std::runtime_error("bind unix");
    }
    listen(listener_, 16);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeServer() {
    stopping_ = true;
    shutdown(listener_, SHUT_RDWR);
    close(listener_);
    thread_.join();
    for (int fd : hung_) close(fd);
    if (!unix_path_.empty()) unlink(unix_path_.c_str());
  }
  int port() const { return port_; }
  std::string url() const {
    return unix_path_.empty() ? "redis://127.0.0.1:" + std::to_string(port_) : "unix://" + unix_path_;
  }
  /// How many connections were accepted.
  int accepted() const { return accepted_.load(); }

 private:
  void serve() {
    for (const Script& script : connections_) {
      const int fd = accept(listener_, nullptr, nullptr);
      if (fd < 0) return;
      ++accepted_;
      bool keep_open = false;
      for (const Step& step : script) {
        char buf[65536];
        if (read(fd, buf, sizeof buf) <= 0 || stopping_) break;
        if (step.act == Act::reply) {
          if (write(fd, step.bytes.data(), step.bytes.size()) < 0) break;
        } else if (step.act == Act::hang) {
          keep_open = true;  // read, never answer, keep the socket until the server ends
          break;
        } else {
          break;
        }
      }
      if (keep_open)
        hung_.push_back(fd);
      else
        close(fd);
    }
  }

  std::vector<Script> connections_;
  std::string unix_path_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<int> accepted_{0};
  std::atomic<bool> stopping_{false};
  std::vector<int> hung_;
  std::thread thread_;
};

/// Runs `call`, which must throw process_lock::Error, and returns what it threw; a call that
/// does not throw fails the test and yields an empty Error.
template <class Call>
process_lock::Error failure_of(Call call) {
  try {
    call();
  } catch (const process_lock::Error& e) {
    return e;
  }
  ADD_FAILURE() << "the call did not fail";
  return process_lock::Error();
}

inline bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

/// Options pointing at `url` with short timeouts, so failures show quickly.
inline process_lock::Options options_for(const std::string& url, std::chrono::milliseconds io_timeout = 1000ms);

/// A fixture with one redis-server for the whole suite `Suite`, flushed before each test.
template <class Suite>
class SharedServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = new RedisServer(); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    raw_ = std::make_unique<RawClient>(server_->port());
    raw_->run({"FLUSHALL"});
  }
  process_lock::Options options() const { return options_for(server_->url()); }

  static inline RedisServer* server_ = nullptr;
  std::unique_ptr<RawClient> raw_;
};

/// Options pointing at `url` with short timeouts, so failures show quickly.
inline process_lock::Options options_for(const std::string& url, std::chrono::milliseconds io_timeout) {
  process_lock::Options o;
  o.url = url;
  o.connect_timeout = io_timeout;
  o.command_timeout = io_timeout;
  return o;
}

/// Collects on_lost reports (the keeper calls it from its own thread); `when_reported` also runs, on the keeper's
/// thread, at each report.
struct LostProbe {
  std::mutex mutex;
  std::vector<process_lock::Lost> reports;
  std::promise<void> first;
  std::future<void> first_reported = first.get_future();
  bool fulfilled = false;

  process_lock::KeepOptions options(process_lock::KeepOptions o = {}, std::function<void()> when_reported = {}) {
    o.on_lost = [this, when_reported = std::move(when_reported)](const process_lock::Lost& lost) {
      if (when_reported) when_reported();
      const std::lock_guard<std::mutex> guard(mutex);
      reports.push_back(lost);
      if (!fulfilled) first.set_value();
      fulfilled = true;
    };
    return o;
  }
  // Waits for the first report, up to `limit`.
  bool reported(std::chrono::milliseconds limit) { return first_reported.wait_for(limit) == std::future_status::ready; }
  size_t count() {
    const std::lock_guard<std::mutex> guard(mutex);
    return reports.size();
  }
  process_lock::Lost at(size_t i) {
    const std::lock_guard<std::mutex> guard(mutex);
    return reports.at(i);
  }
};

/// Runs `body` in a forked child; returns its wait status. For behaviour that would kill the
/// process if it were wrong (SIGPIPE), so that a failure is reported instead of crashing the run.
inline int in_child(const std::function<int()>& body) {
  const pid_t pid = fork();
  if (pid == 0) _exit(body());
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

}  // namespace test

#endif  // PROCESS_LOCK_TESTS_SUPPORT_HPP_
