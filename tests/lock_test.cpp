// The meaning of each call against a real redis-server: the table row by row, expiry,
// the wire contract with process-lock-node (played with raw commands), round trips per call.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include "support.hpp"

namespace {

using process_lock::errc;
using process_lock::Error;
using process_lock::Options;
using process_lock::ProcessLock;
using process_lock::State;
using namespace std::chrono_literals;

class LockTest : public test::SharedServerTest<LockTest> {
 protected:
  std::unique_ptr<ProcessLock> make(const std::string& name, std::chrono::milliseconds timeout = 10s) const {
    return std::make_unique<ProcessLock>(name, timeout, options());
  }
  long long pttl(const std::string& key) { return raw_->integer({"PTTL", key}); }
  std::optional<std::string> value(const std::string& key) { return raw_->string({"GET", key}); }
  // Another owner, as a node process would take it.
  void take_as_other(const std::string& key, const std::string& token = "11111111-2222-4333-8444-555555555555") {
    ASSERT_EQ(raw_->string({"SET", key, token, "NX", "EX", "60"}), "OK");
  }
};

// ---- lock() -------------------------------------------------------------------------------

TEST_F(LockTest, LockWhenAbsentTakesItWithTimeoutTtl) {
  auto lock = make("job", 10s);
  EXPECT_TRUE(lock->lock());
  EXPECT_TRUE(lock->owner());
  EXPECT_EQ(value("job"), lock->token());
  EXPECT_GT(pttl("job"), 9000);
  EXPECT_LE(pttl("job"), 10000);
}

TEST_F(LockTest, LockWhenOursResetsTtl) {
  auto lock = make("job", 10s);
  ASSERT_TRUE(lock->lock());
  raw_->run({"PEXPIRE", "job", "3000"});
  EXPECT_TRUE(lock->lock());
  EXPECT_GT(pttl("job"), 9000);
  EXPECT_EQ(value("job"), lock->token());
}

TEST_F(LockTest, LockWhenOthersIsFalseAndChangesNothing) {
  take_as_other("job");
  raw_->run({"PEXPIRE", "job", "3000"});  // shorter than our timeout: a wrong reset would show
  auto lock = make("job", 10s);
  EXPECT_FALSE(lock->lock());
  EXPECT_FALSE(lock->owner());
  EXPECT_EQ(value("job"), "11111111-2222-4333-8444-555555555555");
  EXPECT_LE(pttl("job"), 3000);
}

// ---- update() -----------------------------------------------------------------------------

TEST_F(LockTest, UpdateWhenAbsentIsFalseAndCreatesNothing) {
  auto lock = make("job");
  EXPECT_FALSE(lock->update());
  EXPECT_FALSE(lock->owner());
  EXPECT_EQ(raw_->integer({"EXISTS", "job"}), 0);
}

TEST_F(LockTest, UpdateWhenOursResetsTtl) {
  auto lock = make("job", 10s);
  ASSERT_TRUE(lock->lock());
  raw_->run({"PEXPIRE", "job", "3000"});
  EXPECT_TRUE(lock->update());
  EXPECT_TRUE(lock->owner());
  EXPECT_GT(pttl("job"), 9000);
}

TEST_F(LockTest, UpdateWhenOthersIsFalseAndChangesNothing) {
  take_as_other("job");
  raw_->run({"PEXPIRE", "job", "3000"});
  auto lock = make("job", 10s);
  EXPECT_FALSE(lock->update());
  EXPECT_LE(pttl("job"), 3000);
  EXPECT_EQ(value("job"), "11111111-2222-4333-8444-555555555555");
}

// ---- release_at() --------------------------------------------------------------------------

// The hold ends, the lock stays taken (by nobody that renews it) until the time given, then
// expires by itself; the fence counter is untouched, so the next holder's fence is one higher.
TEST_F(LockTest, ReleaseAtLeavesTheLockTakenUntilThenItExpires) {
  auto lock = make("tick", 10s);
  ASSERT_TRUE(lock->lock());
  const std::uint64_t fence = *lock->fence();
  const std::string counter_key = process_lock::detail::companion_key(lock->key(), ":fence");
  const auto counter_before = raw_->string({"GET", counter_key});
  EXPECT_TRUE(lock->release_at(std::chrono::steady_clock::now() + 600ms));
  EXPECT_FALSE(lock->owner());
  EXPECT_EQ(lock->fence(), std::nullopt);
  EXPECT_EQ(value("tick"), lock->token());
  EXPECT_GT(pttl("tick"), 0);
  EXPECT_LE(pttl("tick"), 600);  // shortened from the 10 s timeout
  const long long record_left = raw_->integer({"PTTL", process_lock::detail::companion_key(lock->key(), ":owner")});
  EXPECT_GT(record_left, 0) << "the holder record goes with the lock";
  EXPECT_LE(record_left, 600);
  EXPECT_EQ(raw_->string({"GET", counter_key}), counter_before);
  auto late = make("tick");
  EXPECT_FALSE(late->lock()) << "a late host must find it taken";
  EXPECT_TRUE(late->try_lock_for(5s)) << "it expires by itself";
  EXPECT_EQ(late->fence(), fence + 1);
}

// A time point later than the timeout lengthens the lock the same way (a minimum hold longer
// than the TTL), and any clock is accepted.
TEST_F(LockTest, ReleaseAtCanOutlastTheTimeoutAndTakesAnyClock) {
  auto lock = make("tick", 1s);
  ASSERT_TRUE(lock->lock());
  EXPECT_TRUE(lock->release_at(std::chrono::system_clock::now() + 60s));
  EXPECT_GT(pttl("tick"), 50000);
  EXPECT_LE(pttl("tick"), 60000);
}

// Owner-checked: another owner's lock is neither shortened nor lengthened.
TEST_F(LockTest, ReleaseAtOfAnotherOwnersLockIsFalseAndChangesNothing) {
  take_as_other("tick");
  auto lock = make("tick");
  EXPECT_FALSE(lock->release_at(std::chrono::steady_clock::now() + 2s));
  EXPECT_GT(pttl("tick"), 55000);
  EXPECT_FALSE(lock->release_at(std::chrono::steady_clock::now() - 1s)) << "past: a clear() of ours only";
  EXPECT_EQ(value("tick"), "11111111-2222-4333-8444-555555555555");
}

TEST_F(LockTest, ReleaseAtAPastTimeReleasesAtOnce) {
  auto lock = make("tick");
  ASSERT_TRUE(lock->lock());
  EXPECT_TRUE(lock->release_at(std::chrono::steady_clock::now()));
  EXPECT_EQ(value("tick"), std::nullopt);
  EXPECT_FALSE(lock->owner());
}

// The keeper is stopped first: a renewal would put the usual timeout back.
TEST_F(LockTest, ReleaseAtStopsTheKeeper) {
  auto lock = make("tick", 3s);
  ASSERT_TRUE(lock->lock());
  process_lock::KeepOptions keep;
  keep.interval = 10ms;
  lock->keep(keep);
  EXPECT_TRUE(lock->release_at(std::chrono::steady_clock::now() + 300ms));
  EXPECT_FALSE(lock->keeping());
  EXPECT_TRUE(test::wait_until([&] { return !value("tick"); })) << "renewed after release_at";
}

TEST_F(LockTest, ReleaseAtTooFarAwayIsAnInvalidArgument) {
  auto lock = make("tick");
  ASSERT_TRUE(lock->lock());
  try {
    (void)lock->release_at(std::chrono::steady_clock::now() + std::chrono::hours(24 * 366));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), errc::invalid_argument);
    EXPECT_TRUE(test::contains(e.what(), "release_at")) << e.what();
  }
  EXPECT_GT(pttl("tick"), 9000) << "changed nothing";
}

