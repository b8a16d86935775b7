// process-lock benchmarks (Google Benchmark), against the Redis at REDIS_URL (redis://HOST:PORT).
// tests/bench/run.sh starts a private redis-server, runs this and handoff_bench, and writes the
// results table and chart; see README "Benchmarks".
//
// floor/...: the library against the floor: the same Redis commands sent through raw hiredis,
//   on a connection with the same settings (TCP, same connect and command timeouts), in the
//   same run:
//     lock_clear  lock() + clear() on a free lock   raw: EVALSHA lock script + EVALSHA clear script
//     try_clear   try_lock_for() + clear(), free    raw: the same two scripts (a free lock takes one try)
//     update      update() of a held lock           raw: EVALSHA update script
//     state       state() of a held lock            raw: GET
//   The script's keys and arguments are the library's (same key lengths, a 36-byte token, host
//   name, pid, channel). lock_clear and try_clear also run a third side, "min": the minimal
//   correct lock on raw hiredis, SET key token NX PX ttl, then EVALSHA of an owner-checked
//   compare-and-delete (GET, compare, DEL): the honest floor, what a lock with no fencing, no
//   holder record and no release notices costs. Each round runs every operation raw and library back to back,
//   alternating which goes first, so that drift on a shared machine hits both alike. Every
//   iteration is timed on its own for the latency percentiles; the rate of a run is its
//   iterations over its wall time. ratio = median over rounds of (library rate / raw rate) of
//   the same round. A second, noise-robust estimate is also given: p50 ratio = median over
//   rounds of (raw median latency / library median latency) of the same round, which a burst of
//   interference from other processes moves less than it moves a rate.
//
// contention/processes:P: P forked processes each loop on one lock name for a fixed time:
//   try_lock_for(up to 5 s), a critical section of --work-us busy work, clear(). Reports
//   critical sections per second and how evenly they went to the processes. A shared-memory
//   flag checks that no two processes were ever inside at once.
//
// Options (before Google Benchmark's own --benchmark_* flags):
//   --rounds N               floor rounds (default 20)
//   --min-time SECONDS       minimum time of each floor run (default 0.25)
//   --contention-seconds S   length of each contention run (default 10)
//   --work-us US             busy work inside each critical section (default 50)
//   --tsv DIR                also write DIR/floor.tsv and DIR/contention.tsv
//   --explain                add a third floor variant, "rawsys": raw hiredis plus the system
//                            call the library makes of its own (a poll() before clear(), to
//                            notice an idle connection the server closed). If rawsys runs as
//                            fast as the library, that call is where its overhead comes from.
#include "bench_common.hpp"

#include <benchmark/benchmark.h>

#include <poll.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <thread>

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr auto io_timeout = 2000ms;  // the library's default connect and command timeouts, set explicitly on both

struct Config {
  int rounds = 20;
  double min_time = 0.25;
  double contention_seconds = 10;
  int work_us = 50;
  std::string tsv_dir;
  bool explain = false;
} config;

std::string redis_url;
bool any_failed = false;  // a benchmark stopped with an error: the exit status says so

void fail(benchmark::State& state, const char* why) {
  any_failed = true;
  state.SkipWithError(why);
}

process_lock::Options lib_options() {
  process_lock::Options o;
  o.url = redis_url;
  o.connect_timeout = io_timeout;
  o.command_timeout = io_timeout;
  return o;
}

double micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }
double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// ---------------------------------------------------------------------------------------------
// Floor: library against raw hiredis
// ---------------------------------------------------------------------------------------------

const char* const ops[] = {"lock_clear", "try_clear", "update", "state"};

/// Whether an operation also runs against the minimal lock ("min"), and (lock_clear only) the
/// scripts of 0.1.0 ("v1", wire version 1: what each cycle cost before wire version 2).
bool has_min(const std::string& op) { return op == "lock_clear" || op == "try_clear"; }
bool has_v1(const std::string& op) { return op == "lock_clear"; }

/// 0.1.0's lock and clear scripts, byte for byte (git show 57e5363:include/process_lock.hpp).
constexpr const char* v1_lock_text = R"lua(
if redis.replicate_commands then redis.replicate_commands() end
local holder = redis.call('GET', KEYS[1])
if holder == false then
  local now = redis.call('TIME')
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  local fence = redis.call('INCR', KEYS[2])
  redis.call('HSET', KEYS[3], 'token', ARGV[1], 'fence', fence, 'host', ARGV[3], 'pid', ARGV[4],
             'since_ms', now[1] .. string.format('%03d', math.floor(now[2] / 1000)))
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
  return {1, fence}
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
  return {1, tonumber(redis.call('HGET', KEYS[3], 'fence')) or 0}
