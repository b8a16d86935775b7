// Hand-off latency: how long a lock sits free between one holder and the next.
//
//   release: a holder clears; time until a waiting process-lock (try_lock_for) has it.
//   expiry:  a holder dies (its key just expires, as a crashed holder's would); time from the
//            expiry until a waiter has it.
//
//   deploy:  with --cli PATH (the process-lock command), the hand-over of a deploy: an active
//            `process-lock run` gets SIGTERM, its command ends, it releases, and a standby
//            `process-lock run` that was waiting starts its command; the time from the SIGTERM
//            to the standby's command running (it writes to a FIFO the bench reads).
//
// For 1, 8 and 32 waiters it prints the median and p99 over many hand-offs. It uses the Redis at
// REDIS_URL (redis://HOST:PORT) if set, else starts a private redis-server on a loopback port.
//   handoff_bench [ROUNDS=300] [--tsv FILE] [--cli PATH [--deploy-rounds N=30] [--deploy-tsv FILE]]
// --tsv also writes the rows, tab-separated, to FILE (for tests/bench/run.sh's results table).
#include "../support.hpp"
#include "bench_common.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <thread>

namespace {

using process_lock::ProcessLock;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

struct Summary {
  double median, p99;
};
Summary summarise(std::vector<Clock::duration> samples) {
  if (samples.empty()) return {NAN, NAN};
  std::sort(samples.begin(), samples.end());
  auto at = [&](double q) { return ms(samples[std::min(samples.size() - 1, static_cast<size_t>(q * samples.size()))]); };
  return {at(0.5), at(0.99)};
}

// Participants take turns: each holds briefly, stamps the release and clears; the next one to
// get the lock measures from that stamp. A releaser stays out until another participant has the
// lock, so every sample is a real hand-off to a waiter that was already waiting; with one more
// participant than `waiters`, that many are always waiting.
std::vector<Clock::duration> release_handoffs(const process_lock::Options& options, int waiters, int rounds) {
  std::atomic<Clock::rep> released_at{0};
  std::atomic<long> acquisitions{0};
  std::atomic<int> done{0};
  std::mutex samples_mutex;
  std::vector<Clock::duration> samples;
  std::vector<std::thread> threads;
  for (int i = 0; i <= waiters; ++i) {
    threads.emplace_back([&] {
      ProcessLock lock("bench-release", 10, options);
      while (done.load() < rounds) {
        if (!lock.try_lock_for(1s)) continue;
        const auto got = Clock::now();
        const auto stamp = released_at.load();
        if (stamp != 0 && done.load() < rounds) {
          const std::lock_guard<std::mutex> guard(samples_mutex);
          samples.push_back(got - Clock::time_point(Clock::duration(stamp)));
        }
        ++done;
        const long mine = ++acquisitions;
        std::this_thread::sleep_for(1ms);  // let every other participant be waiting
        released_at = Clock::now().time_since_epoch().count();
        (void)lock.clear();
        while (acquisitions.load() == mine && done.load() < rounds) std::this_thread::sleep_for(50us);
      }
    });
  }
  for (auto& t : threads) t.join();
  return samples;
}

// A dead holder's key expires with no notice; waiters find out at its TTL.
std::vector<Clock::duration> expiry_handoffs(const process_lock::Options& options, bench::RawConnection& raw, int waiters,
                                             int rounds) {
  std::vector<Clock::duration> samples;
  constexpr auto ttl = 50ms;
  for (int r = 0; r < rounds; ++r) {
    const auto expires_at = Clock::now() + ttl;
    raw.run({"SET", "bench-expiry", "0f1e2d3c-4b5a-4697-8877-665544332211", "PX", std::to_string(ttl.count())});
    std::vector<std::unique_ptr<ProcessLock>> locks;
    for (int i = 0; i < waiters; ++i) locks.push_back(std::make_unique<ProcessLock>("bench-expiry", 10, options));
    std::atomic<Clock::rep> first{0};
    std::vector<std::thread> threads;
    for (auto& lock : locks) {
      threads.emplace_back([&, l = lock.get()] {
        if (!l->try_lock_for(2s)) return;
        Clock::rep expected = 0;
        first.compare_exchange_strong(expected, Clock::now().time_since_epoch().count());
        for (auto& other : locks) other->cancel();  // the round is over for the rest
      });
    }
    for (auto& t : threads) t.join();
    if (first != 0) samples.push_back(Clock::time_point(Clock::duration(first.load())) - expires_at);
    raw.run({"DEL", "bench-expiry"});
  }
  return samples;
}

// A `process-lock run deploy -- sh -c 'echo NAME > FIFO; exec sleep 600'` in the background.
// Its arguments and environment are made before fork(): this process has threads, so the child
// may only make async-signal-safe calls (no putenv(), no allocation) before execve().
pid_t start_instance(const std::string& cli, const std::string& url, const std::string& fifo, const char* name) {
  std::vector<std::string> args{cli, "run", "bench-deploy", "--ttl", "30s", "--kill-after", "2s", "--", "sh", "-c",
                                std::string("echo ") + name + " > " + fifo + "; exec sleep 600"};
  std::vector<std::string> environment{"REDIS_URL=" + url};
  for (char** e = environ; *e != nullptr; ++e)
    if (std::string_view(*e).rfind("REDIS_URL=", 0) != 0) environment.emplace_back(*e);
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : environment) envp.push_back(e.data());
  envp.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    execve(cli.c_str(), argv.data(), envp.data());
    _exit(127);
  }
  return pid;
}

