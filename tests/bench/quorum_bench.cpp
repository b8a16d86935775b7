// Quorum latency: lock() + clear() on 3 and 5 independent masters, with every master local and
// with one of them behind a proxy that holds each byte for --delay-ms each way (a master far
// away), against the same cycle on one master. Shows what asking the masters in parallel buys:
// a slow master should cost nothing while a majority of fast ones answers.
//
// Every case also runs, on the same masters in the same round, two quorum clients on raw
// sockets and hiredis's reader that ask every master at once (RawQuorum): the minimal correct
// quorum lock (SET key token NX PX, done when a majority said OK, then compare-and-delete), the
// floor any client of these servers on this machine stands on; and the library's own scripts,
// which do the library's work inside Redis with none of its client code. The floor's own
// quorum-to-one-master ratio is what the machine allows; the library's ratio to its scripts is
// what its client code adds.
//
//   quorum_bench [--cycles N] [--rounds R] [--delay-ms D] [--tsv DIR]
//
// It starts its own redis-servers (free loopback ports, never 6379) and proxy. Each round runs
// every case in turn (N cycles each, after a warm-up), so that drift on a shared machine touches
// all cases alike, and within a case the three sides take turns going first; the median and p99
// are over every timed cycle of every round. With --tsv it
// writes DIR/quorum.tsv: case, masters, delayed, median_us, p99_us, cycles, min_median_us,
// min_p99_us, raw_median_us, raw_p99_us.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "../hostile.hpp"
#include "../support.hpp"
#include "bench_common.hpp"

namespace {

using Clock = std::chrono::steady_clock;

struct Case {
  std::string name;
  std::size_t masters;
  bool delayed;
  std::string url;
  std::vector<double> us;      // one per timed cycle
  std::vector<double> raw_us;  // the library's scripts on the raw quorum client, likewise
  std::vector<double> min_us;  // the minimal quorum lock's, likewise
};

/// A quorum lock on raw sockets and hiredis's reader, the masters asked in parallel: the lock
/// command to every master at once, done when a majority granted it (or can no longer); then
/// the clear command likewise. Replies that come after that are read and dropped before the
/// socket's next request. Its scripts are loaded on every master first, so each call is one
/// command, as the library's are.
class RawQuorum {
 public:
  using Check = bool (*)(const redisReply&);
  struct Command {
    std::vector<std::string> args;
    Check yes;
  };

  RawQuorum(const std::string& url_list, const std::vector<const process_lock::detail::Script*>& scripts,
            const Command& lock, const Command& clear)
      : lock_{bench::resp_command(lock.args), lock.yes}, clear_{bench::resp_command(clear.args), clear.yes} {
    std::size_t from = 0;
    for (;;) {
      const std::size_t comma = url_list.find(',', from);
      nodes_.push_back(std::make_unique<Node>(url_list.substr(from, comma - from)));
      if (comma == std::string::npos) break;
      from = comma + 1;
    }
    for (const auto& node : nodes_)
      for (const auto* script : scripts) node->raw.run({"SCRIPT", "LOAD", std::string(script->text)});
  }

  bool lock() { return ask(lock_); }
  bool clear() { return ask(clear_); }

 private:
  struct Node {
    explicit Node(const std::string& url)
        : raw(bench::tcp_endpoint(url), std::chrono::milliseconds(2000), std::chrono::milliseconds(2000)),
          reader(redisReaderCreate()) {
      if (!reader) throw std::bad_alloc();
    }
    ~Node() { redisReaderFree(reader); }
    Node(const Node&) = delete;
    Node& operator=(const Node&) = delete;
    bench::RawConnection raw;  // its socket; its own reader stays unused
    redisReader* reader;
    int owed = 0;  // replies to earlier requests, still to come and to be dropped
  };
  struct Request {
    std::string wire;
    Check yes;
  };

