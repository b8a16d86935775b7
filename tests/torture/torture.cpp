// Fault-injection torture run (see README, "Torture run").
//
//   torture run [--duration S] [--workers N] [--ttl-ms MS] [--seed N] [--faketime-lib PATH] [--dir DIR]
//
// Starts two private redis-servers on free 127.0.0.1 ports (the lock's, with an append-only file
// fsynced on every write so the fencing counter survives a crash, and an un-faulted one holding
// the fenced resource), a latency proxy in front of the lock's server, and worker processes
// (this program again, as `torture worker ...`) that wait for one lock, keep it with keep(), and
// write to the resource with their fencing token while they hold it. Meanwhile it injects faults
// at random: SIGSTOP of a holder past the TTL, SIGKILL of a holder, the lock's server killed and
// restarted, CLIENT PAUSE, DEBUG SLEEP, latency on the proxy, replies trickling through the proxy
// one byte at a time, replies replaced by the proxy with endless or oversized ones, and wall-clock
// jumps for a worker run under libfaketime. At the end it checks the workers' records (hold
// intervals on CLOCK_MONOTONIC, writes, loss reports) and their peak memory, and exits non-zero
// on any violation.
#include <process_lock.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;

// ---- time ------------------------------------------------------------------------------------

/// CLOCK_MONOTONIC in ns, through libc (what the library's steady_clock reads; libfaketime is
/// told not to fake it).
std::int64_t mono_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}
/// The same clocks straight from the kernel, past any LD_PRELOADed libfaketime.
std::int64_t raw_ns(clockid_t clock) {
  timespec ts{};
  syscall(SYS_clock_gettime, clock, &ts);
  return std::int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}
std::int64_t wall_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return std::int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}
constexpr std::int64_t ms_ns = 1000000;

// ---- state shared between the orchestrator and the workers (a MAP_SHARED file) -----------------

constexpr int max_workers = 16;
struct WorkerSlot {
  std::atomic<std::uint64_t> heartbeat{0};      // bumped by the worker's main loop
  std::atomic<std::uint64_t> holding_fence{0};  // fence of the hold in progress, 0 when none
  std::atomic<int> holding_mode{0};             // 1: kept by keep(), 2: renewed by its own update()
  std::atomic<std::int64_t> max_wall_offset_ms{0};  // largest |faked wall clock - real| seen
  std::atomic<int> mono_faked{0};               // libc's CLOCK_MONOTONIC disagreed with the kernel's
};
struct Shared {
  WorkerSlot worker[max_workers];
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free && std::atomic<std::int64_t>::is_always_lock_free);

Shared* map_shared(const std::string& path, bool create) {
  const int fd = open(path.c_str(), O_RDWR | (create ? O_CREAT | O_TRUNC : 0), 0600);
  if (fd < 0) return nullptr;
  if (create && ftruncate(fd, sizeof(Shared)) != 0) return nullptr;
  void* mem = mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (mem == MAP_FAILED) return nullptr;
  return create ? new (mem) Shared() : static_cast<Shared*>(mem);
}

// ---- a plain hiredis client for the resource and for fault commands -----------------------------

struct Raw {
  redisContext* ctx = nullptr;
  Raw(int port, milliseconds timeout) {
    timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
    ctx = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (ctx && !ctx->err) redisSetTimeout(ctx, tv);
  }
  ~Raw() {
    if (ctx) redisFree(ctx);
  }
  Raw(const Raw&) = delete;
  Raw& operator=(const Raw&) = delete;
  bool ok() const { return ctx && !ctx->err; }
  /// nullptr on a transport failure.
  std::unique_ptr<redisReply, void (*)(void*)> run(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    void* r = ok() ? redisCommandArgv(ctx, int(argv.size()), argv.data(), lens.data()) : nullptr;
    return {static_cast<redisReply*>(r), freeReplyObject};
  }
  std::optional<long long> integer(const std::vector<std::string>& args) {
    auto r = run(args);
    if (!r) return std::nullopt;
    if (r->type == REDIS_REPLY_INTEGER) return r->integer;
    if (r->type == REDIS_REPLY_STRING) return std::atoll(r->str);
    if (r->type == REDIS_REPLY_NIL) return 0;
    return std::nullopt;
  }
};

// The fenced resource: a write is refused when its token is below the highest one seen.
// KEYS: 1 highest fence, 2 accepted count, 3 rejected count, 4 the data; ARGV: 1 fence, 2 value.
const char* const resource_script = R"lua(
local highest = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) < highest then
  redis.call('INCR', KEYS[3])
  return 0
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[4], ARGV[2])
return 1
)lua";
const std::vector<std::string> resource_keys = {"resource:highest", "resource:accepted", "resource:rejected",
                                                "resource:data"};
const std::string lock_name = "torture";

// ---- worker -----------------------------------------------------------------------------------

std::atomic<bool> stop_requested{false};
extern "C" void on_term(int) { stop_requested = true; }

struct WorkerArgs {
  int id = 0;
  std::string lock_url;
  int resource_port = 0;
  milliseconds ttl{2000};
  std::string log_path;
  std::string shared_path;
  unsigned seed = 1;
};

/// Appends whole lines with one write(2) each, so the keeper's thread and the main thread never
/// interleave, and nothing is lost to a SIGKILL (the kernel has the bytes).
class Log {
 public:
  explicit Log(const std::string& path) : fd_(open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600)) {}
  ~Log() { close(fd_); }
  void line(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    const int n = std::vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n <= 0) return;
    const size_t len = std::min<size_t>(size_t(n), sizeof buf - 2);
    buf[len] = '\n';
    if (write(fd_, buf, len + 1) < 0) std::perror("torture worker: log");
  }
  bool ok() const { return fd_ >= 0; }

 private:
  int fd_;
};

