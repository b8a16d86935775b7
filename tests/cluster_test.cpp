// Redis Cluster: a lock works from a client pointed at any node, following MOVED and ASK
// redirections, and keeps working while its slot migrates. Three real masters, created with
// `redis-cli --cluster create`.
#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

namespace {

using process_lock::ProcessLock;
using process_lock::State;
using process_lock::detail::key_slot;
using namespace std::chrono_literals;

class ClusterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string create = "redis-cli --cluster create";
    for (int i = 0; i < 3; ++i) {
      nodes_.push_back(std::make_unique<test::RedisServer>(std::vector<std::string>{
          "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"}));
      create += " 127.0.0.1:" + std::to_string(nodes_.back()->port());
    }
    create += " --cluster-replicas 0 --cluster-yes >/dev/null 2>&1";
    if (std::system(create.c_str()) != 0) throw std::runtime_error("redis-cli --cluster create failed");
    // Ready when every node sees every slot assigned and the cluster up.
    for (const auto& n : nodes_) {
      const bool up = test::wait_until(
          [&] {
            const std::string info = *n->client().string({"CLUSTER", "INFO"});
            return test::contains(info, "cluster_state:ok") && test::contains(info, "cluster_slots_ok:16384") &&
                   test::contains(info, "cluster_known_nodes:3");
          },
          10s);
      if (!up) throw std::runtime_error("the cluster did not come up");
    }
  }
  static void TearDownTestSuite() { nodes_.clear(); }

  static process_lock::Options options_via(std::size_t node) { return test::options_for(nodes_[node]->url(), 1000ms); }
  // The node that owns `slot` now, as node 0 sees it.
  static std::size_t owner_of(int slot) {
    test::RawClient c = nodes_[0]->client();
    const auto reply = c.run({"CLUSTER", "SLOTS"});
    for (std::size_t i = 0; i < reply->elements; ++i) {
      const redisReply& range = *reply->element[i];
      if (slot < range.element[0]->integer || slot > range.element[1]->integer) continue;
      const long long port = range.element[2]->element[1]->integer;
      for (std::size_t n = 0; n < nodes_.size(); ++n)
        if (nodes_[n]->port() == port) return n;
    }
    throw std::runtime_error("no owner for slot " + std::to_string(slot));
  }
  // A lock name starting with `prefix` whose slot belongs to node `owner`.
  static std::string name_on(std::size_t owner, const std::string& prefix) {
    for (int i = 0;; ++i) {
      std::string name = prefix + std::to_string(i);  // not const: returned by move
      if (owner_of(key_slot(name)) == owner) return name;
    }
  }
  static std::string id_of(std::size_t node) { return *nodes_[node]->client().string({"CLUSTER", "MYID"}); }
  // The value of `key` on `node`, asking for it even while the slot is only being imported.
  static std::optional<std::string> value_on(std::size_t node, const std::string& key) {
    test::RawClient c = nodes_[node]->client();
    c.run({"ASKING"});
    return c.string({"GET", key});
  }
  // Assigns `slot` to `node` on every node (the last step of a migration).
  static void assign(int slot, std::size_t node) {
    const std::string id = id_of(node);
    for (const auto& n : nodes_) n->client().run({"CLUSTER", "SETSLOT", std::to_string(slot), "NODE", id});
  }
  // Starts moving `slot` from `from` to `to` and moves `keys` (the rest stay behind).
  static void start_migration(int slot, std::size_t from, std::size_t to, const std::vector<std::string>& keys) {
    const std::string s = std::to_string(slot);
    nodes_[to]->client().run({"CLUSTER", "SETSLOT", s, "IMPORTING", id_of(from)});
    nodes_[from]->client().run({"CLUSTER", "SETSLOT", s, "MIGRATING", id_of(to)});
    std::vector<std::string> migrate = {"MIGRATE", "127.0.0.1", std::to_string(nodes_[to]->port()), "", "0",
                                        "5000",    "KEYS"};
    migrate.insert(migrate.end(), keys.begin(), keys.end());
    const auto reply = nodes_[from]->client().run(migrate);
    if (reply->type == REDIS_REPLY_ERROR) throw std::runtime_error("MIGRATE: " + std::string(reply->str));
  }

  static inline std::vector<std::unique_ptr<test::RedisServer>> nodes_;
};