end
return {0, redis.call('PTTL', KEYS[1])}
)lua";
constexpr const char* v1_clear_text = R"lua(
local holder = redis.call('GET', KEYS[1])
if holder == false then
  return -1
end
if holder == ARGV[1] or ARGV[2] == '1' then
  redis.call('DEL', KEYS[1], KEYS[3])
  redis.pcall('PUBLISH', ARGV[3], 'released')
  return 1
end
return 0
)lua";

/// The minimal lock's release: delete the key only if it still holds our token.
constexpr const char* compare_and_delete_text =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// The final run of one (op, variant, round): Google Benchmark calls a benchmark several times
/// to find its iteration count, and the last call is the run it reports.
struct Run {
  std::vector<double> latencies_us;
  double seconds = 0;
  double rate() const { return seconds > 0 ? static_cast<double>(latencies_us.size()) / seconds : 0; }
};
std::map<std::string, Run> runs;  // key: op/variant/round

std::string run_key(const std::string& op, const std::string& variant, int round) {
  return op + "/" + variant + "/" + std::to_string(round);
}

/// Times every iteration of `op` (which returns false on a wrong answer) and records the run.
template <class Op>
void timed_loop(benchmark::State& state, const std::string& key, Op&& op) {
  std::vector<double> samples;
  samples.reserve(1 << 16);
  const auto start = Clock::now();
  for (auto _ : state) {
    const auto a = Clock::now();
    const bool ok = op();
    const auto b = Clock::now();
    if (!ok) {
      fail(state, "wrong answer from Redis");
      break;
    }
    samples.push_back(micros(b - a));
  }
  const auto elapsed = Clock::now() - start;
  state.SetItemsProcessed(static_cast<int64_t>(samples.size()));
  std::vector<double> sorted = samples;
  std::sort(sorted.begin(), sorted.end());
  state.counters["p50_us"] = bench::percentile(sorted, 0.50);
  state.counters["p99_us"] = bench::percentile(sorted, 0.99);
  runs[key] = Run{std::move(samples), seconds(elapsed)};
}

/// The raw side: the library's keys and arguments, sent with redisCommandArgv.
class RawSide {
 public:
  RawSide(const std::string& name, bool with_library_syscalls)
      : syscalls_(with_library_syscalls),
        keys_(name),
        token_("0f1e2d3c-4b5a-4697-8877-665544332211"),  // 36 bytes, as the library's UUIDs
        timeout_("10000"),
        pid_(std::to_string(getpid())),
        conn_(bench::tcp_endpoint(redis_url), io_timeout, io_timeout) {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    host_ = host;
    const auto& lock = process_lock::detail::lock_script();
    const auto& update = process_lock::detail::update_script();
    const auto& clear = process_lock::detail::clear_script();
    // Loaded once, as the library's first call does; afterwards every call is one EVALSHA.
    for (const auto* s : {&lock, &update, &clear}) conn_.run({"SCRIPT", "LOAD", std::string(s->text)});
    lock_argv_ = {"EVALSHA", lock.sha, "3", keys_.lock, keys_.fence, keys_.owner, token_, timeout_, host_, pid_};
    update_argv_ = {"EVALSHA", update.sha, "3", keys_.lock, keys_.fence, keys_.owner, token_, timeout_};
    clear_argv_ = {"EVALSHA", clear.sha, "3", keys_.lock, keys_.owner, keys_.watch, token_, "0", keys_.channel};
    get_argv_ = {"GET", keys_.lock};
    const std::string cad_sha = conn_.run({"SCRIPT", "LOAD", compare_and_delete_text});
    min_set_argv_ = {"SET", keys_.lock, token_, "NX", "PX", timeout_};
    min_del_argv_ = {"EVALSHA", cad_sha, "1", keys_.lock, token_};
    const std::string v1_lock_sha = conn_.run({"SCRIPT", "LOAD", v1_lock_text});
    const std::string v1_clear_sha = conn_.run({"SCRIPT", "LOAD", v1_clear_text});
    v1_lock_argv_ = {"EVALSHA", v1_lock_sha, "3", keys_.lock, keys_.fence, keys_.holder, token_, timeout_, host_, pid_};
    v1_clear_argv_ = {"EVALSHA", v1_clear_sha, "3", keys_.lock, keys_.fence, keys_.holder, token_, "0", keys_.channel};
  }