// ---- clear() and clear(true) --------------------------------------------------------------

TEST_F(LockTest, ClearWhenAbsentIsNullopt) {
  auto lock = make("job");
  EXPECT_EQ(lock->clear(), std::nullopt);
  EXPECT_EQ(lock->clear(true), std::nullopt);
}

TEST_F(LockTest, ClearWhenOursDeletes) {
  auto lock = make("job");
  ASSERT_TRUE(lock->lock());
  EXPECT_EQ(lock->clear(), std::optional<bool>(true));
  EXPECT_FALSE(lock->owner());
  EXPECT_EQ(raw_->integer({"EXISTS", "job"}), 0);
}

TEST_F(LockTest, ForceClearWhenOursDeletes) {
  auto lock = make("job");
  ASSERT_TRUE(lock->lock());
  EXPECT_EQ(lock->clear(true), std::optional<bool>(true));
  EXPECT_EQ(raw_->integer({"EXISTS", "job"}), 0);
}

TEST_F(LockTest, ClearWhenOthersIsFalseAndChangesNothing) {
  take_as_other("job");
  auto lock = make("job");
  EXPECT_EQ(lock->clear(), std::optional<bool>(false));
  EXPECT_EQ(value("job"), "11111111-2222-4333-8444-555555555555");
}

