// Hostile peers for the deadline tests (deadline_test.cpp, cli_test.cpp, tls_test.cpp): a proxy
// that trickles a real redis-server's replies to the client one byte at a time, servers whose
// replies no client survives unless it bounds time and memory itself, and a way to run one call
// in a forked child under a memory cap and a watchdog. A library that does not hold its bounds
// then fails the test with a message instead of hanging the suite or taking the machine's memory.
//
//   DripProxy     127.0.0.1 -> a real server; client->server at once, server->client at once or,
//                 after drip(per_byte), one byte per interval (each byte well inside a command
//                 timeout, the whole reply far outside it).
//   HostileServer answers each connection's first requests with given replies, then the next one
//                 with an Attack: an endless array, a trickle, a 1 GiB bulk string, an endless
//                 status line, endless nested arrays, endless big bulk strings, or a reply just
//                 over the library's caps.
//   in_bounded_child  runs a body in a forked child with RLIMIT_AS and a watchdog; the body
//                 sets things up and hands the call to measure(), which reports how it ended,
//                 how long it took and how much memory it took (peak RSS from wait4()).
//   bounded_call, expect_bounded  one call against a HostileServer in such a child, and the
//                 time, error and memory it must keep to.
#ifndef PROCESS_LOCK_TESTS_HOSTILE_HPP_
#define PROCESS_LOCK_TESTS_HOSTILE_HPP_

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <array>
#include <list>
#include <ostream>

#include "support.hpp"

namespace test {

/// The caps the library puts on one reply (counted over nested arrays).
inline constexpr std::size_t reply_byte_cap = process_lock::detail::max_reply_bytes;
inline constexpr long long reply_element_cap = process_lock::detail::max_reply_elements;

namespace hostile_detail {
using Clock = std::chrono::steady_clock;

inline int listen_loopback(int& port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, 16) != 0)
    throw std::runtime_error("hostile: cannot listen on 127.0.0.1");
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  port = ntohs(addr.sin_port);
  return fd;
}

inline int connect_loopback(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return fd;
  if (fd >= 0) close(fd);
  return -1;
}

/// A field of /proc/self/status in kB ("VmSize", "VmRSS"), or -1.
inline long status_kb(const char* field) {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  long value = -1;
  const std::size_t n = std::strlen(field);
  while (std::fgets(line, sizeof line, f))
    if (std::strncmp(line, field, n) == 0 && line[n] == ':') value = std::atol(line + n + 1);
  std::fclose(f);
  return value;
}
}  // namespace hostile_detail

/// A TCP proxy on 127.0.0.1 in front of a real server. Requests go through at once; replies go
/// through at once until drip(per_byte) is set, then one byte per `per_byte`, each waiting that
/// long after the previous one (so a reply of n bytes takes n intervals). drip(0ms) flushes.
class DripProxy {
 public:
  explicit DripProxy(int upstream_port) : upstream_(upstream_port) {
    listener_ = hostile_detail::listen_loopback(port_);
    thread_ = std::thread([this] { serve(); });
  }
  ~DripProxy() {
    stopping_ = true;
    thread_.join();
    for (const Pipe& p : pipes_) {
      close(p.client);
      close(p.server);
    }
    close(listener_);
  }
  DripProxy(const DripProxy&) = delete;
  DripProxy& operator=(const DripProxy&) = delete;