int run_worker(const WorkerArgs& args) {
  struct sigaction sa {};
  sa.sa_handler = on_term;
  sigaction(SIGTERM, &sa, nullptr);
  Shared* shared = map_shared(args.shared_path, false);
  Log log(args.log_path);
  if (!shared || !log.ok()) {
    std::fprintf(stderr, "torture worker %d: cannot open %s or %s\n", args.id, args.shared_path.c_str(), args.log_path.c_str());
    return 2;
  }
  WorkerSlot& slot = shared->worker[args.id];
  std::mt19937_64 rng(args.seed);
  auto uniform = [&](std::int64_t lo, std::int64_t hi) { return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng); };
  const std::int64_t ttl_ns = args.ttl.count() * ms_ns;
  const std::int64_t drift_ns = (args.ttl.count() / 100 + 2) * ms_ns;  // the library's allowance
  Raw resource(args.resource_port, 5000ms);
  if (!resource.ok()) {
    std::fprintf(stderr, "torture worker %d: cannot reach the resource\n", args.id);
    return 2;
  }
  process_lock::Options options;
  options.url = args.lock_url;
  options.connect_timeout = 500ms;
  options.command_timeout = 500ms;
  // Every call must end within connect + command timeout of its start (try_lock_for: of its own
  // wait's end), however the server answers; one that takes longer, plus a second's slack for a
  // loaded machine, is recorded: "S begin end call".
  const std::int64_t call_bound_ns = (500 + 500 + 1000) * ms_ns;
  auto timed = [&](const char* call, std::int64_t wait_ns, auto&& run) {
    const std::int64_t begin = mono_ns();
    auto check = [&] {
      const std::int64_t end = mono_ns();
      if (end - begin > wait_ns + call_bound_ns) log.line("S %" PRId64 " %" PRId64 " %s", begin, end, call);
    };
    try {
      auto result = run();
      check();
      return result;
    } catch (...) {
      check();
      throw;
    }
  };

  // Clocks: the wall clock may be faked (that is the point); the monotonic one must not be.
  auto watch_clocks = [&] {
    const std::int64_t offset_ms = std::llabs(wall_ns() - raw_ns(CLOCK_REALTIME)) / ms_ns;
    if (offset_ms > slot.max_wall_offset_ms.load()) slot.max_wall_offset_ms = offset_ms;
    if (std::llabs(mono_ns() - raw_ns(CLOCK_MONOTONIC)) > 1000 * ms_ns) slot.mono_faked = 1;
  };

  std::uint64_t value = 0;
  while (!stop_requested) {
    slot.heartbeat.fetch_add(1);
    watch_clocks();
    auto lock = std::make_unique<process_lock::ProcessLock>(lock_name, args.ttl, options);
    bool acquired = false;
    try {
      const milliseconds wait(uniform(300, 2000));
      acquired = timed("try_lock_for", wait.count() * ms_ns, [&] { return lock->try_lock_for(wait); });
    } catch (const process_lock::Error& e) {
      log.line("e %" PRId64 " wait %s", mono_ns(), e.what());
      std::this_thread::sleep_for(milliseconds(uniform(20, 200)));
      continue;
    }
    if (!acquired) continue;
    const std::int64_t start = mono_ns();
    const std::uint64_t fence = lock->fence().value_or(0);
    // An upper bound of the validity's end: valid_for() rounds down to the millisecond and is
    // read before the clock, so end < now + v + 1 ms.
    // Read again when preempted in between, which would loosen the bound.
    auto validity_end = [&]() -> std::optional<std::int64_t> {
      for (int attempt = 0;; ++attempt) {
        const std::int64_t before = mono_ns();
        const auto v = lock->valid_for();
        const std::int64_t now = mono_ns();
        if (v <= 0ms) return std::nullopt;
        if (now - before < ms_ns || attempt == 4) return now + v.count() * ms_ns + ms_ns;
      }
    };
    const auto first_end = validity_end();
    log.line("A %" PRIu64 " %" PRId64 " %" PRId64 " %d", fence, start, first_end.value_or(start), int(getpid()));
    slot.holding_fence = fence;

    // Local validity must follow the monotonic clock, whatever the wall clock does: renew once,
    // timed: the validity must end between the send + (TTL less drift) and the reply + the same.
    try {
      const std::int64_t a = mono_ns();
      const bool renewed = timed("update", 0, [&] { return lock->update(); });
      const auto v = lock->valid_for();
      const std::int64_t c = mono_ns();
      if (renewed) {
        const std::int64_t v_ns = v.count() * ms_ns;
        const bool good = v_ns <= ttl_ns - drift_ns && v_ns >= ttl_ns - drift_ns - (c - a) - ms_ns;
        log.line("V %" PRIu64 " %d %" PRId64 " %" PRId64 " %" PRId64, fence, good ? 1 : 0, v_ns / ms_ns,
                 (c - a) / 1000, (wall_ns() - raw_ns(CLOCK_REALTIME)) / ms_ns);
      }
    } catch (const process_lock::Error&) {
      // a fault in progress: no check this time
    }

    std::atomic<bool> lost{false};
    process_lock::KeepOptions keep;
    keep.on_lost = [&](const process_lock::Lost& l) {
      const std::int64_t now = mono_ns();
      lost = true;
      log.line("L %" PRIu64 " %" PRId64 " %s %lld", fence, now, std::string(process_lock::to_string(l.reason)).c_str(),
               static_cast<long long>(l.remaining.count()));
    };
    keep.on_renewed = [&] {
      if (const auto end = validity_end()) log.line("R %" PRIu64 " %" PRId64, fence, *end);
    };
    // Half the holds are kept by keep(); the others renew themselves the node way: update()
    // every third of the TTL, and once more when the validity has run out (after a SIGSTOP, say):
    // if it answers true the lock was still ours all along, if false it was lost.
    const bool self_renew = uniform(0, 1) == 0;
    std::int64_t renew_at = mono_ns() + ttl_ns / 3;
    // A quarter of the kept holds have a renewal cap: the keeper then reports limit_reached.
    if (!self_renew && uniform(0, 3) == 0) keep.max_renewals = static_cast<unsigned long>(uniform(0, 1));
    std::string how = "validity";
    log.line("M %" PRIu64 " %s", fence, self_renew ? "update" : "keep");
    slot.holding_mode = self_renew ? 2 : 1;
    if (!self_renew) {
      try {
        lock->keep(keep);
      } catch (const process_lock::Error&) {
        how = "not-kept";  // the lock was already lost (update() above answered false)
      }
    } else if (!lock->owner()) {
      how = "not-kept";
    }

    // Work: check, work a little (the window a SIGSTOP falls into), write with the fence.
    // A hold lasts a number of writes (about 12 ms each), not a time: a holder that was stopped
    // still has work to do when it is continued, and must find out that its lock is gone.
    const long hold_writes = long(uniform(4, 200));
    long writes = 0;
    const std::int64_t work_ns = 10 * ms_ns;
    bool claimed = false;
    while (how == "validity") {
      slot.heartbeat.fetch_add(1);
      watch_clocks();
      if (stop_requested || writes >= hold_writes) {
        how = "clear";
        break;
      }
      if (lost) {
        how = "lost";
        break;
      }
      auto v = lock->valid_for();
      if (self_renew && (v <= 0ms || mono_ns() >= renew_at)) {
        try {
          if (!timed("update", 0, [&] { return lock->update(); })) {
            how = "update-false";
            break;
          }
          renew_at = mono_ns() + ttl_ns / 3;
        } catch (const process_lock::Error& e) {
          log.line("e %" PRId64 " update %s", mono_ns(), e.what());
          renew_at = mono_ns() + ttl_ns / 12;
        }
        v = lock->valid_for();
      }
      if (v <= 0ms) break;
      if (v.count() * ms_ns < work_ns + 50 * ms_ns) {  // too little left to do the work
        std::this_thread::sleep_for(1ms);
        continue;
      }
      if (const auto end = validity_end()) log.line("R %" PRIu64 " %" PRId64, fence, *end);
      if (claimed) std::this_thread::sleep_for(std::chrono::nanoseconds(work_ns));  // "work"
      claimed = true;  // the first write goes out at once: it raises the resource's fence
      const std::int64_t sent = mono_ns();
      ++value;
      ++writes;
      auto r = resource.run({"EVAL", resource_script, "4", resource_keys[0], resource_keys[1], resource_keys[2],
                             resource_keys[3], std::to_string(fence), std::to_string(args.id) + ":" + std::to_string(value)});
      const int result = r && r->type == REDIS_REPLY_INTEGER ? int(r->integer) : -1;
      log.line("W %" PRIu64 " %" PRId64 " %d", fence, sent, result);
      if (result < 0) {
        std::fprintf(stderr, "torture worker %d: resource write failed\n", args.id);
        return 3;
      }
      std::this_thread::sleep_for(2ms);
    }
    const std::int64_t end = mono_ns();
    log.line("E %" PRIu64 " %" PRId64 " %s", fence, end, how.c_str());
    slot.holding_fence = 0;
    slot.holding_mode = 0;
    try {
      (void)timed("clear", 0, [&] { return lock->clear(); });
    } catch (const process_lock::Error&) {
      // unreachable: the lock expires by itself
    }
    lock.reset();  // joins the keeper
  }
  return 0;
}

