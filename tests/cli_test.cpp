// The process-lock command, run as a real program against a real redis-server.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <regex>
#include <sstream>
#include <string_view>
#include <thread>

#include "../examples/process_lock_cli.hpp"
#include "hostile.hpp"
#include "support.hpp"
#if PROCESS_LOCK_WITH_TLS
#include "tls_certs.hpp"
#endif

namespace {

using namespace std::chrono_literals;
using process_lock::ProcessLock;
namespace code = process_lock::cli::exit_code;
using Clock = std::chrono::steady_clock;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A process-lock started in the background, with its output in files; with `address_space`, under
// that RLIMIT_AS (bytes), so that a run that allocates without bound fails instead of the machine.
class Cli {
 public:
  // With `stdout_fd`, its standard output is that descriptor (made with O_CLOEXEC), with SIGPIPE
  // ignored, as a shell with `trap '' PIPE` would start it.
  Cli(const std::string& redis_url, std::vector<std::string> args, const std::string& dir, bool ignore_sigchld = false,
      rlim_t address_space = 0, int stdout_fd = -1)
      : out_(dir + "/out"), err_(dir + "/err") {
    static int counter = 0;
    out_ += std::to_string(++counter);
    err_ += std::to_string(counter);
    // Everything the child needs is made before the fork: after it, only async-signal-safe calls
    // (this process has threads), so no setenv() and no allocation there.
    std::vector<std::string> environment{"REDIS_URL=" + redis_url};
    for (char** e = environ; *e != nullptr; ++e)
      if (std::string_view(*e).rfind("REDIS_URL=", 0) != 0) environment.emplace_back(*e);
    std::vector<char*> envp;
    envp.reserve(environment.size() + 1);
    for (auto& entry : environment) envp.push_back(entry.data());
    envp.push_back(nullptr);
    args.insert(args.begin(), PROCESS_LOCK_CLI);
    std::vector<char*> argv;
    argv.reserve(args.size() + 1);
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      const int out = open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      const int err = open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      dup2(stdout_fd >= 0 ? stdout_fd : out, 1);
      dup2(err, 2);
      if (stdout_fd >= 0) std::signal(SIGPIPE, SIG_IGN);  // inherited across exec
      if (ignore_sigchld) std::signal(SIGCHLD, SIG_IGN);  // inherited across exec
      if (address_space) {
        const rlimit cap{address_space, address_space};
        setrlimit(RLIMIT_AS, &cap);  // inherited across exec too
      }
      execve(PROCESS_LOCK_CLI, argv.data(), envp.data());
      _exit(99);
    }
  }
  ~Cli() {
    if (pid_ > 0 && !status_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  /// Waits for it to end; returns its exit code (128+N for a signal), or -1 after `limit`.
  int wait(std::chrono::milliseconds limit = 20s) {
    if (status_) return *status_;
    const auto deadline = Clock::now() + limit;
    while (Clock::now() < deadline) {
      int st = 0;
      rusage ru{};
      if (wait4(pid_, &st, WNOHANG, &ru) == pid_) {
        status_ = WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
        peak_rss_kb_ = ru.ru_maxrss;
        return *status_;
      }
      std::this_thread::sleep_for(5ms);
    }
    return -1;
  }
  std::string out() const { return slurp(out_); }
  std::string err() const { return slurp(err_); }
  /// Its peak RSS in kB, once wait() has seen it end (wait4's ru_maxrss).
  long peak_rss_kb() const { return peak_rss_kb_; }

 private:
  std::string out_, err_;
  pid_t pid_ = -1;
  std::optional<int> status_;
  long peak_rss_kb_ = 0;
};

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override { server_ = std::make_unique<test::RedisServer>(); }
  int run(std::vector<std::string> args, std::string* out = nullptr, std::string* err = nullptr) {
    Cli cli(server_->url(), std::move(args), server_->dir());
    const int status = cli.wait();
    if (out) *out = cli.out();
    if (err) *err = cli.err();
    return status;
  }
  std::unique_ptr<Cli> start(std::vector<std::string> args) {
    return std::make_unique<Cli>(server_->url(), std::move(args), server_->dir());
  }
  // Waits until the file exists (a command's "I have started" mark).
  bool appears(const std::string& path, std::chrono::milliseconds limit = 10s) {
    return test::wait_until([&] { return access(path.c_str(), F_OK) == 0; }, limit);
  }
  bool held() { return server_->client().integer({"EXISTS", "job"}) == 1; }
  std::string file(const std::string& name) const { return server_->dir() + "/" + name; }

  std::unique_ptr<test::RedisServer> server_;
};

TEST_F(CliTest, TwoRunsNeverInterleaveAndTheSecondStartsPromptly) {
  const std::string log = file("log"), go = file("go");
  auto job = [&](const char* who) {
    return std::vector<std::string>{"run",
                                    "job",
                                    "--",
                                    "sh",
                                    "-c",
                                    std::string("echo ") + who + " start >> " + log + "; while [ ! -e " + go +
                                        " ]; do sleep 0.01; done; echo " + who + " end >> " + log};
  };
  auto first = start(job("a"));
  ASSERT_TRUE(test::wait_until([&] { return slurp(log).find("a start") != std::string::npos; }));
  auto second = start(job("b"));
  // The second one is waiting (listening for the release) before the first may finish.
  ASSERT_TRUE(test::wait_until([&] {
    auto r = server_->client().run({"PUBSUB", "NUMSUB", "process_lock:released:job"});
    return r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[1]->integer == 1;
  }));
  std::ofstream(go).put('\n');
  EXPECT_EQ(first->wait(), 0);
  const auto first_done = Clock::now();
  ASSERT_TRUE(test::wait_until([&] { return slurp(log).find("b start") != std::string::npos; }));
  EXPECT_LT(Clock::now() - first_done, 2s) << "the waiter did not start promptly";
  EXPECT_EQ(second->wait(), 0);
  EXPECT_EQ(slurp(log), "a start\na end\nb start\nb end\n");
  EXPECT_FALSE(held());
}

TEST_F(CliTest, NoWaitGivesTheConflictCodeWhileHeld) {
  auto holder = start({"run", "job", "--", "sh", "-c", "touch " + file("started") + "; sleep 30"});
  ASSERT_TRUE(appears(file("started")));
  std::string err;
  EXPECT_EQ(run({"run", "job", "-n", "--", "true"}, nullptr, &err), code::conflict);
  EXPECT_TRUE(test::contains(err, "\"job\" is held by pid")) << err;
  EXPECT_EQ(run({"run", "job", "-n", "-E", "3", "--", "true"}), 3);
}

TEST_F(CliTest, WaitHonoursItsDeadline) {
  auto holder = start({"run", "job", "--", "sh", "-c", "touch " + file("started") + "; sleep 30"});
  ASSERT_TRUE(appears(file("started")));
  const auto begin = Clock::now();
  EXPECT_EQ(run({"run", "job", "-w", "300ms", "--", "true"}), code::conflict);
  const auto waited = Clock::now() - begin;
  EXPECT_GE(waited, 300ms);
  EXPECT_LT(waited, 10s);
}

TEST_F(CliTest, ExitStatusAndSignalDeathPropagate) {
  EXPECT_EQ(run({"run", "job", "--", "sh", "-c", "exit 7"}), 7);
  EXPECT_EQ(run({"run", "job", "--", "sh", "-c", "kill -9 $$"}), 128 + 9);
  EXPECT_EQ(run({"run", "job", "--", "/nonexistent/command"}), code::not_found);
  EXPECT_FALSE(held());
}

TEST_F(CliTest, EnvironmentCarriesNameAndIncreasingFence) {
  std::string first, second;
  ASSERT_EQ(run({"run", "job", "--", "sh", "-c", "echo $PROCESS_LOCK_NAME $PROCESS_LOCK_FENCE"}, &first), 0);
  ASSERT_EQ(run({"run", "job", "--", "sh", "-c", "echo $PROCESS_LOCK_NAME $PROCESS_LOCK_FENCE"}, &second), 0);
  ASSERT_EQ(first.rfind("job ", 0), 0u) << first;
  EXPECT_GT(std::stoull(second.substr(4)), std::stoull(first.substr(4)));
}

TEST_F(CliTest, SigtermReachesGrandchildrenAndTheLockIsReleased) {
  // --kill-after 60s: the grandchild must go because the signal reached it, not by clean-up.
  auto cli = start({"run", "job", "--kill-after", "60s", "--", "sh", "-c",
                    "sleep 100 & echo $! > " + file("grandchild") + "; wait"});
  ASSERT_TRUE(test::wait_until([&] { return !slurp(file("grandchild")).empty(); }));
  const pid_t grandchild = std::stoi(slurp(file("grandchild")));
  kill(cli->pid(), SIGTERM);
  EXPECT_EQ(cli->wait(5s), 128 + SIGTERM);
  EXPECT_TRUE(test::wait_until([&] { return kill(grandchild, 0) != 0; })) << "the grandchild survived";
  EXPECT_FALSE(held());
}

TEST_F(CliTest, SigintAndSighupAreForwardedToo) {
  for (const int sig : {SIGINT, SIGHUP}) {
    // A foreground grandchild ("; true" keeps sh from exec'ing it); with --kill-after 60s only
    // the forwarded signal can end it within the bound.
    const std::string started = file("started" + std::to_string(sig));
    auto cli = start({"run", "job", "--kill-after", "60s", "--", "sh", "-c", "touch " + started + "; sleep 100; true"});
    ASSERT_TRUE(appears(started));
    std::this_thread::sleep_for(100ms);  // let sh start sleep
    kill(cli->pid(), sig);
    EXPECT_EQ(cli->wait(5s), 128 + sig) << "signal " << sig;
    EXPECT_FALSE(held());
  }
}

TEST_F(CliTest, CommandIgnoringSigtermIsKilledAfterKillAfter) {
  auto cli = start({"run", "job", "--refresh", "200ms", "--kill-after", "300ms", "--", "sh", "-c",
                    "trap '' TERM; echo $$ > " + file("child") + "; while :; do sleep 0.05; done"});
  ASSERT_TRUE(test::wait_until([&] { return !slurp(file("child")).empty(); }));
  const pid_t child = std::stoi(slurp(file("child")));
  EXPECT_EQ(run({"clear", "job", "--force"}), 0);
  EXPECT_EQ(cli->wait(5s), code::lock_lost);  // SIGKILL 300 ms after SIGTERM, not much later
  EXPECT_NE(kill(child, 0), 0) << "the command survived SIGKILL";
}

TEST_F(CliTest, StatusSurvivesAnInheritedIgnoredSigchld) {
  Cli cli(server_->url(), {"run", "job", "--", "sh", "-c", "exit 3"}, server_->dir(), true);
  EXPECT_EQ(cli.wait(), 3);
}

TEST_F(CliTest, StatusSurvivesAFailedRelease) {
  // Redis goes away during the run; the command's own status still comes out.
  auto cli = start({"run", "job", "--", "sh", "-c",
                    "touch " + file("started") + "; while [ ! -e " + file("go") + " ]; do sleep 0.01; done; exit 3"});
  ASSERT_TRUE(appears(file("started")));
  server_->stop();
  std::ofstream(file("go")).put('\n');
  EXPECT_EQ(cli->wait(), 3);
  EXPECT_TRUE(test::contains(cli->err(), "could not release the lock")) << cli->err();
}

TEST_F(CliTest, ForceClearElsewhereStopsTheCommandBeforeTheTtlRunsOut) {
  auto cli = start({"run", "job", "--ttl", "20s", "--refresh", "300ms", "--", "sh", "-c",
                    "touch " + file("started") + "; sleep 60"});
  ASSERT_TRUE(appears(file("started")));
  const auto cleared_at = Clock::now();
  EXPECT_EQ(run({"clear", "job", "--force"}), 0);
  EXPECT_EQ(cli->wait(), code::lock_lost);
  EXPECT_LT(Clock::now() - cleared_at, 15s);  // well before the 20 s TTL
  EXPECT_TRUE(test::contains(cli->err(), "lost the lock \"job\" (taken)")) << cli->err();
}

TEST_F(CliTest, RedisStoppedMidRunStopsTheCommandBeforeTheValidityRunsOut) {
  auto cli =
      start({"run", "job", "--ttl", "1s", "--", "sh", "-c",
             "touch " + file("started") + "; trap 'touch " + file("terminated") + "; exit 1' TERM; sleep 60 & wait"});
  ASSERT_TRUE(appears(file("started")));
  const auto stopped_at = Clock::now();
  server_->stop();
  EXPECT_EQ(cli->wait(), code::lock_lost);
  EXPECT_TRUE(appears(file("terminated"), 1ms)) << "the command was not sent SIGTERM";
  EXPECT_LT(Clock::now() - stopped_at, 5s);
  EXPECT_TRUE(test::contains(cli->err(), "(unreachable")) << cli->err();
}

// The nanosecond timestamps (date +%s%N) a command appended to `path`, in order.
std::vector<long long> stamps(const std::string& path) {
  std::vector<long long> v;
  std::istringstream in(slurp(path));
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line.find_first_not_of("0123456789") == std::string::npos) v.push_back(std::stoll(line));
  return v;
}

