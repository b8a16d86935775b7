// Watching a lock (ProcessLock::watch_for): the pure decisions (what changed between two reads,
// when to read again) as tables, and watches of a real redis-server: every kind of change in
// order, announced ones at once and expiries at the TTL's end (with a poll interval far too long
// to explain them), holders that announce nothing within the poll interval, and a watch whose
// connections are killed reporting what happened meanwhile.
#include <condition_variable>

#include "support.hpp"

namespace {

using process_lock::ProcessLock;
using process_lock::State;
using process_lock::WatchEvent;
using process_lock::detail::EndNotice;
using process_lock::detail::WatchView;
using Kind = WatchEvent::Kind;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// ---- pure decisions -----------------------------------------------------------------------

WatchView open_view(std::uint64_t counter, Clock::time_point at) {
  WatchView v;
  v.fence_counter = counter;
  v.sent_at = v.read_at = at;
  return v;
}
WatchView held(std::string token, std::uint64_t fence, std::uint64_t counter, Clock::time_point at,
               std::optional<std::chrono::milliseconds> ttl = 1000ms) {
  WatchView v = open_view(counter, at);
  v.locked = true;
  v.token = std::move(token);
  v.fence = fence;
  v.ttl = ttl;
  return v;
}
std::vector<Kind> kinds(const std::vector<WatchEvent>& events) {
  std::vector<Kind> k;
  k.reserve(events.size());
  for (const auto& e : events) k.push_back(e.kind);
  return k;
}

TEST(WatchChangesTest, Table) {
  const Clock::time_point t0{};
  const auto later = t0 + 100ms, after_ttl = t0 + 1000ms;
  struct Row {
    const char* what;
    std::optional<WatchView> before;
    WatchView after;
    EndNotice notice;
    std::vector<Kind> expected;
    std::vector<std::uint64_t> fences;
  };
  const std::vector<Row> rows = {
      {"first read, open", std::nullopt, open_view(3, t0), EndNotice::none, {Kind::current}, {0}},
      {"first read, held", std::nullopt, held("a", 4, 4, t0), EndNotice::none, {Kind::current}, {4}},
      {"nothing changed", open_view(3, t0), open_view(3, later), EndNotice::none, {}, {}},
      {"same hold, renewed", held("a", 4, 4, t0), held("a", 4, 4, later, 900ms), EndNotice::none, {}, {}},
      {"acquired", open_view(3, t0), held("a", 4, 4, later), EndNotice::none, {Kind::acquired}, {4}},
      {"acquired by a node holder", open_view(3, t0), held("n", 0, 3, later), EndNotice::none, {Kind::acquired}, {0}},
      {"released, announced", held("a", 4, 4, t0), open_view(4, later), EndNotice::released, {Kind::released}, {4}},
      {"released, unannounced, before the TTL", held("a", 4, 4, t0), open_view(4, later), EndNotice::none,
       {Kind::released}, {4}},
      {"gone after the TTL: expired", held("a", 4, 4, t0), open_view(4, after_ttl), EndNotice::none, {Kind::expired}, {4}},
      {"a release notice wins over the TTL", held("a", 4, 4, t0), open_view(4, after_ttl), EndNotice::released,
       {Kind::released}, {4}},
      {"forced", held("a", 4, 4, t0), open_view(4, later), EndNotice::forced, {Kind::forced}, {4}},
      {"no expiry: never expired", held("a", 4, 4, t0, std::nullopt), open_view(4, t0 + 1h), EndNotice::none,
       {Kind::released}, {4}},
      {"handed over", held("a", 4, 4, t0), held("b", 5, 5, later), EndNotice::released, {Kind::released, Kind::acquired},
       {4, 5}},
      {"same owner, new hold", held("a", 4, 4, t0), held("a", 5, 5, later), EndNotice::released,
       {Kind::released, Kind::acquired}, {4, 5}},
      {"one hold came and went unseen", open_view(3, t0), open_view(4, later), EndNotice::released, {Kind::released}, {4}},
      {"three unseen, then b", open_view(3, t0), held("b", 7, 7, later), EndNotice::none, {Kind::released, Kind::acquired},
       {6, 7}},
      {"counter reset (server lost its data)", held("a", 4, 4, t0), held("b", 1, 1, later), EndNotice::none,
       {Kind::released, Kind::acquired}, {4, 1}},
  };
  for (const Row& row : rows) {
    const auto events = process_lock::detail::watch_changes(row.before ? &*row.before : nullptr, row.after, row.notice, false);
    EXPECT_EQ(kinds(events), row.expected) << row.what;
    std::vector<std::uint64_t> fences;
    fences.reserve(events.size());
    for (const auto& e : events) fences.push_back(e.fence);
    EXPECT_EQ(fences, row.fences) << row.what;
    for (const auto& e : events) EXPECT_EQ(e.state, row.after.locked ? State::locked : State::open) << row.what;
  }
  // The missed count: fences 4 to 7 were handed out, 7 is b's, so 4, 5 and 6 came and went
  // unseen: one released event about 6, and 4 and 5 counted in it.
  const auto events = process_lock::detail::watch_changes(&rows[15].before.value(), rows[15].after, EndNotice::none, true);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].missed, 2u);
  EXPECT_TRUE(events[0].resumed);
  EXPECT_EQ(events[1].token, "b");
  EXPECT_EQ(events[1].ttl, std::optional<std::chrono::milliseconds>(1000ms));
}