// ---- latency proxy ----------------------------------------------------------------------------

/// Forwards 127.0.0.1:port() to the lock's server, holding every chunk back by `delay_ms`. With
/// `drip_ms`, replies (server to client) go one byte per `drip_ms`, each byte well inside the
/// workers' command timeout and the whole reply far outside it. With `hostile`, the server's
/// replies are replaced by an attack (see attack_name()), up to `hostile_budget` bytes per
/// connection, then silence; when the window ends, those connections are closed, since they are
/// out of step with the server.
class Proxy {
 public:
  static constexpr int attacks = 4;  // hostile = 1 .. attacks
  static const char* attack_name(int kind) {
    static const char* const names[attacks + 1] = {"none", "*2147483647 then :1 endlessly", "*60000 of *60000 of :1",
                                                   "$1073741824 then its bytes", "+aaa... without CRLF"};
    return kind >= 0 && kind <= attacks ? names[kind] : "?";
  }
  static constexpr std::size_t hostile_budget = std::size_t(16) << 20;

  explicit Proxy(int upstream_port) : upstream_(upstream_port) {
    listener_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (listener_ < 0 || bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(listener_, 64) != 0)
      throw std::runtime_error("proxy: cannot listen");
    socklen_t len = sizeof addr;
    getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    for (int kind = 1; kind <= attacks; ++kind) attack_[kind] = make_attack(kind);
    thread_ = std::thread([this] { serve(); });
  }
  ~Proxy() {
    stop_ = true;
    thread_.join();
    for (auto& p : pipes_) close(p.fd);
    close(listener_);
  }
  int port() const { return port_; }
  std::atomic<int> delay_ms{0};
  std::atomic<int> drip_ms{0};
  std::atomic<int> hostile{0};

 private:
  struct Chunk {
    std::int64_t due;
    std::string bytes;
  };
  struct End {
    int fd;
    int peer;  // index of the other end in pipes_
    std::deque<Chunk> out;  // bytes to write to fd; dropped when either end closes (a reset)
    bool to_client = false;      // the client's end, where replies go
    std::int64_t next_byte = 0;  // dripping: when the next reply byte may go
    int attack = 0;              // replies replaced by this attack (0: none)
    std::size_t attack_sent = 0;
  };
  struct Attack {
    std::string head, unit;  // head once, then unit over and over
  };
  static Attack make_attack(int kind) {
    auto repeat = [](const std::string& unit, std::size_t times) {
      std::string s;
      for (std::size_t i = 0; i < times; ++i) s += unit;
      return s;
    };
    switch (kind) {
      case 1: return {"*2147483647\r\n", repeat(":1\r\n", 16384)};
      case 2: return {"*60000\r\n", "*60000\r\n" + repeat(":1\r\n", 60000)};
      case 3: return {"$1073741824\r\n", std::string(65536, 'a')};
      default: return {"+", std::string(65536, 'a')};
    }
  }
  // The next bytes of an end's attack.
  std::string_view attack_bytes(const End& e) const {
    const Attack& a = attack_[e.attack];
    std::string_view piece = e.attack_sent < a.head.size()
                                 ? std::string_view(a.head).substr(e.attack_sent)
                                 : std::string_view(a.unit).substr((e.attack_sent - a.head.size()) % a.unit.size());
    return piece.substr(0, std::min(piece.size(), hostile_budget - e.attack_sent));
  }
  void serve() {
    while (!stop_) {
      const int drip = drip_ms.load();
      const int attack = hostile.load();
      if (!attack) {  // a hostile window is over: its connections are useless now
        std::set<size_t> dead;
        for (size_t i = 0; i < pipes_.size(); ++i)
          if (pipes_[i].attack) dead.insert({i, size_t(pipes_[i].peer)});
        if (!dead.empty()) remove(dead);
      }
      std::vector<pollfd> fds;
      fds.push_back({listener_, POLLIN, 0});
      const std::int64_t now = mono_ns();
      std::int64_t wake = now + 50 * ms_ns;
      for (auto& e : pipes_) {
        short ev = POLLIN;
        if (e.attack) {
          if (e.attack_sent < hostile_budget) ev |= POLLOUT;
        } else if (!e.out.empty()) {
          std::int64_t at = e.out.front().due;
          if (e.to_client && drip > 0) at = std::max(at, e.next_byte);
          if (at <= now) ev |= POLLOUT;
          else wake = std::min(wake, at);
        }
        fds.push_back({e.fd, ev, 0});
      }
      const int timeout = int(std::max<std::int64_t>(0, (wake - now) / ms_ns) + 1);
      if (poll(fds.data(), fds.size(), timeout) < 0 && errno != EINTR) return;
      if (fds[0].revents & POLLIN) accept_one();
      std::set<size_t> dead;
      for (size_t i = 0; i < pipes_.size() && i + 1 < fds.size(); ++i) {
        End& e = pipes_[i];
        const short rev = fds[i + 1].revents;
        if (rev & POLLIN) {
          char buf[65536];
          const ssize_t n = read(e.fd, buf, sizeof buf);
          if (n <= 0) {
            dead.insert(i);
            dead.insert(size_t(e.peer));
          } else {
            End& peer = pipes_[size_t(e.peer)];
            if (peer.to_client && (peer.attack || attack)) {
              // The server's reply is replaced: what it sent is dropped, the attack goes instead.
              if (!peer.attack) peer.attack = attack, peer.attack_sent = 0, peer.out.clear();
            } else {
              std::int64_t due = mono_ns() + std::int64_t(delay_ms.load()) * ms_ns;
              if (!peer.out.empty()) due = std::max(due, peer.out.back().due);  // keep the order
              // A reply that starts now waits one interval for its first byte, like the others.
              if (peer.to_client && drip > 0 && peer.out.empty())
                peer.next_byte = std::max(peer.next_byte, due + std::int64_t(drip) * ms_ns);
              peer.out.push_back({due, std::string(buf, size_t(n))});
            }
          }
        } else if (rev & (POLLHUP | POLLERR)) {
          dead.insert(i);
          dead.insert(size_t(e.peer));
        }
        if ((rev & POLLOUT) && e.attack) {
          const std::string_view piece = attack_bytes(e);
          const ssize_t n = send(e.fd, piece.data(), piece.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
          if (n < 0 && errno != EAGAIN) {
            dead.insert(i);
            dead.insert(size_t(e.peer));
          } else if (n > 0) {
            e.attack_sent += size_t(n);
          }
        } else if ((rev & POLLOUT) && !e.out.empty()) {
          Chunk& c = e.out.front();
          const bool dripping = e.to_client && drip > 0;
          const ssize_t n = send(e.fd, c.bytes.data(), dripping ? 1 : c.bytes.size(), MSG_NOSIGNAL);
          if (n < 0) {
            dead.insert(i);
            dead.insert(size_t(e.peer));
          } else {
            c.bytes.erase(0, size_t(n));
            if (c.bytes.empty()) e.out.pop_front();
            if (dripping) e.next_byte = mono_ns() + std::int64_t(drip) * ms_ns;
          }
        }
      }
      if (!dead.empty()) remove(dead);
    }
  }
  void accept_one() {
    const int client = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) return;
    const int server = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(std::uint16_t(upstream_));
    if (server < 0 || connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      close(client);
      if (server >= 0) close(server);
      return;
    }
    const int n = int(pipes_.size());
    End client_end{client, n + 1, {}};
    client_end.to_client = true;
    pipes_.push_back(std::move(client_end));
    pipes_.push_back({server, n, {}});
  }
  void remove(const std::set<size_t>& dead) {
    std::vector<End> kept;
    std::map<size_t, int> index;
    for (size_t i = 0; i < pipes_.size(); ++i) {
      if (dead.count(i)) {
        close(pipes_[i].fd);
        continue;
      }
      index[i] = int(kept.size());
      kept.push_back(std::move(pipes_[i]));
    }
    for (auto& e : kept) e.peer = index.at(size_t(e.peer));
    pipes_ = std::move(kept);
  }

