// REDIS_URL grammar: what parses to what, and every class of malformed URL.
#include <gtest/gtest.h>

#include <cstdlib>

#include "support.hpp"

namespace {

using process_lock::errc;
using process_lock::Error;
using process_lock::detail::Endpoint;
using process_lock::detail::parse_redirect;
using process_lock::detail::parse_url;
using process_lock::detail::parse_urls;
using namespace std::chrono_literals;

Endpoint parse(const std::string& url) { return parse_url(url, "REDIS_URL"); }

TEST(UrlTest, HostPortAndDatabase) {
  const Endpoint ep = parse("redis://cache.example:6380/3");
  EXPECT_EQ(ep.transport, Endpoint::Transport::tcp);
  EXPECT_EQ(ep.host, "cache.example");
  EXPECT_EQ(ep.port, 6380);
  EXPECT_EQ(ep.db, 3);
  EXPECT_FALSE(ep.has_password);
  EXPECT_TRUE(ep.user.empty());
}

TEST(UrlTest, DefaultsPortAndDatabase) {
  const Endpoint ep = parse("redis://localhost");
  EXPECT_EQ(ep.host, "localhost");
  EXPECT_EQ(ep.port, 6379);
  EXPECT_EQ(ep.db, 0);
  EXPECT_EQ(parse("redis://localhost/").db, 0);
}

TEST(UrlTest, PasswordOnly) {
  const Endpoint ep = parse("redis://:s3cret@127.0.0.1:6379");
  EXPECT_TRUE(ep.has_password);
  EXPECT_EQ(ep.password, "s3cret");
  EXPECT_TRUE(ep.user.empty());
}

TEST(UrlTest, UserAndPasswordArePercentDecoded) {
  const Endpoint ep = parse("redis://al%69ce:p%40ss%3Aw%2Fo%25rd@127.0.0.1");
  EXPECT_EQ(ep.user, "alice");
  EXPECT_EQ(ep.password, "p@ss:w/o%rd");
}

TEST(UrlTest, LastAtSignSeparatesUserinfo) {
  // An unencoded '@' in a password is tolerated: the host follows the last one.
  const Endpoint ep = parse("redis://:p@ss@db.local:7000");
  EXPECT_EQ(ep.password, "p@ss");
  EXPECT_EQ(ep.host, "db.local");
  EXPECT_EQ(ep.port, 7000);
}

TEST(UrlTest, Ipv6HostInBrackets) {
  const Endpoint ep = parse("redis://[::1]:6380");
  EXPECT_EQ(ep.host, "::1");
  EXPECT_EQ(ep.port, 6380);
  EXPECT_EQ(parse("redis://[fe80::1:2]").port, 6379);
  EXPECT_EQ(ep.display(), "redis://[::1]:6380");
}

TEST(UrlTest, UnixSocketWithDatabaseAndPassword) {
  const Endpoint plain = parse("unix:///run/redis/redis.sock");
  EXPECT_EQ(plain.transport, Endpoint::Transport::unix_socket);
  EXPECT_EQ(plain.path, "/run/redis/redis.sock");
  EXPECT_EQ(plain.db, 0);

  const Endpoint query = parse("unix:///run/redis.sock?db=4&password=pw%26x");
  EXPECT_EQ(query.path, "/run/redis.sock");
  EXPECT_EQ(query.db, 4);
  EXPECT_EQ(query.password, "pw&x");

  const Endpoint userinfo = parse("unix://bob:pw@/run/redis.sock");
  EXPECT_EQ(userinfo.user, "bob");
  EXPECT_EQ(userinfo.password, "pw");
  EXPECT_EQ(userinfo.path, "/run/redis.sock");
}

TEST(UrlTest, TimeoutsFromQuery) {
  const Endpoint ep = parse("redis://h?connect_timeout=250ms&command_timeout=2s");
  EXPECT_EQ(ep.connect_timeout, 250ms);
  EXPECT_EQ(ep.command_timeout, 2000ms);
  EXPECT_EQ(parse("redis://h?command_timeout=1m").command_timeout, 60000ms);
  EXPECT_EQ(parse("redis://h?command_timeout=75").command_timeout, 75ms);
}

TEST(UrlTest, DisplayHidesPassword) {
  EXPECT_EQ(parse("redis://alice:s3cret@h:1/2").display(), "redis://alice:***@h:1/2");
  EXPECT_EQ(parse("redis://:s3cret@h").display(), "redis://:***@h:6379");
  EXPECT_EQ(parse("unix:///x.sock?password=s3cret&db=1").display(), "unix://:***@/x.sock?db=1");
}

struct BadUrl {
  const char* url;
  const char* says;  // part of the message that names the problem
};

class MalformedUrlTest : public ::testing::TestWithParam<BadUrl> {};

TEST_P(MalformedUrlTest, ThrowsInvalidUrlNamingTheProblemWithoutThePassword) {
  const BadUrl& bad = GetParam();
  const Error e = test::failure_of([&] { parse(bad.url); });
  EXPECT_EQ(e.code(), errc::invalid_url) << bad.url;
  const std::string message = e.what();
  EXPECT_TRUE(test::contains(message, "invalid REDIS_URL")) << message;
  EXPECT_TRUE(test::contains(message, bad.says)) << message;
  EXPECT_FALSE(test::contains(message, "s3cret")) << "password leaked: " << message;
}

INSTANTIATE_TEST_SUITE_P(
    EveryClass, MalformedUrlTest,
    ::testing::Values(
        BadUrl{"", "expected a URL"}, BadUrl{"s3cret", "expected a URL"}, BadUrl{"127.0.0.1:6379", "expected a URL"},
        BadUrl{"http://h:80", "unsupported scheme 'http'"}, BadUrl{"redis+tls://h", "unsupported scheme 'redis+tls'"},
        BadUrl{"redis://", "missing host"}, BadUrl{"redis://:s3cret@", "missing host"},
        BadUrl{"redis://:s3cret@:6379", "missing host"}, BadUrl{"redis://h:", "empty port"},
        BadUrl{"redis://h:0", "port must be"}, BadUrl{"redis://h:65536", "port must be"},
        BadUrl{"redis://h:-1", "port must be"}, BadUrl{"redis://h:63a9", "port must be"},
        BadUrl{"redis://h:99999999999999999999", "port must be"}, BadUrl{"redis://user:s3cret/x@h", "port must be"},
        BadUrl{"redis://h/abc", "database number"}, BadUrl{"redis://h/1/2", "database number"},
        BadUrl{"redis://h/-1", "database number"}, BadUrl{"redis://::1:6379", "more than one ':'"},
        BadUrl{"redis://[::1", "unterminated '['"}, BadUrl{"redis://[::1]x", "after the IPv6 host"},
        BadUrl{"redis://[]:1", "not an IPv6 address"}, BadUrl{"redis://[zz]:1", "not an IPv6 address"},
        BadUrl{"redis://[::1]:", "empty port"}, BadUrl{"redis://h o:1", "control characters"},
        BadUrl{"redis://h\t:1", "control characters"},
        BadUrl{"redis://:s3cret%zz@h", "percent-encoding in the password"},
        BadUrl{"redis://us%4@h", "percent-encoding in the user"}, BadUrl{"redis://h#frag", "fragments"},
        BadUrl{"redis://alice@h", "a user needs a password"}, BadUrl{"redis://h?db", "without '='"},
        BadUrl{"redis://h?bogus=1", "unknown query parameter 'bogus'"}, BadUrl{"redis://h?db=x", "db must be"},
        BadUrl{"redis://h/2?db=3", "db given twice"}, BadUrl{"redis://h/0?db=3", "db given twice"},
        BadUrl{"redis://h?db=%zz", "percent-encoding"}, BadUrl{"unix:///tmp/a%00b.sock", "NUL byte"},
        BadUrl{"redis://h?db=1&db=1", "given twice"},
        BadUrl{"redis://:s3cret@h?password=s3cret", "password given both"},
        BadUrl{"redis://h?connect_timeout=0", "connect_timeout must be"},
        BadUrl{"redis://h?command_timeout=5h", "command_timeout must be"},
        BadUrl{"redis://h?command_timeout=61m", "command_timeout must be"},
        BadUrl{"redis://h?command_timeout=ms", "command_timeout must be"}, BadUrl{"unix://", "absolute socket path"},
        BadUrl{"unix://relative.sock", "absolute socket path"}, BadUrl{"unix://host/run/redis.sock", "takes no host"},
        BadUrl{"unix:///", "path is empty"}, BadUrl{"redis://h%:1", "cannot have"},
        BadUrl{"redis://a:6379,b:6379", "to list several masters"}, BadUrl{"redis://a,b:1", "to list several masters"},
        BadUrl{"redis+sentinel://s1:26379", "needs the master's name"},
        BadUrl{"redis+sentinel://s1,/m", "missing host"}, BadUrl{"redis+sentinel://s1:0/m", "port must be"},
        BadUrl{"redis://h?sentinel_password=s3cret", "only to redis+sentinel"},
        BadUrl{"redis+sentinel://s/m?sentinel_user=u", "sentinel_user needs a sentinel_password"},
        BadUrl{"redis+cluster://", "missing host"}, BadUrl{"redis+cluster://:s3cret@a,,b", "missing host"},
        BadUrl{"redis+cluster://a,b:0", "port must be"}, BadUrl{"redis+cluster://a,b/2", "only database 0"},
        BadUrl{"redis+cluster://a?db=1", "only database 0"}, BadUrl{"redis+cluster://a/x", "database number"},
        BadUrl{"redis+cluster://a?sentinel_password=s3cret", "only to redis+sentinel"},
        BadUrl{"redis+cluster://a,[::1", "unterminated '['"},
        BadUrl{"redis://h?wait_replicas=-1", "wait_replicas must be"},
        BadUrl{"redis://h?wait_replicas=1001", "wait_replicas must be"},
        BadUrl{"redis://h?node_timeout=0", "node_timeout must be"},
        BadUrl{"redis://h?wait_timeout=2h", "wait_timeout must be"}));

TEST(UrlTest, SchemeIsCaseInsensitive) {
  EXPECT_EQ(parse("REDIS://h:1").port, 1);
  EXPECT_EQ(parse("Unix:///x.sock").path, "/x.sock");
}

TEST(UrlTest, EmptyPasswordMeansNone) {
  EXPECT_FALSE(parse("redis://:@h").has_password);
  EXPECT_FALSE(parse("redis://h?password=").has_password);
}

TEST(UrlTest, QueryValuesArePercentDecoded) {
  EXPECT_EQ(parse("redis://h?db=%31%32").db, 12);
  EXPECT_EQ(parse("redis://h?user=a%20b&password=x").user, "a b");
  EXPECT_EQ(parse("redis://h/0?db=0").db, 0);
}

TEST(UrlTest, UnixPathMustFitTheSystemLimit) {
  EXPECT_NO_THROW(parse("unix:///" + std::string(106, 'p')));
  const Error e = test::failure_of([] { parse("unix:///" + std::string(107, 'p')); });
  EXPECT_EQ(e.code(), errc::invalid_url);
  EXPECT_TRUE(test::contains(e.what(), "longer than the system allows (107 bytes)")) << e.what();
}

TEST(UrlTest, UnknownKeyIsNotQuotedWhenItMayBePartOfAPassword) {
  // "pa?abc=1" was meant as the password; the '?' makes the rest look like a query.
  const Error hidden = test::failure_of([] { parse("redis://admin:pa?abc=1@h"); });
  EXPECT_FALSE(test::contains(hidden.what(), "abc")) << hidden.what();
  const Error quoted = test::failure_of([] { parse("redis://h?abc=1"); });
  EXPECT_TRUE(test::contains(quoted.what(), "'abc'")) << quoted.what();
}

// (A build without TLS answers rediss:// with errc::unsupported: tests/no_tls.cpp.)
TEST(UrlTest, RedissIsTlsToTheSameServers) {
  const auto ep = parse("rediss://:s3cret@h:6380/2");
  EXPECT_TRUE(ep.tls);
  EXPECT_EQ(ep.host, "h");
  EXPECT_EQ(ep.port, 6380);
  EXPECT_EQ(ep.db, 2);
  EXPECT_EQ(ep.display(), "rediss://:***@h:6380/2");
  EXPECT_FALSE(parse("redis://h").tls);
  const auto sentinel = parse("RediSS+Sentinel://s1,s2:5000/mymaster");
  EXPECT_TRUE(sentinel.tls);
  EXPECT_EQ(sentinel.display(), "rediss+sentinel://s1:26379,s2:5000/mymaster");
  const auto cluster = parse("rediss+cluster://a,b:7001");
  EXPECT_TRUE(cluster.tls);
  EXPECT_EQ(cluster.display(), "rediss+cluster://a:6379,b:7001");
}

TEST(UrlTest, TlsQueryKeysAreReadOnRedissUrlsOnly) {
  const auto ep = parse(
      "rediss://h?tls_ca_file=/etc/ca%20bundle.pem&tls_ca_dir=/etc/ssl/certs&tls_cert=/c.pem&tls_key=/k.pem"
      "&tls_server_name=redis.example&tls_insecure_skip_verify=no");
  EXPECT_EQ(ep.tls_options.ca_file, "/etc/ca bundle.pem");
  EXPECT_EQ(ep.tls_options.ca_dir, "/etc/ssl/certs");
  EXPECT_EQ(ep.tls_options.cert_file, "/c.pem");
  EXPECT_EQ(ep.tls_options.key_file, "/k.pem");
  EXPECT_EQ(ep.tls_options.server_name, "redis.example");
  EXPECT_FALSE(ep.tls_options.insecure_skip_verify);
  for (const char* yes : {"yes", "true", "1"})
    EXPECT_TRUE(parse("rediss://h?tls_insecure_skip_verify=" + std::string(yes)).tls_options.insecure_skip_verify);
  const std::pair<const char*, const char*> bad[] = {
      {"redis://h?tls_ca_file=/ca.pem", "tls_ca_file applies only to rediss:// URLs"},
      {"redis+sentinel://s/m?tls_server_name=x", "tls_server_name applies only to rediss:// URLs"},
      {"rediss://h?tls_insecure_skip_verify=maybe", "tls_insecure_skip_verify must be yes or no"},
      {"rediss://h?tls_ca_file=", "tls_ca_file is empty"},
      {"rediss://h?tls_cafile=/ca.pem", "unknown query parameter 'tls_cafile'"},
  };
  for (const auto& [url, expected] : bad) {
    const Error e = test::failure_of([&] { parse(url); });
    EXPECT_EQ(e.code(), errc::invalid_url) << url;
    EXPECT_TRUE(test::contains(e.what(), expected)) << url << ": " << e.what();
  }
}

// setenv() while no other thread runs (these tests start none): not the race the check is about.
// NOLINTBEGIN(concurrency-mt-unsafe)
// The environment is process-wide: these tests restore it.
class EnvUrlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* old = std::getenv("REDIS_URL");
    had_ = old != nullptr;
    if (had_) old_ = old;
  }
  void TearDown() override {
    if (had_)
      setenv("REDIS_URL", old_.c_str(), 1);
    else
      unsetenv("REDIS_URL");
  }
  bool had_ = false;
  std::string old_;
};