  int port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }
  /// From now on, replies go one byte per `per_byte` (0: at once, and what is held back goes now).
  void drip(std::chrono::milliseconds per_byte) { per_byte_ms_ = per_byte.count(); }
  int accepted() const { return accepted_.load(); }

 private:
  struct Pipe {
    int client = -1, server = -1;
    std::string to_client, to_server;
    hostile_detail::Clock::time_point next_byte{};
    bool dead = false;
  };

  void serve() {
    using hostile_detail::Clock;
    while (!stopping_) {
      const long long per_byte = per_byte_ms_.load();
      const auto now = Clock::now();
      std::vector<pollfd> fds{{listener_, POLLIN, 0}};
      for (const Pipe& p : pipes_) {
        const bool reply_due = !p.to_client.empty() && (per_byte == 0 || now >= p.next_byte);
        fds.push_back({p.client, static_cast<short>(POLLIN | (reply_due ? POLLOUT : 0)), 0});
        fds.push_back({p.server, static_cast<short>(POLLIN | (p.to_server.empty() ? 0 : POLLOUT)), 0});
      }
      if (poll(fds.data(), fds.size(), 5) < 0 && errno != EINTR) return;
      if (fds[0].revents & POLLIN) accept_one();
      for (std::size_t i = 0; i < pipes_.size() && 2 * i + 2 < fds.size(); ++i) {
        Pipe& p = pipes_[i];
        const short client_ev = fds[2 * i + 1].revents, server_ev = fds[2 * i + 2].revents;
        char buf[65536];
        if (client_ev & (POLLIN | POLLHUP | POLLERR)) {
          const ssize_t n = read(p.client, buf, sizeof buf);
          if (n <= 0)
            p.dead = true;
          else
            p.to_server.append(buf, static_cast<std::size_t>(n));
        }
        if (server_ev & (POLLIN | POLLHUP | POLLERR)) {
          const ssize_t n = read(p.server, buf, sizeof buf);
          if (n <= 0) {
            p.dead = true;
          } else {
            // A reply that starts now waits one interval for its first byte, like the others.
            if (p.to_client.empty())
              p.next_byte = std::max(p.next_byte, Clock::now() + std::chrono::milliseconds(per_byte));
            p.to_client.append(buf, static_cast<std::size_t>(n));
          }
        }
        if ((server_ev & POLLOUT) && !p.to_server.empty()) {
          const ssize_t n = send(p.server, p.to_server.data(), p.to_server.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
          if (n < 0 && errno != EAGAIN) p.dead = true;
          if (n > 0) p.to_server.erase(0, static_cast<std::size_t>(n));
        }
        if ((client_ev & POLLOUT) && !p.to_client.empty()) {
          const std::size_t want = per_byte == 0 ? p.to_client.size() : 1;
          const ssize_t n = send(p.client, p.to_client.data(), want, MSG_NOSIGNAL | MSG_DONTWAIT);
          if (n < 0 && errno != EAGAIN) p.dead = true;
          if (n > 0) {
            p.to_client.erase(0, static_cast<std::size_t>(n));
            p.next_byte = Clock::now() + std::chrono::milliseconds(per_byte);
          }
        }
      }
      for (Pipe& p : pipes_) {
        if (!p.dead) continue;
        close(p.client);
        close(p.server);
      }
      pipes_.erase(std::remove_if(pipes_.begin(), pipes_.end(), [](const Pipe& p) { return p.dead; }), pipes_.end());
    }
  }
  void accept_one() {
    const int client = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) return;
    const int server = hostile_detail::connect_loopback(upstream_);
    if (server < 0) {
      close(client);
      return;
    }
    ++accepted_;
    pipes_.push_back({client, server, {}, {}, {}, false});
  }

  int upstream_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<long long> per_byte_ms_{0};
  std::atomic<int> accepted_{0};
  std::atomic<bool> stopping_{false};
  std::vector<Pipe> pipes_;  // the proxy thread's only
  std::thread thread_;
};

/// A TCP proxy on a free loopback port that holds everything it forwards, both ways, for a fixed
/// `delay`: a master far away (the benchmark's slow quorum member). Bytes keep their order, and a
/// side that closes is closed on the other side once what it sent before has gone through.
class DelayProxy {
 public:
  DelayProxy(int upstream_port, std::chrono::microseconds delay) : upstream_(upstream_port), delay_(delay) {
    listener_ = hostile_detail::listen_loopback(port_);
    thread_ = std::thread([this] { serve(); });
  }
  ~DelayProxy() {
    stopping_ = true;
    thread_.join();
    for (const Pipe& p : pipes_) {
      close(p.fd[0]);
      close(p.fd[1]);
    }
    close(listener_);
  }
  DelayProxy(const DelayProxy&) = delete;
  DelayProxy& operator=(const DelayProxy&) = delete;

  int port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

 private:
  using Clock = hostile_detail::Clock;
  struct Chunk {
    Clock::time_point due;
    std::string bytes;  // empty: the sending side closed
  };
  struct Pipe {
    int fd[2] = {-1, -1};    // client, server
    std::array<std::list<Chunk>, 2> to;  // to[k]: on its way to fd[k]
    bool eof[2] = {false, false};
    bool dead = false;
  };