TEST(NextWatchReadTest, Table) {
  const Clock::time_point t0{};
  struct Row {
    WatchView view;
    std::chrono::milliseconds poll;
    Clock::time_point expected;
  };
  const std::vector<Row> rows = {
      {open_view(0, t0), 1000ms, t0 + 1000ms},                    // open: the poll
      {held("a", 1, 1, t0, 300ms), 1000ms, t0 + 305ms},           // the TTL's end plus the margin
      {held("a", 1, 1, t0, 5000ms), 1000ms, t0 + 1000ms},         // the poll comes first
      {held("a", 1, 1, t0, std::nullopt), 1000ms, t0 + 1000ms},   // no expiry
      {held("a", 1, 1, t0, 0ms), 1000ms, t0 + 5ms},               // about to expire
      {held("a", 1, 1, t0, std::chrono::hours(24 * 365 * 100)), 3600000ms, t0 + 1h},  // no overflow
  };
  for (const Row& row : rows) EXPECT_EQ(process_lock::detail::next_watch_read(row.view, row.poll), row.expected);
}

TEST(WatchRecoversFromTest, Table) {
  using process_lock::Error;
  using process_lock::errc;
  struct Row {
    errc code;
    const char* reply;
    bool reroutes;
    bool expected;
  };
  const std::vector<Row> rows = {
      {errc::connect_failed, "", false, true},
      {errc::timeout, "", false, true},
      {errc::connection_lost, "", false, true},
      {errc::server_error, "LOADING Redis is loading the dataset in memory", false, true},
      {errc::server_error, "BUSY Redis is busy running a script.", false, true},
      {errc::server_error, "MASTERDOWN Link with MASTER is down", false, true},
      {errc::server_error, "TRYAGAIN Multiple keys request during rehashing of slot", false, true},
      {errc::server_error, "CLUSTERDOWN The cluster is down", false, true},
      {errc::server_error, "OOM command not allowed when used memory > 'maxmemory'.", false, true},
      {errc::server_error,
       "ERR Error running script (call to f_0123): @user_script:3: @user_script: 3: -LOADING Redis is loading", false,
       true},  // wrapped by Redis up to 6.2
      {errc::server_error, "READONLY You can't write against a read only replica.", true, true},
      {errc::server_error, "READONLY You can't write against a read only replica.", false, false},  // the URL's replica
      {errc::server_error, "WRONGTYPE Operation against a key holding the wrong kind of value", false, false},
      {errc::server_error, "ERR user_script:3: Script attempted to access nonexistent global variable", false, false},
      {errc::server_error, "ERR unknown command 'EVALSHA'", true, false},
      {errc::server_error, "BUSYKEY Target key name already exists.", false, false},  // a code word, not BUSY
      {errc::server_error, "ERR max number of clients reached", false, true},  // maxclients: a slot frees up
      {errc::server_error, "ERR max number of something else", false, false},
      {errc::permission_denied, "NOPERM this user has no permissions", false, false},
      {errc::auth_failed, "WRONGPASS invalid username-password pair", false, false},
      {errc::protocol_error, "", false, false},
  };
  for (const Row& row : rows)
    EXPECT_EQ(process_lock::detail::watch_recovers_from(Error(row.code, "m", row.reply), row.reroutes), row.expected)
        << row.reply << " " << static_cast<int>(row.code);
}

