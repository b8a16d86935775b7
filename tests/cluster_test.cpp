// Redis Cluster: a lock works from a client pointed at any node, following MOVED and ASK
// redirections, and keeps working while its slot migrates; given several seeds
// (redis+cluster://), a client reads the slot map, goes straight to the slot's owner, survives
// a dead seed, and follows a failover after its slot's master is killed. Real redis-servers,
// made a cluster by `redis-cli --cluster create`.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

namespace {

using process_lock::errc;
using process_lock::ProcessLock;
using process_lock::State;
using process_lock::detail::key_slot;
using namespace std::chrono_literals;

// Starts `count` cluster nodes and makes them one cluster with `replicas` replicas per master.
std::vector<std::unique_ptr<test::RedisServer>> start_cluster(int count, int replicas, const std::string& node_timeout) {
  // A replica's first sync starts at once (Redis 7 waits 5 s for more replicas by default), and
  // the replication offset the slot map waits for before it lists a replica moves within a
  // second (the master's ping every 10 s by default).
  std::vector<std::unique_ptr<test::RedisServer>> nodes;
  std::string create = "redis-cli --cluster create";
  for (int i = 0; i < count; ++i) {
    nodes.push_back(std::make_unique<test::RedisServer>(std::vector<std::string>{
        "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", node_timeout,
        "--repl-diskless-sync-delay", "0", "--repl-ping-replica-period", "1"}));
    create += " 127.0.0.1:" + std::to_string(nodes.back()->port());
  }
  create += " --cluster-replicas " + std::to_string(replicas) + " --cluster-yes >/dev/null 2>&1";
  if (std::system(create.c_str()) != 0) throw std::runtime_error("redis-cli --cluster create failed");
  // Ready when every node sees every slot assigned and the cluster up.
  for (const auto& n : nodes) {
    const bool up = test::wait_until(
        [&] {
          const std::string info = *n->client().string({"CLUSTER", "INFO"});
          return test::contains(info, "cluster_state:ok") && test::contains(info, "cluster_slots_ok:16384") &&
                 test::contains(info, "cluster_known_nodes:" + std::to_string(count));
        },
        10s);
    if (!up) throw std::runtime_error("the cluster did not come up");
  }
  return nodes;
}

// A redis+cluster:// URL listing `ports` as seeds.
std::string cluster_url(const std::vector<int>& ports, const std::string& userinfo = "") {
  std::string url = "redis+cluster://" + userinfo;
  for (std::size_t i = 0; i < ports.size(); ++i) url += (i ? ",127.0.0.1:" : "127.0.0.1:") + std::to_string(ports[i]);
  return url;
}

// `INFO errorstats` count of error replies starting with `code` (MOVED, ASK...).
long long errors_sent(test::RawClient& c, const std::string& code) {
  std::istringstream in(*c.string({"INFO", "errorstats"}));
  const std::string prefix = "errorstat_" + code + ":count=";
  for (std::string line; std::getline(in, line);)
    if (line.rfind(prefix, 0) == 0) return std::stoll(line.substr(prefix.size()));
  return 0;
}

class ClusterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { nodes_ = start_cluster(3, 0, "5000"); }
  static void TearDownTestSuite() { nodes_.clear(); }

