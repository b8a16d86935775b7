// Deadlines that hold against any server (the issue of that name). A reply that trickles in one
// byte at a time, each byte well inside the command timeout, must not stretch a call past
// connect_timeout + command_timeout; a kept lock's loss must be reported `margin` before its
// validity ends, before anyone else can take it; and no reply, however large or endless, may make
// a call run past its deadline or allocate without bound. Each call runs in a forked child under a
// memory cap and a watchdog (tests/hostile.hpp), so a library that breaks these bounds fails here
// with a message rather than hanging the suite or eating the machine.
#include <gtest/gtest.h>

#include <thread>

#include "hostile.hpp"
#include "support.hpp"

namespace {

using process_lock::errc;
using process_lock::KeepOptions;
using process_lock::Options;
using process_lock::ProcessLock;
using test::DripProxy;
using test::HostileServer;
using test::Outcome;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Each byte of a reply comes 900 ms after the previous one, as in the finding: inside a
// 1.5 s command timeout, so no single read ever times out, while even the shortest reply (":1\r\n")
// takes 3.6 s, past the 2 s a call may take.
constexpr auto connect_timeout = 500ms;
constexpr auto command_timeout = 1500ms;
constexpr auto per_byte = 900ms;
constexpr auto call_bound = connect_timeout + command_timeout + test::call_slack;
constexpr auto watchdog = call_bound + 2500ms;  // a call still running then is killed and reported

Options dripping_options(const std::string& url) {
  Options o;
  o.url = url;
  o.connect_timeout = connect_timeout;
  o.command_timeout = command_timeout;
  return o;
}

// A call that must end within its bound with a timeout.
void expect_timed_out(const Outcome& out) {
  EXPECT_TRUE(out.failed_with(errc::timeout)) << out.describe();
  EXPECT_GE(out.elapsed.count(), 0) << out.describe();
  EXPECT_LE(out.elapsed.count(), call_bound.count()) << out.describe();
}

class DripTest : public test::SharedServerTest<DripTest> {};

// ---- how a read waits: blocked in recv() under a receive timeout, or in poll() --------------

using process_lock::detail::plan_read_wait;
using process_lock::detail::read_wait_slack;
using process_lock::detail::ReadWait;
using std::chrono::microseconds;
using std::chrono::milliseconds;

TEST(ReadWaitTest, Table) {
  struct Row {
    milliseconds current;
    microseconds left;
    ReadWait expected;
  };
  const Row rows[] = {
      {0ms, 0us, {}},                         // nothing left: poll() looks once
      {0ms, 99999us, {}},                     // under 100 ms: poll(), to the millisecond
      {1500ms, 99999us, {}},                  // even with a timeout set
      {0ms, 100ms, {70ms, true}},             // seven tenths of what is left
      {0ms, 1999950us, {1399ms, true}},       // the first call with a 2 s command timeout
      {1399ms, 1999950us, {1399ms, false}},   // the next calls keep it: no system call
      {1399ms, 1865334us, {1399ms, false}},   // also for a read 134 ms into the call
      {1399ms, 1865333us, {1305ms, true}},    // not later: over three quarters of what is left
      {1500ms, 1999900us, {1399ms, true}},    // over three quarters: shortened
      {1500ms, 3000ms, {1500ms, false}},      // still at least half of what is left
      {1500ms, 3001ms, {2100ms, true}},       // less than half: set anew
      {1500ms, 1525ms, {1067ms, true}},       // 25 ms before the deadline is not enough: the
                                              // kernel's timer may fire up to an eighth late
      {7500ms, 7600ms, {5320ms, true}},       // likewise for a 10 s command timeout
      {7000ms, 9999900us, {7000ms, false}},   // which keeps the 7 s it set
      {75ms, 80ms, {}},                       // a dripping reply near its deadline: poll() for the rest
      {0ms, 3600s, {2520s, true}},            // the longest command timeout
  };
  for (const Row& r : rows) {
    const ReadWait got = plan_read_wait(r.current, r.left);
    EXPECT_EQ(got, r.expected) << "current " << r.current.count() << " ms, left " << r.left.count() << " us: got "
                               << got.timeout.count() << " ms, set " << got.set;
  }
}

// Whatever the socket's timeout was, a blocking read's timeout is at most three quarters of what
// is left and ends at least the slack before the deadline: the kernel's timer, which may fire up
// to an eighth of the timeout (plus a tick) late, cannot carry it past.
TEST(ReadWaitTest, ABlockingReadAlwaysEndsTheSlackBeforeTheDeadline) {
  for (const long current : {0L, 1L, 10L, 74L, 75L, 100L, 1000L, 1399L, 1500L, 2000L, 7000L, 3599999L})
    for (long left = 0; left <= 12000000; left += left < 200000 ? 997 : 99991) {
      const ReadWait got = plan_read_wait(milliseconds(current), microseconds(left));
      if (got.timeout.count() == 0) continue;
      EXPECT_LE(microseconds(got.timeout) + read_wait_slack, microseconds(left)) << current << " ms, " << left << " us";
      EXPECT_LE(microseconds(got.timeout) * 4, microseconds(left) * 3) << current << " ms, " << left << " us";
      EXPECT_EQ(got.set, got.timeout != milliseconds(current)) << current << " ms, " << left << " us";
    }
}

// ---- each call through a dripping proxy -----------------------------------------------------

struct DrippedCall {
  const char* name;
  bool hold_first;  // take the lock before the drip starts (the call then reuses that connection)
  std::function<void(ProcessLock&)> call;
};

void PrintTo(const DrippedCall& c, std::ostream* os) { *os << c.name; }

class DrippedCallTest : public DripTest, public ::testing::WithParamInterface<DrippedCall> {};

TEST_P(DrippedCallTest, EndsWithinConnectPlusCommandTimeoutWithATimeout) {
  const DrippedCall& c = GetParam();
  const int port = server_->port();
  const Outcome out = test::in_bounded_child(
      [&](test::Measure& measure) {
        DripProxy proxy(port);
        ProcessLock lock("job", 10s, dripping_options(proxy.url()));
        if (c.hold_first && !lock.lock()) throw std::runtime_error("the lock was not free");
        proxy.drip(per_byte);
        measure([&] { c.call(lock); });
      },
      watchdog);
  expect_timed_out(out);
}

INSTANTIATE_TEST_SUITE_P(
    EveryCall, DrippedCallTest,
    ::testing::Values(DrippedCall{"lock", false, [](ProcessLock& l) { (void)l.lock(); }},
                      DrippedCall{"lock_while_held", true, [](ProcessLock& l) { (void)l.lock(); }},
                      DrippedCall{"update", true, [](ProcessLock& l) { (void)l.update(); }},
                      DrippedCall{"clear", true, [](ProcessLock& l) { (void)l.clear(); }},
                      DrippedCall{"state", false, [](ProcessLock& l) { (void)l.state(); }},
                      DrippedCall{"inspect", true, [](ProcessLock& l) { (void)l.inspect(); }},
                      // Its first attempt cannot complete: it must fail with it, not wait 10 s.
                      DrippedCall{"try_lock_for", false, [](ProcessLock& l) { (void)l.try_lock_for(10s); }}),
    [](const ::testing::TestParamInfo<DrippedCall>& info) { return std::string(info.param.name); });

TEST(DripHandshakeTest, AuthAndSelectRepliesTricklingEndTheCallInTime) {
  // AUTH and SELECT answer +OK each: ten bytes, 9 s at this rate. The connect timeout is the
  // command timeout here, so that each byte also arrives inside the handshake's own timeout.
  test::RedisServer server({"--requirepass", "drip-pw-1"});
  const int port = server.port();
  const Outcome out = test::in_bounded_child(
      [&](test::Measure& measure) {
        DripProxy proxy(port);
        Options o = dripping_options("redis://:drip-pw-1@127.0.0.1:" + std::to_string(proxy.port()) + "/1");
        o.connect_timeout = command_timeout;
        ProcessLock lock("job", 10s, o);
        proxy.drip(per_byte);
        measure([&] { (void)lock.lock(); });
      },
      watchdog + command_timeout);
  EXPECT_TRUE(out.failed_with(errc::timeout)) << out.describe();
  EXPECT_GE(out.elapsed.count(), 0) << out.describe();
  EXPECT_LE(out.elapsed.count(), (call_bound + command_timeout - connect_timeout).count()) << out.describe();
}

TEST_F(DripTest, WaitReplyTricklingEndsTheCallInTime) {
  // With wait_replicas the script and a WAIT go in one round trip; both replies trickle.
  const int port = server_->port();
  const Outcome out = test::in_bounded_child(
      [&](test::Measure& measure) {
        DripProxy proxy(port);
        Options o = dripping_options(proxy.url());
        o.wait_replicas = 1;
        o.wait_timeout = 100ms;
        ProcessLock lock("job", 10s, o);
        proxy.drip(per_byte);
        measure([&] { (void)lock.lock(); });
      },
      watchdog);
  expect_timed_out(out);
}

TEST_F(DripTest, RedirectToADrippingNodeEndsTheCallInTime) {
  // A node that redirects at once (MOVED, as a Redis Cluster does) to one whose replies trickle:
  // the bound is the call's, from its start, not per hop. (Both peers live in this process and
  // drip from the start: nothing needs setting up in the child.)
  DripProxy proxy(server_->port());
  proxy.drip(per_byte);
  test::FakeServer redirector(
      {{{test::FakeServer::Act::reply, "-MOVED 1234 127.0.0.1:" + std::to_string(proxy.port()) + "\r\n"}}});
  const std::string url = redirector.url();
  const Outcome out = test::in_bounded_child(
      [&](test::Measure& measure) {
        ProcessLock lock("job", 10s, dripping_options(url));
        measure([&] { (void)lock.lock(); });
      },
      watchdog);
  expect_timed_out(out);
}

// ---- the keeper ------------------------------------------------------------------------------

TEST_F(DripTest, KeeperReportsUnreachableBeforeTheValidityEndsAndBeforeAnotherOwnerTakesTheLock) {
  // The finding: renewals reach the server at once, their replies trickle in 0.9 s apart,
  // each byte inside the 1.5 s command timeout. The keeper must give up `margin` before the
  // validity ends and say so, while the lock is still ours; only then may another owner get it.
  DripProxy proxy(server_->port());
  ProcessLock holder("job", 3000ms, dripping_options(proxy.url()));
  ProcessLock other("job", 3000ms, test::options_for(server_->url()));
  ASSERT_TRUE(holder.lock());
  ASSERT_TRUE(holder.update());  // the server now knows the update script: a renewal runs at once
  constexpr auto margin = 1000ms;
  KeepOptions keep;
  keep.interval = 1000ms;
  keep.margin = margin;
  std::atomic<Clock::rep> reported_at{0};
  std::atomic<long long> valid_for_at_report{-1};
  test::LostProbe probe;
  holder.keep(probe.options(keep, [&] {
    valid_for_at_report = holder.valid_for().count();
    reported_at = Clock::now().time_since_epoch().count();
  }));
  const auto dripping_from = Clock::now();
  proxy.drip(per_byte);

  // Another owner, straight to the server, tries until it gets the lock (bounded).
  std::optional<Clock::time_point> taken_at;
  while (!taken_at && Clock::now() - dripping_from < 10s) {
    if (other.lock())
      taken_at = Clock::now();
    else
      std::this_thread::sleep_for(10ms);
  }
  const bool reported = probe.reported(3s);  // a late report still tells how late
  proxy.drip(0ms);                           // what is held back goes now: nothing below waits on a trickle

  ASSERT_TRUE(taken_at) << "the other owner never got the lock within 10 s";
  ASSERT_TRUE(reported) << "on_lost was not called; another owner took the lock "
                        << std::chrono::duration_cast<std::chrono::milliseconds>(*taken_at - dripping_from).count()
                        << " ms into the drip";
  const Clock::time_point report_time{Clock::duration(reported_at.load())};
  const auto ms = [&](Clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t - dripping_from).count();
  };
  EXPECT_LT(ms(report_time), ms(*taken_at))
      << "reported at " << ms(report_time) << " ms, but another owner took the lock at " << ms(*taken_at) << " ms";
  const process_lock::Lost lost = probe.at(0);
  EXPECT_EQ(std::string(process_lock::to_string(lost.reason)), "unreachable");
  EXPECT_TRUE(lost.error.code() == errc::timeout) << "the renewal's error: " << lost.error.what();
  EXPECT_GT(lost.remaining.count(), 0);
  // Reported no later than valid_until - margin (+ scheduling slack): the validity left then is
  // at least the margin, less that slack.
  EXPECT_GE(valid_for_at_report.load(), (margin - 300ms).count())
      << "valid_for() was " << valid_for_at_report.load() << " ms when on_lost was called";
}