TEST_F(CliTest, TricklingRepliesStopTheCommandBeforeAnotherHostRunsIt) {
  // The issue's finding: through a proxy that passes Redis's replies on one byte every 1.5 s (each
  // inside the default 2 s command timeout), with --ttl 6s, the first host's command was never
  // stopped and a second host's command ran beside it. The first must be stopped before the
  // validity of its lock ends, so before the second can take the lock; each command appends
  // timestamps to a file of its own.
  test::DripProxy proxy(server_->port());
  const std::string a_log = file("a.log"), b_log = file("b.log");
  Cli first(
      proxy.url(),
      {"run", "job", "--ttl", "6s", "--", "sh", "-c", "while :; do date +%s%N >> " + a_log + "; sleep 0.05; done"},
      server_->dir());
  ASSERT_TRUE(appears(a_log));
  proxy.drip(1500ms);
  const auto dripping_from = Clock::now();
  Cli second(server_->url(), {"run", "job", "-w", "30s", "--", "sh", "-c", "date +%s%N >> " + b_log}, server_->dir());
  const int first_status = first.wait(15s);  // stopped at the latest 6 s in, then one bounded release
  const auto first_done = Clock::now();
  const int second_status = second.wait(20s);
  EXPECT_EQ(first_status, code::lock_lost)
      << "after " << std::chrono::duration_cast<std::chrono::milliseconds>(first_done - dripping_from).count()
      << " ms of trickling replies (-1: still running); its stderr: " << first.err();
  EXPECT_TRUE(test::contains(first.err(), "(unreachable")) << first.err();
  EXPECT_EQ(second_status, 0) << second.err();
  const auto a = stamps(a_log), b = stamps(b_log);
  ASSERT_FALSE(a.empty());
  ASSERT_FALSE(b.empty()) << "the second command never ran; its stderr: " << second.err();
  EXPECT_LT(a.back(), b.front()) << "the first command still ran " << (a.back() - b.front()) / 1000000
                                 << " ms after the second one started";
}