TEST_F(EnvUrlTest, UnsetMeansLocalDefault) {
  unsetenv("REDIS_URL");
  process_lock::ProcessLock lock("job", 10);
  EXPECT_EQ(lock.redacted_url(), "redis://127.0.0.1:6379");
}

TEST_F(EnvUrlTest, EmptyMeansLocalDefault) {
  setenv("REDIS_URL", "", 1);
  process_lock::ProcessLock lock("job", 10);
  EXPECT_EQ(lock.redacted_url(), "redis://127.0.0.1:6379");
}

TEST_F(EnvUrlTest, ReadAtConstruction) {
  setenv("REDIS_URL", "redis://:s3cret@10.1.2.3:7001/5", 1);
  process_lock::ProcessLock lock("job", 10);
  setenv("REDIS_URL", "redis://elsewhere:1", 1);
  EXPECT_EQ(lock.redacted_url(), "redis://:***@10.1.2.3:7001/5");
}

TEST_F(EnvUrlTest, ExplicitOptionsUrlWins) {
  setenv("REDIS_URL", "redis://from-env:1", 1);
  process_lock::Options options;
  options.url = "redis://from-options:2";
  process_lock::ProcessLock lock("job", 10, options);
  EXPECT_EQ(lock.redacted_url(), "redis://from-options:2");
}

