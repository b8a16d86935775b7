// TLS (rediss://) against redis-server's own TLS port, with certificates the test makes: every
// call over TLS, mutual TLS, and each way a TLS connection can fail, each with an error that
// names the problem, inside the connect timeout, with no password in it and no SIGPIPE; and the
// hostile servers' replies through a TLS front (tls_front.hpp), refused in time and memory.
#include <gtest/gtest.h>

#include <cstdlib>
#include <sstream>
#include <thread>

#include "hostile.hpp"
#include "tls_certs.hpp"
#include "tls_front.hpp"

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

// --- the pure decisions --------------------------------------------------------------------

TEST(TlsFailureTest, EachCauseNamesTheProblemAndWhatToDo) {
  struct Row {
    long verify_result;
    int reason;
    std::string openssl_text;
    std::string expected;
  };
  const Row rows[] = {
      {X509_V_ERR_HOSTNAME_MISMATCH, SSL_R_CERTIFICATE_VERIFY_FAILED, "certificate verify failed",
       "its certificate is not for redis.example (set tls_server_name"},
      {X509_V_ERR_IP_ADDRESS_MISMATCH, SSL_R_CERTIFICATE_VERIFY_FAILED, "", "its certificate is not for redis.example"},
      {X509_V_ERR_CERT_HAS_EXPIRED, SSL_R_CERTIFICATE_VERIFY_FAILED, "", "its certificate has expired"},
      {X509_V_ERR_CERT_NOT_YET_VALID, SSL_R_CERTIFICATE_VERIFY_FAILED, "", "is not valid yet"},
      {X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, SSL_R_CERTIFICATE_VERIFY_FAILED, "",
       "not signed by a CA we trust (give the server's CA with tls_ca_file)"},
      {X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, SSL_R_CERTIFICATE_VERIFY_FAILED, "", "not signed by a CA we trust"},
      {X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN, SSL_R_CERTIFICATE_VERIFY_FAILED, "", "not signed by a CA we trust"},
      {X509_V_ERR_CERT_REVOKED, SSL_R_CERTIFICATE_VERIFY_FAILED, "", "its certificate was refused: "},
      {X509_V_OK, SSL_R_WRONG_VERSION_NUMBER, "wrong version number", "is it a plain-text port? use redis://"},
      {X509_V_OK, SSL_R_PACKET_LENGTH_TOO_LONG, "packet length too long", "is it a plain-text port?"},
      {X509_V_OK, SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED, "tlsv13 alert certificate required",
       "it requires a client certificate (give tls_cert and tls_key)"},
      {X509_V_OK, SSL_R_TLSV1_ALERT_UNKNOWN_CA, "tlsv1 alert unknown ca",
       "it refused our client certificate (tlsv1 alert unknown ca)"},
      {X509_V_OK, SSL_R_UNSUPPORTED_PROTOCOL, "unsupported protocol", "TLS failed (unsupported protocol)"},
      {X509_V_OK, 0, "", "TLS failed (no reason given)"},
  };
  for (const Row& row : rows) {
    const std::string cause =
        process_lock::detail::tls_failure_cause(row.verify_result, row.reason, row.openssl_text, "redis.example");
    EXPECT_TRUE(contains(cause, row.expected)) << row.verify_result << "/" << row.reason << ": " << cause;
  }
}

TEST(TlsFailureTest, PlainRedisIsToldFromATlsRecord) {
  using process_lock::detail::looks_like_plain_redis;
  EXPECT_TRUE(looks_like_plain_redis("-ERR unknown command"));
  EXPECT_TRUE(looks_like_plain_redis("+OK"));
  EXPECT_TRUE(looks_like_plain_redis("*1\r\n"));
  EXPECT_FALSE(looks_like_plain_redis(std::string("\x16\x03\x03\x00\x7a", 5)));  // a handshake record
  EXPECT_FALSE(looks_like_plain_redis(std::string("\x15\x03\x03\x00\x02", 5)));  // an alert
  EXPECT_FALSE(looks_like_plain_redis(""));
}

// --- against redis-server's TLS port ----------------------------------------------------------