  void serve() {
    while (!stopping_) {
      auto next = Clock::now() + std::chrono::milliseconds(5);  // also how soon a stop is noticed
      std::vector<pollfd> fds{{listener_, POLLIN, 0}};
      for (const Pipe& p : pipes_)
        for (int k = 0; k < 2; ++k) {
          fds.push_back({p.eof[k] ? -1 : p.fd[k], POLLIN, 0});  // -1: no longer polled
          if (!p.to[k].empty()) next = std::min(next, p.to[k].front().due);
        }
      const auto wait = std::max(next - Clock::now(), Clock::duration(0));
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count();
      const timespec ts{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
      if (ppoll(fds.data(), fds.size(), &ts, nullptr) < 0 && errno != EINTR) return;
      if (fds[0].revents & POLLIN) accept_one();
      const auto now = Clock::now();
      for (std::size_t i = 0; i < pipes_.size() && 2 * i + 2 < fds.size(); ++i) {
        Pipe& p = pipes_[i];
        for (int k = 0; k < 2; ++k) {
          if (!(fds[2 * i + 1 + k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
          char buf[65536];
          const ssize_t n = read(p.fd[k], buf, sizeof buf);
          if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
          p.eof[k] = n <= 0;
          p.to[1 - k].push_back({now + delay_, n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string()});
        }
      }
      for (Pipe& p : pipes_)
        for (int k = 0; k < 2 && !p.dead; ++k)
          while (!p.to[k].empty() && p.to[k].front().due <= Clock::now()) {
            Chunk& c = p.to[k].front();
            if (c.bytes.empty()) {
              p.dead = true;
              break;
            }
            const ssize_t n = send(p.fd[k], c.bytes.data(), c.bytes.size(), MSG_NOSIGNAL);  // small: never blocks long
            if (n <= 0) {
              p.dead = true;
              break;
            }
            c.bytes.erase(0, static_cast<std::size_t>(n));
            if (c.bytes.empty()) p.to[k].pop_front();
          }
      for (Pipe& p : pipes_) {
        if (!p.dead) continue;
        close(p.fd[0]);
        close(p.fd[1]);
      }
      pipes_.erase(std::remove_if(pipes_.begin(), pipes_.end(), [](const Pipe& p) { return p.dead; }), pipes_.end());
    }
  }
  void accept_one() {
    const int client = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) return;
    const int server = hostile_detail::connect_loopback(upstream_);
    if (server < 0) {
      close(client);
      return;
    }
    Pipe p;
    p.fd[0] = client;
    p.fd[1] = server;
    pipes_.push_back(std::move(p));
  }

  int upstream_;
  std::chrono::microseconds delay_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::vector<Pipe> pipes_;  // the proxy thread's only
  std::thread thread_;
};

/// A server that answers each connection's first requests with `first_replies` (one reply per
/// read() of a request, as FakeServer does) and the next request with an attack, until the
/// client closes, the server is destroyed, or 30 s pass. It keeps the connection open after a
/// finite attack, so the client's error comes from the reply, not from a close. Each connection
/// is served on a thread of its own.
class HostileServer {
 public:
  enum class Attack {
    endless_array,    // *2147483647 and then :1 forever
    trickle,          // a valid bulk string header and body, one byte every `trickle_every`, forever
    huge_bulk,        // $1073741824 and then its bytes, as fast as the client reads
    endless_status,   // +aaaa... forever, never a CRLF
    nested_arrays,    // *60000 of *60000 of :1, each header under the element cap, the total far over it
    many_bulks,       // *60000 of 64 KiB bulk strings: few elements, the bytes far over the cap
    bulk_over_cap,    // one bulk string of reply_byte_cap + 1 bytes, complete
    array_over_cap,   // one array of reply_element_cap + 1 integers, complete
    nested_over_cap,  // *2 of arrays of reply_element_cap / 2 and reply_element_cap / 2 + 1 integers
  };
  static const char* name(Attack a) {
    switch (a) {
      case Attack::endless_array:
        return "endless_array";
      case Attack::trickle:
        return "trickle";
      case Attack::huge_bulk:
        return "huge_bulk";
      case Attack::endless_status:
        return "endless_status";
      case Attack::nested_arrays:
        return "nested_arrays";
      case Attack::many_bulks:
        return "many_bulks";
      case Attack::bulk_over_cap:
        return "bulk_over_cap";
      case Attack::array_over_cap:
        return "array_over_cap";
      case Attack::nested_over_cap:
        return "nested_over_cap";
    }
    return "unknown";
  }
  /// Whether a client that bounds replies must refuse this one over a cap (else: over its deadline).
  static bool over_a_cap(Attack a) { return a != Attack::trickle; }

  explicit HostileServer(Attack attack, std::vector<std::string> first_replies = {},
                         std::chrono::milliseconds trickle_every = std::chrono::milliseconds(1000))
      : attack_(attack), first_replies_(std::move(first_replies)), trickle_every_(trickle_every) {
    listener_ = hostile_detail::listen_loopback(port_);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~HostileServer() {
    stopping_ = true;
    acceptor_.join();
    const std::lock_guard<std::mutex> guard(mutex_);
    for (std::thread& t : connections_) t.join();
    close(listener_);
  }
  HostileServer(const HostileServer&) = delete;
  HostileServer& operator=(const HostileServer&) = delete;

  int port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }
  int accepted() const { return accepted_.load(); }
  /// Bytes of attack sent, over all connections.
  long long attack_bytes() const { return attack_bytes_.load(); }

 private:
  using Clock = hostile_detail::Clock;

  void accept_loop() {
    while (!stopping_) {
      pollfd p{listener_, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      const int fd = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      ++accepted_;
      const std::lock_guard<std::mutex> guard(mutex_);
      connections_.emplace_back([this, fd] {
        serve(fd);
        close(fd);
      });
    }
  }

  // One read of a request, waiting up to 10 s; false when the peer closed or the server stops.
  bool read_request(int fd) const {
    const auto until = Clock::now() + std::chrono::seconds(10);
    while (!stopping_ && Clock::now() < until) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      char buf[65536];
      return read(fd, buf, sizeof buf) > 0;
    }
    return false;
  }

  // Sends all of `data` unless the peer goes or the server stops.
  bool send_all(int fd, std::string_view data) {
    while (!data.empty() && !stopping_) {
      pollfd p{fd, POLLOUT, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      if (p.revents & (POLLERR | POLLHUP)) return false;
      const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0 && errno != EAGAIN && errno != EINTR) return false;
      if (n > 0) {
        data.remove_prefix(static_cast<std::size_t>(n));
        attack_bytes_ += n;
      }
    }
    return data.empty();
  }

  static std::string repeat(std::string_view unit, std::size_t times) {
    std::string s;
    s.reserve(unit.size() * times);
    for (std::size_t i = 0; i < times; ++i) s += unit;
    return s;
  }

  void serve(int fd) {
    for (const std::string& reply : first_replies_)
      if (!read_request(fd) || !send_all(fd, reply)) return;
    if (!read_request(fd)) return;
    const auto give_up = Clock::now() + std::chrono::seconds(30);  // a client that neither reads nor closes
    // What is sent: `head` once, then `unit` over and over (endless), or head + unit once (finite).
    std::string head, unit;
    bool endless = true;
    const std::string integers(repeat(":1\r\n", 16384));  // 64 KiB of array elements
    const std::string letters(65536, 'a');
    switch (attack_) {
      case Attack::endless_array:
        head = "*2147483647\r\n", unit = integers;
        break;
      case Attack::trickle:
        head = "$1048576\r\n", unit = letters;  // under the byte cap: only a deadline ends it
        break;
      case Attack::huge_bulk:
        head = "$1073741824\r\n", unit = letters;
        break;
      case Attack::endless_status:
        head = "+", unit = letters;
        break;
      case Attack::nested_arrays:
        head = "*60000\r\n", unit = "*60000\r\n" + repeat(":1\r\n", 60000);
        break;
      case Attack::many_bulks:
        head = "*60000\r\n", unit = "$65536\r\n" + letters + "\r\n";
        break;
      case Attack::bulk_over_cap:
        head = "$" + std::to_string(reply_byte_cap + 1) + "\r\n", unit = std::string(reply_byte_cap + 1, 'a') + "\r\n";
        endless = false;
        break;
      case Attack::array_over_cap:
        head = "*" + std::to_string(reply_element_cap + 1) + "\r\n";
        unit = repeat(":1\r\n", static_cast<std::size_t>(reply_element_cap + 1));
        endless = false;
        break;
      case Attack::nested_over_cap:
        head = "*2\r\n*" + std::to_string(reply_element_cap / 2) + "\r\n" +
               repeat(":1\r\n", static_cast<std::size_t>(reply_element_cap / 2));
        unit = "*" + std::to_string(reply_element_cap / 2 + 1) + "\r\n" +
               repeat(":1\r\n", static_cast<std::size_t>(reply_element_cap / 2 + 1));
        endless = false;
        break;
    }
    if (attack_ == Attack::trickle) {
      const std::string bytes = head + unit;
      for (std::size_t i = 0; Clock::now() < give_up && !stopping_; ++i) {
        if (!pause_watching(fd, trickle_every_) || !send_all(fd, std::string_view(bytes).substr(i % bytes.size(), 1)))
          return;
      }
      return;
    }
    if (!send_all(fd, head)) return;
    while (Clock::now() < give_up && !stopping_) {
      if (!send_all(fd, unit)) return;
      if (!endless) break;
    }
    // Finite: hold the connection open (and silent) until the client gives up on it.
    while (Clock::now() < give_up && pause_watching(fd, std::chrono::milliseconds(100))) {
    }
  }

  // Waits `d`, reading and dropping what the client sends; false once it has closed or the server stops.
  bool pause_watching(int fd, std::chrono::milliseconds d) const {
    const auto until = Clock::now() + d;
    while (!stopping_) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
      if (left <= 0) return true;
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(std::min<long long>(left, 20))) <= 0) continue;
      char buf[4096];
      const ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return false;
    }
    return false;
  }