// `process-lock run -n` against a server whose reply no deadline or memory bound survives unless
// the library enforces one: it must end in time with the Redis error code, naming the limit (or
// the timeout, for the trickle), in bounded memory. Default timeouts: 2 s to connect, 2 s per call.
class CliHostileTest : public CliTest, public ::testing::WithParamInterface<test::HostileServer::Attack> {};

TEST_P(CliHostileTest, NoWaitRunEndsWithTheRedisErrorCodeInTimeAndBoundedMemory) {
  test::HostileServer hostile(GetParam());
  const auto started = Clock::now();
  Cli cli(hostile.url(), {"run", "job", "-n", "--", "true"}, server_->dir(), false, rlim_t(512) << 20);
  const int status = cli.wait(10s);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  const std::string err = cli.err();
  EXPECT_EQ(status, code::redis_error) << "(-1: still running after 10 s) its stderr: " << err;
  EXPECT_LE(took.count(), 5000) << err;  // 4 s of timeouts, and the program's start
  if (test::HostileServer::over_a_cap(GetParam())) {
    EXPECT_TRUE(test::contains(err, "limit")) << err;
  } else {
    EXPECT_TRUE(test::contains(err, "did not reply") || test::contains(err, "timed out")) << err;
  }
  if (status >= 0) {
    EXPECT_LE(cli.peak_rss_kb(), 64 * 1024) << "peak RSS in kB; " << err;
  }
}

