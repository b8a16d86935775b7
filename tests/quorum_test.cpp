// Several independent masters (Redlock): a lock is held only when a majority granted it in
// time. Real redis-servers are killed, paused and restarted under a held lock.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "contention.hpp"
#include "support.hpp"

namespace {

using process_lock::errc;
using process_lock::Error;
using process_lock::KeepOptions;
using process_lock::LostReason;
using process_lock::ProcessLock;
using process_lock::State;
using test::contains;
using test::failure_of;
using namespace std::chrono_literals;

class QuorumTest : public ::testing::Test {
 protected:
  // `count` masters; `extra` arguments for each (e.g. persistence).
  void start(int count, const std::vector<std::string>& extra = {}) {
    for (int i = 0; i < count; ++i) masters_.push_back(std::make_unique<test::RedisServer>(extra));
  }
  std::string url() const {
    std::string list;
    // Appended piece by piece: `(... ? "" : ",") + url()` trips GCC 12's false -Wrestrict at -O3.
    for (const auto& m : masters_) {
      if (!list.empty()) list += ',';
      list += m->url();
    }
    return list;
  }
  process_lock::Options options() const { return test::options_for(url(), 500ms); }
  // The lock key's value on master `i` (nullopt: absent).
  std::optional<std::string> value_on(std::size_t i, const std::string& key) {
    return masters_[i]->client().string({"GET", key});
  }
  std::size_t holders_of(const ProcessLock& lock) {
    std::size_t n = 0;
    for (std::size_t i = 0; i < masters_.size(); ++i) n += value_on(i, lock.key()) == lock.token();
    return n;
  }

