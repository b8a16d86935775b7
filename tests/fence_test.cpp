// Fencing tokens, the holder's details, inspect(), local validity, and the companion keys that
// must share the lock key's Redis Cluster slot.
#include <gtest/gtest.h>

#include <thread>

#include "support.hpp"

namespace {

using process_lock::ProcessLock;
using process_lock::State;
using namespace std::chrono_literals;

class FenceTest : public test::SharedServerTest<FenceTest> {};

TEST_F(FenceTest, EveryAcquisitionGetsAHigherFence) {
  ProcessLock a("job", 10, options());
  ProcessLock b("job", 10, options());
  std::uint64_t last = 0;
  for (int i = 0; i < 1000; ++i) {
    ProcessLock& lock = i % 2 ? a : b;
    ASSERT_TRUE(lock.lock());
    ASSERT_TRUE(lock.fence().has_value());
    EXPECT_GT(*lock.fence(), last);
    last = *lock.fence();
    ASSERT_TRUE(lock.clear().value());
  }
  EXPECT_EQ(last, 1000u);
}

TEST_F(FenceTest, RenewingOrRetakingKeepsTheFence) {
  ProcessLock lock("job", 10, options());
  EXPECT_EQ(lock.fence(), std::nullopt);
  ASSERT_TRUE(lock.lock());
  const auto first = lock.fence();
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(lock.update());
  EXPECT_EQ(lock.fence(), first);
  ASSERT_TRUE(lock.lock());  // already ours: the same hold, the same fence
  EXPECT_EQ(lock.fence(), first);
  ASSERT_TRUE(lock.clear().value());
  EXPECT_EQ(lock.fence(), std::nullopt);
}

TEST_F(FenceTest, FenceOutlivesExpiryAndNodeHolders) {
  ProcessLock lock("job", 30ms, options());
  ASSERT_TRUE(lock.lock());
  const auto first = *lock.fence();
  ASSERT_TRUE(test::wait_until([&] { return raw_->integer({"EXISTS", "job"}) == 0; }));
  // A node process takes and drops it: it does not touch the counter.
  raw_->run({"SET", "job", "0f1e2d3c-4b5a-4697-8877-665544332211", "NX", "EX", "5"});
  raw_->run({"DEL", "job"});
  ASSERT_TRUE(lock.lock());
  EXPECT_EQ(*lock.fence(), first + 1);
}

TEST_F(FenceTest, InspectAnOpenLock) {
  ProcessLock lock("job", 10, options());
  const auto seen = lock.inspect();
  EXPECT_EQ(seen.state, State::open);
  EXPECT_FALSE(seen.ours);
  EXPECT_EQ(seen.ttl, std::nullopt);
  EXPECT_EQ(seen.fence_counter, 0u);
  EXPECT_FALSE(seen.holder.has_value());
}

TEST_F(FenceTest, InspectOurLockShowsWhoHoldsIt) {
  ProcessLock lock("job", 10, options());
  ProcessLock other("job", 10, options());
  const auto before = std::chrono::system_clock::now();
  ASSERT_TRUE(lock.lock());
  for (ProcessLock* viewer : {&lock, &other}) {
    const auto seen = viewer->inspect();
    EXPECT_EQ(seen.state, State::locked);
    EXPECT_EQ(seen.ours, viewer == &lock);
    ASSERT_TRUE(seen.ttl.has_value());
    EXPECT_GT(*seen.ttl, 9000ms);
    EXPECT_LE(*seen.ttl, 10000ms);
    EXPECT_EQ(seen.fence_counter, *lock.fence());
    ASSERT_TRUE(seen.holder.has_value());
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    EXPECT_EQ(seen.holder->host, host);
    EXPECT_EQ(seen.holder->pid, static_cast<long>(getpid()));
    EXPECT_EQ(seen.holder->fence, *lock.fence());
    // The server's clock: within a few seconds of ours on one machine.
    EXPECT_LT(std::chrono::abs(seen.holder->since - before), 5s);
  }
}

// Options::holder_info: any bytes (a NUL, newlines, spaces, invalid UTF-8) come back as given,
// to the holder and to anyone else, and the host before it is untouched.
TEST_F(FenceTest, HolderInfoIsRecordedWithTheAcquisitionAndShownToEveryone) {
  using namespace std::string_literals;
  const std::string samples[] = {"10.0.0.7:8080", "a b\nc\r\n\n"s + '\0' + "\xff\xfe end", std::string(4096, 'x'), "\n"};
  for (const std::string& info : samples) {
    auto with_info = options();
    with_info.holder_info = info;
    ProcessLock lock("job", 10, with_info);
    ProcessLock other("job", 10, options());
    ASSERT_TRUE(lock.lock());
    for (ProcessLock* viewer : {&lock, &other}) {
      const auto seen = viewer->inspect();
      ASSERT_TRUE(seen.holder.has_value());
      EXPECT_EQ(seen.holder->info, info) << info.size() << " bytes";
      char host[256] = {};
      gethostname(host, sizeof host - 1);
      EXPECT_EQ(seen.holder->host, host);
      EXPECT_EQ(seen.holder->pid, static_cast<long>(getpid()));
    }
    ASSERT_TRUE(lock.update());  // a renewal keeps the record
    EXPECT_EQ(other.inspect().holder->info, info);
    ASSERT_TRUE(lock.clear().value());
  }
  ProcessLock plain("job", 10, options());  // without it, nothing
  ASSERT_TRUE(plain.lock());
  ASSERT_TRUE(plain.inspect().holder.has_value());
  EXPECT_EQ(plain.inspect().holder->info, "");
}

TEST_F(FenceTest, HolderInfoLongerThanTheLimitIsRefusedAtConstruction) {
  auto too_long = options();
  too_long.holder_info = std::string(process_lock::max_holder_info + 1, 'x');
  const auto e = test::failure_of([&] { ProcessLock lock("job", 10, too_long); });
  EXPECT_EQ(e.code(), process_lock::errc::invalid_argument);
  EXPECT_NE(std::string(e.what()).find("Options::holder_info is 4097 bytes; at most 4096"), std::string::npos) << e.what();
}

TEST_F(FenceTest, InspectANodeLockHasNoHolderDetails) {
  raw_->run({"SET", "job", "0f1e2d3c-4b5a-4697-8877-665544332211", "NX", "EX", "60"});
  ProcessLock lock("job", 10, options());
  const auto seen = lock.inspect();
  EXPECT_EQ(seen.state, State::locked);
  EXPECT_FALSE(seen.ours);
  ASSERT_TRUE(seen.ttl.has_value());
  EXPECT_GT(*seen.ttl, 59000ms);
  EXPECT_FALSE(seen.holder.has_value());
}

TEST_F(FenceTest, StaleHolderDetailsAreNotReported) {
  ProcessLock lock("job", 10, options());
  ASSERT_TRUE(lock.lock());
  // The lock passes to someone else behind our back; our details must not be shown for them.
  raw_->run({"SET", "job", "someone-else"});
  const auto seen = lock.inspect();
  EXPECT_EQ(seen.state, State::locked);
  EXPECT_FALSE(seen.ours);
  EXPECT_FALSE(seen.holder.has_value());
}

TEST_F(FenceTest, ValidityIsTheTimeoutLessDriftAndEndsWithTheHold) {
  ProcessLock lock("job", 10s, options());
  EXPECT_EQ(lock.valid_for(), 0ms);
  const auto before = std::chrono::steady_clock::now();
  ASSERT_TRUE(lock.lock());
  const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - before);
  const auto drift = std::chrono::milliseconds(10s) / 100 + 2ms;  // 1% + 2 ms
  EXPECT_LE(lock.valid_for(), 10s - drift);
  EXPECT_GE(lock.valid_for(), 10s - drift - elapsed - 1ms);
  ASSERT_TRUE(lock.clear().value());
  EXPECT_EQ(lock.valid_for(), 0ms);
}