TEST_F(ClusterTest, LocksInEverySlotOwnerFromAnyNode) {
  for (std::size_t entry = 0; entry < 3; ++entry) {
    for (std::size_t owner = 0; owner < 3; ++owner) {
      const std::string name = name_on(owner, "via" + std::to_string(entry) + "-");
      SCOPED_TRACE(name + " via node " + std::to_string(entry) + ", owned by node " + std::to_string(owner));
      ProcessLock lock(name, 10s, options_via(entry));
      ASSERT_TRUE(lock.lock());
      EXPECT_EQ(value_on(owner, name), lock.token());
      EXPECT_EQ(lock.state(), State::locked);
      EXPECT_TRUE(lock.update());
      const auto seen = lock.inspect();
      EXPECT_TRUE(seen.ours);
      EXPECT_EQ(seen.fence_counter, lock.fence().value_or(0));
      ProcessLock other(name, 10s, options_via((entry + 1) % 3));
      EXPECT_FALSE(other.lock());
      EXPECT_EQ(lock.clear(), std::optional<bool>(true));
      EXPECT_EQ(value_on(owner, name), std::nullopt);
    }
  }
}

TEST_F(ClusterTest, AReleaseWakesAWaiterOnAnotherNode) {
  const std::string name = name_on(2, "wake-");
  ProcessLock holder(name, 10s, options_via(0));
  ASSERT_TRUE(holder.lock());
  std::thread release([&] {
    std::this_thread::sleep_for(100ms);
    (void)holder.clear();
  });
  ProcessLock waiter(name, 10s, options_via(1));
  EXPECT_TRUE(waiter.try_lock_for(5s));
  release.join();
  EXPECT_EQ(value_on(2, name), waiter.token());
}

TEST_F(ClusterTest, ASlotMigratedWhileHeldKeepsWorking) {
  const std::size_t from = 0, to = 1;
  const std::string name = name_on(from, "moving-");
  const int slot = key_slot(name);
  ProcessLock lock(name, 10s, options_via(2));
  ASSERT_TRUE(lock.lock());
  const std::uint64_t fence = lock.fence().value_or(0);
  start_migration(slot, from, to, {name, "{" + name + "}:fence", "{" + name + "}:owner"});
  // Mid-migration: the old owner answers ASK, the lock is renewed on the new one.
  EXPECT_TRUE(lock.update());
  EXPECT_EQ(value_on(to, name), lock.token());
  ProcessLock other(name, 10s, options_via(from));
  EXPECT_FALSE(other.lock());
  assign(slot, to);
  // Done: every node answers MOVED to the new owner.
  EXPECT_TRUE(lock.update());
  EXPECT_EQ(lock.state(), State::locked);
  EXPECT_FALSE(other.lock());
  EXPECT_EQ(lock.clear(), std::optional<bool>(true));
  EXPECT_TRUE(other.lock());
  EXPECT_GT(other.fence().value_or(0), fence);  // the counter moved with the slot
  EXPECT_EQ(value_on(to, name), other.token());
}

TEST_F(ClusterTest, ALockTakenMidMigrationWaitsForTheSlot) {
  const std::size_t from = 1, to = 2;
  const std::string name = name_on(from, "busy-slot-");
  const int slot = key_slot(name);
  ProcessLock lock(name, 10s, options_via(0));
  ASSERT_TRUE(lock.lock());
  const std::uint64_t fence = lock.fence().value_or(0);
  ASSERT_EQ(lock.clear(), std::optional<bool>(true));
  // Only the counter moves: the lock's keys are split between two nodes. The old owner, which
  // lacks some, answers ASK; the importing node, which lacks the others, answers TRYAGAIN
  // until the migration ends.
  start_migration(slot, from, to, {"{" + name + "}:fence"});
  std::thread finish([&] {
    std::this_thread::sleep_for(150ms);
    assign(slot, to);
  });
  EXPECT_TRUE(lock.lock());
  finish.join();
  EXPECT_EQ(lock.fence(), fence + 1);
  EXPECT_EQ(value_on(to, name), lock.token());
  EXPECT_EQ(lock.clear(), std::optional<bool>(true));
}

}  // namespace