  static process_lock::Options options_via(std::size_t node) { return test::options_for(nodes_[node]->url(), 1000ms); }
  // The node that owns `slot` now, as node 0 sees it.
  static std::size_t owner_of(int slot, std::size_t asked = 0) {
    test::RawClient c = nodes_[asked]->client();
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

TEST_F(ClusterTest, SeedsWhereTheFirstIsDownStillLock) {
  for (std::size_t owner = 0; owner < 3; ++owner) {
    const std::string name = name_on(owner, "seeds-");
    SCOPED_TRACE(name);
    // Port 1: nothing listens there. The second seed does not own the slot either, for two of the three.
    ProcessLock lock(name, 10s, test::options_for(cluster_url({1, nodes_[1]->port()}), 1000ms));
    ASSERT_TRUE(lock.lock());
    EXPECT_EQ(value_on(owner, name), lock.token());
    ProcessLock other(name, 10s, test::options_for(cluster_url({nodes_[2]->port(), 1}), 1000ms));
    EXPECT_FALSE(other.lock());
    EXPECT_EQ(lock.clear(), std::optional<bool>(true));
  }
}

// A fresh client reads the map once (one round trip to a seed) and then sends every call to the
// owner: no MOVED anywhere. The same calls through a plain redis:// URL at the same seed are
// redirected, which shows the count can see a redirection.
TEST_F(ClusterTest, AFreshClientFindsTheOwnerFromTheMapWithoutRedirections) {
  const std::string name = name_on(2, "one-trip-");
  auto reset_all = [] {
    for (const auto& n : nodes_) n->client().reset_stats();
  };
  auto total = [](const std::string& command) {
    long long sum = 0;
    for (const auto& n : nodes_) sum += n->client().command_calls()[command];
    return sum;
  };
  auto moved = [] {
    long long sum = 0;
    for (const auto& n : nodes_) {
      test::RawClient c = n->client();
      sum += errors_sent(c, "MOVED");
    }
    return sum;
  };
  reset_all();
  {
    ProcessLock lock(name, 10s, test::options_for(cluster_url({nodes_[0]->port()}), 1000ms));
    ASSERT_TRUE(lock.lock());
    EXPECT_TRUE(lock.update());
    EXPECT_EQ(lock.state(), State::locked);
    EXPECT_EQ(lock.clear(), std::optional<bool>(true));
  }
  EXPECT_EQ(total("cluster|slots"), 1);  // read once, not per call
  EXPECT_EQ(moved(), 0);
  EXPECT_EQ(nodes_[0]->client().command_calls().count("evalsha"), 0u);  // the seed ran no script
  reset_all();
  {
    ProcessLock lock(name, 10s, options_via(0));
    ASSERT_TRUE(lock.lock());
    EXPECT_EQ(lock.clear(), std::optional<bool>(true));
  }
  EXPECT_EQ(moved(), 1);
  EXPECT_EQ(total("cluster|slots"), 0);
}

TEST_F(ClusterTest, NoSeedAnsweringFailsNamingEachWithoutThePassword) {
  ProcessLock lock("nobody-home", 10s, test::options_for(cluster_url({1, 2}, ":s3cret@"), 300ms));
  const auto e = test::failure_of([&] { (void)lock.lock(); });
  EXPECT_EQ(e.code(), errc::connect_failed);
  const std::string message = e.what();
  EXPECT_TRUE(test::contains(message, "no node of redis+cluster://:***@127.0.0.1:1,127.0.0.1:2 gave the slot map"))
      << message;
  EXPECT_TRUE(test::contains(message, "(at 127.0.0.1:1)")) << message;
  EXPECT_TRUE(test::contains(message, "(at 127.0.0.1:2)")) << message;
  EXPECT_FALSE(test::contains(message, "s3cret")) << message;
}

// A node that answers nonsense is passed over; with no other seed, the call fails with a
// protocol error that says what was wrong.
TEST_F(ClusterTest, AMalformedSlotMapIsAProtocolErrorAndTheNextSeedIsAsked) {
  using Act = test::FakeServer::Act;
  const std::string no_master = "*1\r\n*2\r\n:0\r\n:16383\r\n";
  {
    test::FakeServer broken({{{Act::reply, no_master}}});
    ProcessLock lock("bad-map", 10s, test::options_for(cluster_url({broken.port()}), 1000ms));
    const auto e = test::failure_of([&] { (void)lock.lock(); });
    EXPECT_EQ(e.code(), errc::protocol_error);
    EXPECT_TRUE(test::contains(e.what(), "sent a malformed CLUSTER SLOTS reply: range 1 is not an array")) << e.what();
  }
  test::FakeServer broken({{{Act::reply, no_master}}});
  const std::string name = name_on(1, "bad-map-");
  ProcessLock lock(name, 10s, test::options_for(cluster_url({broken.port(), nodes_[0]->port()}), 1000ms));
  ASSERT_TRUE(lock.lock());
  EXPECT_EQ(value_on(1, name), lock.token());
  EXPECT_EQ(lock.clear(), std::optional<bool>(true));
}

// A waiter's subscription needs no slot: it takes the first seed that answers.
TEST_F(ClusterTest, AReleaseWakesAWaiterGivenSeeds) {
  const std::string name = name_on(0, "seed-wake-");
  ProcessLock holder(name, 10s, options_via(1));
  ASSERT_TRUE(holder.lock());
  std::thread release([&] {
    std::this_thread::sleep_for(100ms);
    (void)holder.clear();
  });
  ProcessLock waiter(name, 10s, test::options_for(cluster_url({1, nodes_[2]->port()}), 1000ms));
  EXPECT_TRUE(waiter.try_lock_for(5s));
  release.join();
  EXPECT_EQ(value_on(0, name), waiter.token());
}

// Three masters with a replica each, quick to fail over (cluster-node-timeout 1000 ms).
class ClusterFailoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    nodes_ = start_cluster(6, 1, "1000");
    // Ready when every node's slot map shows a replica for every master (it lists a replica
    // only once it has synced).
    const bool synced = test::wait_until(
        [&] {
          for (const auto& n : nodes_) {
            const auto slots = n->client().run({"CLUSTER", "SLOTS"});
            if (slots->type != REDIS_REPLY_ARRAY || slots->elements != 3) return false;
            for (std::size_t i = 0; i < slots->elements; ++i)
              if (slots->element[i]->elements < 4) return false;
          }
          return true;
        },
        10s);
    if (!synced) throw std::runtime_error("the replicas did not sync");
  }