  bool lock() { return expect(lock_argv_, REDIS_REPLY_ARRAY, [](const redisReply& r) {
      return r.elements == 2 && r.element[0]->type == REDIS_REPLY_INTEGER && r.element[0]->integer == 1;
    }); }
  bool clear() {
    return expect(clear_argv_, REDIS_REPLY_INTEGER, [](const redisReply& r) { return r.integer == 1; }, syscalls_);
  }
  bool update() { return expect(update_argv_, REDIS_REPLY_INTEGER, [](const redisReply& r) { return r.integer == 1; }); }
  bool state() { return expect(get_argv_, REDIS_REPLY_STRING, [](const redisReply&) { return true; }); }
  // The minimal lock: SET NX PX, then compare-and-delete.
  bool min_lock() {
    return expect(min_set_argv_, REDIS_REPLY_STATUS, [](const redisReply& r) { return std::strcmp(r.str, "OK") == 0; });
  }
  bool min_clear() { return expect(min_del_argv_, REDIS_REPLY_INTEGER, [](const redisReply& r) { return r.integer == 1; }); }
  // 0.1.0's scripts, as its library sent them.
  bool v1_lock() {
    return expect(v1_lock_argv_, REDIS_REPLY_ARRAY, [](const redisReply& r) {
      return r.elements == 2 && r.element[0]->type == REDIS_REPLY_INTEGER && r.element[0]->integer == 1;
    });
  }
  bool v1_clear() { return expect(v1_clear_argv_, REDIS_REPLY_INTEGER, [](const redisReply& r) { return r.integer == 1; }); }

 private:
  struct Argv {
    std::vector<std::string> strings;
    std::vector<const char*> ptrs;
    std::vector<size_t> lens;
    Argv() = default;
    Argv(std::initializer_list<std::string> s) : strings(s) {
      for (const auto& a : strings) {
        ptrs.push_back(a.c_str());
        lens.push_back(a.size());
      }
    }
  };
  template <class Check>
  bool expect(const Argv& argv, int type, Check check, bool check_alive = false) {
    if (check_alive) {  // what the library does before a call it may not retry
      pollfd p{conn_.fd(), POLLIN, 0};
      if (poll(&p, 1, 0) != 0) return false;
    }
    redisReply* r = conn_.command(static_cast<int>(argv.ptrs.size()), argv.ptrs.data(), argv.lens.data());
    const bool ok = r->type == type && check(*r);
    freeReplyObject(r);
    return ok;
  }

  bool syscalls_;
  process_lock::detail::LockKeys keys_;
  std::string token_, timeout_, pid_, host_;
  bench::RawConnection conn_;
  Argv lock_argv_, update_argv_, clear_argv_, get_argv_, min_set_argv_, min_del_argv_, v1_lock_argv_, v1_clear_argv_;
};

// Both sides live for the whole run, connected before the first measurement. Names of equal
// length, so the server does the same work for each.
RawSide& raw_side() {
  static RawSide side("bench-floor-raw", false);
  return side;
}
RawSide& rawsys_side() {
  static RawSide side("bench-floor-sys", true);
  return side;
}
RawSide& min_side() {
  static RawSide side("bench-floor-min", false);
  return side;
}
RawSide& v1_side() {
  static RawSide side("bench-floor-v01", false);
  return side;
}
process_lock::ProcessLock& lib_side() {
  static process_lock::ProcessLock lock("bench-floor-lib", 10, lib_options());
  return lock;
}