  int upstream_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::vector<End> pipes_;
  Attack attack_[attacks + 1];
  std::thread thread_;
};

// ---- servers ----------------------------------------------------------------------------------

int free_port() {
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

/// Forks and execs; the child dies with us (PR_SET_PDEATHSIG: this is always the main thread),
/// in a process group of its own; with `address_space`, under that RLIMIT_AS (bytes).
pid_t spawn(const std::vector<std::string>& args, const std::vector<std::string>& env, const std::string& output,
            rlim_t address_space = 0) {
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid != 0) return pid;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(1);
  setpgid(0, 0);  // a signal to our group (Ctrl-C, timeout(1)) is ours to pass on, or not
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  signal(SIGPIPE, SIG_DFL);
  if (address_space) {
    const rlimit cap{address_space, address_space};
    setrlimit(RLIMIT_AS, &cap);
  }
  if (!output.empty()) {
    const int fd = open(output.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
  }
  for (const auto& e : env) putenv(const_cast<char*>(e.c_str()));
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  execvp(argv[0], argv.data());
  std::fprintf(stderr, "cannot run %s: %s\n", argv[0], std::strerror(errno));
  _exit(127);
}

class Server {
 public:
  Server(std::string dir, bool persistent) : dir_(std::move(dir)), persistent_(persistent) {
    std::filesystem::create_directories(dir_);
    for (int attempt = 0; attempt < 20 && !pid_; ++attempt) {
      port_ = free_port();
      start();
    }
    if (!pid_) throw std::runtime_error("redis-server did not start; see " + dir_ + "/redis.log");
  }
  ~Server() { kill_now(SIGKILL); }
  int port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }
  /// Starts on port(); false if it did not come up within 5 s.
  bool start() {
    std::vector<std::string> args = {"redis-server", "--port", std::to_string(port_), "--bind", "127.0.0.1",
                                     "--dir", dir_, "--logfile", dir_ + "/redis.log", "--daemonize", "no",
                                     "--save", "", "--enable-debug-command", "yes"};
    if (persistent_) {
      args.insert(args.end(), {"--appendonly", "yes", "--appendfsync", "always"});
    } else {
      args.insert(args.end(), {"--appendonly", "no"});
    }
    pid_ = spawn(args, {}, "");
    const std::int64_t deadline = mono_ns() + 5000 * ms_ns;
    while (mono_ns() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) break;
      Raw probe(port_, 200ms);
      if (auto r = probe.run({"PING"}); r && r->type == REDIS_REPLY_STATUS) return true;
      std::this_thread::sleep_for(20ms);
    }
    kill_now(SIGKILL);
    return false;
  }
  void kill_now(int sig) {
    if (!pid_) return;
    ::kill(pid_, SIGCONT);
    ::kill(pid_, sig);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = 0;
  }

 private:
  std::string dir_;
  bool persistent_;
  int port_ = 0;
  pid_t pid_ = 0;
};

// ---- analysis ---------------------------------------------------------------------------------

struct Hold {
  int worker = 0;
  std::uint64_t fence = 0;
  std::int64_t start = 0;
  std::int64_t validity_end = 0;       // the largest upper bound recorded
  std::optional<std::int64_t> ended;   // its own end: clear, noticed loss or validity
  std::string how;
  std::string mode;  // "keep" or "update"
  std::optional<std::int64_t> lost_at;
  std::string lost_reason;
  long long lost_remaining = 0;
  int pid = 0;
  std::int64_t claim_end() const {
    std::int64_t e = validity_end;
    if (ended) e = std::min(e, *ended);
    if (lost_at) e = std::min(e, *lost_at);
    return e;
  }
};
struct Write {
  int worker;
  std::uint64_t fence;
  std::int64_t sent;
  int result;
};
struct Stop {  // a SIGSTOP we sent: [from, to]
  int worker;
  pid_t pid;
  std::int64_t from, to;
};

struct SlowCall {
  int worker;
  std::int64_t begin, end;
  std::string call;
};

struct Records {
  std::map<std::uint64_t, Hold> holds;
  std::vector<Write> writes;
  long validity_checks = 0, validity_bad = 0, validity_checks_jumped = 0;
  std::vector<std::string> validity_bad_lines;
  long errors = 0;
  std::vector<SlowCall> slow_calls;
};

void read_log(const std::string& path, int worker, Records& rec) {
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    std::istringstream s(line);
    char kind = 0;
    s >> kind;
    if (kind == 'S') {
      SlowCall c{worker, 0, 0, {}};
      if (s >> c.begin >> c.end >> c.call) rec.slow_calls.push_back(c);
      continue;
    }
    if (kind == 'e') {
      ++rec.errors;
      continue;
    }
    std::uint64_t fence = 0;
    s >> fence;
    if (!s) continue;  // a line cut by SIGKILL cannot happen (one write each), but be safe
    Hold& h = rec.holds[fence];
    if (kind == 'A') {
      h.worker = worker;
      h.fence = fence;
      s >> h.start >> h.validity_end >> h.pid;
    } else if (kind == 'R') {
      // Validity only grows during a hold, and each line bounds it at its time from above, so
      // the largest bounds the last (the keeper's and the main thread's lines may interleave).
      std::int64_t end = 0;
      if (s >> end) h.validity_end = std::max(h.validity_end, end);
    } else if (kind == 'L') {
      std::int64_t at = 0;
      s >> at >> h.lost_reason >> h.lost_remaining;
      if (!h.lost_at) h.lost_at = at;
    } else if (kind == 'M') {
      s >> h.mode;
    } else if (kind == 'E') {
      std::int64_t at = 0;
      s >> at >> h.how;
      h.ended = at;
    } else if (kind == 'W') {
      Write w{worker, fence, 0, 0};
      s >> w.sent >> w.result;
      rec.writes.push_back(w);
    } else if (kind == 'V') {
      int good = 0;
      long long v = 0, took = 0, offset = 0;
      s >> good >> v >> took >> offset;
      ++rec.validity_checks;
      if (std::llabs(offset) > 1000) ++rec.validity_checks_jumped;
      if (!good) {
        ++rec.validity_bad;
        if (rec.validity_bad_lines.size() < 5)
          rec.validity_bad_lines.push_back("worker " + std::to_string(worker) + " fence " + std::to_string(fence) +
                                           ": valid_for " + std::to_string(v) + " ms after a renewal that took " +
                                           std::to_string(took) + " us (wall clock off by " + std::to_string(offset) +
                                           " ms)");
      }
    }
  }
}

// ---- orchestrator -----------------------------------------------------------------------------

struct RunArgs {
  int duration_s = 180;
  int workers = 5;
  milliseconds ttl{2000};
  unsigned seed = 0;
  std::string faketime_lib;
  std::string dir;
  std::string self;
};

