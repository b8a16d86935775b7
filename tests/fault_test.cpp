// Failures: a server that is down, killed, restarted, paused, slow, not Redis, or that refuses
// our credentials. Each must give a clear error of the right kind, never a hang or a crash.
#include <gtest/gtest.h>

#include <csignal>
#include <thread>

#include "support.hpp"

namespace {

using process_lock::errc;
using process_lock::Error;
using process_lock::Options;
using process_lock::ProcessLock;
using process_lock::State;
using namespace std::chrono_literals;

using test::contains;
using test::failure_of;

std::string message(const Error& e) { return e.what(); }

TEST(FaultTest, ServerDownIsConnectFailedNamingTheServer) {
  ProcessLock lock("job", 10, test::options_for("redis://:s3cret@127.0.0.1:1"));
  const Error e = failure_of([&] { (void)lock.lock(); });
  EXPECT_EQ(e.code(), errc::connect_failed);
  EXPECT_TRUE(contains(message(e), "lock(\"job\"): cannot connect to redis://:***@127.0.0.1:1: ")) << message(e);
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
  ProcessLock lock("job", 10, test::options_for(server.url(), 250ms));
  ASSERT_TRUE(lock.lock());
  server.pause();
  const Error e = failure_of([&] { (void)lock.update(); });
  EXPECT_EQ(e.code(), errc::timeout) << message(e);
  EXPECT_TRUE(contains(message(e), "did not reply within 250 ms")) << message(e);
  // A new connection to a paused server is accepted by the kernel, then the call times out.
  EXPECT_EQ(failure_of([&] { (void)lock.state(); }).code(), errc::timeout);
  server.resume();
  EXPECT_TRUE(lock.update());
}

TEST(FaultTest, ServerHoldingClientsTimesOutThenRecovers) {
  // CLIENT PAUSE: the server is up and connected but holds every command, as when overloaded.
  test::RedisServer server;
  ProcessLock lock("job", 10, test::options_for(server.url(), 250ms));
  ASSERT_TRUE(lock.lock());
  server.client().run({"CLIENT", "PAUSE", "800", "ALL"});
  EXPECT_EQ(failure_of([&] { (void)lock.update(); }).code(), errc::timeout);
  // Once the pause ends the server answers again, on a fresh connection.
  EXPECT_TRUE(test::wait_until([&] {
    try {
      return lock.update();
    } catch (const Error&) {
      return false;
    }
  }));
}

TEST(FaultTest, TimeoutIsNotRetried) {
  using Act = test::FakeServer::Act;
  // Answers one call, then swallows the next; a retry would show as a second connection.
  const std::string acquired = "*2\r\n:1\r\n:7\r\n";
  test::FakeServer server({{{Act::reply, acquired}, {Act::hang, ""}}, {{Act::reply, acquired}}});
  ProcessLock lock("job", 10, test::options_for(server.url(), 150ms));
  EXPECT_TRUE(lock.lock());
  EXPECT_EQ(failure_of([&] { (void)lock.lock(); }).code(), errc::timeout);
  EXPECT_EQ(server.accepted(), 1);
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
    (void)connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);  // non-blocking: EINPROGRESS is expected
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
  // Connection 1 answers one call and then drops the next one unanswered. A lock() answer is
  // {acquired, fence}.
  const std::string acquired = "*2\r\n:1\r\n:7\r\n";
  test::FakeServer server({{{Act::reply, acquired}, {Act::close, ""}}, {{Act::reply, acquired}}});
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
  struct sigaction current {};
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
  // The child connects while the server runs, says so, and sends the huge command once the
  // server is paused (so the write blocks); the server is killed while the write is blocked.
  int ready[2], go[2];
  ASSERT_EQ(pipe(ready), 0);
  ASSERT_EQ(pipe(go), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ProcessLock lock(huge_name, 10, test::options_for("unix://" + server.socket_path(), 10000ms));
    char byte = 0;
    if (lock.state() != State::open || write(ready[1], "r", 1) != 1 || read(go[0], &byte, 1) != 1) _exit(4);
    try {
      (void)lock.lock();
      _exit(2);
    } catch (const Error& e) {
      // connection_lost, or connect_failed from the retry that a lost reused connection allows
      _exit(e.code() == errc::connection_lost || e.code() == errc::connect_failed ? 0 : 3);
    }
  }
  char byte = 0;
  ASSERT_EQ(read(ready[0], &byte, 1), 1);
  server.pause();
  ASSERT_EQ(write(go[1], "g", 1), 1);
  std::this_thread::sleep_for(200ms);  // the child is now blocked in write(); if not, it still passes
  server.kill();
  int status = 0;
  waitpid(child, &status, 0);
  for (int fd : {ready[0], ready[1], go[0], go[1]}) close(fd);
  ASSERT_TRUE(WIFEXITED(status)) << "child killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(FaultTest, CallersOwnBlockedAndPendingSigpipeIsLeftAsItWas) {
  test::RedisServer dir_owner;
  test::FakeServer closer({{{test::FakeServer::Act::close, ""}}}, dir_owner.dir() + "/fake.sock");
  const int status = test::in_child([&] {
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, nullptr);
    raise(SIGPIPE);  // the caller's own, pending
    ProcessLock lock(huge_name, 10, test::options_for(closer.url()));
    try {
      (void)lock.lock();
      return 2;
    } catch (const Error&) {
    }
    sigset_t pending, mask;
    sigpending(&pending);
    pthread_sigmask(SIG_BLOCK, nullptr, &mask);
    if (!sigismember(&pending, SIGPIPE)) return 3;  // the caller's signal was taken away
    if (!sigismember(&mask, SIGPIPE)) return 4;     // the caller's mask was not restored
    return 0;
  });
  ASSERT_TRUE(WIFEXITED(status)) << "child killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(FaultTest, DestructorOfAHolderReturnsWhenTheServerIsGone) {
  test::RedisServer server;
  auto lock = std::make_unique<ProcessLock>("job", 10, test::options_for(server.url(), 200ms));
  ASSERT_TRUE(lock->lock());
  server.pause();
  lock.reset();  // one bounded attempt, swallowed: returns after the command timeout
  server.resume();
  EXPECT_EQ(server.client().integer({"EXISTS", "job"}), 1);  // not released, will expire
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