  bool ask(const Request& request) {
    const std::size_t n = nodes_.size(), majority = n / 2 + 1;
    for (const auto& node : nodes_)
      if (::send(node->raw.fd(), request.wire.data(), request.wire.size(), MSG_NOSIGNAL) !=
          static_cast<ssize_t>(request.wire.size()))
        throw std::runtime_error("raw quorum: send failed");
    std::vector<char> answered(n, 0);
    std::size_t granted = 0, refused = 0;
    std::vector<pollfd> fds(n);
    while (granted < majority && refused <= n - majority) {
      for (std::size_t i = 0; i < n; ++i) fds[i] = {nodes_[i]->raw.fd(), static_cast<short>(answered[i] ? 0 : POLLIN), 0};
      if (poll(fds.data(), n, 2000) <= 0) throw std::runtime_error("raw quorum: no reply within 2 s");
      for (std::size_t i = 0; i < n; ++i) {
        if (!(fds[i].revents & (POLLIN | POLLERR | POLLHUP))) continue;
        Node& node = *nodes_[i];
        char buf[4096];
        const ssize_t got = ::recv(node.raw.fd(), buf, sizeof buf, MSG_DONTWAIT);
        if (got <= 0) throw std::runtime_error("raw quorum: a master closed the connection");
        redisReaderFeed(node.reader, buf, static_cast<std::size_t>(got));
        void* reply = nullptr;
        while (!answered[i] && redisReaderGetReply(node.reader, &reply) == REDIS_OK && reply) {
          if (node.owed > 0) {
            --node.owed;
          } else {
            answered[i] = 1;
            ++(request.yes(*static_cast<redisReply*>(reply)) ? granted : refused);
          }
          freeReplyObject(reply);
          reply = nullptr;
        }
      }
    }
    for (std::size_t i = 0; i < n; ++i)
      if (!answered[i]) ++nodes_[i]->owed;
    return granted >= majority;
  }

  std::vector<std::unique_ptr<Node>> nodes_;
  Request lock_, clear_;
};

bool is_status(const redisReply& r) { return r.type == REDIS_REPLY_STATUS; }
bool is_one(const redisReply& r) { return r.type == REDIS_REPLY_INTEGER && r.integer == 1; }
bool is_granted(const redisReply& r) {
  return r.type == REDIS_REPLY_ARRAY && r.elements >= 1 && is_one(*r.element[0]);
}

/// The minimal correct quorum lock: SET NX PX, then compare-and-delete.
RawQuorum minimal_quorum(const std::string& url_list) {
  static const process_lock::detail::Script compare_and_delete(
      "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0");
  const std::string key = "quorum-bench-min", token = "0f1e2d3c-4b5a-4697-8877-665544332211";
  return RawQuorum(url_list, {&compare_and_delete}, {{"SET", key, token, "NX", "PX", "10000"}, is_status},
                   {{"EVALSHA", compare_and_delete.sha, "1", key, token}, is_one});
}

/// The library's own lock and clear scripts with its keys and arguments, as its quorum sends
/// them: the same work inside Redis, with none of the library's client code.
RawQuorum scripts_quorum(const std::string& url_list) {
  const process_lock::detail::LockKeys keys("quorum-bench-raw");
  const std::string token = "0f1e2d3c-4b5a-4697-8877-665544332211", pid = std::to_string(getpid());
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  const auto& lock = process_lock::detail::lock_script();
  const auto& clear = process_lock::detail::clear_script();
  return RawQuorum(url_list, {&lock, &clear},
                   {{"EVALSHA", lock.sha, "3", keys.lock, keys.fence, keys.owner, token, "10000", host, pid}, is_granted},
                   {{"EVALSHA", clear.sha, "3", keys.lock, keys.owner, keys.watch, token, "0", keys.channel}, is_one});
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t i = std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())));
  return v[i];
}

}  // namespace