INSTANTIATE_TEST_SUITE_P(EveryAttack, CliHostileTest, ::testing::ValuesIn(test::every_attack), test::attack_name);

TEST_F(CliTest, SigkillOfProcessLockEndsTheCommandAndTheLockExpires) {
  auto cli = start({"run", "job", "--ttl", "500ms", "--", "sh", "-c", "echo $$ > " + file("child") + "; sleep 60"});
  ASSERT_TRUE(test::wait_until([&] { return !slurp(file("child")).empty(); }));
  const pid_t child = std::stoi(slurp(file("child")));
  kill(cli->pid(), SIGKILL);
  cli->wait();
  EXPECT_TRUE(test::wait_until([&] { return kill(child, 0) != 0; })) << "the command outlived process-lock";
  EXPECT_TRUE(test::wait_until([&] { return !held(); }));  // nobody renews it: it expires
}

TEST_F(CliTest, NodeHolderMakesNoWaitFail) {
  server_->client().run({"SET", "job", "0f1e2d3c-4b5a-4697-8877-665544332211", "NX", "EX", "60"});
  std::string err;
  EXPECT_EQ(run({"run", "job", "-n", "--", "true"}, nullptr, &err), code::conflict);
  EXPECT_TRUE(test::contains(err, "recorded no details")) << err;
}

TEST_F(CliTest, StateAndClear) {
  std::string out;
  ASSERT_EQ(run({"state", "job"}, &out), 0);
  EXPECT_EQ(out, "open (fence counter 0)\n");
  auto holder =
      start({"run", "job", "--refresh", "300ms", "--", "sh", "-c", "touch " + file("started") + "; sleep 30"});
  ASSERT_TRUE(appears(file("started")));
  ASSERT_EQ(run({"state", "job"}, &out), 0);
  EXPECT_TRUE(test::contains(out, "locked by pid ")) << out;
  EXPECT_TRUE(test::contains(out, " ms left; fence counter 1")) << out;
  ASSERT_EQ(run({"clear", "job"}, &out), 0);
  EXPECT_EQ(out, "not cleared (held by another owner; use --force)\n");
  ASSERT_EQ(run({"clear", "job", "--force"}, &out), 0);
  EXPECT_EQ(out, "cleared\n");
  EXPECT_EQ(holder->wait(), code::lock_lost);
  ASSERT_EQ(run({"clear", "job", "--force"}, &out), 0);
  EXPECT_EQ(out, "not held\n");
}

// `state --json`: one object per line, for scripts and monitoring.
TEST_F(CliTest, StateAsJson) {
  std::string out;
  ASSERT_EQ(run({"state", "job", "--json"}, &out), 0);
  EXPECT_EQ(out, "{\"name\":\"job\",\"state\":\"open\",\"ttl_ms\":null,\"fence_counter\":0,\"holder\":null}\n");
  auto holder =
      start({"run", "job", "--refresh", "300ms", "--", "sh", "-c", "touch " + file("started") + "; sleep 30"});
  ASSERT_TRUE(appears(file("started")));
  ASSERT_EQ(run({"state", "job", "--json"}, &out), 0);
  const std::regex shape(
      R"re(\{"name":"job","state":"locked","ttl_ms":[0-9]+,"fence_counter":1,"holder":\{"host":"[^"]+","pid":([0-9]+),)re"
      R"re("since":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)","since_ms":([0-9]+),"fence":1,"info":""\}\}\n)re");
  std::smatch m;
  ASSERT_TRUE(std::regex_match(out, m, shape)) << out;
  EXPECT_EQ(std::stol(m[1]), holder->pid());
  const std::chrono::system_clock::time_point since{std::chrono::milliseconds(std::stoll(m[3]))};
  EXPECT_EQ(process_lock::cli::rfc3339_utc(since), m[2]) << "since and since_ms disagree";
  EXPECT_LT(std::chrono::abs(std::chrono::system_clock::now() - since), 60s);
}

// `watch`: one line per change until interrupted; SIGINT and SIGTERM end it with exit code 0.
std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