// ---- passwords of any length never appear in messages ---------------------------------------

// Every byte as %XX, so that any password fits in a URL.
std::string percent_encoded(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    char hex[4];
    std::snprintf(hex, sizeof hex, "%%%02X", c);
    out += hex;
  }
  return out;
}

std::string fake_url(const test::FakeServer& server, const std::string& user, const std::string& password) {
  return "redis://" + user + ":" + percent_encoded(password) + "@127.0.0.1:" + std::to_string(server.port());
}

TEST(ScrubTest, EveryOccurrenceOfASecretOfAnyLengthIsMasked) {
  using process_lock::detail::scrub;
  EXPECT_EQ(scrub("ERR no such thing", ""), "ERR no such thing");
  EXPECT_EQ(scrub("ERR bad password '~' (~)", "~"), "ERR bad password '***' (***)");
  EXPECT_EQ(scrub("ERR ab: ab", "ab"), "ERR ***: ***");
  EXPECT_EQ(scrub("x'\"y", "'\""), "x***y");
  EXPECT_EQ(scrub("xaaay", "aa"), "x***y");  // overlapping occurrences: one stretch
  EXPECT_EQ(scrub("ERR s3cret-s3cret", "s3cret"), "ERR ***-***");
  // A mask next to the text can form a secret that contains '*' again: masked until none is left.
  EXPECT_EQ(scrub("aa*", "a*"), "*****");
  EXPECT_EQ(scrub("x**y", "**"), "x***y");  // a secret of stars only: its masks are all that is left
  for (const std::string secret : {"a", "ab", "a*", "*a", "a*b", "%@:", "p@ss word"}) {
    for (const std::string text : {"ERR a", "aaaa*a*a**ab", "ERR p@ss word '%@:' a*b*a", "*a*a*a"}) {
      EXPECT_FALSE(test::contains(scrub(text, secret), secret)) << text << " / " << secret;
    }
  }
}