TEST(WatchBackoffTest, CapAndJitterTable) {
  using process_lock::detail::watch_backoff_cap;
  using process_lock::detail::watch_retry_pause;
  EXPECT_EQ(watch_backoff_cap(10ms), 50ms);
  EXPECT_EQ(watch_backoff_cap(1000ms), 1000ms);
  EXPECT_EQ(watch_backoff_cap(2000ms), 2000ms);
  EXPECT_EQ(watch_backoff_cap(3600000ms), 2000ms);  // a 1 h poll still reconnects within 2 s
  EXPECT_EQ(watch_retry_pause(1000ms, 0), 500ms);
  EXPECT_EQ(watch_retry_pause(1000ms, 500), 750ms);
  EXPECT_EQ(watch_retry_pause(1000ms, 999), 999ms);
  EXPECT_EQ(watch_retry_pause(1000ms, 5000), 999ms);  // out of range: as 999
  EXPECT_EQ(watch_retry_pause(50ms, 0), 25ms);
}

// ---- against a real redis-server ----------------------------------------------------------

class WatchTest : public test::SharedServerTest<WatchTest> {
 protected:
  // A watch on its own thread, collecting what it reports.
  class Watch {
   public:
    Watch(const process_lock::Options& options, process_lock::WatchOptions watch_options = {})
        : lock_("job", 10, options) {
      watch_options.on_error = [this](const process_lock::Error&) { ++errors_; };
      watch_options.stop = &stop_;  // with cancel(), the destructor cannot miss a watch just starting
      thread_ = std::thread([this, watch_options] {
        try {
          lock_.watch_until(Clock::time_point::max(), [this](const WatchEvent& e) {
            const std::lock_guard<std::mutex> guard(mutex_);
            events_.push_back(e);
            seen_at_.push_back(Clock::now());
            cv_.notify_all();
          }, watch_options);
        } catch (const std::exception& e) {
          const std::lock_guard<std::mutex> guard(mutex_);
          failure_ = e.what();
          cv_.notify_all();
        }
      });
    }
    ~Watch() {
      stop_ = true;
      lock_.cancel();
      thread_.join();
    }
    // Waits until `n` events have come (up to `limit`); returns whether they did.
    bool has(std::size_t n, std::chrono::milliseconds limit = 5000ms) {
      std::unique_lock<std::mutex> guard(mutex_);
      return cv_.wait_for(guard, limit, [&] { return events_.size() >= n || !failure_.empty(); }) && events_.size() >= n;
    }
    std::vector<WatchEvent> events() {
      const std::lock_guard<std::mutex> guard(mutex_);
      return events_;
    }
    Clock::time_point seen_at(std::size_t i) {
      const std::lock_guard<std::mutex> guard(mutex_);
      return seen_at_.at(i);
    }
    std::string failure() {
      const std::lock_guard<std::mutex> guard(mutex_);
      return failure_;
    }
    int errors() const { return errors_.load(); }