// ---- hostile servers -------------------------------------------------------------------------

// (The bounds and helpers are shared with the same test over TLS: see tests/hostile.hpp.)
using test::expect_bounded;
using test::hostile_options;

class HostileServerTest : public ::testing::TestWithParam<HostileServer::Attack> {};

TEST_P(HostileServerTest, LockEndsInTimeWithAClearErrorAndBoundedMemory) {
  HostileServer server(GetParam());
  expect_bounded(GetParam(), test::bounded_call(server.url(), [](ProcessLock& l) { (void)l.lock(); }));
}

// A script error that an older server (Redis up to 6.2) or a proxy wraps in "ERR Error running
// script ..." is the same failure as the unwrapped one: a server answering lock() with each form
// gives the error kind the unwrapped reply gives (see detail::error_reply_kind).
TEST(ErrorReplyTest, AWrappedScriptErrorHasTheKindOfTheUnwrappedOne) {
  struct Row {
    std::string reply;
    process_lock::errc kind;
  };
  const Row rows[] = {
      {"-NOPERM this user has no permissions to run the 'set' command\r\n", process_lock::errc::permission_denied},
      {"-ERR Error running script (call to f_0a): @user_script:1: @user_script: 1: -NOPERM this user has no "
       "permissions to run the 'set' command\r\n",
       process_lock::errc::permission_denied},
      {"-ERR Error running script (call to f_0a): @user_script:1: @user_script: 1: The user executing the script "
       "can't run this command or subcommand\r\n",
       process_lock::errc::permission_denied},
      {"-ERR Error running script (call to f_0a): @user_script:1: WRONGTYPE Operation against a key holding the "
       "wrong kind of value\r\n",
       process_lock::errc::server_error},
      {"-ERR a script said NOPERM in its own words\r\n", process_lock::errc::server_error},
  };
  for (const Row& row : rows) {
    HostileServer server(HostileServer::Attack::trickle, {row.reply});
    ProcessLock lock("job", 10s, hostile_options(server.url()));
    const process_lock::Error e = test::failure_of([&] { (void)lock.lock(); });
    EXPECT_EQ(e.code(), row.kind) << row.reply << e.what();
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(server.port())), std::string::npos) << e.what();
  }
}