  // The index of the node on `port`.
  std::size_t at_port(long long port) const {
    for (std::size_t n = 0; n < nodes_.size(); ++n)
      if (nodes_[n]->port() == port) return n;
    throw std::runtime_error("no node on port " + std::to_string(port));
  }
  // The master and the first replica of `slot`, as node `asked` sees them.
  std::pair<std::size_t, std::size_t> master_and_replica(int slot, std::size_t asked = 0) const {
    test::RawClient c = nodes_[asked]->client();
    const auto reply = c.run({"CLUSTER", "SLOTS"});
    for (std::size_t i = 0; i < reply->elements; ++i) {
      const redisReply& range = *reply->element[i];
      if (slot < range.element[0]->integer || slot > range.element[1]->integer || range.elements < 4) continue;
      return {at_port(range.element[2]->element[1]->integer), at_port(range.element[3]->element[1]->integer)};
    }
    throw std::runtime_error("no master with a replica for slot " + std::to_string(slot));
  }
  // What a replica holds (READONLY: it answers instead of redirecting).
  static test::RawClient reader(const test::RedisServer& node) {
    test::RawClient c = node.client();
    c.run({"READONLY"});
    return c;
  }

  std::vector<std::unique_ptr<test::RedisServer>> nodes_;
};

// The master that owns a held lock's slot is killed; its replica takes over. A keeper may only
// renew the lock on the promoted replica or report it lost; here, where the failover loses no
// write and takes well under the lock's timeout, it must renew it there. A contender trying all
// along never holds it while the holder still reports a hold with validity left.
TEST_F(ClusterFailoverTest, AKilledMastersReplicaTakesOverAndTheLockIsRenewedThereNeverDoubled) {
  const std::string name = "failover-job";
  const auto [master, replica] = master_and_replica(key_slot(name));
  std::size_t other_master = 0;
  while (other_master == master || other_master == replica) ++other_master;
  // The owner is the first seed: the entry node dies too.
  const std::string url = cluster_url({nodes_[master]->port(), nodes_[other_master]->port()});
  const auto ttl = 8s;  // a failover takes about 2-3 s here (cluster-node-timeout 1 s, then the election)
  ProcessLock holder(name, ttl, test::options_for(url, 500ms));
  ASSERT_TRUE(holder.lock());

  std::atomic<int> renewals{0};
  test::LostProbe lost;
  process_lock::KeepOptions keep;
  keep.on_renewed = [&] { ++renewals; };
  holder.keep(lost.options(keep));

  // Kill the master just after a renewal has reached the replica, so that the failover loses no
  // write (asynchronous replication could lose one otherwise: see the README).
  const int before = renewals.load();
  ASSERT_TRUE(test::wait_until([&] { return renewals.load() > before; }, ttl));
  test::RawClient on_replica = reader(*nodes_[replica]);
  ASSERT_TRUE(test::wait_until(
      [&] {
        return on_replica.string({"GET", name}) == holder.token() &&
               on_replica.integer({"PTTL", name}) > std::chrono::milliseconds(ttl).count() - 1000;
      },
      2s));

  std::atomic<bool> stop{false};
  std::atomic<int> doubled{0}, contender_acquired{0}, contender_tries{0};
  std::thread contender_thread([&] {
    ProcessLock contender(name, ttl, test::options_for(url, 500ms));
    while (!stop) {
      try {
        if (contender.lock()) ++contender_acquired;
      } catch (const process_lock::Error&) {
        // CLUSTERDOWN, a dead node: the cluster is failing over
      }
      ++contender_tries;
      const bool contender_holds = contender.owner() && contender.valid_for() > 0ms;
      if (contender_holds && holder.owner() && holder.valid_for() > 0ms) ++doubled;
      std::this_thread::sleep_for(20ms);
    }
  });

  const int renewals_at_kill = renewals.load();
  const auto killed_at = std::chrono::steady_clock::now();
  nodes_[master]->kill();
  // Either the keeper renews on the promoted replica, or it reports the lock lost, before the
  // lock would have expired.
  const bool settled = test::wait_until(
      [&] { return renewals.load() > renewals_at_kill || lost.count() > 0; }, std::chrono::milliseconds(ttl) + 2s);
  const auto settled_after = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - killed_at);
  std::this_thread::sleep_for(300ms);  // the contender keeps trying against the new master
  stop = true;
  contender_thread.join();

  ASSERT_TRUE(settled) << "neither renewed nor reported lost";
  EXPECT_EQ(doubled.load(), 0);
  EXPECT_GT(contender_tries.load(), 10);
  ASSERT_EQ(lost.count(), 0u) << "reported lost (" << process_lock::to_string(lost.at(0).reason)
                              << "): " << lost.at(0).error.what();
  // Renewed after the kill, so on another node than the dead master: the promoted replica,
  // which holds our token.
  std::cerr << "renewed on the promoted replica " << settled_after.count() << " ms after the master was killed\n";
  const auto role = nodes_[replica]->client().run({"ROLE"});
  ASSERT_EQ(role->type, REDIS_REPLY_ARRAY);
  EXPECT_EQ(std::string(role->element[0]->str, role->element[0]->len), "master");
  EXPECT_EQ(on_replica.string({"GET", name}), holder.token());
  EXPECT_EQ(contender_acquired.load(), 0);
  EXPECT_TRUE(holder.owner());
  EXPECT_EQ(holder.clear(), std::optional<bool>(true));
}

}  // namespace