TEST_F(FenceTest, ValidityRunsOutWithoutRenewal) {
  ProcessLock lock("job", 300ms, options());
  ASSERT_TRUE(lock.lock());
  EXPECT_GT(lock.valid_for(), 0ms);
  ASSERT_TRUE(test::wait_until([&] { return lock.valid_for() == 0ms; }));
  EXPECT_TRUE(lock.owner());  // the flag is what the server last said; validity is the clock's word
}

// ---- companion keys -------------------------------------------------------------------------

const std::vector<std::string> awkward_names = {"nightly-report",
                                                "{user1000}.following",
                                                "a{b}c",
                                                "{}",
                                                "a{}b",
                                                "a}b",
                                                "}",
                                                "{",
                                                "a{b",
                                                "x}{y}",
                                                "{a}{b}",
                                                "}{",
                                                "{{}}",
                                                "a{b}}",
                                                std::string("nul\0byte}", 9),
                                                "\xff\xfe}",
                                                "report:2024-01-01"};

TEST(CompanionKeyTest, Crc16MatchesRedisReferenceVector) {
  EXPECT_EQ(process_lock::detail::crc16("123456789"), 0x31C3);  // the value in the Cluster spec
}

TEST(CompanionKeyTest, SameSlotAsTheLockWhateverTheName) {
  using process_lock::detail::key_slot;
  using process_lock::detail::LockKeys;
  for (const std::string& name : awkward_names) {
    const LockKeys keys(name);
    EXPECT_EQ(key_slot(keys.fence), key_slot(name)) << name;
    EXPECT_EQ(key_slot(keys.holder), key_slot(name)) << name;
    EXPECT_EQ(key_slot(keys.owner), key_slot(name)) << name;
    EXPECT_EQ(key_slot(keys.watch), key_slot(name)) << name;
    EXPECT_NE(keys.watch, keys.owner);
    EXPECT_NE(keys.fence, keys.holder);
    EXPECT_NE(keys.owner, keys.holder);
    EXPECT_NE(keys.owner, keys.fence);
    EXPECT_NE(keys.fence, name);
  }
  EXPECT_EQ(LockKeys("nightly-report").fence, "{nightly-report}:fence");
  EXPECT_EQ(LockKeys("{user1000}.following").fence, "{user1000}.following:fence");
}