TEST_F(EnvUrlTest, MalformedEnvThrowsAtConstructionNamingTheVariable) {
  setenv("REDIS_URL", "redis://:s3cret@host:notaport", 1);
  const Error e = test::failure_of([] { process_lock::ProcessLock lock("job", 10); });
  EXPECT_EQ(e.code(), errc::invalid_url);
  EXPECT_STREQ(e.what(), "invalid REDIS_URL: port must be a number from 1 to 65535");
}
// NOLINTEND(concurrency-mt-unsafe)

TEST(UrlTest, MalformedOptionsUrlNamesOptions) {
  process_lock::Options options;
  options.url = "redis://h:0";
  const Error e = test::failure_of([&] { process_lock::ProcessLock lock("job", 10, options); });
  EXPECT_TRUE(test::contains(e.what(), "invalid Options::url")) << e.what();
}

}  // namespace

namespace {

TEST(UrlListTest, CommasBeforeANewSchemeSeparateMasters) {
  const auto eps = parse_urls("redis://a:1,redis://:pw@b:2/3,unix:///run/c.sock", "REDIS_URL");
  ASSERT_EQ(eps.size(), 3u);
  EXPECT_EQ(eps[0].host, "a");
  EXPECT_EQ(eps[1].port, 2);
  EXPECT_EQ(eps[1].db, 3);
  EXPECT_EQ(eps[1].password, "pw");
  EXPECT_EQ(eps[2].path, "/run/c.sock");
}

TEST(UrlListTest, ACommaInAPasswordNeedsNoEncoding) {
  const auto eps = parse_urls("redis://:pa,ss@a:1", "REDIS_URL");
  ASSERT_EQ(eps.size(), 1u);
  EXPECT_EQ(eps[0].password, "pa,ss");
}

TEST(UrlListTest, ListErrorsNameTheMasterAndHideItsPassword) {
  Error e = test::failure_of([] { parse_urls("redis://a:1,redis://:s3cret@b:0", "REDIS_URL"); });
  EXPECT_EQ(e.code(), errc::invalid_url);
  EXPECT_TRUE(test::contains(e.what(), "REDIS_URL (master 2 of 2)")) << e.what();
  EXPECT_FALSE(test::contains(e.what(), "s3cret")) << e.what();
  e = test::failure_of([] { parse_urls("redis://a:1,redis://b:1,redis://a:1", "REDIS_URL"); });
  EXPECT_TRUE(test::contains(e.what(), "master 3 of 3")) << e.what();
  EXPECT_TRUE(test::contains(e.what(), "same server as an earlier master")) << e.what();
  e = test::failure_of([] { parse_urls("redis://a:1,redis+sentinel://s/m", "REDIS_URL"); });
  EXPECT_TRUE(test::contains(e.what(), "cannot be one of several masters")) << e.what();
  std::string sixteen;
  for (int i = 0; i < 16; ++i) sixteen += (i ? ",redis://h:" : "redis://h:") + std::to_string(i + 1);
  e = test::failure_of([&] { parse_urls(sixteen, "REDIS_URL"); });
  EXPECT_TRUE(test::contains(e.what(), "at most 15")) << e.what();
}

// Found by tests/fuzz/fuzz_url: a password containing ",scheme://" splits the URL into a list,
// and a piece then started or ended inside the password, whose text was quoted as a scheme or a
// query key. Errors from a list quote nothing.
TEST(UrlListTest, APasswordSplitIntoPiecesIsNeverQuoted) {
  for (const char* url : {"redis://h:1,secretpart://x@h", "redis://h:1,redis://x?secretpart=1,redis://y@h"}) {
    const Error e = test::failure_of([&] { parse_urls(url, "REDIS_URL"); });
    EXPECT_EQ(e.code(), errc::invalid_url);
    EXPECT_FALSE(test::contains(e.what(), "secretpart")) << e.what();
  }
}

TEST(UrlListTest, SentinelUrlNamesSentinelsMasterAndBothCredentials) {
  const Endpoint ep = parse(
      "redis+sentinel://:m%40ster@s1,[::1]:26380/my%2Dmaster/2?sentinel_user=sen&sentinel_password=sp&"
      "wait_replicas=1&wait_timeout=150ms");
  ASSERT_TRUE(ep.is_sentinel());
  ASSERT_EQ(ep.sentinels.size(), 2u);
  EXPECT_EQ(ep.sentinels[0].host, "s1");
  EXPECT_EQ(ep.sentinels[0].port, 26379);  // the sentinel default
  EXPECT_EQ(ep.sentinels[1].host, "::1");
  EXPECT_EQ(ep.sentinels[1].port, 26380);
  EXPECT_EQ(ep.master_name, "my-master");
  EXPECT_EQ(ep.db, 2);
  EXPECT_EQ(ep.password, "m@ster");
  EXPECT_EQ(ep.sentinel_user, "sen");
  EXPECT_EQ(ep.sentinel_password, "sp");
  EXPECT_EQ(ep.wait_replicas, 1);
  EXPECT_EQ(ep.wait_timeout, 150ms);
  EXPECT_EQ(ep.display(), "redis+sentinel://:***@s1:26379,[::1]:26380/my-master/2");
}

// A cluster's seeds are one URL's host list: the commas sit inside one authority, with no
// "scheme://" after them, so the quorum form (whole URLs separated by commas) is not touched.
TEST(UrlListTest, ClusterUrlListsSeedsOfOneCluster) {
  const auto eps = parse_urls("redis+cluster://alice:p%40ss,word@n1,n2:7001,[::1]:7002/0?wait_replicas=1&command_timeout=2s",
                              "REDIS_URL");
  ASSERT_EQ(eps.size(), 1u);
  const Endpoint& ep = eps[0];
  ASSERT_TRUE(ep.is_cluster());
  EXPECT_FALSE(ep.is_sentinel());
  ASSERT_EQ(ep.cluster_seeds.size(), 3u);
  EXPECT_EQ(ep.cluster_seeds[0].host, "n1");
  EXPECT_EQ(ep.cluster_seeds[0].port, 6379);  // the Redis default
  EXPECT_EQ(ep.cluster_seeds[1].port, 7001);
  EXPECT_EQ(ep.cluster_seeds[2].host, "::1");
  EXPECT_EQ(ep.user, "alice");
  EXPECT_EQ(ep.password, "p@ss,word");
  EXPECT_EQ(ep.db, 0);
  EXPECT_EQ(ep.wait_replicas, 1);
  EXPECT_EQ(ep.command_timeout, 2s);
  EXPECT_EQ(ep.display(), "redis+cluster://alice:***@n1:6379,n2:7001,[::1]:7002");
  EXPECT_EQ(parse("REDIS+CLUSTER://one").display(), "redis+cluster://one:6379");
  // The plain form keeps meaning one node (a cluster entered through it follows MOVED).
  EXPECT_FALSE(parse("redis://n1:7000").is_cluster());
}

TEST(UrlListTest, ClusterUrlIsNotOneOfSeveralMasters) {
  for (const char* url : {"redis://a:1,redis+cluster://b,c", "redis+cluster://b,c,redis://a:1"}) {
    const Error e = test::failure_of([&] { parse_urls(url, "REDIS_URL"); });
    EXPECT_EQ(e.code(), errc::invalid_url);
    EXPECT_TRUE(test::contains(e.what(), "redis+cluster:// URL cannot be one of several masters")) << e.what();
  }
  const Error e = test::failure_of([] { parse_urls("redis://a:1,rediss+cluster://b,c", "REDIS_URL"); });
  EXPECT_TRUE(test::contains(e.what(), "redis+cluster:// URL cannot be one of several masters")) << e.what();
}

TEST(UrlListTest, NodeTimeoutFromQuery) { EXPECT_EQ(parse("redis://h?node_timeout=40ms").node_timeout, 40ms); }

TEST(RedirectTest, MovedAndAskAreParsed) {
  auto r = parse_redirect("MOVED 3999 127.0.0.1:6381");
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->ask);
  EXPECT_EQ(r->address.host, "127.0.0.1");
  EXPECT_EQ(r->address.port, 6381);
  r = parse_redirect("ASK 16383 [::1]:7000");
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->ask);
  EXPECT_EQ(r->address.host, "::1");
  r = parse_redirect("MOVED 1 :7001");  // the node's own host
  ASSERT_TRUE(r);
  EXPECT_EQ(r->address.host, "");
  EXPECT_EQ(r->address.port, 7001);
}