  Attack attack_;
  std::vector<std::string> first_replies_;
  std::chrono::milliseconds trickle_every_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<int> accepted_{0};
  std::atomic<long long> attack_bytes_{0};
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;  // guards connections_
  std::list<std::thread> connections_;
  std::thread acceptor_;
};

/// For GoogleTest's messages: the attack's name rather than its number.
inline void PrintTo(HostileServer::Attack a, std::ostream* os) { *os << HostileServer::name(a); }

/// How a call run by in_bounded_child() ended.
struct Outcome {
  enum class End {
    returned,      // the call returned (it did not fail)
    threw_error,   // it threw process_lock::Error: see code and what
    threw_other,   // it threw something else (std::bad_alloc when it ran out of its memory cap)
    setup_failed,  // the body threw before measure(), or never called it
    killed,        // the watchdog killed it: the call did not end in time
    died,          // the child died otherwise (a signal of its own, e.g. SIGABRT)
  };
  End end = End::died;
  int code = 0;  // process_lock::errc value, for threw_error
  std::string what;
  std::chrono::milliseconds elapsed{-1};  // from measure() to the call's end (or to the kill)
  long baseline_kb = 0;                   // the child's peak RSS when measure() began
  long peak_kb = 0;                       // its peak RSS over its life (wait4's ru_maxrss)
  int signal = 0;