TEST_F(CliTest, WatchPrintsALinePerChangeUntilInterrupted) {
  for (const int sig : {SIGINT, SIGTERM}) {
    server_->client().run({"FLUSHALL"});
    auto watch = start({"watch", "job", "--poll", "60s"});
    ASSERT_TRUE(test::wait_until([&] { return !lines_of(watch->out()).empty(); }, 5000ms)) << watch->err();
    process_lock::Options o;
    o.url = server_->url();
    o.holder_info = "10.0.0.7:8080";
    ProcessLock holder("job", 10, o);
    ASSERT_TRUE(holder.lock());
    ASSERT_TRUE(test::wait_until([&] { return lines_of(watch->out()).size() >= 2; }, 5000ms)) << watch->out();
    ASSERT_TRUE(holder.clear().value());
    ASSERT_TRUE(test::wait_until([&] { return lines_of(watch->out()).size() >= 3; }, 5000ms)) << watch->out();
    ProcessLock other("job", 10, o);
    ASSERT_TRUE(other.lock());
    ASSERT_TRUE(test::wait_until([&] { return lines_of(watch->out()).size() >= 4; }, 5000ms)) << watch->out();
    ASSERT_EQ(holder.clear(true), std::optional<bool>(true));
    ASSERT_TRUE(test::wait_until([&] { return lines_of(watch->out()).size() >= 5; }, 5000ms)) << watch->out();
    kill(watch->pid(), sig);
    EXPECT_EQ(watch->wait(5s), 0) << watch->err();
    const auto lines = lines_of(watch->out());
    ASSERT_EQ(lines.size(), 5u) << watch->out();
    const std::string stamp = R"re(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z )re";
    const std::string pid = std::to_string(getpid());
    EXPECT_TRUE(std::regex_match(lines[0], std::regex(stamp + R"re(open \(fence counter 0\))re"))) << lines[0];
    EXPECT_TRUE(std::regex_match(lines[1], std::regex(stamp + "acquired by pid " + pid +
                                                          R"re( on [^,]+, info "10.0.0.7:8080", fence 1, [0-9]+ ms left)re")))
        << lines[1];
    EXPECT_TRUE(std::regex_match(lines[2], std::regex(stamp + "released \\(fence 1, pid " + pid + " on .*\\)"))) << lines[2];
    EXPECT_TRUE(std::regex_match(lines[3], std::regex(stamp + "acquired by pid " + pid + " on .*, fence 2, .*"))) << lines[3];
    EXPECT_TRUE(std::regex_match(lines[4], std::regex(stamp + "force-cleared \\(fence 2, pid " + pid + " on .*\\)")))
        << lines[4];
  }
}

TEST_F(CliTest, WatchAsJsonPrintsAnObjectPerChange) {
  auto watch = start({"watch", "job", "--json", "--poll", "200ms"});
  ASSERT_TRUE(test::wait_until([&] { return !lines_of(watch->out()).empty(); }, 5000ms)) << watch->err();
  // process-lock-node's hold: no notice, found by a 200 ms poll; a TTL far longer than the poll,
  // so that a stalled machine cannot make the hold come and go between two reads.
  server_->client().run({"SET", "job", "11111111-2222-4333-8444-555555555555", "NX", "PX", "3000"});
  ASSERT_TRUE(test::wait_until([&] { return lines_of(watch->out()).size() >= 3; }, 10000ms)) << watch->out();
  kill(watch->pid(), SIGTERM);
  EXPECT_EQ(watch->wait(5s), 0) << watch->err();
  const auto lines = lines_of(watch->out());
  ASSERT_EQ(lines.size(), 3u) << watch->out();
  const std::string at = R"re("at":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z","at_ms":[0-9]+,"name":"job",)re";
  EXPECT_TRUE(std::regex_match(lines[0], std::regex(R"re(\{"event":"current",)re" + at +
                                                    R"re("state":"open","ttl_ms":null,"fence_counter":0,"holder":null,)re"
                                                    R"re("token":null,"fence":0,"missed":0,"resumed":false\})re")))
      << lines[0];
  EXPECT_TRUE(std::regex_match(lines[1], std::regex(R"re(\{"event":"acquired",)re" + at +
                                                    R"re("state":"locked","ttl_ms":[0-9]+,"fence_counter":0,"holder":null,)re"
                                                    R"re("token":"11111111-2222-4333-8444-555555555555","fence":0,"missed":0,"resumed":false\})re")))
      << lines[1];
  EXPECT_TRUE(std::regex_match(lines[2], std::regex(R"re(\{"event":"expired",)re" + at +
                                                    R"re("state":"open","ttl_ms":null,"fence_counter":0,"holder":null,)re"
                                                    R"re("token":"11111111-2222-4333-8444-555555555555","fence":0,"missed":0,"resumed":false\})re")))
      << lines[2];
}

// `watch | head -1` with SIGPIPE ignored: the first write after the reader left ends the watch
// with exit code 74 (EX_IOERR) instead of watching for nobody.
TEST_F(CliTest, WatchEndsWithExitCode74OnceItsOutputIsGone) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  Cli watch(server_->url(), {"watch", "job", "--poll", "60s"}, server_->dir(), false, 0, fds[1]);
  close(fds[1]);
  char line[512];
  ASSERT_GT(read(fds[0], line, sizeof line), 0) << watch.err();  // the first line ("open ...")
  close(fds[0]);  // the reader is gone
  process_lock::Options o;
  o.url = server_->url();
  ProcessLock holder("job", 10, o);
  ASSERT_TRUE(holder.lock());  // a change to print: its write fails
  EXPECT_EQ(watch.wait(10s), 74) << watch.err();
  EXPECT_NE(watch.err().find("cannot write to standard output"), std::string::npos) << watch.err();
}