std::atomic<bool> interrupted{false};
extern "C" void on_interrupt(int) { interrupted = true; }

double secs(std::int64_t ns) { return double(ns) / 1e9; }

std::int64_t t0 = 0;  // the run's start
/// A timestamped line of the run's log, on stdout.
__attribute__((format(printf, 1, 2))) void say(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  std::printf("[%6.1f s] %s\n", secs(mono_ns() - t0), buf);
  std::fflush(stdout);
}

int run(RunArgs args) {
  if (args.workers < 2 || args.workers > max_workers) {
    std::fprintf(stderr, "torture: --workers must be 2 to %d\n", max_workers);
    return 64;
  }
  if (!args.seed) args.seed = unsigned(raw_ns(CLOCK_REALTIME) % 1000000007);
  std::mt19937_64 rng(args.seed);
  auto uniform = [&](std::int64_t lo, std::int64_t hi) { return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng); };
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);

  bool own_dir = false;
  if (args.dir.empty()) {
    char tmpl[] = "/tmp/process-lock-torture-XXXXXX";
    if (!mkdtemp(tmpl)) return 70;
    args.dir = tmpl;
    own_dir = true;
  }
  std::filesystem::create_directories(args.dir);
  const std::string shared_path = args.dir + "/shared";
  Shared* shared = map_shared(shared_path, true);
  if (!shared) {
    std::fprintf(stderr, "torture: cannot map %s\n", shared_path.c_str());
    return 70;
  }
  const std::string faketime_file = args.dir + "/faketime";
  const bool faketime = !args.faketime_lib.empty();
  if (faketime) std::ofstream(faketime_file) << "+0\n";

  t0 = mono_ns();

  std::optional<Server> lock_server, resource_server;
  try {
    lock_server.emplace(args.dir + "/lock-redis", true);
    resource_server.emplace(args.dir + "/resource-redis", false);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "torture: %s\n", e.what());
    return 69;
  }
  Proxy proxy(lock_server->port());
  const int proxied = args.workers / 2;  // workers 1 .. proxied go through the proxy
  std::printf("== torture: %d s, %d workers (%d through the latency proxy%s), TTL %lld ms, seed %u\n", args.duration_s,
              args.workers, proxied, faketime ? ", worker 0 under libfaketime" : "", static_cast<long long>(args.ttl.count()),
              args.seed);
  std::printf("   lock redis %s (appendonly, fsync always), resource redis %s, proxy port %d, records in %s\n",
              lock_server->url().c_str(), resource_server->url().c_str(), proxy.port(), args.dir.c_str());
  if (!faketime) std::printf("   clock jumps SKIPPED: no libfaketime (apt-get install faketime)\n");
  std::fflush(stdout);

  // A hostile reply must not take the machine with it: a worker that allocates without bound
  // fails (std::bad_alloc) instead, and its peak memory is checked at the end.
  const rlim_t worker_address_space = rlim_t(1) << 30;
  const long worker_rss_limit_kb = 128 * 1024;
  long over_memory = 0, peak_rss_kb = 0;
  std::vector<std::string> memory_lines;
  auto note_rss = [&](int id, pid_t pid, const rusage& ru) {
    peak_rss_kb = std::max<long>(peak_rss_kb, ru.ru_maxrss);
    if (ru.ru_maxrss <= worker_rss_limit_kb) return;
    ++over_memory;
    if (memory_lines.size() < 5)
      memory_lines.push_back("worker " + std::to_string(id) + " (pid " + std::to_string(pid) + ") peaked at " +
                             std::to_string(ru.ru_maxrss / 1024) + " MiB");
  };

  struct WorkerProc {
    pid_t pid = 0;
    bool killed_by_us = false;
    bool stopped = false;
    std::uint64_t last_beat = 0;
    std::int64_t last_beat_at = 0;
    int restarts = 0;
  };
  std::vector<WorkerProc> procs(size_t(args.workers));
  long crashes = 0, hangs = 0;
  std::vector<std::string> crash_lines;
  std::vector<Stop> stops;

  auto start_worker = [&](int id) {
    const bool via_proxy = id >= 1 && id <= proxied;
    const std::string url = "redis://127.0.0.1:" + std::to_string(via_proxy ? proxy.port() : lock_server->port());
    std::vector<std::string> env;
    if (faketime && id == 0) {
      env = {"LD_PRELOAD=" + args.faketime_lib, "FAKETIME_TIMESTAMP_FILE=" + faketime_file, "FAKETIME_NO_CACHE=1",
             "FAKETIME_DONT_FAKE_MONOTONIC=1"};
    }
    WorkerProc& p = procs[size_t(id)];
    p.pid = spawn({args.self, "worker", "--id", std::to_string(id), "--lock-url", url, "--resource-port",
                   std::to_string(resource_server->port()), "--ttl-ms", std::to_string(args.ttl.count()), "--log",
                   args.dir + "/worker-" + std::to_string(id) + ".log", "--shared", shared_path, "--seed",
                   std::to_string(rng())},
                  env, args.dir + "/worker-" + std::to_string(id) + ".err", worker_address_space);
    p.killed_by_us = false;
    p.stopped = false;
    p.last_beat = shared->worker[id].heartbeat.load();
    p.last_beat_at = mono_ns();
  };
  for (int id = 0; id < args.workers; ++id) start_worker(id);

  auto tail = [&](const std::string& path) {
    std::ifstream in(path);
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return all.size() > 600 ? all.substr(all.size() - 600) : all;
  };
  // Reaps workers that ended; restarts them while the run goes on.
  auto reap = [&](bool restart) {
    for (int id = 0; id < args.workers; ++id) {
      WorkerProc& p = procs[size_t(id)];
      if (!p.pid) continue;
      int status = 0;
      rusage ru{};
      if (wait4(p.pid, &status, WNOHANG, &ru) != p.pid) continue;
      note_rss(id, p.pid, ru);
      const bool expected = (p.killed_by_us && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) ||
                            (!restart && WIFEXITED(status) && WEXITSTATUS(status) == 0);
      if (!expected) {
        ++crashes;
        char what[200];
        if (WIFSIGNALED(status))
          std::snprintf(what, sizeof what, "worker %d (pid %d) died of signal %d", id, int(p.pid), WTERMSIG(status));
        else
          std::snprintf(what, sizeof what, "worker %d (pid %d) exited with %d", id, int(p.pid), WEXITSTATUS(status));
        say("CRASH: %s; its stderr ends with:\n%s", what, tail(args.dir + "/worker-" + std::to_string(id) + ".err").c_str());
        crash_lines.push_back(what);
      }
      p.pid = 0;
      if (restart) {
        ++p.restarts;
        start_worker(id);
      }
    }
  };
  // A worker whose main loop has not moved for this long, while not stopped by us, hangs.
  const std::int64_t hang_ns = 15000 * ms_ns;
  auto watch = [&] {
    reap(true);
    const std::int64_t now = mono_ns();
    for (int id = 0; id < args.workers; ++id) {
      WorkerProc& p = procs[size_t(id)];
      const std::uint64_t beat = shared->worker[id].heartbeat.load();
      if (beat != p.last_beat || p.stopped) {
        p.last_beat = beat;
        p.last_beat_at = now;
      } else if (p.pid && now - p.last_beat_at > hang_ns) {
        ++hangs;
        say("HANG: worker %d (pid %d) made no progress for %.0f s; killing it", id, int(p.pid), secs(now - p.last_beat_at));
        crash_lines.push_back("worker " + std::to_string(id) + " hung");
        p.killed_by_us = true;
        kill(p.pid, SIGKILL);
        p.last_beat_at = now;
      }
    }
  };
  // Sleeps while watching the workers.
  auto pause_for = [&](std::int64_t ns) {
    const std::int64_t until = mono_ns() + ns;
    while (mono_ns() < until && !interrupted) {
      watch();
      std::this_thread::sleep_for(std::min<std::int64_t>(50, std::max<std::int64_t>(1, (until - mono_ns()) / ms_ns)) * 1ms);
    }
  };
  auto holder = [&](int mode = 0) -> int {
    for (int id = 0; id < args.workers; ++id)
      if (procs[size_t(id)].pid && shared->worker[id].holding_fence.load() &&
          (!mode || shared->worker[id].holding_mode.load() == mode))
        return id;
    return -1;
  };
  auto lock_fence_counter = [&]() -> std::optional<long long> {
    Raw raw(lock_server->port(), 1000ms);
    return raw.integer({"GET", "{" + lock_name + "}:fence"});
  };

  enum Fault { sigstop, sigkill, restart, client_pause, debug_sleep, latency, drip, hostile_reply, clock_jump, kinds };
  const char* const fault_names[kinds] = {"SIGSTOP holder", "SIGKILL holder", "lock redis killed+restarted",
                                          "CLIENT PAUSE",   "DEBUG SLEEP",    "proxy latency",
                                          "proxy drip",     "proxy hostile reply", "wall clock jump"};
  long faults[kinds] = {};
  long fence_counter_lost = 0;
  std::vector<int> bag;  // every kind once per round, in random order, so short runs see them all
  const std::int64_t ttl_ns = args.ttl.count() * ms_ns;
  const std::int64_t run_until = t0 + std::int64_t(args.duration_s) * 1000 * ms_ns;

  pause_for(1500 * ms_ns);  // let them start and take turns
  while (mono_ns() < run_until && !interrupted) {
    if (bag.empty()) {
      for (int k = 0; k < kinds; ++k)
        if (k != clock_jump || faketime) bag.push_back(k);
      std::shuffle(bag.begin(), bag.end(), rng);
    }
    const int kind = bag.back();
    bag.pop_back();
    switch (kind) {
      case sigstop: {
        // In turn a holder that renews itself and one kept by keep() (waiting up to 3 s for one).
        const int mode = faults[sigstop] % 2 ? 1 : 2;
        int id = holder(mode);
        for (int i = 0; i < 60 && id < 0 && !interrupted; ++i) {
          pause_for(50 * ms_ns);
          id = holder(mode);
        }
        if (id < 0) id = holder();
        if (id < 0) {
          say("SIGSTOP: nobody holds the lock right now; skipped");
          break;
        }
        const std::int64_t ns = ttl_ns + uniform(500, 1500) * ms_ns;
        WorkerProc& p = procs[size_t(id)];
        say("SIGSTOP worker %d (pid %d, fence %" PRIu64 ", %s) for %.1f s", id, int(p.pid),
            shared->worker[id].holding_fence.load(), shared->worker[id].holding_mode.load() == 1 ? "keep()" : "update()",
            secs(ns));
        p.stopped = true;
        const std::int64_t from = mono_ns();
        kill(p.pid, SIGSTOP);
        pause_for(ns);
        kill(p.pid, SIGCONT);
        stops.push_back({id, p.pid, from, mono_ns()});
        p.stopped = false;
        ++faults[kind];
        break;
      }
      case sigkill: {
        int id = holder();
        if (id < 0) id = int(uniform(0, args.workers - 1));
        WorkerProc& p = procs[size_t(id)];
        if (!p.pid) break;
        say("SIGKILL worker %d (pid %d, fence %" PRIu64 ")", id, int(p.pid), shared->worker[id].holding_fence.load());
        p.killed_by_us = true;
        kill(p.pid, SIGKILL);
        ++faults[kind];
        break;
      }
      case restart: {
        const auto before = lock_fence_counter();
        const std::int64_t down = uniform(300, 4000) * ms_ns;
        say("lock redis: SIGKILL, restart in %.1f s (fence counter %lld)", secs(down), before.value_or(-1));
        lock_server->kill_now(SIGKILL);
        pause_for(down);
        bool up = false;
        for (int i = 0; i < 10 && !up; ++i) up = lock_server->start();
        if (!up) {
          say("lock redis did not restart on its port; giving up");
          interrupted = true;
          ++crashes;
          crash_lines.push_back("lock redis did not restart");
          break;
        }
        const auto after = lock_fence_counter();
        if (before && after && *after < *before) {
          ++fence_counter_lost;
          say("VIOLATION: the fence counter went back from %lld to %lld across the restart", *before, *after);
        }
        ++faults[kind];
        break;
      }
      case client_pause: {
        const auto ms = uniform(1000, 4000);
        say("CLIENT PAUSE %lld ms ALL", static_cast<long long>(ms));
        Raw raw(lock_server->port(), 1000ms);
        if (auto r = raw.run({"CLIENT", "PAUSE", std::to_string(ms), "ALL"}); r && r->type == REDIS_REPLY_STATUS) ++faults[kind];
        pause_for(ms * ms_ns);
        break;
      }
      case debug_sleep: {
        const auto ms = uniform(1000, 4000);
        say("DEBUG SLEEP %.1f s", double(ms) / 1000);
        Raw raw(lock_server->port(), milliseconds(ms + 5000));
        auto r = raw.run({"DEBUG", "SLEEP", std::to_string(double(ms) / 1000)});
        if (r && r->type == REDIS_REPLY_STATUS) ++faults[kind];
        else say("DEBUG SLEEP failed: %s", r && r->type == REDIS_REPLY_ERROR ? r->str : "no reply");
        break;
      }
      case latency: {
        const auto ms = uniform(100, 1500);
        const auto ns = uniform(1500, 4000) * ms_ns;
        say("proxy latency %lld ms for %.1f s", static_cast<long long>(ms), secs(ns));
        proxy.delay_ms = int(ms);
        pause_for(ns);
        proxy.delay_ms = 0;
        ++faults[kind];
        break;
      }
      case drip: {
        // Each byte inside the workers' 500 ms command timeout, so no single read times out: only
        // a deadline on the whole call ends it, and the keeper must still report in time. Every
        // other time the server has just lost its scripts (SCRIPT FLUSH, as after a restart or a
        // failover), so each script call first gets a 47-byte NOSCRIPT reply: many seconds.
        // It starts, if one comes within 3 s, while a worker behind the proxy holds the lock: one kept
        // by keep() if one comes within 1.5 s, so that a keeper's renewals are what trickles. (The
        // waiters behind the proxy are dripped on anyway: each call must still end in time.)
        int id = -1;
        const std::int64_t looking_since = mono_ns();
        while (id < 0 && !interrupted && mono_ns() - looking_since < 3000 * ms_ns) {
          const bool any_mode = mono_ns() - looking_since > 1500 * ms_ns;
          for (int w = 1; w <= proxied && id < 0; ++w)
            if (procs[size_t(w)].pid && shared->worker[w].holding_fence.load() &&
                (any_mode || shared->worker[w].holding_mode.load() == 1))
              id = w;
          if (id < 0) pause_for(20 * ms_ns);
        }
        const auto ms = uniform(100, 400);
        const auto ns = uniform(2000, 6000) * ms_ns;
        const bool flush = faults[drip] % 2 == 0;
        char who[96] = "nobody behind the proxy holds the lock";
        if (id >= 0)
          std::snprintf(who, sizeof who, "worker %d holds the lock with %s", id,
                        shared->worker[id].holding_mode.load() == 1 ? "keep()" : "update()");
        say("proxy drip: replies one byte every %lld ms for %.1f s%s (%s)", static_cast<long long>(ms), secs(ns),
            flush ? ", after SCRIPT FLUSH" : "", who);
        if (flush) {
          Raw raw(lock_server->port(), 1000ms);
          raw.run({"SCRIPT", "FLUSH"});
        }
        proxy.drip_ms = int(ms);
        pause_for(ns);
        proxy.drip_ms = 0;
        ++faults[kind];
        break;
      }
      case hostile_reply: {
        const int attack = int(faults[hostile_reply] % Proxy::attacks) + 1;  // each in turn
        const auto ns = uniform(1500, 4000) * ms_ns;
        say("proxy hostile replies: %s (up to %zu MiB a connection) for %.1f s", Proxy::attack_name(attack),
            Proxy::hostile_budget >> 20, secs(ns));
        proxy.hostile = attack;
        pause_for(ns);
        proxy.hostile = 0;
        ++faults[kind];
        break;
      }
      case clock_jump: {
        const long long minutes = uniform(2, 90) * (uniform(0, 1) ? 1 : -1);
        say("wall clock of worker 0 jumps to %+lld min", minutes);
        const std::string tmp = faketime_file + ".tmp";
        std::ofstream(tmp) << (minutes > 0 ? "+" : "") << minutes << "m\n";
        std::rename(tmp.c_str(), faketime_file.c_str());
        ++faults[kind];
        break;
      }
    }
    pause_for(uniform(500, 2500) * ms_ns);
  }

  // Stop: SIGTERM, and every worker must end within 10 s (a hold in progress is cleared first).
  say("stopping the workers");
  for (auto& p : procs)
    if (p.pid) kill(p.pid, SIGTERM);
  const std::int64_t stop_deadline = mono_ns() + 10000 * ms_ns;
  while (mono_ns() < stop_deadline) {
    reap(false);
    if (std::none_of(procs.begin(), procs.end(), [](const WorkerProc& p) { return p.pid != 0; })) break;
    std::this_thread::sleep_for(20ms);
  }
  for (int id = 0; id < args.workers; ++id) {
    WorkerProc& p = procs[size_t(id)];
    if (!p.pid) continue;
    ++hangs;
    say("HANG: worker %d (pid %d) did not exit within 10 s of SIGTERM", id, int(p.pid));
    crash_lines.push_back("worker " + std::to_string(id) + " did not exit");
    kill(p.pid, SIGKILL);
    rusage ru{};
    wait4(p.pid, nullptr, 0, &ru);
    note_rss(id, p.pid, ru);
    p.pid = 0;
  }

  // ---- the checks ----
  Records rec;
  for (int id = 0; id < args.workers; ++id) read_log(args.dir + "/worker-" + std::to_string(id) + ".log", id, rec);
  Raw res(resource_server->port(), 2000ms);
  const long long accepted = res.integer({"GET", resource_keys[1]}).value_or(-1);
  const long long rejected = res.integer({"GET", resource_keys[2]}).value_or(-1);
  if (accepted < 0 || rejected < 0) {
    ++crashes;
    crash_lines.push_back("the resource's redis-server could not be read at the end");
  }

  std::vector<Hold> holds;
  for (auto& [fence, h] : rec.holds)
    if (h.start) holds.push_back(h);
  std::sort(holds.begin(), holds.end(), [](const Hold& a, const Hold& b) { return a.start < b.start; });
  auto stopped_during = [&](const Hold& h, std::int64_t until) {
    return std::any_of(stops.begin(), stops.end(), [&](const Stop& s) {
      return s.worker == h.worker && s.pid == h.pid && s.from < until && s.to > h.start;
    });
  };

  std::vector<std::string> overlap_lines, fence_lines, late_lines, stale_lines;
  long overlaps = 0, fence_disorder = 0, late = 0, late_stopped = 0, stale_accepted = 0, after_hold = 0,
       after_hold_rejected = 0;
  std::map<std::string, long> lost_by_reason;
  std::uint64_t previous_fence = 0;  // of the last hold that had any time of its own
  for (size_t i = 0; i < holds.size(); ++i) {
    const Hold& a = holds[i];
    if (a.lost_at) ++lost_by_reason[a.lost_reason];
    if (a.claim_end() > a.start) {
      if (previous_fence >= a.fence) {
        ++fence_disorder;
        if (fence_lines.size() < 5)
          fence_lines.push_back("fence " + std::to_string(a.fence) + " (worker " + std::to_string(a.worker) +
                                ") started after fence " + std::to_string(previous_fence));
      }
      previous_fence = a.fence;
    }
    for (size_t j = i + 1; j < holds.size() && holds[j].start < a.claim_end(); ++j) {
      ++overlaps;
      if (overlap_lines.size() < 5) {
        char buf[300];
        std::snprintf(buf, sizeof buf,
                      "worker %d fence %" PRIu64 " held %.3f..%.3f s (ended by %s%s%s), worker %d fence %" PRIu64
                      " from %.3f s",
                      a.worker, a.fence, secs(a.start - t0), secs(a.claim_end() - t0), a.how.c_str(),
                      a.lost_at ? ", told " : "", a.lost_at ? a.lost_reason.c_str() : "", holds[j].worker, holds[j].fence,
                      secs(holds[j].start - t0));
        overlap_lines.push_back(buf);
      }
    }
    if (a.lost_at && *a.lost_at > a.validity_end) {
      char buf[300];
      std::snprintf(buf, sizeof buf, "worker %d fence %" PRIu64 " told '%s' %.0f ms after its validity ended", a.worker,
                    a.fence, a.lost_reason.c_str(), double(*a.lost_at - a.validity_end) / 1e6);
      if (stopped_during(a, *a.lost_at)) {
        ++late_stopped;  // SIGSTOPped past its validity: it could not be told in time
      } else {
        ++late;
        if (late_lines.size() < 5) late_lines.push_back(buf);
      }
    }
  }
  // Writes: accepted with a fence below that of a hold already started when it was sent = stale.
  std::vector<std::pair<std::int64_t, std::uint64_t>> started;  // start, highest fence started by then
  for (const Hold& h : holds) started.push_back({h.start, std::max(h.fence, started.empty() ? 0 : started.back().second)});
  for (const Write& w : rec.writes) {
    const auto it = rec.holds.find(w.fence);
    if (it != rec.holds.end() && w.sent > it->second.claim_end()) {
      ++after_hold;
      if (w.result == 0) ++after_hold_rejected;
    }
    if (w.result != 1) continue;
    auto pos = std::lower_bound(started.begin(), started.end(), std::make_pair(w.sent, std::uint64_t(0)));
    if (pos == started.begin()) continue;
    --pos;
    if (pos->second > w.fence) {
      ++stale_accepted;
      if (stale_lines.size() < 5)
        stale_lines.push_back("worker " + std::to_string(w.worker) + " wrote with fence " + std::to_string(w.fence) +
                              " at " + std::to_string(secs(w.sent - t0)) + " s, after fence " +
                              std::to_string(pos->second) + " had been taken: accepted");
    }
  }
  // Calls past their deadline, but not those of a worker SIGSTOPped meanwhile (it could not run).
  long slow = 0, slow_stopped = 0;
  std::vector<std::string> slow_lines;
  for (const SlowCall& c : rec.slow_calls) {
    if (std::any_of(stops.begin(), stops.end(),
                    [&](const Stop& st) { return st.worker == c.worker && st.from < c.end && st.to > c.begin; })) {
      ++slow_stopped;
      continue;
    }
    ++slow;
    if (slow_lines.size() < 5) {
      char buf[200];
      std::snprintf(buf, sizeof buf, "worker %d: %s took %.0f ms, from %.3f s", c.worker, c.call.c_str(),
                    double(c.end - c.begin) / 1e6, secs(c.begin - t0));
      slow_lines.push_back(buf);
    }
  }
  long wall_offset_max = 0, mono_faked = 0;
  for (int id = 0; id < args.workers; ++id) {
    wall_offset_max = std::max<long>(wall_offset_max, long(shared->worker[id].max_wall_offset_ms.load()));
    mono_faked += shared->worker[id].mono_faked.load();
  }
  const bool jump_ineffective = faketime && faults[clock_jump] > 0 && wall_offset_max < 60000;

  std::printf("\n== results (%.0f s, seed %u)\n", secs(mono_ns() - t0), args.seed);
  const long kept = long(std::count_if(holds.begin(), holds.end(), [](const Hold& h) { return h.mode == "keep"; }));
  int restarts = 0;
  for (auto& p : procs) restarts += p.restarts;
  std::printf("acquisitions        %zu (fences %" PRIu64 "..%" PRIu64 "): %ld kept by keep(), %ld renewed by update()\n",
              holds.size(), holds.empty() ? 0 : holds.front().fence, holds.empty() ? 0 : holds.back().fence, kept,
              long(holds.size()) - kept);
  std::printf("faults             ");
  for (int k = 0; k < kinds; ++k) std::printf(" %s %ld%s", fault_names[k], faults[k], k + 1 < kinds ? "," : "");
  std::printf("%s\n", faketime ? "" : " (SKIPPED: no libfaketime)");
  std::printf("worker restarts     %d\n", restarts);
  std::printf("on_lost reports     taken %ld, unreachable %ld, expired %ld, limit_reached %ld\n", lost_by_reason["taken"],
              lost_by_reason["unreachable"], lost_by_reason["expired"], lost_by_reason["limit_reached"]);
  std::printf("resource writes     %lld accepted, %lld refused as stale by the fence\n", accepted, rejected);
  std::printf("late writes         %ld sent after their hold had ended (checked, then SIGSTOPped or told of a loss\n"
              "                    before sending), %ld of them refused by the fence\n",
              after_hold, after_hold_rejected);
  std::printf("lock call errors    %ld (the faults at work)\n", rec.errors);
  std::printf("worker memory       peak RSS %ld MiB (limit %ld MiB; address space capped at %lu MiB)\n", peak_rss_kb / 1024,
              worker_rss_limit_kb / 1024, static_cast<unsigned long>(worker_address_space >> 20));
  std::printf("validity checks     %ld after a timed renewal, %ld with the wall clock moved (by up to %ld min)\n",
              rec.validity_checks, rec.validity_checks_jumped, wall_offset_max / 60000);

  int passed = 0, failed = 0;
  std::vector<std::string> failures;
  auto check = [&](const char* what, long count, const std::vector<std::string>& details, const std::string& note = {}) {
    std::printf("CHECK %-45s %5ld  %s%s\n", what, count, count == 0 ? "ok" : "VIOLATION", note.c_str());
    for (const auto& d : details) std::printf("      %s\n", d.c_str());
    if (count == 0) {
      ++passed;
    } else {
      ++failed;
      failures.push_back(what);
    }
  };
  check("stale writes accepted", stale_accepted, stale_lines);
  check("overlapping holds (neither told it was lost)", overlaps, overlap_lines);
  check("lost notices after the validity ended", late, late_lines,
        late_stopped ? "  (+" + std::to_string(late_stopped) + " to holders SIGSTOPped past it: expected, not counted)"
                     : std::string());
  check("lock calls past their deadline", slow, slow_lines,
        slow_stopped ? "  (+" + std::to_string(slow_stopped) + " of workers SIGSTOPped meanwhile: not counted)"
                     : std::string());
  check("fences not increasing with acquisitions", fence_disorder, fence_lines);
  check("local validity off the monotonic clock", rec.validity_bad, rec.validity_bad_lines);
  check("clock jumps that did not reach the worker", jump_ineffective ? 1 : 0, {});
  check("monotonic clock faked in a worker (setup)", mono_faked, {});
  check("fence counter lost across a redis restart", fence_counter_lost, {});
  check("crashes", crashes, crash_lines);
  check("hangs", hangs, {});
  check("workers over their memory limit", over_memory, memory_lines);
  const bool enough = interrupted || (holds.size() >= 5 && accepted > 0);
  check("runs that did too little to judge", enough ? 0 : 1, {});
  if (failed)
    std::printf("torture: FAILED (%s); records kept in %s\n", [&] {
      std::string s;
      for (const auto& f : failures) s += (s.empty() ? "" : "; ") + f;
      return s;
    }().c_str(), args.dir.c_str());
  else if (own_dir)
    std::filesystem::remove_all(args.dir);
  if (interrupted && !failed) std::printf("torture: interrupted\n");
  std::printf("torture: %d passed, %d failed\n", passed, failed);
  return failed ? 1 : interrupted ? 130 : 0;
}