void floor_bench(benchmark::State& state, const std::string& op, const std::string& variant, int round) {
  const std::string key = run_key(op, variant, round);
  if (variant == "min") {
    RawSide& min = min_side();
    timed_loop(state, key, [&] { return min.min_lock() && min.min_clear(); });
  } else if (variant == "v1") {
    RawSide& v1 = v1_side();
    timed_loop(state, key, [&] { return v1.v1_lock() && v1.v1_clear(); });
  } else if (variant != "lib") {
    RawSide& raw = variant == "raw" ? raw_side() : rawsys_side();
    if (op == "lock_clear" || op == "try_clear") timed_loop(state, key, [&] { return raw.lock() && raw.clear(); });
    if (op == "update") {
      if (!raw.lock()) fail(state, "cannot take the raw lock");
      timed_loop(state, key, [&] { return raw.update(); });
      raw.clear();
    }
    if (op == "state") {
      if (!raw.lock()) fail(state, "cannot take the raw lock");
      timed_loop(state, key, [&] { return raw.state(); });
      raw.clear();
    }
  } else {
    process_lock::ProcessLock& lock = lib_side();
    if (op == "lock_clear") timed_loop(state, key, [&] { return lock.lock() && lock.clear() == true; });
    if (op == "try_clear") timed_loop(state, key, [&] { return lock.try_lock_for(5s) && lock.clear() == true; });
    if (op == "update") {
      if (!lock.lock()) fail(state, "cannot take the lock");
      timed_loop(state, key, [&] { return lock.update(); });
      (void)lock.clear();
    }
    if (op == "state") {
      if (!lock.lock()) fail(state, "cannot take the lock");
      timed_loop(state, key, [&] { return lock.state() == process_lock::State::locked; });
      (void)lock.clear();
    }
  }
}

void warm_up() {
  RawSide& raw = raw_side();
  process_lock::ProcessLock& lock = lib_side();
  if (config.explain) {
    RawSide& sys = rawsys_side();
    for (int i = 0; i < 200; ++i)
      if (!(sys.lock() && sys.update() && sys.state() && sys.clear())) throw std::runtime_error("warm-up failed");
  }
  RawSide& min = min_side();
  for (int i = 0; i < 200; ++i) {
    if (!(raw.lock() && raw.update() && raw.state() && raw.clear())) throw std::runtime_error("raw warm-up failed");
    if (!(min.min_lock() && min.min_clear())) throw std::runtime_error("minimal lock warm-up failed");
    if (!(v1_side().v1_lock() && v1_side().v1_clear())) throw std::runtime_error("0.1.0 scripts warm-up failed");
    if (!(lock.lock() && lock.update() && lock.state() == process_lock::State::locked && lock.clear()))
      throw std::runtime_error("library warm-up failed");
  }
}

// ---------------------------------------------------------------------------------------------
// Contention: P processes, one lock
// ---------------------------------------------------------------------------------------------

constexpr int max_processes = 64;

struct Shared {
  std::atomic<int> ready;
  std::atomic<int> go;
  std::atomic<Clock::rep> start;
  std::atomic<int> inside;
  std::atomic<long> violations;
  long sections[max_processes];       // critical sections completed by each process
  long timeouts[max_processes];       // try_lock_for calls that ran out before the run ended
  long errors[max_processes];         // process_lock::Error thrown
  Clock::rep last_end[max_processes]; // when each process finished its last critical section
};

void busy_work(std::chrono::microseconds d) {
  const auto until = Clock::now() + d;
  while (Clock::now() < until) {
  }
}

[[noreturn]] void contender(Shared& shared, int index, Clock::duration duration) {
  int status = 0;
  try {
    process_lock::ProcessLock lock("bench-contention", 10, lib_options());
    (void)lock.state();  // connected before the start
    ++shared.ready;
    while (!shared.go.load()) std::this_thread::sleep_for(100us);
    const auto start = Clock::time_point(Clock::duration(shared.start.load()));
    const auto end = start + duration;
    while (Clock::now() < end) {
      const auto wait_until = std::min(end, Clock::now() + std::chrono::duration_cast<Clock::duration>(5s));
      if (!lock.try_lock_until(wait_until)) {
        if (Clock::now() < end) ++shared.timeouts[index];
        continue;
      }
      if (shared.inside.exchange(1) != 0) ++shared.violations;
      busy_work(std::chrono::microseconds(config.work_us));
      shared.inside.store(0);
      const bool cleared = lock.clear() == true;
      if (!cleared) ++shared.violations;  // someone else deleted our lock while we held it
      ++shared.sections[index];
      shared.last_end[index] = Clock::now().time_since_epoch().count();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "contender %d: %s\n", index, e.what());
    ++shared.errors[index];
    status = 1;
  }
  _exit(status);
}