TEST_P(HostileServerTest, UpdateAfterANormalLockEndsInTimeWithAClearErrorAndBoundedMemory) {
  // The server answers the lock as Redis would, then turns on the renewal.
  HostileServer server(GetParam(), {"*2\r\n:1\r\n:7\r\n"});
  const std::string url = server.url();
  const Outcome out = test::in_bounded_child(
      [&](test::Measure& measure) {
        ProcessLock lock("job", 10s, hostile_options(url));
        if (!lock.lock()) throw std::runtime_error("the server's first reply did not grant the lock");
        measure([&] { (void)lock.update(); });
      },
      test::hostile_watchdog);
  expect_bounded(GetParam(), out);
}

TEST_P(HostileServerTest, StateEndsInTimeWithAClearErrorAndBoundedMemory) {
  // GET expects a bulk string: the trickle's and huge_bulk's are of the right type.
  HostileServer server(GetParam());
  expect_bounded(GetParam(), test::bounded_call(server.url(), [](ProcessLock& l) { (void)l.state(); }));
}

INSTANTIATE_TEST_SUITE_P(EveryAttack, HostileServerTest, ::testing::ValuesIn(test::every_attack), test::attack_name);

// Replies up to the caps are read as usual: the caps must not refuse what a real server sends.
TEST(ReplyCapTest, ARealReplyNearTheByteCapIsRead) {
  test::RedisServer server;
  // A lock held by a value of nearly 4 MiB (e.g. set by hand): state() reads it whole.
  const std::string big(test::reply_byte_cap - 1024, 'v');
  server.client().run({"SET", "job", big});
  ProcessLock lock("job", 10s, test::options_for(server.url()));
  EXPECT_EQ(lock.state(), process_lock::State::locked);
}

}  // namespace