// Passwords of 1, 2, 3 and many bytes, with characters that need encoding or quoting. (None
// holds a byte of the messages' own words, which a test could not tell from a leak.)
class PasswordEchoTest : public ::testing::TestWithParam<std::string> {};
INSTANTIATE_TEST_SUITE_P(Lengths, PasswordEchoTest,
                         ::testing::Values("~", "%@", "q'\"", "p@ss:w0rd/with%chars 'q\"\\ and more"));

// A proxy or server that echoes AUTH's arguments in its error: the reply is not quoted at all.
TEST_P(PasswordEchoTest, TheReplyToAuthIsNeverQuoted) {
  const std::string password = GetParam();
  using Act = test::FakeServer::Act;
  for (const std::string user : {"", "locker"}) {
    test::FakeServer server({{{Act::reply, "-ERR wrong password '" + password + "' for " + user + "\r\n"}}});
    ProcessLock lock("job", 10, test::options_for(fake_url(server, user, password)));
    const Error e = failure_of([&] { (void)lock.lock(); });
    EXPECT_EQ(e.code(), errc::auth_failed) << message(e);
    EXPECT_FALSE(contains(message(e), password)) << message(e);
    EXPECT_FALSE(contains(e.server_reply(), password)) << e.server_reply();
    EXPECT_FALSE(contains(message(e), "wrong password '")) << message(e);  // not even scrubbed: not quoted
    EXPECT_TRUE(contains(message(e), "authentication to redis://" + user + ":***@127.0.0.1:")) << message(e);
    EXPECT_TRUE(contains(message(e), "failed: the server refused the credentials (ERR)")) << message(e);
    EXPECT_EQ(e.server_reply(), "ERR");
  }
}

// A peer that answers AUTH with the password itself, not in the Redis protocol: the error names
// the fault without quoting any byte of the reply, not even its first (which a type-byte message
// would show: the password's first character).
TEST_P(PasswordEchoTest, ARawEchoIsNotQuotedEvenByItsFirstByte) {
  const std::string password = GetParam();
  using Act = test::FakeServer::Act;
  test::FakeServer server({{{Act::reply, password + "\r\n"}}});
  ProcessLock lock("job", 10, test::options_for(fake_url(server, "", password)));
  const Error e = failure_of([&] { (void)lock.lock(); });
  EXPECT_EQ(e.code(), errc::protocol_error) << message(e);
  EXPECT_TRUE(contains(message(e), "does not speak the Redis protocol")) << message(e);
  static constexpr char digits[] = "0123456789abcdef";
  const auto first = static_cast<unsigned char>(password[0]);
  const std::string first_hex = {'0', 'x', digits[first >> 4], digits[first & 15]};
  EXPECT_FALSE(contains(message(e), first_hex)) << message(e);
  EXPECT_FALSE(contains(message(e), password)) << message(e);
}

// Other replies are quoted with every occurrence of the password masked, and their kind is read
// from the server's own text.
TEST_P(PasswordEchoTest, OtherRepliesAreQuotedWithThePasswordMasked) {
  const std::string password = GetParam();
  using Act = test::FakeServer::Act;
  test::FakeServer server(
      {{{Act::reply, "+OK\r\n"}, {Act::reply, "-ERR proxy: '" + password + "' then " + password + " again\r\n"}}});
  ProcessLock lock("job", 10, test::options_for(fake_url(server, "", password)));
  const Error e = failure_of([&] { (void)lock.lock(); });
  EXPECT_EQ(e.code(), errc::server_error) << message(e);
  EXPECT_EQ(e.server_reply(), "ERR proxy: '***' then *** again");
  EXPECT_TRUE(contains(message(e), "replied with an error: ERR proxy: '***' then *** again")) << message(e);
  EXPECT_FALSE(contains(message(e), password)) << message(e);
}

