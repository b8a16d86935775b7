// Failures: a server that is down, killed, restarted, paused, slow, not Redis, or that refuses
// our credentials. Each must give a clear error of the right kind, never a hang or a crash.
#include "support.hpp"

#include <gtest/gtest.h>

#include <csignal>
#include <thread>

namespace {

using process_lock::Error;
using process_lock::errc;
using process_lock::Options;
using process_lock::ProcessLock;
using process_lock::State;
using namespace std::chrono_literals;

// Runs `call`, which must throw; returns what it threw.
template <class Call>
Error failure_of(Call call) {
  try {
    call();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "the call did not fail";
  return Error();
}

std::string message(const Error& e) { return e.what(); }
bool contains(const std::string& haystack, const std::string& needle) { return haystack.find(needle) != std::string::npos; }

TEST(FaultTest, ServerDownIsConnectFailedNamingTheServer) {
  const int port = test::free_port();
  ProcessLock lock("job", 10, test::options_for("redis://:s3cret@127.0.0.1:" + std::to_string(port)));
  const Error e = failure_of([&] { (void)lock.lock(); });
  EXPECT_EQ(e.code(), errc::connect_failed);
  EXPECT_TRUE(contains(message(e), "lock(\"job\"): cannot connect to redis://:***@127.0.0.1:" + std::to_string(port)))
      << message(e);
  EXPECT_TRUE(contains(message(e), "refused")) << message(e);
  EXPECT_FALSE(contains(message(e), "s3cret"));
}

TEST(FaultTest, UnresolvableHostIsConnectFailed) {
  ProcessLock lock("job", 10, test::options_for("redis://no-such-host.invalid:6379"));
  EXPECT_EQ(failure_of([&] { (void)lock.state(); }).code(), errc::connect_failed);
}

TEST(FaultTest, KilledServerGivesAnErrorAndRestartedServerWorksAgain) {
  test::RedisServer server;
  ProcessLock lock("job", 10, test::options_for(server.url()));
  ASSERT_TRUE(lock.lock());
  server.kill();
  const Error e = failure_of([&] { (void)lock.update(); });
  EXPECT_TRUE(e.code() == errc::connect_failed || e.code() == errc::connection_lost) << message(e);
  EXPECT_EQ(failure_of([&] { (void)lock.clear(); }).code(), errc::connect_failed);

  server.start();  // same port, empty data, no cached scripts
  EXPECT_EQ(lock.state(), State::open);
  EXPECT_TRUE(lock.lock());
  EXPECT_EQ(server.client().string({"GET", "job"}), lock.token());
}

TEST(FaultTest, RestartBetweenCallsIsNoticedWithoutAnError) {
  // The idle connection to the old server is seen dead before use and replaced.
  test::RedisServer server;
  ProcessLock lock("job", 10, test::options_for(server.url()));
  ASSERT_TRUE(lock.lock());
  server.stop();
  server.start();
  EXPECT_EQ(lock.clear(), std::nullopt);  // the restarted server has no data
  EXPECT_TRUE(lock.lock());
}

TEST(FaultTest, PausedServerTimesOutThenRecovers) {
  test::RedisServer server;
  ProcessLock lock("job", 10, test::options_for(server.url(), 100ms));
  ASSERT_TRUE(lock.lock());
  server.pause();
  const Error e = failure_of([&] { (void)lock.update(); });
  EXPECT_EQ(e.code(), errc::timeout) << message(e);
  EXPECT_TRUE(contains(message(e), "did not reply within 100 ms")) << message(e);
  // A new connection to a paused server is accepted by the kernel, then the call times out.
  EXPECT_EQ(failure_of([&] { (void)lock.state(); }).code(), errc::timeout);
  server.resume();
  EXPECT_TRUE(lock.update());
}

TEST(FaultTest, SlowServerTimesOut) {
  test::RedisServer server({"--enable-debug-command", "yes"});
  ProcessLock lock("job", 10, test::options_for(server.url(), 100ms));
  ASSERT_TRUE(lock.lock());
  std::thread sleeper([&] { server.client().run({"DEBUG", "SLEEP", "0.6"}); });
  ASSERT_TRUE(test::wait_until([&] {
    // The sleep has begun once a fresh connection cannot get an answer quickly.
    ProcessLock probe("probe", 10, test::options_for(server.url(), 50ms));
    try {
      (void)probe.state();
      return false;
    } catch (const Error&) {
      return true;
    }
  }));
  EXPECT_EQ(failure_of([&] { (void)lock.update(); }).code(), errc::timeout);
  sleeper.join();
  EXPECT_TRUE(lock.update());
}

TEST(FaultTest, ServerThatNeverAcceptsTimesOutConnecting) {
  // A listener with a full accept queue makes the kernel drop new connection attempts.
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  ASSERT_EQ(listen(listener, 0), 0);
  std::vector<int> fillers;
  for (int i = 0; i < 4; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    fillers.push_back(fd);
  }
  Options o = test::options_for("redis://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)), 150ms);
  ProcessLock lock("job", 10, o);
  const Error e = failure_of([&] { (void)lock.lock(); });
  EXPECT_EQ(e.code(), errc::timeout) << message(e);
  EXPECT_TRUE(contains(message(e), "timed out after 150 ms")) << message(e);
  for (int fd : fillers) close(fd);
  close(listener);
}

TEST(FaultTest, SilentServerTimesOut) {
  test::FakeServer silent({{{test::FakeServer::Act::hang, ""}}});
  ProcessLock lock("job", 10, test::options_for(silent.url(), 100ms));
  EXPECT_EQ(failure_of([&] { (void)lock.lock(); }).code(), errc::timeout);
}

TEST(FaultTest, ServerThatIsNotRedisIsAProtocolError) {
  test::FakeServer http({{{test::FakeServer::Act::reply, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"}}});
  ProcessLock lock("job", 10, test::options_for(http.url()));
  const Error e = failure_of([&] { (void)lock.lock(); });
  EXPECT_EQ(e.code(), errc::protocol_error) << message(e);
  EXPECT_TRUE(contains(message(e), "does not speak the Redis protocol")) << message(e);
}

TEST(FaultTest, ReplyOfTheWrongTypeIsAProtocolError) {
  // A RESP speaker that answers a script with a status: no Redis does that.
  test::FakeServer odd({{{test::FakeServer::Act::reply, "+OK\r\n"}}});
  ProcessLock lock("job", 10, test::options_for(odd.url()));
  const Error e = failure_of([&] { (void)lock.lock(); });
  EXPECT_EQ(e.code(), errc::protocol_error) << message(e);
  EXPECT_TRUE(contains(message(e), "unexpected type")) << message(e);
}

TEST(FaultTest, StaleConnectionIsRetriedOnceForLockButNotForClear) {
  using Act = test::FakeServer::Act;
  // Connection 1 answers one call and then drops the next one unanswered.
  test::FakeServer server({{{Act::reply, ":1\r\n"}, {Act::close, ""}}, {{Act::reply, ":1\r\n"}}});
  ProcessLock lock("job", 10, test::options_for(server.url()));
  EXPECT_TRUE(lock.lock());
  EXPECT_TRUE(lock.lock());  // retried on a fresh connection: the same answer either way
  EXPECT_EQ(server.accepted(), 2);

  test::FakeServer server2({{{Act::reply, ":1\r\n"}, {Act::close, ""}}, {{Act::reply, ":-1\r\n"}}});
  ProcessLock lock2("job", 10, test::options_for(server2.url()));
  EXPECT_EQ(lock2.clear(), std::optional<bool>(true));
  // A clear that may have run must not be repeated: its second answer would differ.
  EXPECT_EQ(failure_of([&] { (void)lock2.clear(); }).code(), errc::connection_lost);
  EXPECT_EQ(server2.accepted(), 1);
  EXPECT_EQ(lock2.clear(), std::nullopt);  // the next call reconnects
  EXPECT_EQ(server2.accepted(), 2);
}

// ---- SIGPIPE ---------------------------------------------------------------------------------

// A lock name larger than the socket buffers makes the write block part-way; when the peer
// goes away then, write() raises SIGPIPE, which by default kills the process.
const std::string huge_name(8 << 20, 'n');

bool sigpipe_is_default() {
  struct sigaction current{};
  sigaction(SIGPIPE, nullptr, &current);
  return current.sa_handler == SIG_DFL;
}

TEST(FaultTest, PeerClosingDuringAWriteDoesNotKillTheProcess) {
  ASSERT_TRUE(sigpipe_is_default());
  test::RedisServer dir_owner;  // only for its private directory
  test::FakeServer closer({{{test::FakeServer::Act::close, ""}}}, dir_owner.dir() + "/fake.sock");
  const int status = test::in_child([&] {
    ProcessLock lock(huge_name, 10, test::options_for(closer.url()));
    try {
      (void)lock.lock();
      return 2;
    } catch (const Error& e) {
      if (e.code() != errc::connection_lost) return 3;
    }
    sigset_t pending;
    sigpending(&pending);
    if (sigismember(&pending, SIGPIPE)) return 4;  // consumed, not left pending
    return sigpipe_is_default() ? 0 : 5;           // disposition untouched
  });
  ASSERT_TRUE(WIFEXITED(status)) << "child killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(FaultTest, ServerKilledDuringAWriteDoesNotKillTheProcess) {
  ASSERT_TRUE(sigpipe_is_default());
  test::RedisServer server;
  server.pause();  // it stops reading, so the huge command fills the socket and blocks
  const pid_t parent = getpid();
  std::thread killer([&] {
    std::this_thread::sleep_for(300ms);
    server.kill();
  });
  const int status = test::in_child([&] {
    (void)parent;
    ProcessLock lock(huge_name, 10, test::options_for("unix://" + server.socket_path(), 5000ms));
    try {
      (void)lock.lock();
      return 2;
    } catch (const Error& e) {
      return e.code() == errc::connection_lost ? 0 : 3;
    }
  });
  killer.join();
  ASSERT_TRUE(WIFEXITED(status)) << "child killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

// ---- authentication ------------------------------------------------------------------------

class AuthTest : public ::testing::Test {
 protected:
  static constexpr const char* password = "p@ss:w0rd/with%chars";
  static constexpr const char* encoded = "p%40ss%3Aw0rd%2Fwith%25chars";
  static void SetUpTestSuite() {
    server_ = new test::RedisServer({"--requirepass", password});
    test::RawClient admin(server_->port());
    admin.run({"AUTH", password});
    admin.run({"ACL", "SETUSER", "locker", "on", ">locker-pw", "~*", "+@all"});
    admin.run({"ACL", "SETUSER", "reader", "on", ">reader-pw", "~*", "+get", "+ping"});
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  std::string url(const std::string& userinfo) const {
    return "redis://" + userinfo + "@127.0.0.1:" + std::to_string(server_->port());
  }
  static test::RedisServer* server_;
};
test::RedisServer* AuthTest::server_ = nullptr;

TEST_F(AuthTest, RightPasswordPercentEncodedWorks) {
  ProcessLock lock("job", 10, test::options_for(url(std::string(":") + encoded)));
  EXPECT_TRUE(lock.lock());
  EXPECT_EQ(lock.clear(), std::optional<bool>(true));
}

TEST_F(AuthTest, PasswordInQueryWorks) {
  ProcessLock lock("job", 10,
                   test::options_for("redis://127.0.0.1:" + std::to_string(server_->port()) + "?password=" + encoded));
  EXPECT_EQ(lock.state(), State::open);
}

TEST_F(AuthTest, WrongPasswordIsAuthFailedWithoutThePassword) {
  ProcessLock lock("job", 10, test::options_for(url(":wrong-s3cret")));
  const Error e = failure_of([&] { (void)lock.lock(); });
  EXPECT_EQ(e.code(), errc::auth_failed) << message(e);
  EXPECT_TRUE(contains(message(e), "authentication to redis://:***@127.0.0.1")) << message(e);
  EXPECT_TRUE(contains(e.server_reply(), "WRONGPASS")) << e.server_reply();
  EXPECT_FALSE(contains(message(e), "wrong-s3cret")) << message(e);
}

TEST_F(AuthTest, MissingPasswordIsAuthFailed) {
  ProcessLock lock("job", 10, test::options_for("redis://127.0.0.1:" + std::to_string(server_->port())));
  const Error e = failure_of([&] { (void)lock.lock(); });
  EXPECT_EQ(e.code(), errc::auth_failed) << message(e);
  EXPECT_TRUE(contains(e.server_reply(), "NOAUTH")) << e.server_reply();
}

TEST_F(AuthTest, AclUserWithPasswordWorks) {
  ProcessLock lock("job", 10, test::options_for(url("locker:locker-pw")));
  EXPECT_TRUE(lock.lock());
  EXPECT_EQ(lock.clear(), std::optional<bool>(true));
}

TEST_F(AuthTest, AclUserWithWrongPasswordIsAuthFailed) {
  ProcessLock lock("job", 10, test::options_for(url("locker:nope-s3cret")));
  const Error e = failure_of([&] { (void)lock.lock(); });
  EXPECT_EQ(e.code(), errc::auth_failed);
  EXPECT_TRUE(contains(message(e), "redis://locker:***@")) << message(e);
  EXPECT_FALSE(contains(message(e), "nope-s3cret"));
}

TEST_F(AuthTest, AclUserWithoutScriptRightsIsPermissionDenied) {
  ProcessLock lock("job", 10, test::options_for(url("reader:reader-pw")));
  EXPECT_EQ(lock.state(), State::open);  // GET is allowed
  const Error e = failure_of([&] { (void)lock.lock(); });
  EXPECT_EQ(e.code(), errc::permission_denied) << message(e);
  EXPECT_TRUE(contains(e.server_reply(), "NOPERM")) << e.server_reply();
}

TEST(AuthTestNoPassword, PasswordForAServerWithoutOneIsAuthFailed) {
  test::RedisServer server;
  ProcessLock lock("job", 10, test::options_for("redis://:unneeded-s3cret@127.0.0.1:" + std::to_string(server.port())));
  const Error e = failure_of([&] { (void)lock.lock(); });
  EXPECT_EQ(e.code(), errc::auth_failed) << message(e);
  EXPECT_FALSE(contains(message(e), "unneeded-s3cret"));
}

TEST(DatabaseTest, DatabaseOutOfRangeIsAServerError) {
  test::RedisServer server;
  ProcessLock lock("job", 10, test::options_for(server.url() + "/99"));
  const Error e = failure_of([&] { (void)lock.lock(); });
  EXPECT_EQ(e.code(), errc::server_error) << message(e);
  EXPECT_TRUE(contains(message(e), "SELECT 99")) << message(e);
}

// ---- replicas ------------------------------------------------------------------------------

TEST(ReplicaTest, ReadOnlyReplicaRefusesLockingButAnswersState) {
  test::RedisServer primary({"--repl-diskless-sync-delay", "0"});
  test::RedisServer replica({"--replicaof", "127.0.0.1", std::to_string(primary.port())});
  ProcessLock on_primary("job", 10, test::options_for(primary.url()));
  ProcessLock on_replica("job", 10, test::options_for(replica.url()));
  ASSERT_TRUE(on_primary.lock());
  const Error e = failure_of([&] { (void)on_replica.lock(); });
  EXPECT_EQ(e.code(), errc::server_error) << message(e);
  EXPECT_EQ(e.server_reply().rfind("READONLY", 0), 0u) << e.server_reply();
  ASSERT_TRUE(test::wait_until([&] { return on_replica.state() == State::locked; }));  // replicated
  // Now that the replica has the key, deleting it is a write the replica must refuse.
  EXPECT_EQ(failure_of([&] { (void)on_replica.clear(true); }).code(), errc::server_error);
  EXPECT_EQ(primary.client().string({"GET", "job"}), on_primary.token());
}

}  // namespace