  std::vector<std::unique_ptr<test::RedisServer>> masters_;
};

TEST_F(QuorumTest, AcquiredWithThreeOfFiveUp) {
  start(5);
  masters_[1]->kill();
  masters_[3]->kill();
  ProcessLock lock("quorum-job", 10s, options());
  ASSERT_TRUE(lock.lock());
  EXPECT_TRUE(lock.owner());
  EXPECT_GT(lock.fence().value_or(0), 0u);
  for (std::size_t i : {0, 2, 4}) EXPECT_EQ(value_on(i, "quorum-job"), lock.token()) << "master " << i;
  EXPECT_EQ(lock.state(), State::locked);
  EXPECT_EQ(lock.clear(), std::optional<bool>(true));
  for (std::size_t i : {0, 2, 4}) EXPECT_EQ(value_on(i, "quorum-job"), std::nullopt) << "master " << i;
}

// release_at() on every master: the lock stays taken there until the time given.
TEST_F(QuorumTest, ReleaseAtLeavesItTakenOnEveryMaster) {
  start(3);
  ProcessLock lock("quorum-tick", 10s, options());
  ASSERT_TRUE(lock.lock());
  // lock() returns once a majority granted; a renewal waits for every master, so that all hold it.
  ASSERT_TRUE(lock.update());
  ASSERT_EQ(holders_of(lock), masters_.size());
  EXPECT_TRUE(lock.release_at(std::chrono::steady_clock::now() + 2s));
  EXPECT_FALSE(lock.owner());
  for (std::size_t i = 0; i < masters_.size(); ++i) {
    EXPECT_EQ(value_on(i, "quorum-tick"), lock.token()) << "master " << i;
    const long long left = masters_[i]->client().integer({"PTTL", "quorum-tick"});
    EXPECT_GT(left, 0) << "master " << i;
    EXPECT_LE(left, 2000) << "master " << i;
  }
  ProcessLock other("quorum-tick", 10s, options());
  EXPECT_FALSE(other.lock());
}

// Refused by a majority (another owner holds it there): what a minority still held for us is
// given back, not left blocking others until the time given.
TEST_F(QuorumTest, ReleaseAtRefusedGivesBackTheMinority) {
  start(3);
  ProcessLock lock("quorum-tick", 10s, options());
  ASSERT_TRUE(lock.lock());
  ASSERT_TRUE(lock.update());  // every master holds it
  for (std::size_t i : {1, 2}) masters_[i]->client().run({"SET", "quorum-tick", "another-owner", "PX", "60000"});
  EXPECT_FALSE(lock.release_at(std::chrono::steady_clock::now() + 60s));
  EXPECT_TRUE(test::wait_until([&] { return value_on(0, "quorum-tick") == std::nullopt; }))
      << "our minority copy left in place";
  for (std::size_t i : {1, 2}) EXPECT_EQ(value_on(i, "quorum-tick"), "another-owner") << "master " << i;
}

TEST_F(QuorumTest, RefusedWithTwoOfFiveUpNamingEachMaster) {
  start(5);
  const std::string dead1 = masters_[0]->url(), dead2 = masters_[2]->url(), dead3 = masters_[4]->url();
  masters_[0]->kill();
  masters_[2]->kill();
  masters_[4]->kill();
  ProcessLock lock("quorum-job", 10s, options());
  const Error e = failure_of([&] { (void)lock.lock(); });
  EXPECT_EQ(e.code(), errc::no_quorum) << e.what();
  EXPECT_TRUE(contains(e.what(), "2 of 5 masters granted the lock, 3 needed")) << e.what();
  for (const auto& dead : {dead1, dead2, dead3})
    EXPECT_TRUE(contains(e.what(), "unreachable: cannot connect to " + dead)) << e.what();
  EXPECT_TRUE(contains(e.what(), masters_[1]->url() + ": granted")) << e.what();
  EXPECT_FALSE(lock.owner());
  // What the two live masters granted was given back at once, not left to expire.
  EXPECT_EQ(value_on(1, "quorum-job"), std::nullopt);
  EXPECT_EQ(value_on(3, "quorum-job"), std::nullopt);
}

TEST_F(QuorumTest, MinorityKilledWhileHeldLeavesItHeldAndRenewable) {
  start(5);
  ProcessLock lock("quorum-job", 10s, options());
  ASSERT_TRUE(lock.lock());
  // lock() returns with a majority, but was sent to every master, which all take it (fresh
  // servers included: a new connection sends the script's text, never risking NOSCRIPT).
  EXPECT_TRUE(test::wait_until([&] { return holders_of(lock) == masters_.size(); }));
  masters_[0]->kill();
  masters_[4]->kill();
  EXPECT_TRUE(lock.update());
  EXPECT_TRUE(lock.owner());
  EXPECT_GT(lock.valid_for(), 9s);
  ProcessLock other("quorum-job", 10s, options());
  EXPECT_FALSE(other.lock());
  EXPECT_EQ(other.state(), State::locked);
  EXPECT_EQ(lock.clear(), std::optional<bool>(true));
  EXPECT_TRUE(other.lock());
}

TEST_F(QuorumTest, MajorityKilledMakesTheKeeperReportTheLossBeforeValidityEnds) {
  start(5);
  ProcessLock lock("quorum-job", 1500ms, options());
  ASSERT_TRUE(lock.lock());
  test::LostProbe probe;
  std::atomic<long long> valid_when_reported{-1};  // ms, read on the keeper's thread at the report
  KeepOptions keep;
  keep.interval = 100ms;
  keep.margin = 300ms;
  lock.keep(probe.options(keep, [&] { valid_when_reported = lock.valid_for().count(); }));
  std::this_thread::sleep_for(250ms);  // renewals work with every master up
  masters_[0]->kill();
  masters_[1]->kill();
  masters_[2]->kill();
  ASSERT_TRUE(probe.reported(5s));
  const process_lock::Lost lost = probe.at(0);
  EXPECT_EQ(lost.reason, LostReason::unreachable);
  EXPECT_EQ(lost.error.code(), errc::no_quorum) << lost.error.what();
  EXPECT_GT(lost.remaining, 0ms);
  EXPECT_GT(valid_when_reported.load(), 0);  // told while the hold still counted
  EXPECT_TRUE(lock.owner());                 // it may still be ours until then: clear() can release it
}

TEST_F(QuorumTest, ProcessesOnThreeMastersNeverHoldTogether) {
  start(3);
  test::SharedTally tally;
  constexpr int processes = 4, attempts = 150;
  EXPECT_EQ(test::contend_in_processes(processes, attempts, "quorum-job", options(), *tally), 0);
  test::expect_exclusive(*tally, processes);
}

TEST_F(QuorumTest, SplitVotesAreAPlainNoAndGivenBack) {
  start(5);
  ProcessLock lock("quorum-job", 10s, options());
  // Another owner holds it on 3 masters (a majority): ours is refused, not an error.
  for (std::size_t i : {0, 1, 2}) masters_[i]->client().run({"SET", "quorum-job", "other-owner", "PX", "5000"});
  EXPECT_FALSE(lock.lock());
  EXPECT_EQ(value_on(3, "quorum-job"), std::nullopt);  // our grants on 3 and 4 were given back
  EXPECT_EQ(value_on(4, "quorum-job"), std::nullopt);
  EXPECT_EQ(lock.state(), State::locked);
  EXPECT_EQ(lock.clear(), std::optional<bool>(false));  // not ours, anywhere
  // On 2 masters only, the other owner is a minority: ours wins the majority.
  masters_[2]->client().run({"DEL", "quorum-job"});
  EXPECT_TRUE(lock.lock());
  EXPECT_EQ(holders_of(lock), 3u);
}

TEST_F(QuorumTest, StateIsLockedWhenAnyMasterHoldsIt) {
  start(3);
  ProcessLock lock("quorum-job", 10s, options());
  EXPECT_EQ(lock.state(), State::open);
  masters_[2]->client().run({"SET", "quorum-job", "someone", "PX", "5000"});
  EXPECT_EQ(lock.state(), State::locked);
  masters_[0]->kill();
  masters_[1]->kill();
  EXPECT_EQ(lock.state(), State::locked);  // one answer that holds it is enough
  masters_[2]->client().run({"DEL", "quorum-job"});
  const Error e = failure_of([&] { (void)lock.state(); });  // one "open" of three is not
  EXPECT_EQ(e.code(), errc::no_quorum) << e.what();
}

TEST_F(QuorumTest, UpdateReacquiresOnAMasterThatLostItsData) {
  start(3);
  ProcessLock lock("quorum-job", 10s, options());
  ASSERT_TRUE(lock.lock());
  // lock() returns once a majority granted; the master not waited for may not have it (its
  // first EVALSHA was answered NOSCRIPT). A renewal, which hears every master, gets it back.
  ASSERT_TRUE(lock.update());
  ASSERT_EQ(holders_of(lock), 3u);
  const std::uint64_t fence = lock.fence().value_or(0);
  masters_[1]->kill();  // no persistence: it comes back empty
  masters_[1]->start();
  EXPECT_EQ(value_on(1, "quorum-job"), std::nullopt);
  EXPECT_TRUE(lock.update());
  EXPECT_EQ(value_on(1, "quorum-job"), lock.token());
  // Its fencing counter was raised to our token, so a later holder's token is higher still.
  EXPECT_EQ(masters_[1]->client().string({"GET", "{quorum-job}:fence"}), std::to_string(fence));
  EXPECT_EQ(lock.fence(), fence);
}

TEST_F(QuorumTest, NoReacquireOnceTheHoldHasExpired) {
  start(3);
  ProcessLock lock("quorum-job", 100ms, options());
  ASSERT_TRUE(lock.lock());
  std::this_thread::sleep_for(150ms);  // expired everywhere: someone else may have held it since
  EXPECT_FALSE(lock.update());
  EXPECT_EQ(holders_of(lock), 0u);
}

TEST_F(QuorumTest, FencingTokensIncreaseAcrossRestartsWithPersistence) {
  start(5, {"--appendonly", "yes", "--appendfsync", "always"});
  ProcessLock lock("quorum-job", 10s, options());
  std::vector<std::uint64_t> tokens;
  auto take_and_release = [&] {
    ASSERT_TRUE(lock.lock());
    tokens.push_back(lock.fence().value_or(0));
    ASSERT_EQ(lock.clear(), std::optional<bool>(true));
  };
  take_and_release();
  for (auto& m : masters_) m->kill();  // a crash of every master
  for (auto& m : masters_) m->start();
  take_and_release();
  masters_[0]->kill();
  masters_[1]->kill();
  take_and_release();  // on 3 masters
  masters_[0]->start();
  masters_[1]->start();
  masters_[4]->kill();
  take_and_release();  // on a majority that includes the two that missed the last one
  masters_[4]->start();
  take_and_release();
  ASSERT_EQ(tokens.size(), 5u);
  for (std::size_t i = 1; i < tokens.size(); ++i) EXPECT_GT(tokens[i], tokens[i - 1]) << "acquisition " << i;
}

TEST_F(QuorumTest, LaggingCountersAreRaisedSoTheNextMajorityGivesAHigherToken) {
  start(3);
  // Master 2 is down, so the majority is exactly masters 0 and 1 (a lock() decides as soon as a
  // majority granted, whichever two answer first).
  masters_[2]->kill();
  masters_[0]->client().run({"SET", "{quorum-job}:fence", "5"});  // master 1 missed 5 acquisitions
  ProcessLock lock("quorum-job", 10s, options());
  ASSERT_TRUE(lock.lock());
  EXPECT_EQ(lock.fence(), 6u);  // the highest of the majority's counters
  EXPECT_EQ(masters_[1]->client().string({"GET", "{quorum-job}:fence"}), "6") << "raised";
  ASSERT_EQ(lock.clear(), std::optional<bool>(true));
  masters_[2]->start();  // back, empty: its counter is 0
  masters_[0]->kill();   // the next majority is made of one that was raised and one that lags
  ASSERT_TRUE(lock.lock());
  EXPECT_EQ(lock.fence(), 7u);
  EXPECT_EQ(masters_[2]->client().string({"GET", "{quorum-job}:fence"}), "7") << "raised";
}

// The fence raise rewrites the holder's record with the majority's token: the holder info after
// the host (which holds a newline) must survive it, and inspect() shows it from the majority.
TEST_F(QuorumTest, HolderInfoSurvivesTheFenceRaise) {
  start(3);
  masters_[2]->kill();
  masters_[0]->client().run({"SET", "{quorum-job}:fence", "5"});
  auto options = this->options();
  options.holder_info = "active at 10.0.0.7:8080\nsecond line";
  ProcessLock lock("quorum-job", 10s, options);
  ASSERT_TRUE(lock.lock());
  ASSERT_EQ(lock.fence(), 6u);
  const std::string record = masters_[1]->client().string({"GET", "{quorum-job}:owner"}).value_or("");
  EXPECT_TRUE(contains(record, " 6 ")) << "raised: " << record;
  EXPECT_TRUE(contains(record, "\nactive at 10.0.0.7:8080\nsecond line")) << record;
  ProcessLock viewer("quorum-job", 10s, this->options());
  const auto seen = viewer.inspect();
  ASSERT_TRUE(seen.holder.has_value());
  EXPECT_EQ(seen.holder->fence, 6u);
  EXPECT_EQ(seen.holder->info, options.holder_info);
}

TEST_F(QuorumTest, StalledMastersAreGivenUpAfterTheNodeTimeout) {
  start(5);
  masters_[0]->pause();
  masters_[1]->pause();
  masters_[2]->pause();
  auto options = this->options();  // command timeout 500 ms
  options.node_timeout = 50ms;
  ProcessLock lock("quorum-job", 10s, options);
  const Error e = failure_of([&] { (void)lock.lock(); });
  EXPECT_EQ(e.code(), errc::no_quorum) << e.what();
  EXPECT_TRUE(contains(e.what(), "did not reply within")) << e.what();
  EXPECT_FALSE(contains(e.what(), "within 500 ms")) << "the command timeout was used: " << e.what();
  for (std::size_t i : {0, 1, 2}) masters_[i]->resume();
  EXPECT_TRUE(lock.lock());
}

TEST_F(QuorumTest, AStalledMasterIsNotWaitedForAndItsLateAnswersAreReadInStep) {
  start(3);
  auto options = this->options();
  options.command_timeout = 2s;
  options.node_timeout = 2s;  // longer than the lock's validity
  ProcessLock lock("quorum-job", 1s, options);
  ASSERT_TRUE(lock.lock());  // the connections are open
  ASSERT_EQ(lock.clear(), std::optional<bool>(true));
  masters_[0]->pause();
  // Asked one after another, master 0 would use up the validity before the others were asked.
  EXPECT_TRUE(lock.lock());
  masters_[0]->resume();
  // Master 0's answers now decide: the ones still owed to the last lock() must not be taken for
  // the renewal's.
  masters_[1]->kill();
  EXPECT_TRUE(lock.update());
  EXPECT_EQ(value_on(0, "quorum-job"), lock.token());
  EXPECT_EQ(lock.clear(), std::optional<bool>(true));
}

// Each master's part of a round is timed from its own start: one whose handshake never ends
// (a paused server asked to SELECT a database) uses up its own node timeout, not the others'.
TEST_F(QuorumTest, AMasterSlowToConnectCostsTheOthersNoneOfTheirTime) {
  start(3);
  masters_[0]->pause();
  auto options = this->options();
  options.url.clear();
  for (const auto& m : masters_) {
    if (!options.url.empty()) options.url += ',';
    options.url += m->url();
    options.url += "/1";
  }
  options.node_timeout = 300ms;
  ProcessLock lock("quorum-job", 10s, options);
  EXPECT_TRUE(lock.lock());
  EXPECT_EQ(lock.clear(), std::optional<bool>(true));
  masters_[0]->resume();
}

TEST_F(QuorumTest, AFailedLockWhileHoldingKeepsTheHold) {
  start(5);
  ProcessLock lock("quorum-job", 10s, options());
  ASSERT_TRUE(lock.lock());
  masters_[0]->kill();
  masters_[1]->kill();
  masters_[2]->kill();
  const Error e = failure_of([&] { (void)lock.lock(); });
  EXPECT_EQ(e.code(), errc::no_quorum) << e.what();
  EXPECT_TRUE(lock.owner());  // errors change nothing: the hold stands until it is known lost
  EXPECT_EQ(value_on(3, "quorum-job"), lock.token());
  EXPECT_EQ(value_on(4, "quorum-job"), lock.token());
}

TEST_F(QuorumTest, AForceClearIsReportedTakenNotUndone) {
  start(3);
  ProcessLock lock("quorum-job", 2s, options());
  ASSERT_TRUE(lock.lock());
  test::LostProbe probe;
  KeepOptions keep;
  keep.interval = 100ms;
  lock.keep(probe.options(keep));
  ProcessLock admin("quorum-job", 2s, options());
  ASSERT_EQ(admin.clear(true), std::optional<bool>(true));
  ASSERT_TRUE(probe.reported(5s));
  EXPECT_EQ(probe.at(0).reason, LostReason::taken);
  EXPECT_FALSE(lock.owner());
  EXPECT_EQ(holders_of(lock), 0u);  // not brought back by the keeper
}

// clear() may not be repeated (its script may have run), so each reused connection is first
// looked at for a close the server already sent (one poll() for all the masters): connections
// the servers closed while idle are replaced before it is sent, not failed.
TEST_F(QuorumTest, ConnectionsClosedWhileIdleAreReplacedBeforeClear) {
  start(3);
  ProcessLock lock("quorum-job", 10s, options());
  ASSERT_TRUE(lock.lock());
  for (const auto& m : masters_) m->client().run({"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"});
  EXPECT_EQ(lock.clear(), std::optional<bool>(true));
  EXPECT_EQ(holders_of(lock), 0u);
  // Only some of them: the others' connections are reused.
  ASSERT_TRUE(lock.lock());
  masters_[1]->client().run({"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"});
  EXPECT_EQ(lock.clear(), std::optional<bool>(true));
  EXPECT_EQ(holders_of(lock), 0u);
}

TEST_F(QuorumTest, WaitersWakeWhenTheHolderReleases) {
  start(3);
  ProcessLock holder("quorum-job", 10s, options());
  ASSERT_TRUE(holder.lock());
  std::thread release([&] {
    std::this_thread::sleep_for(100ms);
    (void)holder.clear();
  });
  ProcessLock waiter("quorum-job", 10s, options());
  EXPECT_TRUE(waiter.try_lock_for(5s));
  release.join();
  EXPECT_GE(holders_of(waiter), 2u);  // a majority: the release may still be on its way to the last
}

TEST_F(QuorumTest, NodeTimeoutOutOfRangeIsRejected) {
  start(3);
  auto options = this->options();
  options.node_timeout = 5s;  // above the command timeout
  const Error e = failure_of([&] { ProcessLock lock("quorum-job", 10s, options); });
  EXPECT_EQ(e.code(), errc::invalid_argument) << e.what();
  EXPECT_TRUE(contains(e.what(), "node_timeout")) << e.what();
}

}  // namespace