TEST(RedirectTest, AnythingElseIsNotARedirect) {
  for (const char* text : {"ERR unknown", "MOVED", "MOVED 1", "MOVED 16384 h:1", "MOVED x h:1", "ASK 1 h", "ASK 1 h:0",
                           "ASK 1 h:99999", "MOVED 1 ?:1", "MOVEDX 1 h:1", "TRYAGAIN Multiple keys"})
    EXPECT_FALSE(parse_redirect(text)) << text;
}

TEST(UrlListTest, ReplicationCheckNeedsAWaitTimeoutBelowTheCommandTimeout) {
  process_lock::Options o;
  o.url = "redis://127.0.0.1:1?wait_replicas=1&wait_timeout=2s&command_timeout=1s";
  const Error e = test::failure_of([&] { process_lock::ProcessLock lock("job", 10, o); });
  EXPECT_EQ(e.code(), errc::invalid_argument);
  EXPECT_TRUE(test::contains(e.what(), "wait_timeout must be")) << e.what();
  o.url = "redis://127.0.0.1:1?wait_replicas=1&command_timeout=1s";  // defaults to half of it
  EXPECT_NO_THROW(process_lock::ProcessLock("job", 10, o));
}

TEST(UrlListTest, AnyMastersNodeTimeoutIsCheckedAgainstTheCommandTimeout) {
  process_lock::Options o;
  o.url = "redis://127.0.0.1:1,redis://127.0.0.1:2?node_timeout=5s&command_timeout=1s";
  const Error e = test::failure_of([&] { process_lock::ProcessLock lock("job", 10, o); });
  EXPECT_EQ(e.code(), errc::invalid_argument);
  EXPECT_TRUE(test::contains(e.what(), "node_timeout must be")) << e.what();
  o.url = "redis://127.0.0.1:1,redis://127.0.0.1:2?node_timeout=500ms&command_timeout=1s";
  EXPECT_NO_THROW(process_lock::ProcessLock("job", 10, o));
}

TEST(UrlListTest, RedactedUrlListsEveryMasterWithoutPasswords) {
  process_lock::Options o;
  o.url = "redis://:s3cret@a:1,redis://b:2";
  const process_lock::ProcessLock lock("job", 10, o);
  EXPECT_EQ(lock.redacted_url(), "redis://:***@a:1,redis://b:2");
}

}  // namespace