int usage() {
  std::fprintf(stderr,
               "usage: torture run [--duration SECONDS] [--workers N] [--ttl-ms MS] [--seed N]\n"
               "                   [--faketime-lib PATH] [--dir DIR]\n");
  return 64;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  const std::string mode = argv[1];
  std::map<std::string, std::string> opt;
  for (int i = 2; i < argc; ++i) {
    const std::string key = argv[i];
    if (key.rfind("--", 0) != 0 || i + 1 >= argc) return usage();
    opt[key.substr(2)] = argv[++i];
  }
  auto get = [&](const char* key, const std::string& fallback) { return opt.count(key) ? opt[key] : fallback; };
  try {
    if (mode == "worker") {
      WorkerArgs w;
      w.id = std::stoi(get("id", "0"));
      w.lock_url = get("lock-url", "");
      w.resource_port = std::stoi(get("resource-port", "0"));
      w.ttl = milliseconds(std::stoll(get("ttl-ms", "2000")));
      w.log_path = get("log", "");
      w.shared_path = get("shared", "");
      w.seed = unsigned(std::stoul(get("seed", "1")));
      if (w.id < 0 || w.id >= max_workers) return usage();
      return run_worker(w);
    }
    if (mode == "run") {
      RunArgs r;
      r.duration_s = std::stoi(get("duration", "180"));
      r.workers = std::stoi(get("workers", "5"));
      r.ttl = milliseconds(std::stoll(get("ttl-ms", "2000")));
      r.seed = unsigned(std::stoul(get("seed", "0")));
      r.faketime_lib = get("faketime-lib", "");
      r.dir = get("dir", "");
      r.self = std::filesystem::canonical("/proc/self/exe").string();
      if (r.duration_s < 5 || r.ttl < 500ms) return usage();
      return run(r);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "torture: %s\n", e.what());
    return 70;
  }
  return usage();
}
