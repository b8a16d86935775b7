// The API's shape: construction checks, owner tokens, error values, overloads. No server here,
// except one whose absence proves that construction does not connect.
#include <gtest/gtest.h>

#include <limits>
#include <set>

#include "support.hpp"

namespace {

using process_lock::errc;
using process_lock::Error;
using process_lock::Options;
using process_lock::ProcessLock;
using process_lock::State;
using namespace std::chrono_literals;

Options unreachable() {
  // Nothing listens there: any network use fails fast.
  return test::options_for(test::closed_port_url(), 200ms);
}

// Compile-time facts of the API.
static_assert(!std::is_copy_constructible_v<ProcessLock>);
static_assert(!std::is_move_constructible_v<ProcessLock>);
static_assert(!std::is_constructible_v<ProcessLock, std::string, bool>, "a bool is not a timeout");
static_assert(std::is_nothrow_copy_constructible_v<Error>);
static_assert(std::is_base_of_v<std::system_error, Error>);
static_assert(std::is_nothrow_destructible_v<ProcessLock>);

template <class Make>
void expect_invalid(Make make, const std::string& says) {
  const Error e = test::failure_of(make);
  EXPECT_EQ(e.code(), errc::invalid_argument) << says;
  EXPECT_TRUE(test::contains(e.what(), says)) << e.what();
}

TEST(ApiTest, TimeoutInSecondsAsInNode) {
  EXPECT_EQ(ProcessLock("a", 60, unreachable()).timeout(), 60000ms);
  EXPECT_EQ(ProcessLock("a", 1, unreachable()).timeout(), 1000ms);
  EXPECT_EQ(ProcessLock("a", 0.05, unreachable()).timeout(), 50ms);
  EXPECT_EQ(ProcessLock("a", 1.5f, unreachable()).timeout(), 1500ms);
  EXPECT_EQ(ProcessLock("a", 365LL * 24 * 3600, unreachable()).timeout(), process_lock::max_timeout);
}

TEST(ApiTest, TimeoutAsDuration) {
  EXPECT_EQ(ProcessLock("a", 1500ms, unreachable()).timeout(), 1500ms);
  EXPECT_EQ(ProcessLock("a", std::chrono::minutes(2), unreachable()).timeout(), 120000ms);
  EXPECT_EQ(ProcessLock("a", 3000us, unreachable()).timeout(), 3ms);
  EXPECT_EQ(ProcessLock("a", std::chrono::duration<double>(0.25), unreachable()).timeout(), 250ms);
}

TEST(ApiTest, BadTimeoutsThrowAtConstruction) {
  expect_invalid([] { ProcessLock("a", 0, unreachable()); }, "positive");
  expect_invalid([] { ProcessLock("a", -5, unreachable()); }, "positive");
  expect_invalid([] { ProcessLock("a", 0ms, unreachable()); }, "positive");
  expect_invalid([] { ProcessLock("a", -1ms, unreachable()); }, "positive");
  expect_invalid([] { ProcessLock("a", std::numeric_limits<double>::quiet_NaN(), unreachable()); }, "positive");
  expect_invalid([] { ProcessLock("a", std::numeric_limits<double>::infinity(), unreachable()); }, "positive");
  expect_invalid([] { ProcessLock("a", 0.0001, unreachable()); }, "at least 1 ms");
  expect_invalid([] { ProcessLock("a", 1500us, unreachable()); }, "whole number of milliseconds");
  expect_invalid([] { ProcessLock("a", 365LL * 24 * 3600 + 1, unreachable()); }, "absurdly large");
  expect_invalid([] { ProcessLock("a", std::numeric_limits<long long>::max(), unreachable()); }, "absurdly large");
  expect_invalid([] { ProcessLock("a", std::chrono::hours(24 * 366), unreachable()); }, "absurdly large");
  expect_invalid([] { ProcessLock("a", 1e300, unreachable()); }, "absurdly large");
}

TEST(ApiTest, EmptyNameThrows) {
  expect_invalid([] { ProcessLock("", 10, unreachable()); }, "name must not be empty");
}

TEST(ApiTest, BadIoTimeoutsThrow) {
  Options o = unreachable();
  o.command_timeout = 0ms;
  expect_invalid([&] { ProcessLock("a", 10, o); }, "command_timeout");
  o = unreachable();
  o.connect_timeout = std::chrono::hours(2);
  expect_invalid([&] { ProcessLock("a", 10, o); }, "connect_timeout");
}

TEST(ApiTest, ExplicitTimeoutOptionBeatsUrlParameter) {
  // The URL says 5 s, the option 100 ms; the call against a silent server must honour 100 ms.
  test::FakeServer silent({{{test::FakeServer::Act::hang, ""}}});
  Options o;
  o.url = silent.url() + "?command_timeout=5s";
  o.command_timeout = 100ms;
  ProcessLock lock("a", 10, o);
  const Error e = test::failure_of([&] { (void)lock.lock(); });
  EXPECT_EQ(e.code(), errc::timeout) << e.what();
  EXPECT_TRUE(test::contains(e.what(), "within 100 ms")) << e.what();
}

TEST(ApiTest, ConstructionDoesNotConnect) {
  // Nothing listens there: construction succeeds, the first call reports the failure.
  ProcessLock lock("a", 10, unreachable());
  EXPECT_FALSE(lock.owner());
  EXPECT_THROW((void)lock.lock(), Error);
}

// xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx, lowercase hex.
bool is_uuid_v4(const std::string& s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash != (s[i] == '-')) return false;
    if (!dash && std::string_view("0123456789abcdef").find(s[i]) == std::string_view::npos) return false;
  }
  return s[14] == '4' && std::string_view("89ab").find(s[19]) != std::string_view::npos;
}