TEST(PasswordKindTest, TheKindOfAnErrorIsReadBeforeThePasswordIsMasked) {
  using Act = test::FakeServer::Act;
  for (const std::string password : {"N", "NOAUTH"}) {
    test::FakeServer server({{{Act::reply, "+OK\r\n"}, {Act::reply, "-NOAUTH Authentication required.\r\n"}}});
    ProcessLock lock("job", 10, test::options_for(fake_url(server, "", password)));
    const Error e = failure_of([&] { (void)lock.lock(); });
    EXPECT_EQ(e.code(), errc::auth_failed) << password << ": " << message(e);
    EXPECT_FALSE(contains(e.server_reply(), password)) << e.server_reply();
  }
}

// Behind sentinels: neither the sentinels' password nor the master's shows, whoever refuses.
TEST_P(PasswordEchoTest, SentinelsAndTheirMasterShowNeitherPassword) {
  const std::string master_password = GetParam(), sentinel_password = GetParam() + "#";
  using Act = test::FakeServer::Act;
  auto url = [&](const test::FakeServer& sentinel) {
    return "redis+sentinel://:" + percent_encoded(master_password) + "@127.0.0.1:" + std::to_string(sentinel.port()) +
           "/mymaster?sentinel_password=" + percent_encoded(sentinel_password);
  };
  auto expect_hidden = [&](const Error& e) {
    EXPECT_FALSE(contains(message(e), master_password)) << message(e);
    EXPECT_FALSE(contains(message(e), sentinel_password)) << message(e);
    EXPECT_FALSE(contains(e.server_reply(), master_password)) << e.server_reply();
  };
  const std::string echo = "-ERR invalid password '" + master_password + "' or '" + sentinel_password + "'\r\n";
  {
    test::FakeServer sentinel({{{Act::reply, echo}}});  // refuses the sentinels' password
    ProcessLock lock("job", 10, test::options_for(url(sentinel)));
    const Error e = failure_of([&] { (void)lock.lock(); });
    EXPECT_EQ(e.code(), errc::connect_failed) << message(e);
    EXPECT_TRUE(contains(message(e), "failed: wrong password (ERR)")) << message(e);
    expect_hidden(e);
  }
  {
    // (A sentinel is never sent the master's password, so it is its own that it could echo.)
    test::FakeServer sentinel(
        {{{Act::reply, "+OK\r\n"}, {Act::reply, "-ERR no master for '" + sentinel_password + "'\r\n"}}});
    ProcessLock lock("job", 10, test::options_for(url(sentinel)));
    const Error e = failure_of([&] { (void)lock.lock(); });
    EXPECT_EQ(e.code(), errc::connect_failed) << message(e);
    EXPECT_TRUE(contains(message(e), "replied with an error: ERR no master for '***'")) << message(e);
    expect_hidden(e);
  }
  {
    test::FakeServer master({{{Act::reply, echo}}});  // refuses the master's password
    const std::string port = std::to_string(master.port());
    test::FakeServer sentinel(
        {{{Act::reply, "+OK\r\n"},
          {Act::reply, "*2\r\n$9\r\n127.0.0.1\r\n$" + std::to_string(port.size()) + "\r\n" + port + "\r\n"}}});
    ProcessLock lock("job", 10, test::options_for(url(sentinel)));
    const Error e = failure_of([&] { (void)lock.lock(); });
    EXPECT_EQ(e.code(), errc::auth_failed) << message(e);
    EXPECT_TRUE(contains(message(e), "(at 127.0.0.1:" + port + ") failed: wrong password (ERR)")) << message(e);
    expect_hidden(e);
  }
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
  // A name nobody holds: taking it is a write, whether or not the replica has synced yet.
  ProcessLock free_on_replica("free", 10, test::options_for(replica.url()));
  const Error e = failure_of([&] { (void)free_on_replica.lock(); });
  EXPECT_EQ(e.code(), errc::server_error) << message(e);
  EXPECT_EQ(e.server_reply().rfind("READONLY", 0), 0u) << e.server_reply();
  ASSERT_TRUE(test::wait_until([&] { return on_replica.state() == State::locked; }));  // replicated
  // Now that the replica has the key, deleting it is a write the replica must refuse.
  EXPECT_EQ(failure_of([&] { (void)on_replica.clear(true); }).code(), errc::server_error);
  EXPECT_EQ(primary.client().string({"GET", "job"}), on_primary.token());
}

}  // namespace
