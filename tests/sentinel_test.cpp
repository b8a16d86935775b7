// Redis Sentinel: the lock asks the sentinels where the master is, checks it with ROLE, and
// follows a failover. One master, one replica and three sentinels, all real, on loopback.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

namespace {

using process_lock::errc;
using process_lock::Error;
using process_lock::KeepOptions;
using process_lock::ProcessLock;
using process_lock::State;
using test::contains;
using test::failure_of;
using namespace std::chrono_literals;

constexpr const char* master_password = "master-secret-7f3a";
constexpr const char* sentinel_password = "sentinel-secret-91c2";

// A client of a password-protected server.
test::RawClient authed(const test::RedisServer& server, const char* password) {
  test::RawClient c = server.client();
  c.run({"AUTH", password});
  return c;
}

class FailoverRun;

class SentinelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // No diskless-sync delay: the replica is in sync at once.
    const std::vector<std::string> auth = {
        "--requirepass", master_password, "--masterauth", master_password, "--repl-diskless-sync-delay", "0"};
    master_ = std::make_unique<test::RedisServer>(auth);
    std::vector<std::string> replica_args = auth;
    replica_args.insert(replica_args.end(), {"--replicaof", "127.0.0.1", std::to_string(master_->port())});
    replica_ = std::make_unique<test::RedisServer>(replica_args);
    const std::string config = "sentinel monitor mymaster 127.0.0.1 " + std::to_string(master_->port()) +
                               " 2\n"
                               "sentinel auth-pass mymaster " +
                               master_password +
                               "\n"
                               "sentinel down-after-milliseconds mymaster 1000\n"
                               "sentinel failover-timeout mymaster 4000\n"
                               "requirepass " +
                               sentinel_password + "\nsentinel sentinel-pass " + sentinel_password + "\n";
    for (int i = 0; i < 3; ++i)
      sentinels_.push_back(std::make_unique<test::RedisServer>(std::vector<std::string>{}, config));
    // Ready when the replica acknowledges writes (WAIT counts only those) and every sentinel
    // has fresh details of it (a failover needs a replica it trusts).
    ASSERT_TRUE(test::wait_until(
        [&] {
          test::RawClient c = authed(*master_, master_password);
          c.run({"SET", "ready-probe", "1"});
          return c.integer({"WAIT", "1", "100"}) == 1;
        },
        10s));
    for (const auto& s : sentinels_) {
      ASSERT_TRUE(test::wait_until(
          [&] {
            auto reply = authed(*s, sentinel_password).run({"SENTINEL", "REPLICAS", "mymaster"});
            if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 1) return false;
            const redisReply& fields = *reply->element[0];
            std::map<std::string, std::string> info;
            for (std::size_t i = 0; i + 1 < fields.elements; i += 2)
              info[fields.element[i]->str] = fields.element[i + 1]->str;
            return info["flags"] == "slave" && info["master-link-status"] == "ok" &&
                   std::stol(info["info-refresh"]) < 2000;
          },
          10s));
    }
    authed(*master_, master_password).run({"DEL", "ready-probe"});
  }

  std::string sentinel_hosts() const {
    std::string hosts;
    for (const auto& s : sentinels_) {  // piece by piece: GCC 12's false -Wrestrict at -O3 (see url.hpp)
      if (!hosts.empty()) hosts += ',';
      hosts += "127.0.0.1:" + std::to_string(s->port());
    }
    return hosts;
  }
  // The URL of the monitored master, with both passwords and `query` appended.
  std::string url(const std::string& query = {}) const {
    return std::string("redis+sentinel://:") + master_password + "@" + sentinel_hosts() +
           "/mymaster?sentinel_password=" + sentinel_password + query;
  }
  process_lock::Options options(const std::string& query = {}) const { return test::options_for(url(query), 1000ms); }
  // The master's port according to the first sentinel.
  int reported_master_port() {
    auto reply = authed(*sentinels_[0], sentinel_password).run({"SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"});
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) return 0;
    return std::stoi(std::string(reply->element[1]->str, reply->element[1]->len));
  }

  void fail_over_and_watch(FailoverRun& run);

  std::unique_ptr<test::RedisServer> master_, replica_;
  std::vector<std::unique_ptr<test::RedisServer>> sentinels_;
};