   private:
    ProcessLock lock_;
    std::atomic<bool> stop_{false};
    std::atomic<int> errors_{0};
    std::mutex mutex_;
    std::condition_variable cv_;
    std::vector<WatchEvent> events_;
    std::vector<Clock::time_point> seen_at_;
    std::string failure_;
    std::thread thread_;
  };

  static process_lock::WatchOptions slow_poll() {
    process_lock::WatchOptions o;
    o.poll_interval = 60s;  // so that nothing below is explained by polling
    return o;
  }
};

TEST_F(WatchTest, SeesAcquireReleaseExpiryAndForceInOrder) {
  Watch watch(options(), slow_poll());
  ASSERT_TRUE(watch.has(1)) << watch.failure();
  EXPECT_EQ(watch.events()[0].kind, Kind::current);
  EXPECT_EQ(watch.events()[0].state, State::open);

  process_lock::Options with_info = options();
  with_info.holder_info = "10.0.0.7:8080";
  ProcessLock a("job", 10, with_info);
  ASSERT_TRUE(a.lock());
  ASSERT_TRUE(watch.has(2, 3000ms)) << "an acquisition is announced: no 60 s poll needed";
  ASSERT_TRUE(a.clear().value());
  ASSERT_TRUE(watch.has(3, 3000ms)) << "a release is announced";

  auto b = std::make_unique<ProcessLock>("job", 0.3, options());
  const auto b_sent = Clock::now();  // the key expires no sooner than 300 ms after this
  ASSERT_TRUE(b->lock());
  const auto b_taken = Clock::now();
  ASSERT_TRUE(watch.has(4, 3000ms));
  ASSERT_TRUE(watch.has(5, 3000ms)) << "the expiry is seen at the TTL's end";
  // Documented: within 5 ms plus a round trip of the expiry; generous here for a busy machine.
  EXPECT_LT(watch.seen_at(4) - b_taken, 300ms + 700ms);
  EXPECT_GE(watch.seen_at(4) - b_sent, 300ms);
  b.reset();  // its release finds the lock gone

  ProcessLock c("job", 10, options());
  ASSERT_TRUE(c.lock());
  ASSERT_TRUE(watch.has(6, 3000ms));
  ProcessLock other("job", 10, options());
  ASSERT_EQ(other.clear(true), std::optional<bool>(true));
  ASSERT_TRUE(watch.has(7, 3000ms));

  const auto events = watch.events();
  EXPECT_EQ(kinds(events), (std::vector<Kind>{Kind::current, Kind::acquired, Kind::released, Kind::acquired,
                                             Kind::expired, Kind::acquired, Kind::forced}));
  EXPECT_EQ(events[1].token, a.token());
  EXPECT_EQ(events[1].fence, 1u);
  ASSERT_TRUE(events[1].holder.has_value());
  EXPECT_EQ(events[1].holder->pid, static_cast<long>(getpid()));
  EXPECT_EQ(events[1].holder->info, "10.0.0.7:8080");
  EXPECT_EQ(events[1].state, State::locked);
  EXPECT_EQ(events[2].fence, 1u);
  EXPECT_EQ(events[2].state, State::open);
  EXPECT_EQ(events[3].fence, 2u);
  EXPECT_EQ(events[4].fence, 2u);
  EXPECT_EQ(events[5].token, c.token());
  EXPECT_EQ(events[6].token, c.token());
  for (const auto& e : events) {
    EXPECT_FALSE(e.resumed);
    EXPECT_EQ(e.missed, 0u);
  }
  EXPECT_EQ(watch.errors(), 0);
}