// One CA and its certificates for the whole suite, and one TLS server (clients not checked).
class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    ca_ = new test::CertAuthority(dir_->path());
    ca_->issue("server");
    ca_->issue("wrong-host", "DNS:wrong.example");
    ca_->issue("expired", "IP:127.0.0.1", -2 * 86400, -86400);
    ca_->issue("client", "");
    stranger_ = new test::CertAuthority(dir_->path(), "stranger-ca");
    stranger_->issue("stranger");
    stranger_->issue("stranger-client", "");
    server_ = new test::TlsRedisServer(*ca_, "server");
  }
  static void TearDownTestSuite() {
    delete server_;
    delete stranger_;
    delete ca_;
    delete dir_;
  }
  void SetUp() override { server_->plain().client().run({"FLUSHALL"}); }

  static Options tls_options(const std::string& url, std::chrono::milliseconds timeout = 1000ms) {
    return test::options_for(url, timeout);
  }
  static std::string url(const std::string& query = "") { return server_->url(ca_->ca_file(), query); }

  static inline test::TempDir* dir_ = nullptr;
  static inline test::CertAuthority* ca_ = nullptr;
  static inline test::CertAuthority* stranger_ = nullptr;
  static inline test::TlsRedisServer* server_ = nullptr;
};

long long connections_received(test::RawClient& raw) {
  std::istringstream in(*raw.string({"INFO", "stats"}));
  for (std::string line; std::getline(in, line);)
    if (line.rfind("total_connections_received:", 0) == 0) return std::stoll(line.substr(27));
  return -1;
}

TEST_F(TlsTest, EveryCallWorksOverTls) {
  ProcessLock a("job", 10, tls_options(url()));
  ProcessLock b("job", 10, tls_options(url()));
  EXPECT_TRUE(a.lock());
  EXPECT_FALSE(b.lock());
  EXPECT_TRUE(a.update());
  EXPECT_FALSE(b.update());
  EXPECT_EQ(a.state(), State::locked);
  const process_lock::Inspection seen = b.inspect();
  EXPECT_FALSE(seen.ours);
  ASSERT_TRUE(seen.holder.has_value());
  EXPECT_EQ(seen.holder->pid, static_cast<long>(getpid()));
  EXPECT_EQ(seen.fence_counter, a.fence());
  EXPECT_EQ(b.clear(), std::optional<bool>(false));  // not ours
  EXPECT_EQ(a.clear(), std::optional<bool>(true));
  EXPECT_EQ(b.state(), State::open);
  // What the library stored is what a plain-text client reads: the same server, the same keys.
  EXPECT_TRUE(b.lock());
  auto raw = server_->plain().client();
  EXPECT_EQ(raw.string({"GET", "job"}), std::optional<std::string>(b.token()));
  EXPECT_EQ(b.clear(), std::optional<bool>(true));
}

TEST_F(TlsTest, AWaiterIsWokenByAReleaseNoticeOverTls) {
  ProcessLock holder("job", 30, tls_options(url()));
  ProcessLock waiter("job", 30, tls_options(url()));
  ASSERT_TRUE(holder.lock());
  std::thread release([&] {
    std::this_thread::sleep_for(300ms);
    EXPECT_EQ(holder.clear(), std::optional<bool>(true));
  });
  // The lock's 30 s TTL is far beyond the wait: only the notice (or a poll) can let it in.
  EXPECT_TRUE(waiter.try_lock_for(10s));
  release.join();
  auto raw = server_->plain().client();
  EXPECT_GE(raw.command_calls()["subscribe"], 1);  // it listened, over TLS
  EXPECT_EQ(waiter.clear(), std::optional<bool>(true));
}

TEST_F(TlsTest, TheKeeperRenewsOverTls) {
  ProcessLock lock("job", 1, tls_options(url()));
  ASSERT_TRUE(lock.lock());
  lock.keep();
  std::this_thread::sleep_for(2500ms);  // two and a half TTLs: only renewals keep it
  EXPECT_TRUE(lock.inspect().ours);
  EXPECT_EQ(lock.clear(), std::optional<bool>(true));
}