int main(int argc, char** argv) {
  int cycles = 2000, rounds = 3, delay_ms = 5;
  std::string tsv_dir;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--cycles") cycles = std::max(1, std::atoi(argv[i + 1]));
    else if (flag == "--rounds") rounds = std::max(1, std::atoi(argv[i + 1]));
    else if (flag == "--delay-ms") delay_ms = std::max(0, std::atoi(argv[i + 1]));
    else if (flag == "--tsv") tsv_dir = argv[i + 1];
    else {
      std::fprintf(stderr, "quorum_bench: unknown argument %s\n", argv[i]);
      return 64;
    }
  }
  try {
    std::vector<std::unique_ptr<test::RedisServer>> servers;
    for (int i = 0; i < 5; ++i) servers.push_back(std::make_unique<test::RedisServer>());
    test::DelayProxy slow(servers[0]->port(), std::chrono::milliseconds(delay_ms));
    auto list = [&](std::size_t n, bool delayed) {
      std::string url;
      for (std::size_t i = 0; i < n; ++i) {
        if (i) url += ',';
        url += i == 0 && delayed ? slow.url() : servers[i]->url();
      }
      return url;
    };
    std::vector<Case> cases;
    cases.push_back({"one master", 1, false, servers[1]->url(), {}, {}, {}});
    for (std::size_t n : {3, 5})
      for (bool delayed : {false, true})
        cases.push_back({std::to_string(n) + " masters" + (delayed ? ", one delayed" : ""), n, delayed, list(n, delayed), {}, {}, {}});

    auto time_cycles = [&](std::vector<double>& us, auto&& cycle) {
      for (int i = 0; i < 100; ++i) cycle();  // connections open, scripts loaded
      for (int i = 0; i < cycles; ++i) {
        const auto t0 = Clock::now();
        cycle();
        us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      }
    };
    for (int round = 0; round < rounds; ++round) {
      for (Case& c : cases) {
        RawQuorum minimal = minimal_quorum(c.url), scripts = scripts_quorum(c.url);
        process_lock::Options options;
        options.url = c.url;
        process_lock::ProcessLock lock("quorum-bench", std::chrono::seconds(10), options);
        auto raw_cycle = [&](RawQuorum& side) {
          return [&] {
            if (!side.lock()) throw std::runtime_error(c.name + ": a raw quorum lock was refused");
            if (!side.clear()) throw std::runtime_error(c.name + ": a raw quorum clear did not release");
          };
        };
        const std::function<void()> sides[] = {
            [&] { time_cycles(c.min_us, raw_cycle(minimal)); },
            [&] { time_cycles(c.raw_us, raw_cycle(scripts)); },
            [&] {
              time_cycles(c.us, [&] {
                if (!lock.lock()) throw std::runtime_error(c.name + ": lock() was refused");
                if (lock.clear() != std::optional<bool>(true))
                  throw std::runtime_error(c.name + ": clear() did not release");
              });
            },
        };
        // Each side goes first in turn, so that no side always runs just after another.
        for (std::size_t k = 0; k < std::size(sides); ++k) sides[(k + static_cast<std::size_t>(round)) % std::size(sides)]();
      }
    }
    std::FILE* tsv = nullptr;
    if (!tsv_dir.empty()) {
      tsv = std::fopen((tsv_dir + "/quorum.tsv").c_str(), "w");
      if (!tsv) throw std::runtime_error("cannot write " + tsv_dir + "/quorum.tsv");
      std::fprintf(tsv, "case\tmasters\tdelayed\tmedian_us\tp99_us\tcycles\tmin_median_us\tmin_p99_us\traw_median_us\traw_p99_us\n");
    }
    std::printf("quorum: lock() + clear(), one master delayed by %d ms each way where said\n", delay_ms);
    for (const Case& c : cases) {
      const double median = percentile(c.us, 0.5), p99 = percentile(c.us, 0.99);
      const double min_median = percentile(c.min_us, 0.5), min_p99 = percentile(c.min_us, 0.99);
      const double raw_median = percentile(c.raw_us, 0.5), raw_p99 = percentile(c.raw_us, 0.99);
      std::printf("quorum/%-28s median %7.1f us  p99 %7.1f us  (%zu cycles); its scripts on raw sockets %7.1f / %7.1f us;"
                  " minimal lock %7.1f / %7.1f us\n",
                  c.name.c_str(), median, p99, c.us.size(), raw_median, raw_p99, min_median, min_p99);
      if (tsv)
        std::fprintf(tsv, "%s\t%zu\t%d\t%.1f\t%.1f\t%zu\t%.1f\t%.1f\t%.1f\t%.1f\n", c.name.c_str(), c.masters,
                     c.delayed ? delay_ms : 0, median, p99, c.us.size(), min_median, min_p99, raw_median, raw_p99);
    }
    if (tsv) std::fclose(tsv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "quorum_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