TEST_F(WatchTest, ReportsWhatHappenedWhileItsConnectionsWereKilled) {
  Watch watch(options(), slow_poll());
  ASSERT_TRUE(watch.has(1)) << watch.failure();
  // Its connections are killed and a holder that announces nothing takes the lock in the same
  // atomic step, so that only the read after reconnecting can find it.
  raw_->run({"MULTI"});
  raw_->run({"CLIENT", "KILL", "TYPE", "pubsub"});
  raw_->run({"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"});
  raw_->run({"SET", "job", "0f1e2d3c-4b5a-4697-8877-665544332211", "PX", "30000"});
  const auto executed = raw_->run({"EXEC"});
  ASSERT_EQ(executed->type, REDIS_REPLY_ARRAY);
  ASSERT_TRUE(watch.has(2, 5000ms)) << watch.failure();
  const WatchEvent e = watch.events()[1];
  EXPECT_EQ(e.kind, Kind::acquired);
  EXPECT_TRUE(e.resumed);
  EXPECT_EQ(e.token, "0f1e2d3c-4b5a-4697-8877-665544332211");
  EXPECT_FALSE(e.holder.has_value());
  EXPECT_GE(watch.errors(), 1);

  // A server restart (it keeps nothing): the hold and the counter are gone when it is back.
  ProcessLock a("job2", 10, options());  // another name: only the restart matters for "job"
  server_->stop();
  server_->start();
  ASSERT_TRUE(watch.has(3, 10000ms)) << watch.failure();
  EXPECT_EQ(watch.events()[2].kind, Kind::released);  // deleted before its TTL, by the restart
  EXPECT_TRUE(watch.events()[2].resumed);
  EXPECT_EQ(watch.events()[2].state, State::open);
}

TEST_F(WatchTest, HoldersThatAnnounceNothingAreSeenWithinThePollInterval) {
  process_lock::WatchOptions o;
  o.poll_interval = 200ms;
  Watch watch(options(), o);
  ASSERT_TRUE(watch.has(1)) << watch.failure();
  // process-lock-node's acquisition, release and expiry: plain commands, no script, no notice.
  const auto set_at = Clock::now();
  raw_->run({"SET", "job", "11111111-2222-4333-8444-555555555555", "NX", "PX", "30000"});
  ASSERT_TRUE(watch.has(2, 3000ms));
  EXPECT_LT(watch.seen_at(1) - set_at, 200ms + 800ms);  // the poll interval, plus room for a busy machine
  raw_->run({"DEL", "job"});
  ASSERT_TRUE(watch.has(3, 3000ms));
  const auto ttl_from = Clock::now();
  raw_->run({"SET", "job", "66666666-2222-4333-8444-555555555555", "NX", "PX", "500"});
  ASSERT_TRUE(watch.has(5, 3000ms));
  EXPECT_LT(watch.seen_at(4) - ttl_from, 500ms + 500ms);
  EXPECT_EQ(kinds(watch.events()),
            (std::vector<Kind>{Kind::current, Kind::acquired, Kind::released, Kind::acquired, Kind::expired}));
  EXPECT_EQ(watch.events()[1].fence, 0u);
  EXPECT_FALSE(watch.events()[1].holder.has_value());
}

TEST_F(WatchTest, TheLockCostsNothingMoreOnceNobodyWatches) {
  ProcessLock lock("job", 10, options());
  {
    process_lock::WatchOptions o;
    o.poll_interval = 10ms;  // lease: 3 x 10 ms + 1 s
    Watch watch(options(), o);
    ASSERT_TRUE(watch.has(1)) << watch.failure();
    raw_->reset_stats();
    ASSERT_TRUE(lock.lock());
    ASSERT_TRUE(lock.clear().value());
    EXPECT_EQ(raw_->command_calls()["publish"], 2);  // acquired and released, while watched
  }
  std::this_thread::sleep_for(2500ms);  // the lease (1030 ms from the last read) runs out, with room to spare
  raw_->reset_stats();
  ASSERT_TRUE(lock.lock());
  ASSERT_TRUE(lock.clear().value());
  const auto calls = raw_->command_calls();
  EXPECT_EQ(calls.count("publish"), 0u);
  EXPECT_EQ(calls.count("setrange"), 0u);
  EXPECT_EQ(calls.count("pttl"), 0u);
}

