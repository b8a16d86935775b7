// Quorum latency: lock() + clear() on 3 and 5 independent masters, with every master local and
// with one of them behind a proxy that holds each byte for --delay-ms each way (a master far
// away), against the same cycle on one master. Shows what asking the masters in parallel buys:
// a slow master should cost nothing while a majority of fast ones answers.
//
//   quorum_bench [--cycles N] [--rounds R] [--delay-ms D] [--tsv DIR]
//
// It starts its own redis-servers (free loopback ports, never 6379) and proxy. Each round runs
// every case in turn (N cycles each, after a warm-up), so that drift on a shared machine touches
// all cases alike; the median and p99 are over every timed cycle of every round. With --tsv it
// writes DIR/quorum.tsv: case, masters, delayed, median_us, p99_us, cycles.
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

namespace {

using Clock = std::chrono::steady_clock;

struct Case {
  std::string name;
  std::size_t masters;
  bool delayed;
  std::string url;
  std::vector<double> us;  // one per timed cycle
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
    cases.push_back({"one master", 1, false, servers[1]->url(), {}});
    for (std::size_t n : {3, 5})
      for (bool delayed : {false, true})
        cases.push_back({std::to_string(n) + " masters" + (delayed ? ", one delayed" : ""), n, delayed, list(n, delayed), {}});

    for (int round = 0; round < rounds; ++round) {
      for (Case& c : cases) {
        process_lock::Options options;
        options.url = c.url;
        process_lock::ProcessLock lock("quorum-bench", std::chrono::seconds(10), options);
        auto cycle = [&] {
          if (!lock.lock()) throw std::runtime_error(c.name + ": lock() was refused");
          if (lock.clear() != std::optional<bool>(true)) throw std::runtime_error(c.name + ": clear() did not release");
        };
        for (int i = 0; i < 100; ++i) cycle();  // connections open, scripts loaded
        for (int i = 0; i < cycles; ++i) {
          const auto t0 = Clock::now();
          cycle();
          c.us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
        }
      }
    }
    std::FILE* tsv = nullptr;
    if (!tsv_dir.empty()) {
      tsv = std::fopen((tsv_dir + "/quorum.tsv").c_str(), "w");
      if (!tsv) throw std::runtime_error("cannot write " + tsv_dir + "/quorum.tsv");
      std::fprintf(tsv, "case\tmasters\tdelayed\tmedian_us\tp99_us\tcycles\n");
    }
    std::printf("quorum: lock() + clear(), one master delayed by %d ms each way where said\n", delay_ms);
    for (const Case& c : cases) {
      const double median = percentile(c.us, 0.5), p99 = percentile(c.us, 0.99);
      std::printf("quorum/%-28s median %9.1f us  p99 %9.1f us  (%zu cycles)\n", c.name.c_str(), median, p99,
                  c.us.size());
      if (tsv)
        std::fprintf(tsv, "%s\t%zu\t%d\t%.1f\t%.1f\t%zu\n", c.name.c_str(), c.masters, c.delayed ? delay_ms : 0, median,
                     p99, c.us.size());
    }
    if (tsv) std::fclose(tsv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "quorum_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