// --holder-info: recorded with the acquisition, shown by state (prose and JSON, escaped), and
// given to the command.
TEST_F(CliTest, HolderInfoIsShownByStateAndGivenToTheCommand) {
  const std::string info = "active \"web-1\" at 10.0.0.7:8080";
  auto holder = start({"run", "job", "--refresh", "300ms", "--holder-info", info, "--", "sh", "-c",
                       "printf %s \"$PROCESS_LOCK_HOLDER_INFO\" > " + file("env") + "; touch " + file("started") + "; sleep 30"});
  ASSERT_TRUE(appears(file("started")));
  EXPECT_EQ(slurp(file("env")), info);
  std::string out;
  ASSERT_EQ(run({"state", "job", "--json"}, &out), 0);
  EXPECT_TRUE(test::contains(out, ",\"info\":\"active \\\"web-1\\\" at 10.0.0.7:8080\"}}")) << out;
  ASSERT_EQ(run({"state", "job"}, &out), 0);
  EXPECT_TRUE(test::contains(out, ", info \"active \\\"web-1\\\" at 10.0.0.7:8080\", ")) << out;
  ASSERT_EQ(run({"clear", "job", "--force"}, &out), 0);
  EXPECT_EQ(holder->wait(), code::lock_lost);
  std::string err;
  EXPECT_EQ(run({"run", "job", "--holder-info", std::string(4097, 'x'), "--", "true"}, nullptr, &err), code::usage);
  EXPECT_TRUE(test::contains(err, "--holder-info is 4097 bytes; at most 4096")) << err;
  EXPECT_EQ(run({"state", "job", "--holder-info", "x"}, nullptr, &err), code::usage);
}

// A holder's details are any bytes (a host name written by anyone with access to Redis; here
// in a 0.1.0 holder record): the output stays valid JSON. A node holder records none.
TEST_F(CliTest, StateAsJsonEscapesWhatTheHolderRecorded) {
  auto c = server_->client();
  const std::string token = "11111111-2222-4333-8444-555555555555";
  c.run({"SET", "job", token, "PX", "60000"});
  std::string out;
  ASSERT_EQ(run({"state", "job", "--json"}, &out), 0);
  EXPECT_TRUE(test::contains(out, "\"state\":\"locked\",\"ttl_ms\":")) << out;
  EXPECT_TRUE(test::contains(out, "\"holder\":null}")) << out;
  const std::string holder_key = process_lock::detail::companion_key("job", ":holder");
  c.run({"HSET", holder_key, "token", token, "fence", "7", "host", "a\"b\\c\n\x01\xff\xc3\xa9", "pid", "42",
         "since_ms", "1764639000123"});
  ASSERT_EQ(run({"state", "job", "--json"}, &out), 0);
  EXPECT_TRUE(test::contains(out, "\"holder\":{\"host\":\"a\\\"b\\\\c\\n\\u0001\\u00ff\xc3\xa9\",\"pid\":42,"
                                  "\"since\":\"2025-12-02T01:30:00.123Z\",\"since_ms\":1764639000123,\"fence\":7,\"info\":\"\"}}"))
      << out;
}

TEST(CliJsonTest, Strings) {
  using process_lock::cli::json_string;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", R"("")"},
      {"plain host-1.example", R"("plain host-1.example")"},
      {"quote \" backslash \\", R"("quote \" backslash \\")"},
      {"\n\t\r", R"("\n\t\r")"},
      {std::string("\0\x01\x1f", 3), R"("\u0000\u0001\u001f")"},
      {"\x7f", "\"\x7f\""},                                  // DEL is allowed as is
      {"\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x92", "\"\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x92\""},  // valid UTF-8
      {"\xff\xfe", R"("\u00ff\u00fe")"},                     // never UTF-8
      {"\xc3", R"("\u00c3")"},                               // a sequence cut short
      {"\xc3(", R"("\u00c3(")"},                             // a bad continuation
      {"\xc0\xaf", R"("\u00c0\u00af")"},                     // overlong
      {"\xe0\x80\xaf", R"("\u00e0\u0080\u00af")"},           // overlong, three bytes
      {"\xed\xa0\x80", R"("\u00ed\u00a0\u0080")"},           // a surrogate
      {"\xf4\x90\x80\x80", R"("\u00f4\u0090\u0080\u0080")"}, // past U+10FFFF
  };
  for (const auto& [in, want] : cases) EXPECT_EQ(json_string(in), want) << in;
}