TEST_F(WatchTest, BadOptionsAndSeveralMastersAreRefused) {
  ProcessLock lock("job", 10, options());
  process_lock::WatchOptions o;
  o.poll_interval = 1ms;
  EXPECT_EQ(test::failure_of([&] { lock.watch_for(1s, [](const WatchEvent&) {}, o); }).code(),
            process_lock::errc::invalid_argument);
  process_lock::Options two = options();
  two.url = server_->url() + "," + server_->url() + "/1";
  ProcessLock quorum("job", 10, two);
  EXPECT_EQ(test::failure_of([&] { quorum.watch_for(1s, [](const WatchEvent&) {}); }).code(),
            process_lock::errc::unsupported);
}

TEST_F(WatchTest, EndsAtItsDeadlineAndOnCancel) {
  ProcessLock lock("job", 10, options());
  int events = 0;
  const auto start = Clock::now();
  lock.watch_for(300ms, [&](const WatchEvent&) { ++events; });
  EXPECT_GE(Clock::now() - start, 300ms);
  EXPECT_LT(Clock::now() - start, 3000ms);
  EXPECT_EQ(events, 1);
  // stop, then cancel(): a watch that has not started yet when cancel() comes sees stop.
  std::atomic<bool> stop{false};
  process_lock::WatchOptions o;
  o.stop = &stop;
  std::thread stopper([&] {
    std::this_thread::sleep_for(200ms);
    stop = true;
    lock.cancel();
  });
  const auto again = Clock::now();
  lock.watch_for(60s, [](const WatchEvent&) {}, o);
  EXPECT_LT(Clock::now() - again, 5000ms);
  stopper.join();
}

TEST_F(WatchTest, AKeyOfAnotherTypeEndsTheWatchAtOnce) {
  raw_->run({"HSET", "job", "f", "v"});  // not a lock: every read would fail the same way
  ProcessLock lock("job", 10, options());
  int errors = 0;
  process_lock::WatchOptions o;
  o.on_error = [&](const process_lock::Error&) { ++errors; };
  const auto start = Clock::now();
  const process_lock::Error e = test::failure_of([&] { lock.watch_for(20s, [](const WatchEvent&) {}, o); });
  EXPECT_EQ(e.code(), process_lock::errc::server_error);
  EXPECT_NE(e.server_reply().find("WRONGTYPE"), std::string::npos) << e.what();
  EXPECT_LT(Clock::now() - start, 3s);
  EXPECT_EQ(errors, 0);
}

TEST_F(WatchTest, AFastWatcherDoesNotCutASlowWatchersLease) {
  process_lock::WatchOptions slow;
  slow.poll_interval = 1h;  // lease: 3 h + 1 s
  Watch watch_slow(options(), slow);
  ASSERT_TRUE(watch_slow.has(1)) << watch_slow.failure();
  process_lock::WatchOptions fast;
  fast.poll_interval = 10ms;  // lease: 1030 ms, renewed every 10 ms
  Watch watch_fast(options(), fast);
  ASSERT_TRUE(watch_fast.has(1)) << watch_fast.failure();
  std::this_thread::sleep_for(100ms);  // several fast reads
  const std::string lease_key = process_lock::detail::LockKeys("job").watch;
  EXPECT_GT(raw_->integer({"PTTL", lease_key}), 3600 * 1000);
  EXPECT_GT(raw_->integer({"PTTL", process_lock::detail::LockKeys("job").owner}), 3600 * 1000);  // the placeholder lasts as long
}