  long growth_kb() const { return peak_kb - baseline_kb; }
  bool failed_with(process_lock::errc e) const { return end == End::threw_error && code == static_cast<int>(e); }
  std::string describe() const {
    static const char* const ends[] = {"returned without failing", "threw process_lock::Error",  "threw",
                                       "failed before the call",   "was killed by the watchdog", "died"};
    std::string s = std::string("the call ") + ends[static_cast<int>(end)];
    if (end == End::threw_error)
      s += " (" + process_lock::make_error_code(static_cast<process_lock::errc>(code)).message() + ")";
    if (!what.empty()) s += ": " + what;
    if (signal) s += " [signal " + std::to_string(signal) + "]";
    s += "; after " + std::to_string(elapsed.count()) + " ms; peak RSS " + std::to_string(peak_kb / 1024) + " MiB, " +
         std::to_string(growth_kb() / 1024) + " MiB above its baseline";
    return s;
  }
};

/// Handed to the body of in_bounded_child(): measure(call) runs the call, reports how it ended,
/// and ends the child at once (no destructors: a lock, proxy or keeper left behind cannot delay
/// or change the report).
class Measure {
 public:
  explicit Measure(int fd) : fd_(fd) {}
  template <class Call>
  [[noreturn]] void operator()(Call&& call) {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    char line[64];
    const int n = std::snprintf(line, sizeof line, "S %ld\n", ru.ru_maxrss);
    put(line, n, sizeof line);
    const auto start = std::chrono::steady_clock::now();
    char kind = 'R';
    int code = 0;
    // Fixed buffers: after a std::bad_alloc there may be no memory for a std::string.
    static char what[2048];
    what[0] = '\0';
    try {
      call();
    } catch (const process_lock::Error& e) {
      kind = 'E';
      code = e.code().value();
      std::snprintf(what, sizeof what, "%s", e.what());
    } catch (const std::exception& e) {
      kind = 'X';
      std::snprintf(what, sizeof what, "%s", e.what());
    } catch (...) {
      kind = 'X';
      std::snprintf(what, sizeof what, "an exception of unknown type");
    }
    const long long us =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count();
    static char result[2200];
    const int m = std::snprintf(result, sizeof result, "R %c %d %lld\n%s", kind, code, us, what);
    put(result, m, sizeof result);
    _exit(0);
  }