void contention_bench(benchmark::State& state, int processes) {
  const auto duration = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(config.contention_seconds));
  void* mem = mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    fail(state, "mmap failed");
    return;
  }
  std::memset(mem, 0, sizeof(Shared));
  auto* shared = new (mem) Shared();
  std::vector<double> sections;
  double elapsed = 0;
  long timeouts = 0, errors = 0;
  for (auto _ : state) {
    std::fflush(nullptr);  // nothing buffered may be written twice
    std::vector<pid_t> children;
    for (int i = 0; i < processes; ++i) {
      const pid_t pid = fork();
      if (pid == 0) contender(*shared, i, duration);
      if (pid < 0) {
        fail(state, "fork failed");
        break;
      }
      children.push_back(pid);
    }
    const auto ready_by = Clock::now() + 10s;
    while (shared->ready.load() < processes && Clock::now() < ready_by) std::this_thread::sleep_for(1ms);
    const auto start = Clock::now() + 20ms;
    shared->start = start.time_since_epoch().count();
    shared->go = 1;
    for (pid_t pid : children) waitpid(pid, nullptr, 0);
    Clock::rep last = start.time_since_epoch().count();
    for (int i = 0; i < processes; ++i) {
      sections.push_back(static_cast<double>(shared->sections[i]));
      last = std::max(last, shared->last_end[i]);
      timeouts += shared->timeouts[i];
      errors += shared->errors[i];
    }
    elapsed = seconds(Clock::duration(last) - start.time_since_epoch());
    state.SetIterationTime(elapsed);
  }
  const double total = std::accumulate(sections.begin(), sections.end(), 0.0);
  const bench::Spread s = bench::spread(sections);
  state.counters["sections_per_s"] = elapsed > 0 ? total / elapsed : 0;
  state.counters["min"] = s.min;
  state.counters["max"] = s.max;
  state.counters["cv"] = s.cv;
  state.counters["jain"] = s.jain;
  state.counters["timeouts"] = static_cast<double>(timeouts);
  state.counters["violations"] = static_cast<double>(shared->violations.load());
  if (errors) fail(state, "a contender failed (see stderr)");
  if (shared->violations.load()) fail(state, "two processes were inside at once");
  if (!config.tsv_dir.empty()) {
    static bool first = true;  // one line per process count; the first of this run starts the file
    std::ofstream out(config.tsv_dir + "/contention.tsv", first ? std::ios::trunc : std::ios::app);
    first = false;
    out << processes << '\t' << (elapsed > 0 ? total / elapsed : 0) << '\t' << total << '\t' << elapsed << '\t'
        << s.min << '\t' << s.max << '\t' << s.cv << '\t' << s.jain << '\t' << timeouts << '\t'
        << shared->violations.load() << '\t' << errors << '\n';
  }
  shared->~Shared();
  munmap(mem, sizeof(Shared));
}

// ---------------------------------------------------------------------------------------------