TEST_F(WatchTest, SubscribesToBothChannelsAtOnceAndReadsOnceForABurstOfNotices) {
  raw_->reset_stats();
  Watch watch(options(), slow_poll());
  ASSERT_TRUE(watch.has(1)) << watch.failure();
  EXPECT_EQ(raw_->command_calls()["subscribe"], 1);  // one SUBSCRIBE for both channels
  // Ten notices in one go (as a burst of hand-overs would send them): one read covers them.
  raw_->reset_stats();
  const std::string channel = process_lock::detail::LockKeys("job").channel;
  raw_->run({"MULTI"});
  for (int i = 0; i < 10; ++i) raw_->run({"PUBLISH", channel, "released"});
  (void)raw_->run({"EXEC"});
  std::this_thread::sleep_for(500ms);
  const auto calls = raw_->command_calls();
  EXPECT_GE(calls.count("evalsha") ? calls.at("evalsha") : 0, 1);
  EXPECT_LE(calls.count("evalsha") ? calls.at("evalsha") : 0, 2);
  EXPECT_EQ(watch.errors(), 0);
}

TEST_F(WatchTest, AUserAllowedOnlyTheReleaseChannelStillHearsReleases) {
  // The README's advice before: '&process_lock:released:*' only. The watch falls back to that
  // channel and hears releases (the acquisition is then found with them, from the counter).
  raw_->run({"ACL", "SETUSER", "releases-only", "on", ">pw", "~*", "+@all", "resetchannels",
             "&process_lock:released:*"});
  const std::string url = "redis://releases-only:pw@127.0.0.1:" + std::to_string(server_->port());
  Watch watch(test::options_for(url), slow_poll());
  ASSERT_TRUE(watch.has(1)) << watch.failure();
  EXPECT_EQ(watch.errors(), 1);  // the refused SUBSCRIBE of both, reported once
  ProcessLock a("job", 10, options());
  ASSERT_TRUE(a.lock());
  ASSERT_TRUE(a.clear().value());
  ASSERT_TRUE(watch.has(2, 3000ms)) << "the release is announced: no 60 s poll needed";
  EXPECT_EQ(watch.events()[1].kind, Kind::released);
  EXPECT_EQ(watch.events()[1].fence, 1u);
}

TEST_F(WatchTest, ASubscriptionThatFailedWhileReadsWorkIsRetriedAndTheReadAfterItResumes) {
  Watch watch(options(), slow_poll());
  ASSERT_TRUE(watch.has(1)) << watch.failure();
  // The listener is dropped and no new connection is let in: subscribing fails (the server is
  // full), while the reader's connection still works.
  struct Restore {  // the server is shared with the next tests
    test::RawClient& raw;
    ~Restore() {
      try {
        raw.run({"CONFIG", "SET", "maxclients", "10000"});
      } catch (const std::exception& e) {
        ADD_FAILURE() << "maxclients not restored: " << e.what();
      }
    }
  } const restore{*raw_};
  raw_->run({"MULTI"});
  raw_->run({"CLIENT", "KILL", "TYPE", "pubsub"});
  raw_->run({"CONFIG", "SET", "maxclients", "1"});
  ASSERT_EQ(raw_->run({"EXEC"})->type, REDIS_REPLY_ARRAY);
  ASSERT_TRUE(test::wait_until([&] { return watch.errors() >= 2; }, 5000ms)) << "the lost listener, a refused subscription";
  // A holder that announces nothing, while the watch is deaf; then room again.
  raw_->run({"SET", "job", "0f1e2d3c-4b5a-4697-8877-665544332211", "PX", "30000"});
  raw_->run({"CONFIG", "SET", "maxclients", "10000"});
  ASSERT_TRUE(watch.has(2, 5000ms)) << "found once subscribed again, not at the 60 s poll; " << watch.failure();
  const WatchEvent e = watch.events()[1];
  EXPECT_EQ(e.kind, Kind::acquired);
  EXPECT_TRUE(e.resumed);
  EXPECT_EQ(e.token, "0f1e2d3c-4b5a-4697-8877-665544332211");
  EXPECT_EQ(watch.failure(), "");
}

}  // namespace
