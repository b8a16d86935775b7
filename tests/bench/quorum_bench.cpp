// Quorum latency: lock() + clear() on 3 and 5 independent masters, with every master local and
// with one of them behind a proxy that holds each byte for --delay-ms each way (a master far
// away), against the same cycle on one master. Shows what asking the masters in parallel buys:
// a slow master should cost nothing while a majority of fast ones answers.
//
// Every case also runs the minimal correct quorum lock on the same masters, in the same round:
// raw sockets and hiredis's reader, SET key token NX PX to every master at once, done when a
// majority said OK, then a compare-and-delete to every master at once, done when a majority
// answered (late replies are read and dropped before that socket's next request). It is the
// floor any client of these servers on this machine stands on, so the library's overhead is its
// ratio to it, and the floor's own quorum-to-one-master ratio is what the machine allows.
//
//   quorum_bench [--cycles N] [--rounds R] [--delay-ms D] [--tsv DIR]
//
// It starts its own redis-servers (free loopback ports, never 6379) and proxy. Each round runs
// every case in turn (N cycles each, after a warm-up), so that drift on a shared machine touches
// all cases alike; the median and p99 are over every timed cycle of every round. With --tsv it
// writes DIR/quorum.tsv: case, masters, delayed, median_us, p99_us, cycles, min_median_us,
// min_p99_us.
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
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
  std::vector<double> min_us;  // the minimal quorum lock's, likewise
};

/// The minimal correct quorum lock (see the top of this file) on one set of masters.
class MinimalQuorum {
 public:
  explicit MinimalQuorum(const std::string& url_list) {
    std::size_t from = 0;
    for (;;) {
      const std::size_t comma = url_list.find(',', from);
      nodes_.push_back(std::make_unique<Node>(url_list.substr(from, comma - from)));
      if (comma == std::string::npos) break;
      from = comma + 1;
    }
    const std::string sha = nodes_.front()->raw.run({"SCRIPT", "LOAD", compare_and_delete});
    for (const auto& node : nodes_) node->raw.run({"SCRIPT", "LOAD", compare_and_delete});
    set_ = encode({"SET", key, token, "NX", "PX", "10000"});
    del_ = encode({"EVALSHA", sha, "1", key, token});
  }

  /// lock(): true once a majority said OK.
  bool lock() { return ask(set_, [](const redisReply& r) { return r.type == REDIS_REPLY_STATUS; }); }
  /// clear(): true once a majority deleted it.
  bool clear() { return ask(del_, [](const redisReply& r) { return r.type == REDIS_REPLY_INTEGER && r.integer == 1; }); }

 private:
  static constexpr const char* key = "quorum-bench-minimal";
  static constexpr const char* token = "0123456789abcdef0123456789abcdef";
  static constexpr const char* compare_and_delete =
      "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

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

  static std::string encode(const std::vector<std::string>& args) {
    std::string out = "*" + std::to_string(args.size()) + "\r\n";
    for (const auto& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
    return out;
  }

  /// Sends `request` to every master, then reads until a majority's replies agree (or can no
  /// longer); what is still to come is owed.
  template <class Yes>
  bool ask(const std::string& request, Yes yes) {
    const std::size_t n = nodes_.size(), majority = n / 2 + 1;
    for (const auto& node : nodes_)
      if (::send(node->raw.fd(), request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size()))
        throw std::runtime_error("minimal quorum: send failed");
    std::vector<char> answered(n, 0);
    std::size_t granted = 0, refused = 0;
    std::vector<pollfd> fds(n);
    while (granted < majority && refused <= n - majority) {
      for (std::size_t i = 0; i < n; ++i) fds[i] = {nodes_[i]->raw.fd(), static_cast<short>(answered[i] ? 0 : POLLIN), 0};
      if (poll(fds.data(), n, 2000) <= 0) throw std::runtime_error("minimal quorum: no reply within 2 s");
      for (std::size_t i = 0; i < n; ++i) {
        if (!(fds[i].revents & (POLLIN | POLLERR | POLLHUP))) continue;
        Node& node = *nodes_[i];
        char buf[4096];
        const ssize_t got = ::recv(node.raw.fd(), buf, sizeof buf, MSG_DONTWAIT);
        if (got <= 0) throw std::runtime_error("minimal quorum: a master closed the connection");
        redisReaderFeed(node.reader, buf, static_cast<std::size_t>(got));
        void* reply = nullptr;
        while (!answered[i] && redisReaderGetReply(node.reader, &reply) == REDIS_OK && reply) {
          if (node.owed > 0) {
            --node.owed;
          } else {
            answered[i] = 1;
            ++(yes(*static_cast<redisReply*>(reply)) ? granted : refused);
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
  std::string set_, del_;
};

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
    cases.push_back({"one master", 1, false, servers[1]->url(), {}, {}});
    for (std::size_t n : {3, 5})
      for (bool delayed : {false, true})
        cases.push_back({std::to_string(n) + " masters" + (delayed ? ", one delayed" : ""), n, delayed, list(n, delayed), {}, {}});

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
        MinimalQuorum minimal(c.url);
        time_cycles(c.min_us, [&] {
          if (!minimal.lock()) throw std::runtime_error(c.name + ": the minimal lock was refused");
          if (!minimal.clear()) throw std::runtime_error(c.name + ": the minimal clear did not release");
        });
        process_lock::Options options;
        options.url = c.url;
        process_lock::ProcessLock lock("quorum-bench", std::chrono::seconds(10), options);
        time_cycles(c.us, [&] {
          if (!lock.lock()) throw std::runtime_error(c.name + ": lock() was refused");
          if (lock.clear() != std::optional<bool>(true)) throw std::runtime_error(c.name + ": clear() did not release");
        });
      }
    }
    std::FILE* tsv = nullptr;
    if (!tsv_dir.empty()) {
      tsv = std::fopen((tsv_dir + "/quorum.tsv").c_str(), "w");
      if (!tsv) throw std::runtime_error("cannot write " + tsv_dir + "/quorum.tsv");
      std::fprintf(tsv, "case\tmasters\tdelayed\tmedian_us\tp99_us\tcycles\tmin_median_us\tmin_p99_us\n");
    }
    std::printf("quorum: lock() + clear(), one master delayed by %d ms each way where said\n", delay_ms);
    for (const Case& c : cases) {
      const double median = percentile(c.us, 0.5), p99 = percentile(c.us, 0.99);
      const double min_median = percentile(c.min_us, 0.5), min_p99 = percentile(c.min_us, 0.99);
      std::printf("quorum/%-28s median %9.1f us  p99 %9.1f us  (%zu cycles); minimal lock median %9.1f us  p99 %9.1f us\n",
                  c.name.c_str(), median, p99, c.us.size(), min_median, min_p99);
      if (tsv)
        std::fprintf(tsv, "%s\t%zu\t%d\t%.1f\t%.1f\t%zu\t%.1f\t%.1f\n", c.name.c_str(), c.masters,
                     c.delayed ? delay_ms : 0, median, p99, c.us.size(), min_median, min_p99);
    }
    if (tsv) std::fclose(tsv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "quorum_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