TEST_F(LockTest, ForceClearWhenOthersDeletes) {
  take_as_other("job");
  auto lock = make("job");
  EXPECT_EQ(lock->clear(true), std::optional<bool>(true));
  EXPECT_EQ(raw_->integer({"EXISTS", "job"}), 0);
}

// ---- state() ------------------------------------------------------------------------------

TEST_F(LockTest, StateReportsOpenAndLockedWhoeverHoldsIt) {
  auto mine = make("job");
  auto other = make("job");
  EXPECT_EQ(mine->state(), State::open);
  ASSERT_TRUE(mine->lock());
  EXPECT_EQ(mine->state(), State::locked);
  EXPECT_EQ(other->state(), State::locked);
  EXPECT_TRUE(mine->owner());  // state() does not touch the flag
  ASSERT_EQ(mine->clear(), std::optional<bool>(true));
  take_as_other("job");
  EXPECT_EQ(mine->state(), State::locked);
}

// ---- ownership and expiry -----------------------------------------------------------------

TEST_F(LockTest, SecondOwnerCannotTakeUpdateOrClearAHeldLock) {
  auto first = make("job");
  auto second = make("job");
  ASSERT_TRUE(first->lock());
  EXPECT_FALSE(second->lock());
  EXPECT_FALSE(second->update());
  EXPECT_EQ(second->clear(), std::optional<bool>(false));
  EXPECT_EQ(value("job"), first->token());
  EXPECT_TRUE(first->update());
}

TEST_F(LockTest, ExpiredLockIsFreeForOthersAndNoLongerOurs) {
  auto first = make("job", 30ms);
  auto second = make("job", 10s);
  ASSERT_TRUE(first->lock());
  ASSERT_TRUE(test::wait_until([&] { return raw_->integer({"EXISTS", "job"}) == 0; }));
  EXPECT_FALSE(first->update());  // expired: renewing must not resurrect it
  EXPECT_EQ(raw_->integer({"EXISTS", "job"}), 0);
  EXPECT_TRUE(second->lock());
  EXPECT_FALSE(first->update());
  EXPECT_EQ(first->clear(), std::optional<bool>(false));
  EXPECT_EQ(value("job"), second->token());
}