void write_floor_summary() {
  if (runs.empty()) return;  // filtered out
  std::FILE* tsv = nullptr;
  if (!config.tsv_dir.empty()) {
    tsv = std::fopen((config.tsv_dir + "/floor.tsv").c_str(), "w");
    if (!tsv) throw std::runtime_error("cannot write " + config.tsv_dir + "/floor.tsv");
    std::fprintf(tsv, "op\traw_ops_s\tlib_ops_s\tratio\tratio_min\tratio_max\tp50_ratio\textra_us\traw_p50_us\traw_p99_us\t"
                      "lib_p50_us\tlib_p99_us\trounds\tmin_ops_s\tto_min\tto_min_lo\tto_min_hi\tmin_p50_us\tmin_p99_us\t"
                      "v1_ops_s\tv1_to_min\tv1_to_min_lo\tv1_to_min_hi\n");
  }
  std::printf("\nfloor summary (ratio = median over %d rounds of library rate / raw rate in the same round)\n",
              config.rounds);
  std::printf("%-11s %12s %12s %7s %15s %9s %10s %10s %10s %10s\n", "op", "raw ops/s", "lib ops/s", "ratio",
              "ratio range", "p50 ratio", "raw p50us", "raw p99us", "lib p50us", "lib p99us");
  for (const std::string op : ops) {
    std::vector<double> raw_rates, lib_rates, ratios, p50_ratios, raw_lat, lib_lat;
    for (int r = 0; r < config.rounds; ++r) {
      const auto raw = runs.find(run_key(op, "raw", r));
      const auto lib = runs.find(run_key(op, "lib", r));
      if (raw == runs.end() || lib == runs.end() || raw->second.rate() <= 0 || lib->second.rate() <= 0) continue;
      raw_rates.push_back(raw->second.rate());
      lib_rates.push_back(lib->second.rate());
      ratios.push_back(lib->second.rate() / raw->second.rate());
      std::vector<double> a = raw->second.latencies_us, b = lib->second.latencies_us;
      std::sort(a.begin(), a.end());
      std::sort(b.begin(), b.end());
      p50_ratios.push_back(bench::percentile(a, .5) / bench::percentile(b, .5));
      raw_lat.insert(raw_lat.end(), raw->second.latencies_us.begin(), raw->second.latencies_us.end());
      lib_lat.insert(lib_lat.end(), lib->second.latencies_us.begin(), lib->second.latencies_us.end());
    }
    if (ratios.empty()) continue;
    // The same against the minimal lock, where it ran: min_rates, to_min ratios, latencies.
    std::vector<double> min_rates, to_min, min_lat;
    for (int r = 0; r < config.rounds; ++r) {
      const auto min = runs.find(run_key(op, "min", r));
      const auto lib = runs.find(run_key(op, "lib", r));
      if (min == runs.end() || lib == runs.end() || min->second.rate() <= 0 || lib->second.rate() <= 0) continue;
      min_rates.push_back(min->second.rate());
      to_min.push_back(lib->second.rate() / min->second.rate());
      min_lat.insert(min_lat.end(), min->second.latencies_us.begin(), min->second.latencies_us.end());
    }
    std::sort(min_lat.begin(), min_lat.end());
    std::vector<double> v1_rates, v1_to_min;  // 0.1.0's scripts: rate, and its rate against the minimal lock
    for (int r = 0; r < config.rounds; ++r) {
      const auto v1 = runs.find(run_key(op, "v1", r));
      const auto min = runs.find(run_key(op, "min", r));
      if (v1 == runs.end() || min == runs.end() || v1->second.rate() <= 0 || min->second.rate() <= 0) continue;
      v1_rates.push_back(v1->second.rate());
      v1_to_min.push_back(v1->second.rate() / min->second.rate());
    }
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const double min_rate = min_rates.empty() ? nan : bench::median(min_rates);
    const double to_min_ratio = to_min.empty() ? nan : bench::median(to_min);
    const double to_min_lo = to_min.empty() ? nan : *std::min_element(to_min.begin(), to_min.end());
    const double to_min_hi = to_min.empty() ? nan : *std::max_element(to_min.begin(), to_min.end());
    const double min_p50 = min_lat.empty() ? nan : bench::percentile(min_lat, .5);
    const double min_p99 = min_lat.empty() ? nan : bench::percentile(min_lat, .99);
    std::vector<double> sys_ratios;  // --explain: raw + the library's syscalls, against raw
    for (int r = 0; r < config.rounds; ++r) {
      const auto raw = runs.find(run_key(op, "raw", r));
      const auto sys = runs.find(run_key(op, "rawsys", r));
      if (raw != runs.end() && sys != runs.end() && raw->second.rate() > 0)
        sys_ratios.push_back(sys->second.rate() / raw->second.rate());
    }
    std::sort(raw_lat.begin(), raw_lat.end());
    std::sort(lib_lat.begin(), lib_lat.end());
    const double raw_rate = bench::median(raw_rates), lib_rate = bench::median(lib_rates);
    const double ratio = bench::median(ratios);
    const double lo = *std::min_element(ratios.begin(), ratios.end());
    const double hi = *std::max_element(ratios.begin(), ratios.end());
    const double extra_us = 1e6 / lib_rate - 1e6 / raw_rate;
    const double p[4] = {bench::percentile(raw_lat, .5), bench::percentile(raw_lat, .99),
                         bench::percentile(lib_lat, .5), bench::percentile(lib_lat, .99)};
    const double p50_ratio = bench::median(p50_ratios);
    std::printf("%-11s %12.0f %12.0f %7.3f %7.3f-%-7.3f %9.3f %10.1f %10.1f %10.1f %10.1f\n", op.c_str(), raw_rate,
                lib_rate, ratio, lo, hi, p50_ratio, p[0], p[1], p[2], p[3]);
    if (!v1_to_min.empty())
      std::printf("%-11s 0.1.0's scripts on raw hiredis: %.0f ops/s, ratio to the minimal lock %.3f (%.3f-%.3f)\n", "",
                  bench::median(v1_rates), bench::median(v1_to_min), *std::min_element(v1_to_min.begin(), v1_to_min.end()),
                  *std::max_element(v1_to_min.begin(), v1_to_min.end()));
    if (!to_min.empty())
      std::printf("%-11s to the minimal lock (SET NX PX + compare-and-delete, %.0f ops/s): ratio %.3f (%.3f-%.3f)\n", "",
                  min_rate, to_min_ratio, to_min_lo, to_min_hi);
    if (!sys_ratios.empty())
      std::printf("%-11s rawsys/raw ratio %.3f (raw hiredis plus the library's per-call system calls)\n", "",
                  bench::median(sys_ratios));
    if (tsv)
      std::fprintf(tsv,
                   "%s\t%.0f\t%.0f\t%.4f\t%.4f\t%.4f\t%.4f\t%.2f\t%.1f\t%.1f\t%.1f\t%.1f\t%zu\t%.0f\t%.4f\t%.4f\t%.4f\t%.1f\t%.1f\t"
                   "%.0f\t%.4f\t%.4f\t%.4f\n",
                   op.c_str(), raw_rate, lib_rate, ratio, lo, hi, p50_ratio, extra_us, p[0], p[1], p[2], p[3], ratios.size(),
                   min_rate, to_min_ratio, to_min_lo, to_min_hi, min_p50, min_p99,
                   v1_rates.empty() ? nan : bench::median(v1_rates), v1_to_min.empty() ? nan : bench::median(v1_to_min),
                   v1_to_min.empty() ? nan : *std::min_element(v1_to_min.begin(), v1_to_min.end()),
                   v1_to_min.empty() ? nan : *std::max_element(v1_to_min.begin(), v1_to_min.end()));
  }
  if (tsv) std::fclose(tsv);
}