TEST_F(SentinelTest, LocksOnTheMasterTheSentinelsName) {
  ProcessLock lock("sentinel-job", 10s, options());
  ASSERT_TRUE(lock.lock());
  EXPECT_EQ(authed(*master_, master_password).string({"GET", "sentinel-job"}), lock.token());
  EXPECT_EQ(lock.state(), State::locked);
  EXPECT_TRUE(lock.update());
  EXPECT_FALSE(contains(lock.redacted_url(), master_password));
  EXPECT_FALSE(contains(lock.redacted_url(), sentinel_password));
  EXPECT_EQ(lock.clear(), std::optional<bool>(true));
}

TEST_F(SentinelTest, ADeadSentinelIsSkipped) {
  sentinels_[0]->kill();
  ProcessLock lock("sentinel-job", 10s, options());
  EXPECT_TRUE(lock.lock());
}

TEST_F(SentinelTest, UnknownMasterNameIsAClearError) {
  auto options = this->options();
  options.url =
      std::string("redis+sentinel://") + sentinel_hosts() + "/no-such-master?sentinel_password=" + sentinel_password;
  ProcessLock lock("sentinel-job", 10s, options);
  const Error e = failure_of([&] { (void)lock.lock(); });
  EXPECT_EQ(e.code(), errc::connect_failed) << e.what();
  EXPECT_TRUE(contains(e.what(), "named the master no-such-master")) << e.what();
  EXPECT_TRUE(contains(e.what(), "knows no such master")) << e.what();
  EXPECT_FALSE(contains(e.what(), sentinel_password)) << e.what();
}

TEST_F(SentinelTest, SentinelAndMasterCredentialsAreSeparate) {
  // Without the sentinels' password: the sentinels refuse, and the message says so.
  auto options = this->options();
  options.url = std::string("redis+sentinel://:") + master_password + "@" + sentinel_hosts() + "/mymaster";
  ProcessLock no_sentinel_password("sentinel-job", 10s, options);
  Error e = failure_of([&] { (void)no_sentinel_password.lock(); });
  EXPECT_EQ(e.code(), errc::connect_failed) << e.what();
  EXPECT_TRUE(contains(e.what(), "NOAUTH")) << e.what();
  // Without the master's password: the sentinels answer, the master refuses.
  options.url = "redis+sentinel://" + sentinel_hosts() + "/mymaster?sentinel_password=" + sentinel_password;
  ProcessLock no_master_password("sentinel-job", 10s, options);
  e = failure_of([&] { (void)no_master_password.lock(); });
  EXPECT_EQ(e.code(), errc::auth_failed) << e.what();
  EXPECT_FALSE(contains(e.what(), sentinel_password)) << e.what();
}

TEST_F(SentinelTest, TooFewReplicaAcknowledgementsFailTheAcquire) {
  ProcessLock lock("sentinel-job", 10s, options("&wait_replicas=2&wait_timeout=50ms"));  // there is one replica
  const Error e = failure_of([&] { (void)lock.lock(); });
  EXPECT_EQ(e.code(), errc::not_replicated) << e.what();
  EXPECT_TRUE(contains(e.what(), "only 1 of 2 replicas acknowledged within 50 ms")) << e.what();
  EXPECT_FALSE(lock.owner());
  EXPECT_EQ(authed(*master_, master_password).string({"GET", "sentinel-job"}), std::nullopt);  // undone
  ProcessLock enough("sentinel-job", 10s, options("&wait_replicas=1&wait_timeout=500ms"));
  EXPECT_TRUE(enough.lock());
  EXPECT_TRUE(enough.update());
  // The replica has it by the time lock() returns.
  EXPECT_EQ(authed(*replica_, master_password).string({"GET", "sentinel-job"}), enough.token());
}

// Holds a lock through `SENTINEL FAILOVER` with a keeper while another process keeps trying
// to take it; the other must never get it while the keeper has not reported a loss.
class FailoverRun {
 public:
  // A 10 s TTL: the failover (a few seconds) fits well inside the validity.
  explicit FailoverRun(const process_lock::Options& options) : lock_("sentinel-job", 10s, options) {
    if (!lock_.lock()) throw std::runtime_error("could not take the lock before the failover");
    KeepOptions keep;
    keep.interval = 250ms;
    keep.margin = 1s;
    keep.on_renewed = [this] { ++renewals_; };
    keep.on_lost = [this](const process_lock::Lost& l) {
      const std::lock_guard<std::mutex> g(m_);
      lost_ = l;
    };
    lock_.keep(keep);
    contender_ = std::thread([this, options] {
      ProcessLock other("sentinel-job", 10s, options);
      while (!stop_) {
        try {
          if (other.lock()) {
            const std::lock_guard<std::mutex> g(m_);
            if (!lost_) ++doubled_;
            (void)other.clear();
          }
        } catch (const Error&) {
          // failing over: no answer is fine, a wrong one is not
        }
        std::this_thread::sleep_for(50ms);
      }
    });
  }
  ~FailoverRun() { finish(); }
  void finish() {
    stop_ = true;
    if (contender_.joinable()) contender_.join();
  }
  ProcessLock& lock() { return lock_; }
  int renewals() const { return renewals_; }
  int doubled() const { return doubled_; }
  std::optional<process_lock::Lost> lost() {
    const std::lock_guard<std::mutex> g(m_);
    return lost_;
  }