TEST(CompanionKeyTest, RedisAgreesOnTheSlots) {
  // CLUSTER KEYSLOT needs cluster mode; a single node with it enabled is enough to ask.
  test::RedisServer server({"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"});
  auto raw = server.client();
  using process_lock::detail::key_slot;
  for (const std::string& name : awkward_names) {
    const process_lock::detail::LockKeys keys(name);
    const long long slot = raw.integer({"CLUSTER", "KEYSLOT", name});
    EXPECT_EQ(slot, key_slot(name)) << name;
    EXPECT_EQ(raw.integer({"CLUSTER", "KEYSLOT", keys.fence}), slot) << name;
    EXPECT_EQ(raw.integer({"CLUSTER", "KEYSLOT", keys.holder}), slot) << name;
    EXPECT_EQ(raw.integer({"CLUSTER", "KEYSLOT", keys.owner}), slot) << name;
    EXPECT_EQ(raw.integer({"CLUSTER", "KEYSLOT", keys.watch}), slot) << name;
  }
}

TEST_F(FenceTest, ScriptsTouchOnlyTheLocksSlotKeys) {
  for (const std::string& name : awkward_names) {
    ProcessLock lock(name, 10, options());
    ASSERT_TRUE(lock.lock()) << name;
    const process_lock::detail::LockKeys keys(name);
    EXPECT_EQ(raw_->string({"GET", keys.fence}), std::to_string(*lock.fence())) << name;
    EXPECT_EQ(raw_->string({"GET", keys.owner}).value_or("").substr(0, 37), lock.token() + " ") << name;
    ASSERT_TRUE(lock.clear().value()) << name;
    EXPECT_EQ(raw_->integer({"EXISTS", keys.owner}), 0) << name;
  }
}

}  // namespace