TEST(ApiTest, TokensAreUniqueLowercaseUuidV4) {
  EXPECT_TRUE(is_uuid_v4("9b2f0d1e-3c4a-4f5b-8a6c-7d8e9f0a1b2c"));
  EXPECT_FALSE(is_uuid_v4("9b2f0d1e-3c4a-3f5b-8a6c-7d8e9f0a1b2c"));  // version 3
  EXPECT_FALSE(is_uuid_v4("9b2f0d1e-3c4a-4f5b-ca6c-7d8e9f0a1b2c"));  // wrong variant
  EXPECT_FALSE(is_uuid_v4("9B2F0D1E-3C4A-4F5B-8A6C-7D8E9F0A1B2C"));  // uppercase
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    ProcessLock lock("a", 10, unreachable());
    EXPECT_TRUE(is_uuid_v4(lock.token())) << lock.token();
    seen.insert(lock.token());
  }
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(ApiTest, KeyIsPrefixPlusName) {
  Options o = unreachable();
  EXPECT_EQ(ProcessLock("jobs:nightly", 10, o).key(), "jobs:nightly");
  o.key_prefix = "app1:";
  ProcessLock prefixed("jobs:nightly", 10, o);
  EXPECT_EQ(prefixed.key(), "app1:jobs:nightly");
  EXPECT_EQ(prefixed.name(), "jobs:nightly");
}

TEST(ApiTest, DefaultErrorMeansSuccess) {
  const Error ok;
  EXPECT_FALSE(ok);
  EXPECT_FALSE(ok.code());
  EXPECT_STREQ(ok.what(), "success");
  EXPECT_TRUE(ok.server_reply().empty());

  const Error bad(errc::server_error, "redis://h:1 replied with an error: WRONGTYPE x", "WRONGTYPE x");
  EXPECT_TRUE(bad);
  EXPECT_EQ(bad.code(), errc::server_error);
  EXPECT_EQ(bad.code().category().name(), std::string("process_lock"));
  EXPECT_STREQ(bad.what(), "redis://h:1 replied with an error: WRONGTYPE x");
  EXPECT_EQ(bad.server_reply(), "WRONGTYPE x");
  const Error copy = bad;  // NOLINT(performance-unnecessary-copy-initialization): the copy is what is tested
  EXPECT_STREQ(copy.what(), bad.what());
  EXPECT_EQ(copy.server_reply(), "WRONGTYPE x");
}