 private:
  ProcessLock lock_;
  std::atomic<int> renewals_{0};
  std::atomic<int> doubled_{0};
  std::atomic<bool> stop_{false};
  std::mutex m_;
  std::optional<process_lock::Lost> lost_;
  std::thread contender_;
};

// Fails the master over to the replica and waits until the run's keeper has either renewed
// three more times or reported a loss.
// Records, as the test property failover_to_renewal_ms, the time from SENTINEL FAILOVER to the
// first renewal of the lock on the new master (its TTL there going up).
void SentinelTest::fail_over_and_watch(FailoverRun& run) {
  const auto asked = std::chrono::steady_clock::now();
  ASSERT_EQ(authed(*sentinels_[1], sentinel_password).string({"SENTINEL", "FAILOVER", "mymaster"}), "OK");
  long long last_ttl = -3;
  std::optional<std::chrono::milliseconds> renewed_after;
  // The promoted replica closes its clients' connections: each look uses a new one.
  auto look_for_renewal = [&] {
    if (renewed_after) return;
    try {
      test::RawClient replica = authed(*replica_, master_password);
      const auto role = replica.run({"ROLE"});
      const long long ttl = replica.integer({"PTTL", "sentinel-job"});
      const bool promoted = role->type == REDIS_REPLY_ARRAY && std::string(role->element[0]->str) == "master";
      if (promoted && last_ttl > 0 && ttl > last_ttl + 100)
        renewed_after = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - asked);
      last_ttl = ttl;
    } catch (const std::runtime_error&) {
      // the promotion closed it
    }
  };
  ASSERT_TRUE(test::wait_until(
      [&] {
        look_for_renewal();
        return reported_master_port() == replica_->port();
      },
      15s));
  const int before = run.renewals();
  ASSERT_TRUE(test::wait_until(
      [&] {
        look_for_renewal();
        return (renewed_after && run.renewals() >= before + 3) || run.lost().has_value();
      },
      10s));
  if (renewed_after) {
    RecordProperty("failover_to_renewal_ms", std::to_string(renewed_after->count()));
    std::printf("SENTINEL FAILOVER to the first renewal on the new master: %lld ms\n",
                static_cast<long long>(renewed_after->count()));
  }
}

// Commands the sentinels processed (their INFO stats), the test's own INFO calls included.
long long sentinel_commands(const std::vector<std::unique_ptr<test::RedisServer>>& sentinels) {
  long long total = 0;
  for (const auto& s : sentinels) {
    const std::string info = *authed(*s, sentinel_password).string({"INFO", "stats"});
    const auto at = info.find("total_commands_processed:");
    total += std::stoll(info.substr(at + std::strlen("total_commands_processed:")));
  }
  return total;
}

TEST_F(SentinelTest, CallsCostNoRoundTripToTheSentinelsInTheSteadyState) {
  ProcessLock lock("sentinel-job", 10s, options());
  ASSERT_TRUE(lock.lock());  // the first call asks, and subscribes to failover announcements
  const long long before = sentinel_commands(sentinels_);
  constexpr int calls = 200;
  for (int i = 0; i < calls; ++i) ASSERT_TRUE(lock.update());
  const long long asked = sentinel_commands(sentinels_) - before;
  // Besides this test's INFO calls, the sentinels ping each other every second.
  RecordProperty("sentinel_commands", std::to_string(asked));
  EXPECT_LT(asked, calls / 4) << "the sentinels were asked on each call";
  EXPECT_EQ(lock.clear(), std::optional<bool>(true));
}

// Clients subscribed on a sentinel (this test's lock is the only subscriber there is).
int subscribers(const test::RedisServer& sentinel) {
  const std::string list = *authed(sentinel, sentinel_password).string({"CLIENT", "LIST"});
  int count = 0;
  for (std::size_t at = list.find(" sub="); at != std::string::npos; at = list.find(" sub=", at + 1))
    count += list.compare(at, 7, " sub=0 ") != 0;
  return count;
}