 private:
  // snprintf's count is what it would have written: never more than the buffer holds.
  void put(const char* p, int n, int capacity) const {
    n = std::min(n, capacity - 1);
    for (int done = 0; done < n;) {
      const ssize_t w = write(fd_, p + done, static_cast<std::size_t>(n - done));
      if (w <= 0) return;
      done += static_cast<int>(w);
    }
  }
  int fd_;
};

/// Runs `body` in a forked child whose address space may grow by at most `headroom` (RLIMIT_AS
/// over what it already has: the parent's mappings, sanitizers' shadow included) and that is
/// killed `watchdog` after the fork. The body sets up and passes the call to its Measure.
/// Hostile peers may run in the parent (their memory then does not count) or in the body.
inline Outcome in_bounded_child(const std::function<void(Measure&)>& body, std::chrono::milliseconds watchdog,
                                std::size_t headroom = std::size_t(512) << 20) {
  using Clock = std::chrono::steady_clock;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  std::fflush(nullptr);  // or the child's copy of what is buffered may come out again
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    close(fds[0]);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    alarm(static_cast<unsigned>(watchdog.count() / 1000 + 3));  // a backstop should the parent's watchdog fail
    const long vm_kb = hostile_detail::status_kb("VmSize");
    if (vm_kb > 0) {
      const rlim_t cap = static_cast<rlim_t>(vm_kb) * 1024 + headroom;
      const rlimit limit{cap, cap};
      setrlimit(RLIMIT_AS, &limit);
    }
    Measure measure(fds[1]);
    static char what[2048];
    try {
      body(measure);
      std::snprintf(what, sizeof what, "the body returned without measuring a call");
    } catch (const std::exception& e) {
      std::snprintf(what, sizeof what, "setup: %s", e.what());
    } catch (...) {
      std::snprintf(what, sizeof what, "setup: an exception of unknown type");
    }
    char result[2200];
    const int n = std::snprintf(result, sizeof result, "R S 0 0\n%s", what);
    if (write(fds[1], result, static_cast<std::size_t>(std::min(n, 2199))) < 0) _exit(3);
    _exit(2);
  }
  close(fds[1]);
  const auto forked = Clock::now();
  std::optional<Clock::time_point> started;  // when the child said it began the call
  std::string data;
  Outcome out;
  int status = 0;
  rusage ru{};
  bool killed = false;
  auto drain = [&] {
    char buf[4096];
    for (;;) {
      pollfd p{fds[0], POLLIN, 0};
      if (poll(&p, 1, 0) <= 0) return;
      const ssize_t n = read(fds[0], buf, sizeof buf);
      if (n <= 0) return;
      data.append(buf, static_cast<std::size_t>(n));
      if (!started && data.rfind("S ", 0) == 0) started = Clock::now();
    }
  };
  for (;;) {
    drain();
    if (wait4(pid, &status, WNOHANG, &ru) == pid) break;
    if (Clock::now() - forked > watchdog) {
      kill(pid, SIGKILL);
      wait4(pid, &status, 0, &ru);
      killed = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  const auto ended = Clock::now();
  drain();
  close(fds[0]);
  out.peak_kb = ru.ru_maxrss;
  if (WIFSIGNALED(status)) out.signal = WTERMSIG(status);
  std::istringstream in(data);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("S ", 0) == 0) out.baseline_kb = std::atol(line.c_str() + 2);
    if (line.rfind("R ", 0) != 0 || line.size() < 4) continue;
    const char kind = line[2];
    std::istringstream fields(line.substr(4));
    long long us = 0;
    fields >> out.code >> us;
    out.elapsed = std::chrono::milliseconds(us / 1000);
    out.what.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    out.end = kind == 'R'   ? Outcome::End::returned
              : kind == 'E' ? Outcome::End::threw_error
              : kind == 'X' ? Outcome::End::threw_other
                            : Outcome::End::setup_failed;
    return out;
  }
  // No report: the call never ended by itself.
  out.end = killed ? Outcome::End::killed : Outcome::End::died;
  if (started) out.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(ended - *started);
  if (!started) out.what = "it had not even begun the call";
  return out;
}