// Stops an instance (it forwards SIGTERM to its command and releases) and reaps it.
void stop_instance(pid_t pid) {
  if (pid <= 0) return;
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
}

// One line from the FIFO, written by an instance's command; empty if none came within `limit`
// (an instance that failed to start). Opened without blocking, so that no writer cannot hang it.
std::string read_line(const std::string& fifo, Clock::duration limit) {
  const int fd = open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
  if (fd < 0) return {};
  const auto deadline = Clock::now() + limit;
  std::string line;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(std::min<long long>(left, 1000))) <= 0) continue;
    char c;
    const ssize_t n = read(fd, &c, 1);
    if (n == 1) {
      if (c == '\n') break;
      line += c;
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
      break;  // the writer is gone (or the read failed)
    }
  }
  close(fd);
  return line;
}

// The deploy hand-over, `rounds` times: SIGTERM to the active instance until the standby's
// command runs. The standby is waiting (subscribed to release notices) before the SIGTERM.
std::vector<Clock::duration> deploy_handovers(const std::string& cli, const std::string& url, bench::RawConnection& raw,
                                              int rounds) {
  std::vector<Clock::duration> samples;
  char dir[] = "/tmp/process-lock-deploy-XXXXXX";
  if (!mkdtemp(dir)) return samples;
  const std::string fifo = std::string(dir) + "/started";
  if (mkfifo(fifo.c_str(), 0600) != 0) return samples;
  const std::string channel = "process_lock:released:bench-deploy";
  for (int r = 0; r < rounds; ++r) {
    const pid_t active = start_instance(cli, url, fifo, "active");
    if (read_line(fifo, 10s) != "active") {
      stop_instance(active);
      break;
    }
    const pid_t standby = start_instance(cli, url, fifo, "standby");
    // Waiting: subscribed to the release notices (and so its attempt has marked the hold).
    const auto give_up = Clock::now() + 5s;
    while (Clock::now() < give_up) {
      const char* argv[] = {"PUBSUB", "NUMSUB", channel.c_str()};
      const size_t lens[] = {6, 6, channel.size()};
      redisReply* reply = raw.command(3, argv, lens);
      const bool waiting = reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 && reply->element[1]->integer >= 1;
      freeReplyObject(reply);
      if (waiting) break;
      std::this_thread::sleep_for(1ms);
    }
    std::this_thread::sleep_for(20ms);  // its marking attempt follows the subscription
    const auto signalled = Clock::now();
    kill(active, SIGTERM);
    const std::string second = read_line(fifo, 10s);
    const auto started = Clock::now();
    if (second == "standby") samples.push_back(started - signalled);
    waitpid(active, nullptr, 0);
    stop_instance(standby);
    if (second != "standby") break;
  }
  unlink(fifo.c_str());
  rmdir(dir);
  return samples;
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 300;
  int deploy_rounds = 30;
  std::string tsv_path, cli, deploy_tsv_path;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--tsv" && i + 1 < argc)
      tsv_path = argv[++i];
    else if (std::string(argv[i]) == "--cli" && i + 1 < argc)
      cli = argv[++i];
    else if (std::string(argv[i]) == "--deploy-rounds" && i + 1 < argc)
      deploy_rounds = std::max(1, std::atoi(argv[++i]));
    else if (std::string(argv[i]) == "--deploy-tsv" && i + 1 < argc)
      deploy_tsv_path = argv[++i];
    else
      rounds = std::max(1, std::atoi(argv[i]));
  }
  std::unique_ptr<test::RedisServer> server;
  process_lock::Options options;
  if (const char* url = std::getenv("REDIS_URL"); url && *url) {
    options.url = url;
  } else {
    server = std::make_unique<test::RedisServer>();
    options.url = server->url();
  }
  std::unique_ptr<bench::RawConnection> raw;
  try {
    raw = std::make_unique<bench::RawConnection>(bench::tcp_endpoint(options.url), 2000ms, 2000ms);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "expiry rounds skipped: %s\n", e.what());
  }
  std::FILE* tsv = tsv_path.empty() ? nullptr : std::fopen(tsv_path.c_str(), "w");
  if (!tsv_path.empty() && !tsv) {
    std::perror(tsv_path.c_str());
    return 1;
  }
  if (tsv) std::fprintf(tsv, "waiters\trelease_median_ms\trelease_p99_ms\texpiry_median_ms\texpiry_p99_ms\trelease_samples\texpiry_samples\n");
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  std::printf("hand-off latency, %d rounds per row, on %s (%u cores), hiredis %d.%d\n\n", rounds, host,
              std::thread::hardware_concurrency(), HIREDIS_MAJOR, HIREDIS_MINOR);
  std::printf("| waiters | release: median | release: p99 | expiry: median | expiry: p99 |\n");
  std::printf("|---:|---:|---:|---:|---:|\n");
  for (int waiters : {1, 8, 32}) {
    const auto release_samples = release_handoffs(options, waiters, rounds);
    const Summary release = summarise(release_samples);
    std::printf("| %d | %.2f ms | %.2f ms |", waiters, release.median, release.p99);
    Summary expiry{NAN, NAN};
    std::size_t expiry_count = 0;
    if (raw) {
      const auto expiry_samples = expiry_handoffs(options, *raw, waiters, std::max(rounds / 6, 10));
      expiry = summarise(expiry_samples);
      expiry_count = expiry_samples.size();
      std::printf(" %.2f ms | %.2f ms |\n", expiry.median, expiry.p99);
    } else {
      std::printf(" - | - |\n");
    }
    if (tsv)
      std::fprintf(tsv, "%d\t%.3f\t%.3f\t%.3f\t%.3f\t%zu\t%zu\n", waiters, release.median, release.p99, expiry.median,
                   expiry.p99, release_samples.size(), expiry_count);
    std::fflush(stdout);
  }
  if (tsv) std::fclose(tsv);
  if (!cli.empty() && raw) {
    const auto samples = deploy_handovers(cli, options.url, *raw, deploy_rounds);
    const Summary deploy = summarise(samples);
    std::printf("\ndeploy hand-over (SIGTERM to the active `process-lock run` until the standby's command runs): "
                "median %.2f ms, p99 %.2f ms, %zu hand-overs\n",
                deploy.median, deploy.p99, samples.size());
    if (!deploy_tsv_path.empty()) {
      std::FILE* f = std::fopen(deploy_tsv_path.c_str(), "w");
      if (!f) {
        std::perror(deploy_tsv_path.c_str());
        return 1;
      }
      std::fprintf(f, "median_ms\tp99_ms\tsamples\n%.3f\t%.3f\t%zu\n", deploy.median, deploy.p99, samples.size());
      std::fclose(f);
    }
  }
  return 0;
}