bool take_option(int& argc, char** argv, const char* name, std::string& value) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) != 0) continue;
    value = argv[i + 1];
    for (int j = i; j + 2 < argc; ++j) argv[j] = argv[j + 2];
    argc -= 2;
    argv[argc] = nullptr;
    return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  std::string v;
  if (take_option(argc, argv, "--rounds", v)) config.rounds = std::max(1, std::atoi(v.c_str()));
  if (take_option(argc, argv, "--min-time", v)) config.min_time = std::atof(v.c_str());
  if (take_option(argc, argv, "--contention-seconds", v)) config.contention_seconds = std::atof(v.c_str());
  if (take_option(argc, argv, "--work-us", v)) config.work_us = std::max(0, std::atoi(v.c_str()));
  if (take_option(argc, argv, "--tsv", v)) config.tsv_dir = v;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--explain") != 0) continue;
    config.explain = true;
    for (int j = i; j + 1 < argc; ++j) argv[j] = argv[j + 1];
    argv[--argc] = nullptr;
    break;
  }
  const char* url = std::getenv("REDIS_URL");
  if (!url || !*url) {
    std::fprintf(stderr, "set REDIS_URL=redis://127.0.0.1:PORT (a scratch redis-server: the benchmarks write keys "
                         "bench-*); tests/bench/run.sh starts one\n");
    return 2;
  }
  redis_url = url;
  try {
    bench::tcp_endpoint(redis_url);
    warm_up();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lock_bench: %s\n", e.what());
    return 1;
  }

  for (int r = 0; r < config.rounds; ++r) {
    for (const std::string op : ops) {
      std::vector<std::string> variants = {"raw", "lib"};
      if (has_min(op)) variants.push_back("min");
      if (has_v1(op)) variants.push_back("v1");
      if (config.explain) variants.push_back("rawsys");
      // Each side goes first in turn, so that drift hits every side alike.
      std::rotate(variants.begin(), variants.begin() + static_cast<long>(r % variants.size()), variants.end());
      for (const std::string& variant : variants) {
        benchmark::RegisterBenchmark(("floor/" + op + "/" + variant + "/round:" + std::to_string(r)).c_str(),
                                     [op, variant, r](benchmark::State& s) { floor_bench(s, op, variant, r); })
            ->MinTime(config.min_time)
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
      }
    }
  }
  for (int p : {1, 2, 8, 32}) {
    benchmark::RegisterBenchmark(("contention/processes:" + std::to_string(p)).c_str(),
                                 [p](benchmark::State& s) { contention_bench(s, p); })
        ->Iterations(1)
        ->UseManualTime()
        ->Unit(benchmark::kSecond);
  }

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  write_floor_summary();
  if (any_failed) std::fprintf(stderr, "lock_bench: a benchmark failed (see its error above)\n");
  return any_failed ? 1 : 0;
}