// What a call against a HostileServer must hold to (deadline_test.cpp over redis://, tls_test.cpp
// over rediss://). Its timeouts are default-like (2 s per read), so that one byte a second never
// times a read out: only a deadline on the whole call can end it.
inline constexpr std::chrono::milliseconds hostile_connect{1000};
inline constexpr std::chrono::milliseconds hostile_command{2000};
inline constexpr std::chrono::milliseconds call_slack{500};  // scheduling on a loaded 2-core machine
inline constexpr auto hostile_bound = hostile_connect + hostile_command + call_slack;
inline constexpr auto hostile_watchdog = hostile_bound + std::chrono::milliseconds(2500);
inline constexpr long hostile_growth_kb = 64 * 1024;  // what a call may take above the child's baseline

inline constexpr HostileServer::Attack every_attack[] = {
    HostileServer::Attack::endless_array,  HostileServer::Attack::trickle,
    HostileServer::Attack::huge_bulk,      HostileServer::Attack::endless_status,
    HostileServer::Attack::nested_arrays,  HostileServer::Attack::many_bulks,
    HostileServer::Attack::bulk_over_cap,  HostileServer::Attack::array_over_cap,
    HostileServer::Attack::nested_over_cap};

/// Names parameterised tests after their attack.
inline std::string attack_name(const ::testing::TestParamInfo<HostileServer::Attack>& info) {
  return HostileServer::name(info.param);
}

inline process_lock::Options hostile_options(const std::string& url) {
  process_lock::Options o;
  o.url = url;
  o.connect_timeout = hostile_connect;
  o.command_timeout = hostile_command;
  return o;
}

/// `call` on a lock of `url` with hostile_options, measured in a bounded child.
inline Outcome bounded_call(const std::string& url, const std::function<void(process_lock::ProcessLock&)>& call) {
  return in_bounded_child(
      [&](Measure& measure) {
        process_lock::ProcessLock lock("job", std::chrono::seconds(10), hostile_options(url));
        measure([&] { call(lock); });
      },
      hostile_watchdog);
}

/// A call against `attack` must end within its bound, refused over a cap (protocol_error, the
/// message naming the limit) or over its deadline (timeout), with bounded memory.
inline void expect_bounded(HostileServer::Attack attack, const Outcome& out) {
  if (HostileServer::over_a_cap(attack)) {
    EXPECT_TRUE(out.failed_with(process_lock::errc::protocol_error)) << out.describe();
    EXPECT_TRUE(contains(out.what, "limit")) << out.describe();
  } else {
    EXPECT_TRUE(out.failed_with(process_lock::errc::timeout)) << out.describe();
  }
  EXPECT_GE(out.elapsed.count(), 0) << out.describe();
  EXPECT_LE(out.elapsed.count(), hostile_bound.count()) << out.describe();
  EXPECT_LE(out.growth_kb(), hostile_growth_kb) << out.describe();
}

}  // namespace test

#endif  // PROCESS_LOCK_TESTS_HOSTILE_HPP_