// A sentinel that stops answering but keeps its connections (stopped, or cut off) would leave
// the subscription silent, and a failover unannounced: its unanswered PING gives it away, and
// the library asks the sentinels again and subscribes on one that answers.
TEST_F(SentinelTest, ASilentSentinelIsNoticedAndTheSubscriptionMoves) {
  ProcessLock lock("sentinel-job", 10s, options());
  ASSERT_TRUE(lock.lock());
  std::size_t watched = sentinels_.size();
  ASSERT_TRUE(test::wait_until([&] {
    for (std::size_t i = 0; i < sentinels_.size(); ++i)
      if (subscribers(*sentinels_[i]) > 0) watched = i;
    return watched < sentinels_.size();
  }));
  sentinels_[watched]->pause();
  const bool moved = test::wait_until(
      [&] {
        try {
          (void)lock.update();  // the library looks at its subscription on each call
        } catch (const process_lock::Error&) {
          // a call that asked the stopped sentinel first may run out of time
        }
        for (std::size_t i = 0; i < sentinels_.size(); ++i)
          if (i != watched && subscribers(*sentinels_[i]) > 0) return true;
        return false;
      },
      20s);
  sentinels_[watched]->resume();
  EXPECT_TRUE(moved) << "still subscribed on the stopped sentinel only";
  EXPECT_TRUE(lock.update());
  EXPECT_EQ(lock.clear(), std::optional<bool>(true));
}

TEST(SentinelAnnouncementTest, SwitchMasterPayloads) {
  using process_lock::detail::Address;
  using process_lock::detail::parse_switch_master;
  EXPECT_EQ(parse_switch_master("mymaster 127.0.0.1 6379 127.0.0.1 6380", "mymaster"), (Address{"127.0.0.1", 6380}));
  EXPECT_EQ(parse_switch_master("mymaster ::1 6379 ::1 7000", "mymaster"), (Address{"::1", 7000}));
  EXPECT_EQ(parse_switch_master("other 127.0.0.1 6379 127.0.0.1 6380", "mymaster"), std::nullopt) << "another master";
  EXPECT_EQ(parse_switch_master("mymaster 127.0.0.1 6379 127.0.0.1", "mymaster"), std::nullopt) << "no port";
  EXPECT_EQ(parse_switch_master("mymaster 127.0.0.1 6379 127.0.0.1 0", "mymaster"), std::nullopt) << "port 0";
  EXPECT_EQ(parse_switch_master("mymaster 127.0.0.1 6379 127.0.0.1 65536", "mymaster"), std::nullopt);
  EXPECT_EQ(parse_switch_master("mymaster 127.0.0.1 6379 127.0.0.1 6380 extra", "mymaster"), std::nullopt);
  EXPECT_EQ(parse_switch_master("mymaster  6379 127.0.0.1 6380", "mymaster"), std::nullopt) << "a missing field";
  EXPECT_EQ(parse_switch_master("", "mymaster"), std::nullopt);
}

TEST_F(SentinelTest, ALockHeldAcrossAFailoverIsRenewedOnTheNewMaster) {
  FailoverRun run(options());
  std::this_thread::sleep_for(600ms);  // the key reaches the replica
  ASSERT_NO_FATAL_FAILURE(fail_over_and_watch(run));
  run.finish();
  EXPECT_EQ(run.doubled(), 0);
  EXPECT_FALSE(run.lost().has_value()) << "reported lost: " << process_lock::to_string(run.lost()->reason);
  EXPECT_EQ(authed(*replica_, master_password).string({"GET", "sentinel-job"}), run.lock().token());
  EXPECT_EQ(run.lock().clear(), std::optional<bool>(true));
}

TEST_F(SentinelTest, WithReplicationChecksAFailoverNeverDoublesTheLock) {
  FailoverRun run(options("&wait_replicas=1&wait_timeout=200ms"));
  // Either renewals go on (with a replica acknowledging on the new master) or the loss is
  // reported before the validity ends; never a second holder while ours counts.
  ASSERT_NO_FATAL_FAILURE(fail_over_and_watch(run));
  run.finish();
  EXPECT_EQ(run.doubled(), 0);
  RecordProperty("outcome", run.lost() ? "reported lost" : "renewed on the new master");
  if (const auto lost = run.lost()) {
    EXPECT_EQ(lost->reason, process_lock::LostReason::unreachable);
    EXPECT_GT(lost->remaining, 0ms);
  }
}

}  // namespace