TEST_F(LockTest, UpdateKeepsALockAliveBeyondItsTimeout) {
  // Renewing every 20 ms leaves a 300 ms lock ample slack even on a loaded machine.
  auto holder = make("job", 300ms);
  auto rival = make("job", 300ms);
  ASSERT_TRUE(holder->lock());
  const auto until = std::chrono::steady_clock::now() + 1000ms;  // more than three timeouts
  while (std::chrono::steady_clock::now() < until) {
    ASSERT_TRUE(holder->update());
    ASSERT_FALSE(rival->lock());
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(value("job"), holder->token());
}

TEST_F(LockTest, OwnerFlagFollowsAnswers) {
  auto lock = make("job");
  EXPECT_FALSE(lock->owner());
  ASSERT_TRUE(lock->lock());
  EXPECT_TRUE(lock->owner());
  raw_->run({"SET", "job", "someone-else"});
  EXPECT_FALSE(lock->update());
  EXPECT_FALSE(lock->owner());
  raw_->run({"DEL", "job"});
  ASSERT_TRUE(lock->lock());
  ASSERT_TRUE(lock->clear().value());
  EXPECT_FALSE(lock->owner());
}

// ---- names and keys -----------------------------------------------------------------------

TEST_F(LockTest, NamesAreBinarySafe) {
  constexpr char bytes[] = "job\0with nul\r\n and \xc3\xa9 \xff";
  const std::string name(bytes, sizeof bytes - 1);  // all of it, up to the \xff
  ASSERT_EQ(name.back(), '\xff');
  ProcessLock lock(name, 10, options());
  ASSERT_TRUE(lock.lock());
  EXPECT_EQ(value(name), lock.token());
  EXPECT_EQ(raw_->integer({"EXISTS", "job"}), 0);
  EXPECT_EQ(lock.clear(), std::optional<bool>(true));
}

TEST_F(LockTest, KeyPrefixIsApplied) {
  Options o = options();
  o.key_prefix = "app:";
  ProcessLock lock("job", 10, o);
  ASSERT_TRUE(lock.lock());
  EXPECT_EQ(value("app:job"), lock.token());
  EXPECT_EQ(raw_->integer({"EXISTS", "job"}), 0);
}

TEST_F(LockTest, DatabaseFromUrlIsSelected) {
  ProcessLock lock("job", 10, test::options_for(server_->url() + "/3"));
  ASSERT_TRUE(lock.lock());
  EXPECT_EQ(raw_->integer({"EXISTS", "job"}), 0);
  raw_->run({"SELECT", "3"});
  EXPECT_EQ(value("job"), lock.token());
}

TEST_F(LockTest, UnixSocketWithDatabase) {
  ProcessLock lock("job", 10, test::options_for("unix://" + server_->socket_path() + "?db=2"));
  ASSERT_TRUE(lock.lock());
  EXPECT_EQ(lock.state(), State::locked);
  raw_->run({"SELECT", "2"});
  EXPECT_EQ(value("job"), lock.token());
}

TEST_F(LockTest, Ipv6Loopback) {
  if (!test::has_ipv6_loopback()) GTEST_SKIP() << "this host has no IPv6 loopback address";
  // The server binds 127.0.0.1 only; a second one on ::1 shows the bracket syntax end to end.
  test::RedisServer v6({"--bind", "::1"});
  ProcessLock lock("job", 10, test::options_for("redis://[::1]:" + std::to_string(v6.port())));
  EXPECT_TRUE(lock.lock());
}

// ---- callbacks ----------------------------------------------------------------------------

TEST_F(LockTest, CallbackFormsDeliverTheSameAnswers) {
  auto lock = make("job");
  auto other = make("job");
  std::vector<std::string> seen;
  lock->state([&](const Error& err, State s) {
    seen.push_back(std::string(err ? "err" : "ok") + ":" + std::string(to_string(s)));
  });
  lock->lock([&](const Error& err, bool owner) {
    seen.push_back(std::string(err ? "err" : "ok") + ":" + (owner ? "1" : "0"));
  });
  other->lock([&](const auto& err, bool owner) {
    seen.push_back(std::string(err ? "err" : "ok") + ":" + (owner ? "1" : "0"));
  });
  lock->update([&](const Error&, bool renewed) { seen.emplace_back(renewed ? "renewed" : "not renewed"); });
  other->clear([&](const Error&, std::optional<bool> c) { seen.emplace_back(!c ? "null" : *c ? "true" : "false"); });
  lock->clear([&](const Error&, std::optional<bool> c) { seen.emplace_back(!c ? "null" : *c ? "true" : "false"); });
  lock->clear(true, [&](const Error&, std::optional<bool> c) {
    seen.emplace_back(!c ? "null" : *c ? "true" : "false");
  });
  EXPECT_EQ(seen, (std::vector<std::string>{"ok:open", "ok:1", "ok:0", "renewed", "false", "true", "null"}));
}

TEST_F(LockTest, CallbackMayCallTheSameObjectAgain) {
  auto lock = make("job");
  bool renewed = false;
  lock->lock([&](const Error&, bool owner) {
    ASSERT_TRUE(owner);
    renewed = lock->update();  // would deadlock if the callback ran under the object's mutex
  });
  EXPECT_TRUE(renewed);
}

// ---- server-side errors -------------------------------------------------------------------

TEST_F(LockTest, KeyOfWrongTypeIsAServerErrorWithTheServersText) {
  raw_->run({"HSET", "job", "field", "value"});
  auto lock = make("job");
  for (const auto& call :
       std::vector<std::function<void()>>{[&] { (void)lock->lock(); }, [&] { (void)lock->update(); },
                                          [&] { (void)lock->clear(); }, [&] { (void)lock->state(); }}) {
    try {
      call();
      FAIL() << "no error for a hash at the lock's key";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), errc::server_error);
      EXPECT_EQ(e.server_reply().rfind("WRONGTYPE", 0), 0u) << e.server_reply();
      EXPECT_NE(std::string(e.what()).find("(\"job\")"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(raw_->string({"TYPE", "job"}), "hash");
}

TEST_F(LockTest, ScriptsSurviveScriptFlush) {
  auto lock = make("job");
  ASSERT_TRUE(lock->lock());
  raw_->run({"SCRIPT", "FLUSH"});
  raw_->reset_stats();
  EXPECT_TRUE(lock->update());
  EXPECT_EQ(raw_->command_calls()["evalsha"], 1);  // answered NOSCRIPT
  EXPECT_EQ(raw_->command_calls()["eval"], 1);     // the fallback, which reloads it
  EXPECT_TRUE(lock->update());
  EXPECT_EQ(raw_->command_calls()["evalsha"], 2);
  EXPECT_EQ(raw_->command_calls()["eval"], 1);
}

TEST_F(LockTest, ScriptShaMatchesTheServers) {
  using namespace process_lock::detail;
  for (const Script* s : {&lock_script(), &update_script(), &clear_script(), &inspect_script(), &watch_script()})
    EXPECT_EQ(raw_->string({"SCRIPT", "LOAD", std::string(s->text)}), s->sha);
}

// ---- one round trip per call, counted by the server --------------------------------------

TEST_F(LockTest, EachCallIsOneCommandOnTheServer) {
  auto lock = make("job");
  // Connect, and let the server learn each script once (its first EVALSHA answers NOSCRIPT).
  ASSERT_EQ(lock->state(), State::open);
  ASSERT_TRUE(lock->lock());
  ASSERT_TRUE(lock->update());
  (void)lock->inspect();
  ASSERT_TRUE(lock->clear().value());

  // Inside a script the server counts each redis.call too, so the expected tables list them;
  // an extra command sent by the library (a GET before a script, say) would show up here.
  using Calls = std::map<std::string, long long>;
  raw_->reset_stats();
  for (int i = 0; i < 5; ++i) (void)lock->state();
  EXPECT_EQ(raw_->command_calls(), (Calls{{"get", 5}}));

  raw_->reset_stats();
  ASSERT_TRUE(lock->lock());  // absent: SET NX, INCR fence, TIME, SET holder's record
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(lock->lock());  // ours: SET NX, GET, PEXPIRE both, GET record
  EXPECT_EQ(raw_->command_calls(),
            (Calls{{"evalsha", 5}, {"set", 6}, {"incr", 1}, {"time", 1}, {"get", 8}, {"pexpire", 8}}));

  raw_->reset_stats();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(lock->update());  // GET, PEXPIRE both
  EXPECT_EQ(raw_->command_calls(), (Calls{{"evalsha", 5}, {"get", 5}, {"pexpire", 10}}));

  raw_->reset_stats();
  ASSERT_TRUE(lock->clear().value());       // MGET lock and record, DEL both; nobody listens: no PUBLISH
  ASSERT_FALSE(lock->clear().has_value());  // MGET, GET (for a key of another type's error)
  EXPECT_EQ(raw_->command_calls(), (Calls{{"evalsha", 2}, {"mget", 2}, {"del", 1}, {"get", 1}}));

  raw_->reset_stats();
  for (int i = 0; i < 3; ++i) (void)lock->inspect();  // GET, GET record, PTTL, GET fence, HMGET 0.1.0's hash
  EXPECT_EQ(raw_->command_calls(), (Calls{{"evalsha", 3}, {"get", 9}, {"pttl", 3}, {"hmget", 3}}));
}

// ---- wire contract with process-lock-node ------------------------------------------------

TEST_F(LockTest, NodeHolderIsRespectedExceptByForce) {
  // What process-lock-node sends to take a lock: SET name <uuid v4> NX EX timeout.
  take_as_other("nightly-report", "9b2f0d1e-3c4a-4f5b-8a6c-7d8e9f0a1b2c");
  ProcessLock lock("nightly-report", 60, options());
  EXPECT_FALSE(lock.lock());
  EXPECT_EQ(lock.state(), State::locked);
  EXPECT_FALSE(lock.update());
  EXPECT_EQ(lock.clear(), std::optional<bool>(false));
  EXPECT_EQ(value("nightly-report"), "9b2f0d1e-3c4a-4f5b-8a6c-7d8e9f0a1b2c");
  EXPECT_EQ(lock.clear(true), std::optional<bool>(true));
  EXPECT_EQ(raw_->integer({"EXISTS", "nightly-report"}), 0);
}

TEST_F(LockTest, OurHolderBlocksANodeProcess) {
  ProcessLock lock("nightly-report", 60, options());
  ASSERT_TRUE(lock.lock());
  // The node side: its lock is SET NX EX, its state a GET, its clear a GET then DEL if equal.
  EXPECT_EQ(raw_->string({"SET", "nightly-report", "0f1e2d3c-4b5a-4697-8877-665544332211", "NX", "EX", "60"}),
            std::nullopt);
  EXPECT_EQ(value("nightly-report"), lock.token());  // a plain UUID, readable by node
  EXPECT_GT(pttl("nightly-report"), 59000);          // a TTL node would also set
}

TEST_F(LockTest, NodeForceClearOfOurLockLeavesNothingThatPosesAsTheHolder) {
  ProcessLock lock("nightly-report", 60, options());
  ASSERT_TRUE(lock.lock());
  // node's clear(true) deletes the lock key only; our holder's record stays until its TTL.
  raw_->run({"DEL", "nightly-report"});
  EXPECT_EQ(raw_->string({"SET", "nightly-report", "9b2f0d1e-3c4a-4f5b-8a6c-7d8e9f0a1b2c", "NX", "EX", "60"}), "OK");
  const process_lock::Inspection seen = lock.inspect();
  EXPECT_EQ(seen.state, State::locked);
  EXPECT_FALSE(seen.ours);
  EXPECT_FALSE(seen.holder.has_value());  // the stale record is not the node holder's
  EXPECT_FALSE(lock.lock());
  EXPECT_FALSE(lock.update());
  EXPECT_EQ(lock.clear(), std::optional<bool>(false));
  EXPECT_EQ(value("nightly-report"), "9b2f0d1e-3c4a-4f5b-8a6c-7d8e9f0a1b2c");
}

// process-lock-node's own test sequence, with its timings replaced by waits on the server's
// state so it is exact on a loaded machine (its 1 s timeout becomes 500 ms).
TEST_F(LockTest, NodePackageTestSequence) {
  ProcessLock first("same-name", 500ms, options());
  ProcessLock second("same-name", 500ms, options());

  // firstProcess should be able to obtain lock
  first.lock([](const Error& err, bool result) {
    EXPECT_FALSE(err);
    EXPECT_TRUE(result);
  });
  EXPECT_TRUE(first.owner());
  // secondProcess should not be able to obtain the lock
  second.lock([](const Error& err, bool result) {
    EXPECT_FALSE(err);
    EXPECT_FALSE(result);
  });
  EXPECT_FALSE(second.owner());
  // firstProcess should be able to let go of the lock
  first.clear([](const Error& err, std::optional<bool> result) {
    EXPECT_FALSE(err);
    EXPECT_EQ(result, std::optional<bool>(true));
  });
  EXPECT_FALSE(first.owner());
  // secondProcess should be able to obtain the lock
  EXPECT_TRUE(second.lock());
  EXPECT_EQ(second.timeout(), 500ms);
  EXPECT_TRUE(second.owner());
  // secondProcess should be able to update the lock (halfway through its timeout)
  EXPECT_TRUE(second.update());
  EXPECT_TRUE(second.owner());
  // firstProcess should not be able to update the lock
  EXPECT_FALSE(first.update());
  EXPECT_FALSE(first.owner());
  // firstProcess should not be able to lock because secondProcess recently updated
  EXPECT_FALSE(first.lock());
  EXPECT_FALSE(first.owner());
  // firstProcess should be able to lock due to timeout
  ASSERT_TRUE(test::wait_until([&] { return raw_->integer({"EXISTS", "same-name"}) == 0; }));
  EXPECT_TRUE(first.lock());
  EXPECT_TRUE(first.owner());
  // secondProcess should be able to force the lock to clear
  second.clear(true, [&](const Error& err, std::optional<bool> result) {
    EXPECT_FALSE(err);
    EXPECT_EQ(result, std::optional<bool>(true));
    second.state([](const Error& state_err, State state) {
      EXPECT_FALSE(state_err);
      EXPECT_EQ(state, State::open);
    });
  });
  // second lock clear returns null
  second.clear(true, [](const Error& err, std::optional<bool> result) {
    EXPECT_FALSE(err);
    EXPECT_EQ(result, std::nullopt);
  });
}

// ---- destruction ---------------------------------------------------------------------------

TEST_F(LockTest, DestructorReleasesALockItHolds) {
  auto lock = make("job");
  ASSERT_TRUE(lock->lock());
  lock.reset();
  EXPECT_EQ(raw_->integer({"EXISTS", "job"}), 0);
}

TEST_F(LockTest, DestructorLeavesOthersLocksAlone) {
  auto lock = make("job");
  ASSERT_TRUE(lock->lock());
  // Taken over behind our back (force-cleared and re-taken): our flag is stale, the script is not.
  raw_->run({"SET", "job", "someone-else"});
  EXPECT_TRUE(lock->owner());
  lock.reset();
  EXPECT_EQ(value("job"), "someone-else");

  auto never_held = make("job");
  never_held.reset();  // owner() false: not even a round trip
  EXPECT_EQ(value("job"), "someone-else");
}

TEST_F(LockTest, ForkedChildNeitherSharesTheSocketNorReleasesOnExit) {
  auto lock = make("job");
  ASSERT_TRUE(lock->lock());  // connected, and the owner
  auto connections = [&] {
    std::istringstream in(*raw_->string({"INFO", "stats"}));
    for (std::string line; std::getline(in, line);)
      if (line.rfind("total_connections_received:", 0) == 0) return std::stoll(line.substr(27));
    return -1LL;
  };
  const long long before = connections();
  const int status = test::in_child([&] {
    // Same token, so still the owner; the call must use a connection of its own.
    const bool renewed = lock->update();
    lock.reset();  // a child's destructor must not release the parent's lock
    return renewed ? 0 : 1;
  });
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(connections(), before + 1);  // the child opened its own
  EXPECT_EQ(value("job"), lock->token());
  EXPECT_TRUE(lock->update());  // the parent's connection was not disturbed
}

TEST_F(LockTest, SocketIsCloseOnExec) {
  // Sockets by identity ("socket:[inode]"), since descriptor numbers get reused.
  auto sockets = [] {
    std::map<std::string, int> found;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
      std::error_code ec;
      const std::string target = std::filesystem::read_symlink(entry.path(), ec).string();
      if (!ec && target.rfind("socket:", 0) == 0) found[target] = std::stoi(entry.path().filename().string());
    }
    return found;
  };
  auto lock = make("job");
  const auto before = sockets();
  ASSERT_EQ(lock->state(), State::open);  // opens the connection
  int checked = 0;
  for (const auto& [identity, fd] : sockets()) {
    if (before.count(identity)) continue;
    EXPECT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC) << "descriptor " << fd;
    ++checked;
  }
  EXPECT_EQ(checked, 1);
}

// ---- one object, many threads ---------------------------------------------------------------

TEST_F(LockTest, OneObjectIsSafeFromManyThreads) {
  auto lock = make("job");
  std::atomic<int> errors{0}, answers{0};
  std::vector<std::thread> threads;
  threads.reserve(8);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        try {
          switch ((t + i) % 4) {
            case 0:
              (void)lock->lock();
              break;
            case 1:
              (void)lock->update();
              break;
            case 2:
              (void)lock->state();
              break;
            default:
              lock->clear([&](const Error& err, std::optional<bool>) { errors += err ? 1 : 0; });
              break;
          }
          ++answers;
        } catch (const Error&) {
          ++errors;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(answers.load(), 800);
  // Still coherent afterwards: whatever the interleaving, the object can take and release.
  EXPECT_TRUE(lock->lock());
  EXPECT_EQ(value("job"), lock->token());
  EXPECT_EQ(lock->clear(), std::optional<bool>(true));
}

}  // namespace