TEST(CliJsonTest, Rfc3339InUtcWithMilliseconds) {
  using process_lock::cli::rfc3339_utc;
  using std::chrono::milliseconds;
  using TP = std::chrono::system_clock::time_point;
  EXPECT_EQ(rfc3339_utc(TP{}), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(rfc3339_utc(TP{milliseconds(1764639000123)}), "2025-12-02T01:30:00.123Z");
  EXPECT_EQ(rfc3339_utc(TP{milliseconds(951782400005)}), "2000-02-29T00:00:00.005Z");
  EXPECT_EQ(rfc3339_utc(TP{milliseconds(-1)}), "1969-12-31T23:59:59.999Z");
}

TEST_F(CliTest, UnreachableRedisIsTheRedisErrorCode) {
  Cli cli(test::closed_port_url(), {"state", "job"}, server_->dir());
  EXPECT_EQ(cli.wait(), code::redis_error);
  EXPECT_TRUE(test::contains(cli.err(), "cannot connect")) << cli.err();
  Cli bad_url("redis://h:0", {"state", "job"}, server_->dir());
  EXPECT_EQ(bad_url.wait(), code::redis_error);
  EXPECT_TRUE(test::contains(bad_url.err(), "invalid REDIS_URL")) << bad_url.err();
}

// A server (or proxy) that echoes AUTH's arguments: the tool's message has no password in it.
TEST_F(CliTest, ItsMessagesNeverShowThePassword) {
  using Act = test::FakeServer::Act;
  for (const std::string password : {"~", "q'\""}) {
    test::FakeServer echoing({{{Act::reply, "-ERR wrong password '" + password + "'\r\n"}}});
    std::string encoded;
    for (unsigned char c : password) {
      char hex[4];
      std::snprintf(hex, sizeof hex, "%%%02X", c);
      encoded += hex;
    }
    Cli cli("redis://:" + encoded + "@127.0.0.1:" + std::to_string(echoing.port()), {"state", "job"}, server_->dir());
    EXPECT_EQ(cli.wait(), code::redis_error);
    EXPECT_TRUE(test::contains(cli.err(), "authentication to redis://:***@127.0.0.1:")) << cli.err();
    EXPECT_FALSE(test::contains(cli.err(), password)) << cli.err();
  }
}

TEST_F(CliTest, HelpAndVersion) {
  std::string out;
  EXPECT_EQ(run({"--version"}, &out), 0);
  EXPECT_TRUE(test::contains(out, "process-lock " PROCESS_LOCK_VERSION_STRING)) << out;
  EXPECT_EQ(run({"run", "--help"}, &out), 0);
  EXPECT_TRUE(test::contains(out, "--conflict-exit-code")) << out;
  EXPECT_EQ(run({"--help"}, &out), 0);
  EXPECT_TRUE(test::contains(out, "process-lock state NAME")) << out;
}

// The README's cron recipe: the same job started on three hosts whose cron clocks are up to 3 s
// apart, with `-n --min-hold 5s`, runs exactly once, however short it is; the next tick (after
// the minimum hold) runs it again.
TEST_F(CliTest, MinHoldRunsAJobOncePerTickWhateverTheSkew) {
  const std::string log = file("runs");
  const std::vector<std::string> job = {"run", "job", "-n", "--min-hold", "5s", "--",
                                        "sh",  "-c", "echo ran >> " + log + "; sleep 0.3"};
  const auto tick = Clock::now();
  EXPECT_EQ(run(job), 0);
  std::this_thread::sleep_until(tick + 1500ms);  // the second host's clock is 1.5 s late
  EXPECT_EQ(run(job), code::conflict);
  std::this_thread::sleep_until(tick + 3000ms);  // the third's 3 s
  EXPECT_EQ(run(job), code::conflict);
  const std::string seen = slurp(log);
  EXPECT_EQ(std::count(seen.begin(), seen.end(), '\n'), 1) << seen;
  EXPECT_GT(server_->client().integer({"PTTL", "job"}), 0) << "taken until the minimum hold ends";
  // The next tick, once the minimum hold is over, runs it again: it expired by itself.
  ASSERT_TRUE(test::wait_until([&] { return !held(); }, 10s));
  EXPECT_EQ(run(job), 0);
  const std::string after = slurp(log);
  EXPECT_EQ(std::count(after.begin(), after.end(), '\n'), 2) << after;
}

// A job that ends after its minimum hold releases the lock at once, as without the option.
TEST_F(CliTest, MinHoldShorterThanTheJobReleasesAtTheEnd) {
  EXPECT_EQ(run({"run", "job", "--min-hold", "100ms", "--", "sleep", "0.3"}), 0);
  EXPECT_FALSE(held());
}

// --max-hold stops the command as if the lock were lost; the lock stays renewed until the command
// is gone (here it ignores SIGTERM for a while, longer than the TTL), then it is released.
TEST_F(CliTest, MaxHoldStopsTheCommandAsLostAndHoldsTheLockUntilItIsGone) {
  const std::string mark = file("stopping");
  auto cli = start({"run", "job", "--ttl", "1s", "--max-hold", "500ms", "--kill-after", "3s", "--", "sh", "-c",
                    "trap 'touch " + mark + "; sleep 2; exit 0' TERM; while :; do sleep 0.05; done"});
  ASSERT_TRUE(appears(mark)) << "not stopped after --max-hold";
  EXPECT_TRUE(held());
  std::this_thread::sleep_for(1500ms);  // over the TTL: only renewals keep it
  EXPECT_TRUE(held()) << "the lock lapsed while the command still ran";
  EXPECT_EQ(cli->wait(), code::lock_lost);
  EXPECT_TRUE(test::contains(cli->err(), "--max-hold")) << cli->err();
  EXPECT_FALSE(held()) << "released once the command was gone";
}

class CliUsageTest : public ::testing::TestWithParam<std::vector<std::string>> {};

TEST_P(CliUsageTest, BadArgumentsGiveUsageAndItsCode) {
  char dir[] = "/tmp/process-lock-cli-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  Cli cli(test::closed_port_url(), GetParam(), dir);
  EXPECT_EQ(cli.wait(), code::usage);
  const std::string err = cli.err();
  EXPECT_TRUE(test::contains(err, "usage: process-lock")) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << "not one line: " << err;
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
}

INSTANTIATE_TEST_SUITE_P(
    EveryKind, CliUsageTest,
    ::testing::Values(std::vector<std::string>{}, std::vector<std::string>{"frobnicate"},
                      std::vector<std::string>{"run"}, std::vector<std::string>{"run", "job"},
                      std::vector<std::string>{"run", "job", "--"}, std::vector<std::string>{"run", "job", "true"},
                      std::vector<std::string>{"run", "job", "-w", "soon", "--", "true"},
                      std::vector<std::string>{"run", "job", "-w", "--", "true"},
                      std::vector<std::string>{"run", "job", "-n", "-w", "1s", "--", "true"},
                      std::vector<std::string>{"run", "job", "-E", "300", "--", "true"},
                      std::vector<std::string>{"run", "job", "--ttl", "1ms", "--", "true"},
                      std::vector<std::string>{"run", "job", "--ttl", "1s", "--refresh", "2s", "--", "true"},
                      std::vector<std::string>{"run", "job", "--ttl", "1s", "--refresh", "900ms", "--", "true"},
                      std::vector<std::string>{"run", "job", "--verbose=no", "--", "true"},
                      std::vector<std::string>{"run", "job", "--min-hold", "2s", "--max-hold", "1s", "--", "true"},
                      std::vector<std::string>{"run", "job", "--max-hold", "0", "--", "true"},
                      std::vector<std::string>{"run", "job", "--min-hold", "soon", "--", "true"},
                      std::vector<std::string>{"state", "job", "--min-hold", "1s"},
                      std::vector<std::string>{"run", "job", "--url=", "--", "true"},
                      std::vector<std::string>{"run", "job", "--bogus", "--", "true"},
                      std::vector<std::string>{"state"}, std::vector<std::string>{"state", "job", "extra"},
                      std::vector<std::string>{"state", "job", "-n"},
                      std::vector<std::string>{"clear", "job", "-w", "1"},
                      std::vector<std::string>{"watch"}, std::vector<std::string>{"watch", "job", "--poll", "1ms"},
                      std::vector<std::string>{"watch", "job", "--force"}, std::vector<std::string>{"clear", "job", "--json"},
                      std::vector<std::string>{"run", "job", "--force", "--", "true"},
                      std::vector<std::string>{"run", "", "--", "true"}));

TEST(CliParseTest, Durations) {
  using process_lock::cli::parse_duration;
  EXPECT_EQ(parse_duration("500ms", "-w"), 500ms);
  EXPECT_EQ(parse_duration("30s", "-w"), 30s);
  EXPECT_EQ(parse_duration("5m", "-w"), 5min);
  EXPECT_EQ(parse_duration("2h", "-w"), 2h);
  EXPECT_EQ(parse_duration("10", "-w"), 10s);
  EXPECT_EQ(parse_duration("0.5", "-w"), 500ms);
  for (const char* bad : {"", "s", "ms", "1.2.3", ".5", "5.", "-1", "1d", "1e3", "9999999999h"})
    EXPECT_THROW(parse_duration(bad, "-w"), process_lock::cli::UsageError) << bad;
}

#if PROCESS_LOCK_WITH_TLS
// rediss:// URLs with their TLS keys work from the command line as in the library, and a
// certificate problem is a Redis error (69) that names it.
TEST(CliTlsTest, RunsAndShowsStateOverTls) {
  const test::TempDir dir;
  const test::CertAuthority ca(dir.path());
  ca.issue("server");
  ca.issue("wrong-host", "DNS:wrong.example");
  test::TlsRedisServer server(ca, "server");
  const std::string url = server.url(ca.ca_file());
  Cli run(url, {"run", "job", "-n", "--", "sh", "-c", "echo fence $PROCESS_LOCK_FENCE"}, dir.path());
  EXPECT_EQ(run.wait(), 0) << run.err();
  EXPECT_EQ(run.out(), "fence 1\n");
  Cli state(url, {"state", "job"}, dir.path());
  EXPECT_EQ(state.wait(), 0) << state.err();
  EXPECT_EQ(state.out(), "open (fence counter 1)\n");

  test::TlsRedisServer other(ca, "wrong-host");
  Cli refused("redis://127.0.0.1:1", {"state", "job", "--url", other.url(ca.ca_file())}, dir.path());
  EXPECT_EQ(refused.wait(), code::redis_error);
  EXPECT_TRUE(test::contains(refused.err(), "its certificate is not for 127.0.0.1")) << refused.err();
}
#endif

}  // namespace