TEST(ApiTest, EveryErrcHasItsOwnMessage) {
  std::set<std::string> messages;
  for (int v = static_cast<int>(errc::invalid_argument); v <= static_cast<int>(errc::cancelled); ++v)
    messages.insert(process_lock::make_error_code(static_cast<errc>(v)).message());
  EXPECT_EQ(messages.size(), 11u);
  EXPECT_EQ(messages.count("unknown process_lock error"), 0u);
}

TEST(ApiTest, StateToString) {
  EXPECT_EQ(process_lock::to_string(State::open), "open");
  EXPECT_EQ(process_lock::to_string(State::locked), "locked");
  std::ostringstream os;
  os << State::locked;
  EXPECT_EQ(os.str(), "locked");
}

// A captureless lambda converts to a function pointer and so to bool; clear(lambda) must still
// take the callback overload (which returns void), never clear(bool force).
int plain_calls = 0;
void plain_callback(const Error&, std::optional<bool>) { ++plain_calls; }

TEST(ApiTest, CapturelessCallbacksAreNeverTakenAsForce) {
  ProcessLock lock("a", 10, unreachable());
  static int generic_calls, typed_calls;  // static: a captureless lambda can reach only these
  generic_calls = typed_calls = plain_calls = 0;
  auto generic = [](auto&, auto) { ++generic_calls; };
  auto typed = [](const Error& err, std::optional<bool> cleared) {
    EXPECT_TRUE(err);
    EXPECT_FALSE(cleared.has_value());
    ++typed_calls;
  };
  static_assert(std::is_void_v<decltype(lock.clear(generic))>);
  static_assert(std::is_void_v<decltype(lock.clear(typed))>);
  static_assert(std::is_void_v<decltype(lock.clear(&plain_callback))>);
  static_assert(std::is_void_v<decltype(lock.clear(true, typed))>);
  static_assert(std::is_same_v<decltype(lock.clear(true)), std::optional<bool>>);
  lock.clear(generic);
  lock.clear(typed);
  lock.clear(&plain_callback);
  lock.clear(plain_callback);
  lock.clear(true, [](auto& err, auto) {
    EXPECT_TRUE(err);
    ++generic_calls;
  });
  EXPECT_EQ(generic_calls, 2);
  EXPECT_EQ(typed_calls, 1);
  EXPECT_EQ(plain_calls, 2);
}

TEST(ApiTest, ErrorsReachCallbacksOnceWithFalseValues) {
  ProcessLock lock("a", 10, unreachable());
  int calls = 0;
  lock.lock([&](const Error& err, bool owner) {
    ++calls;
    EXPECT_EQ(err.code(), errc::connect_failed) << err.what();
    EXPECT_FALSE(owner);
  });
  lock.update([&](const Error& err, bool renewed) {
    ++calls;
    EXPECT_EQ(err.code(), errc::connect_failed);
    EXPECT_FALSE(renewed);
  });
  lock.state([&](const Error& err, State) {
    ++calls;
    EXPECT_EQ(err.code(), errc::connect_failed);
  });
  EXPECT_EQ(calls, 3);
}

TEST(ApiTest, ThrowingCallbackIsCalledOnceAndPropagates) {
  ProcessLock lock("a", 10, unreachable());
  int calls = 0;
  EXPECT_THROW(lock.lock([&](const Error&, bool) {
    ++calls;
    throw std::runtime_error("from the callback");
  }),
               std::runtime_error);
  EXPECT_EQ(calls, 1);
}

TEST(ApiTest, Sha1MatchesKnownVectors) {
  using process_lock::detail::sha1_hex;
  EXPECT_EQ(sha1_hex(""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  EXPECT_EQ(sha1_hex("abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
  EXPECT_EQ(sha1_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
  EXPECT_EQ(sha1_hex(std::string(1000000, 'a')), "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
}

}  // namespace