// TLS 1.3 servers send session tickets after the handshake: a connection with only those to
// read is healthy and must be reused, not taken for one the server closed.
TEST_F(TlsTest, AHealthyConnectionIsReusedAcrossCalls) {
  auto raw = server_->plain().client();
  ProcessLock lock("job", 10, tls_options(url()));
  ASSERT_TRUE(lock.lock());
  const long long before = connections_received(raw);
  for (int i = 0; i < 20; ++i) {
    EXPECT_TRUE(lock.update());
    EXPECT_EQ(lock.state(), State::locked);
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(lock.clear(), std::optional<bool>(true));
  EXPECT_EQ(connections_received(raw), before);  // the raw client's INFO calls reuse one connection too
}

TEST_F(TlsTest, ACertificateForAnotherNameIsRefusedUnlessThatNameIsExpected) {
  test::TlsRedisServer other(*ca_, "wrong-host");
  ProcessLock lock("job", 10, tls_options(other.url(ca_->ca_file())));
  const Error e = failure_of([&] { (void)lock.lock(); });
  EXPECT_EQ(e.code(), errc::connect_failed);
  EXPECT_TRUE(contains(message(e), "TLS to rediss://127.0.0.1:" + std::to_string(other.tls_port()) +
                                       " failed: its certificate is not for 127.0.0.1 (set tls_server_name"))
      << message(e);
  ProcessLock named("job", 10, tls_options(other.url(ca_->ca_file(), "&tls_server_name=wrong.example")));
  EXPECT_TRUE(named.lock());
}

TEST_F(TlsTest, AnExpiredCertificateIsRefused) {
  test::TlsRedisServer other(*ca_, "expired");
  ProcessLock lock("job", 10, tls_options(other.url(ca_->ca_file())));
  const Error e = failure_of([&] { (void)lock.lock(); });
  EXPECT_EQ(e.code(), errc::connect_failed);
  EXPECT_TRUE(contains(message(e), "its certificate has expired")) << message(e);
}

TEST_F(TlsTest, ACertificateOfAnUntrustedCaIsRefusedUnlessVerificationIsSkipped) {
  test::TlsRedisServer other(*stranger_, "stranger");
  ProcessLock lock("job", 10, tls_options(other.url(ca_->ca_file())));
  const Error e = failure_of([&] { (void)lock.lock(); });
  EXPECT_EQ(e.code(), errc::connect_failed);
  EXPECT_TRUE(contains(message(e), "not signed by a CA we trust (give the server's CA with tls_ca_file)")) << message(e);
  // Without tls_ca_file the system's CAs are the trusted ones, and they do not know this CA either.
  ProcessLock system("job", 10, tls_options("rediss://127.0.0.1:" + std::to_string(other.tls_port())));
  EXPECT_TRUE(contains(message(failure_of([&] { (void)system.lock(); })), "not signed by a CA we trust"));
  ProcessLock insecure("job", 10,
                       tls_options("rediss://127.0.0.1:" + std::to_string(other.tls_port()) +
                                   "?tls_insecure_skip_verify=yes"));
  EXPECT_TRUE(insecure.lock());
}

TEST_F(TlsTest, ACaDirectoryIsTrustedAsAFileIs) {
  ProcessLock by_dir("job", 10,
                     tls_options("rediss://127.0.0.1:" + std::to_string(server_->tls_port()) +
                                 "?tls_ca_dir=" + ca_->hashed_dir()));
  EXPECT_TRUE(by_dir.lock());
  EXPECT_EQ(by_dir.clear(), std::optional<bool>(true));
  // A directory without the server's CA trusts nothing that matters here.
  ProcessLock other_dir("job", 10,
                        tls_options("rediss://127.0.0.1:" + std::to_string(server_->tls_port()) +
                                    "?tls_ca_dir=" + stranger_->hashed_dir()));
  EXPECT_TRUE(contains(message(failure_of([&] { (void)other_dir.lock(); })), "not signed by a CA we trust"));
}

TEST_F(TlsTest, MutualTlsNeedsAClientCertificateTheServerTrusts) {
  test::TlsRedisServer strict(*ca_, "server", "yes");
  ProcessLock without("job", 10, tls_options(strict.url(ca_->ca_file())));
  const Error e = failure_of([&] { (void)without.lock(); });
  EXPECT_EQ(e.code(), errc::connect_failed);
  EXPECT_TRUE(contains(message(e), "requires a client certificate (give tls_cert and tls_key)")) << message(e);

  Options with = tls_options(strict.url(ca_->ca_file()));
  with.tls.cert_file = ca_->cert_file("client");
  with.tls.key_file = ca_->key_file("client");
  ProcessLock client("job", 10, with);
  EXPECT_TRUE(client.lock());

  ProcessLock stranger("job", 10,
                       tls_options(strict.url(ca_->ca_file(), "&tls_cert=" + stranger_->cert_file("stranger-client") +
                                                                   "&tls_key=" + stranger_->key_file("stranger-client"))));
  const Error refused = failure_of([&] { (void)stranger.lock(); });
  // Its alert says so, unless the reset that follows it arrives first: then the connection is
  // lost (the request may have run, for all we can tell) and the message asks.
  const bool by_alert = refused.code() == errc::connect_failed &&
                        contains(message(refused), "it refused our client certificate");
  const bool by_reset = refused.code() == errc::connection_lost &&
                        contains(message(refused), "right after the TLS handshake (did it refuse our client certificate?)");
  EXPECT_TRUE(by_alert || by_reset) << message(refused);
}

TEST_F(TlsTest, APlainTextPortIsNamedAsSuch) {
  // A plain-text Redis reads the TLS hello as a command: it answers an error, or waits for the
  // end of a line that never comes. Either way the message says what is likely wrong.
  ProcessLock lock("job", 10,
                   tls_options("rediss://127.0.0.1:" + std::to_string(server_->plain().port()) +
                                   "?tls_ca_file=" + ca_->ca_file(),
                               500ms));
  const auto start = std::chrono::steady_clock::now();
  const Error e = failure_of([&] { (void)lock.lock(); });
  EXPECT_TRUE(e.code() == errc::connect_failed || e.code() == errc::timeout) << message(e);
  EXPECT_TRUE(contains(message(e), "is it a plain-text port? use redis:// for it")) << message(e);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

TEST_F(TlsTest, AHandshakeThatNeverEndsTimesOutWithinTheConnectTimeout) {
  test::FakeServer silent({{{test::FakeServer::Act::hang, ""}}});
  Options o = tls_options("rediss://127.0.0.1:" + std::to_string(silent.port()) + "?tls_ca_file=" + ca_->ca_file());
  o.connect_timeout = 300ms;
  ProcessLock lock("job", 10, o);
  const auto start = std::chrono::steady_clock::now();
  const Error e = failure_of([&] { (void)lock.lock(); });
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(e.code(), errc::timeout);
  EXPECT_TRUE(contains(message(e), "the TLS handshake with rediss://127.0.0.1:" + std::to_string(silent.port()) +
                                       " did not finish within 300 ms"))
      << message(e);
  EXPECT_LT(took, 2s);  // the connect timeout (twice: one retry), far below the command timeout's share
}

TEST_F(TlsTest, NoPasswordAppearsInATlsError) {
  test::TlsRedisServer other(*ca_, "wrong-host");
  ProcessLock lock("job", 10,
                   tls_options("rediss://:s3cret-pw@127.0.0.1:" + std::to_string(other.tls_port()) +
                               "?tls_ca_file=" + ca_->ca_file()));
  const Error e = failure_of([&] { (void)lock.lock(); });
  EXPECT_TRUE(contains(message(e), "rediss://:***@127.0.0.1")) << message(e);
  EXPECT_FALSE(contains(message(e), "s3cret-pw")) << message(e);
}

TEST_F(TlsTest, AServerThatDropsTheConnectionNeverRaisesSigpipe) {
  // Run in a child: SIGPIPE's default action would kill the test process itself.
  const std::string u = url();
  const int status = test::in_child([&] {
    ProcessLock lock("job", 10, tls_options(u));
    if (!lock.lock()) return 2;
    for (int i = 0; i < 5; ++i) {
      server_->plain().client().run({"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"});
      try {
        (void)lock.update();
        (void)lock.state();
      } catch (const Error&) {
        // a lost connection is an error; the next call reconnects
      }
    }
    return lock.update() ? 0 : 3;
  });
  ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(TlsTest, AKilledServerFailsTheCallAndARestartedOneServesAgain) {
  test::TlsRedisServer own(*ca_, "server");
  ProcessLock lock("job", 10, tls_options(own.url(ca_->ca_file()), 500ms));
  ASSERT_TRUE(lock.lock());
  own.plain().pause();  // mid-session: the server stops answering
  const Error stalled = failure_of([&] { (void)lock.update(); });
  EXPECT_EQ(stalled.code(), errc::timeout) << message(stalled);
  own.plain().kill();
  const Error down = failure_of([&] { (void)lock.state(); });
  EXPECT_EQ(down.code(), errc::connect_failed) << message(down);
  own.plain().start();
  EXPECT_EQ(lock.state(), State::open);  // restarted without data
  EXPECT_TRUE(lock.lock());
}

// The deadline holds over TLS as over TCP: replies (and the handshake) trickling in one byte
// every 300 ms, each byte well inside the timeouts, end the call by connect + command timeout.
TEST_F(TlsTest, TricklingRecordsEndTheCallByItsDeadline) {
  test::DripProxy proxy(server_->tls_port());
  const std::string via = "rediss://127.0.0.1:" + std::to_string(proxy.port()) + "?tls_ca_file=" + ca_->ca_file() +
                          "&tls_server_name=localhost";  // checked by name: the certificate names localhost too
  ProcessLock lock("job", 10, tls_options(via, 1000ms));
  ASSERT_TRUE(lock.lock());  // connected and shaken hands at full speed
  proxy.drip(300ms);
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(failure_of([&] { (void)lock.update(); }).code(), errc::timeout);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2500ms);  // 1 s command timeout, and no retry of a timeout
  ProcessLock fresh("job", 10, tls_options(via, 1000ms));  // its handshake trickles too
  start = std::chrono::steady_clock::now();
  EXPECT_EQ(failure_of([&] { (void)fresh.state(); }).code(), errc::timeout);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 4500ms);  // connect + command timeout, twice at most
  proxy.drip(0ms);
}

// The hostile servers' replies (tests/hostile.hpp) through a TLS front: what the library decrypts
// goes through the same reply caps, under the same deadline and memory bound, as over TCP.
class TlsHostileServerTest : public TlsTest, public ::testing::WithParamInterface<test::HostileServer::Attack> {};

TEST_P(TlsHostileServerTest, LockEndsInTimeWithAClearErrorAndBoundedMemory) {
#if defined(__SANITIZE_ADDRESS__)
  // GCC 12's libasan has no fork handlers: the child may hang in malloc if a thread of the
  // parent (the front's, OpenSSL's) was inside it at the fork, as seen in CI's sanitizer stage
  // (see fork_test.cpp). The same attacks over TCP still run under AddressSanitizer.
  GTEST_SKIP() << "AddressSanitizer's allocator is not safe across a fork of busy threads";
#endif
  // Both stay in this process: their memory does not count, and the front is idle in poll() at
  // the fork (no OpenSSL call under way that the child's could wait on).
  test::HostileServer server(GetParam());
  test::TlsFront front(*ca_, "server", server.port());
  test::expect_bounded(GetParam(),
                       test::bounded_call(front.url(ca_->ca_file()), [](ProcessLock& l) { (void)l.lock(); }));
}

INSTANTIATE_TEST_SUITE_P(EveryAttack, TlsHostileServerTest, ::testing::ValuesIn(test::every_attack), test::attack_name);

TEST_F(TlsTest, BadTlsFilesFailAtConstructionNamingTheFile) {
  const Error missing = failure_of([&] { ProcessLock("job", 10, tls_options(url() + "x")); });  // ca.crtx
  EXPECT_EQ(missing.code(), errc::invalid_argument);
  EXPECT_TRUE(contains(message(missing), "tls_ca_file " + ca_->ca_file() + "x cannot be loaded as CA certificates"))
      << message(missing);
  Options half = tls_options(url());
  half.tls.cert_file = ca_->cert_file("client");
  EXPECT_TRUE(contains(message(failure_of([&] { ProcessLock("job", 10, half); })),
                       "tls_cert and tls_key go together"));
  // A key that needs a passphrase fails at once, never prompting on a terminal.
  ca_->issue("locked-client", "", -3600, 86400, false, "pass phrase");
  Options locked = tls_options(url());
  locked.tls.cert_file = ca_->cert_file("locked-client");
  locked.tls.key_file = ca_->key_file("locked-client");
  EXPECT_TRUE(contains(message(failure_of([&] { ProcessLock("job", 10, locked); })),
                       "tls_key " + ca_->key_file("locked-client") +
                           " cannot be loaded as a PEM private key (it must not need a passphrase)"));
  Options mismatched = tls_options(url());
  mismatched.tls.cert_file = ca_->cert_file("client");
  mismatched.tls.key_file = ca_->key_file("server");
  EXPECT_TRUE(contains(message(failure_of([&] { ProcessLock("job", 10, mismatched); })),
                       "is not the key of tls_cert"));
}

TEST_F(TlsTest, OptionsOverrideTheUrlAndNeedARedissUrl) {
  Options o = tls_options("rediss://127.0.0.1:" + std::to_string(server_->tls_port()));
  o.tls.ca_file = ca_->ca_file();  // the URL has none: the system's CAs would refuse the server
  ProcessLock lock("job", 10, o);
  EXPECT_TRUE(lock.lock());
  Options plain = tls_options(server_->plain().url());
  plain.tls.ca_file = ca_->ca_file();
  const Error e = failure_of([&] { ProcessLock("job", 10, plain); });
  EXPECT_EQ(e.code(), errc::invalid_argument);
  EXPECT_TRUE(contains(message(e), "Options::tls is set, but the URL is not a rediss:// URL")) << message(e);
}

TEST_F(TlsTest, AQuorumOfTlsMastersIsAskedInParallelRounds) {
  test::TlsRedisServer second(*ca_, "server"), third(*ca_, "server");
  const std::string masters =
      url() + "," + second.url(ca_->ca_file()) + "," + third.url(ca_->ca_file());
  ProcessLock a("job", 10, tls_options(masters));
  ProcessLock b("job", 10, tls_options(masters));
  EXPECT_TRUE(a.lock());
  EXPECT_FALSE(b.lock());
  EXPECT_TRUE(a.update());
  EXPECT_TRUE(a.inspect().ours);
  for (test::TlsRedisServer* s : {server_, &second, &third})
    EXPECT_EQ(s->plain().client().string({"GET", "job"}), std::optional<std::string>(a.token()));
  EXPECT_EQ(a.clear(), std::optional<bool>(true));
  EXPECT_TRUE(b.lock());
  EXPECT_EQ(b.clear(), std::optional<bool>(true));
}

TEST_F(TlsTest, AForkedChildMakesItsOwnTlsConnectionsAndLeavesTheParentsAlone) {
  ProcessLock lock("job", 10, tls_options(url()));
  ASSERT_TRUE(lock.lock());
  const int status = test::in_child([&] {
    // The child's copy of the parent's TLS session is freed unused; its calls open their own.
    ProcessLock other("job", 10, tls_options(url()));
    return lock.state() == State::locked && !other.lock() && other.state() == State::locked ? 0 : 1;
  });
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_TRUE(lock.update());  // the parent's session was not disturbed
  EXPECT_EQ(lock.clear(), std::optional<bool>(true));
}

TEST_F(TlsTest, BehindSentinelsBothTheSentinelAndTheMasterSpeakTls) {
  test::TlsRedisServer master(*ca_, "server");
  // A sentinel that serves TLS and reaches the master over TLS (tls-replication).
  const int sentinel_tls_port = test::free_port();
  const std::string config = "sentinel monitor mymaster 127.0.0.1 " + std::to_string(master.tls_port()) + " 1\n";
  test::RedisServer sentinel({"--tls-port", std::to_string(sentinel_tls_port), "--tls-cert-file", ca_->cert_file("server"),
                              "--tls-key-file", ca_->key_file("server"), "--tls-ca-cert-file", ca_->ca_file(),
                              "--tls-auth-clients", "no", "--tls-replication", "yes"},
                             config);
  ProcessLock lock("job", 10,
                   tls_options("rediss+sentinel://127.0.0.1:" + std::to_string(sentinel_tls_port) +
                               "/mymaster?tls_ca_file=" + ca_->ca_file()));
  EXPECT_TRUE(lock.lock());
  EXPECT_EQ(master.plain().client().string({"GET", "job"}), std::optional<std::string>(lock.token()));
  EXPECT_EQ(lock.clear(), std::optional<bool>(true));
  // The sentinel's plain-text port, named as TLS, is refused with the hint.
  ProcessLock plain("job", 10,
                    tls_options("rediss+sentinel://127.0.0.1:" + std::to_string(sentinel.port()) +
                                    "/mymaster?tls_ca_file=" + ca_->ca_file(),
                                300ms));
  EXPECT_TRUE(contains(message(failure_of([&] { (void)plain.lock(); })), "plain-text port")) << "sentinel";
}

TEST_F(TlsTest, InATlsClusterRedirectionsLeadToTheNodesTlsPorts) {
  // Three masters whose cluster bus speaks TLS too; the slot map and MOVED name TLS ports to a
  // TLS client. (The bus port is chosen: the TLS port + 10000 may not exist.)
  std::vector<std::unique_ptr<test::TlsRedisServer>> nodes;
  std::string create = "redis-cli --tls --cacert " + ca_->ca_file() + " --cluster create";
  for (int i = 0; i < 3; ++i) {
    nodes.push_back(std::make_unique<test::TlsRedisServer>(
        *ca_, "server", "no",
        std::vector<std::string>{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--tls-cluster",
                                 "yes", "--cluster-port", std::to_string(test::free_port())}));
    create += " 127.0.0.1:" + std::to_string(nodes.back()->tls_port());
  }
  create += " --cluster-yes >/dev/null 2>&1";
  ASSERT_EQ(std::system(create.c_str()), 0) << create;
  for (const auto& n : nodes)
    ASSERT_TRUE(test::wait_until(
        [&] { return contains(*n->plain().client().string({"CLUSTER", "INFO"}), "cluster_state:ok"); }, 10s));
  // Names on every node, each lock taken through node 0 (following MOVED), or through the slot
  // map the seeds give (rediss+cluster://), lands on its slot's owner.
  const std::string seeds = "rediss+cluster://127.0.0.1:" + std::to_string(nodes[0]->tls_port()) + ",127.0.0.1:" +
                            std::to_string(nodes[1]->tls_port()) + "?tls_ca_file=" + ca_->ca_file();
  for (const std::string& url : {nodes[0]->url(ca_->ca_file()), seeds}) {
    SCOPED_TRACE(url);
    std::vector<bool> owner_seen(3, false);
    for (int i = 0; i < 64 && !(owner_seen[0] && owner_seen[1] && owner_seen[2]); ++i) {
      const std::string name = "tls-job-" + std::to_string(i);
      ProcessLock lock(name, 10, tls_options(url));
      ASSERT_TRUE(lock.lock()) << name;
      for (std::size_t n = 0; n < nodes.size(); ++n) {
        const auto reply = nodes[n]->plain().client().run({"GET", name});  // MOVED from the others
        if (reply->type == REDIS_REPLY_STRING && std::string(reply->str, reply->len) == lock.token())
          owner_seen[n] = true;
      }
      EXPECT_EQ(lock.clear(), std::optional<bool>(true)) << name;
    }
    EXPECT_TRUE(owner_seen[0] && owner_seen[1] && owner_seen[2]);
  }
}

}  // namespace
