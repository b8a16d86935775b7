// How script replies are read: the shapes the scripts return, replies of the wrong shape, and
// values no Redis script of ours sends but a broken peer (or a key set by hand) can. No server:
// the bytes go through hiredis's reader as if they came from one. The fuzzer tests/fuzz/fuzz_reply
// explores the same functions; its findings are pinned here.
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include "support.hpp"

namespace {

using process_lock::errc;
using process_lock::detail::read_inspection;
using process_lock::detail::read_lock_reply;
using process_lock::detail::ReplyPtr;
using namespace std::chrono_literals;

constexpr std::string_view token = "2f1e5c3a-8b7d-4e6f-9a0b-1c2d3e4f5a6b";

// One reply, parsed from its RESP bytes.
ReplyPtr resp(const std::string& bytes) {
  const std::unique_ptr<redisReader, void (*)(redisReader*)> reader(redisReaderCreate(), redisReaderFree);
  void* reply = nullptr;
  if (redisReaderFeed(reader.get(), bytes.data(), bytes.size()) != REDIS_OK ||
      redisReaderGetReply(reader.get(), &reply) != REDIS_OK || reply == nullptr)
    throw std::runtime_error("not one complete RESP reply");
  return ReplyPtr(static_cast<redisReply*>(reply));
}

// Appended rather than `"$" + std::to_string(...)`, which trips GCC 12's false -Wrestrict at -O3.
std::string bulk(std::string_view s) {
  std::string out = "$";
  out += std::to_string(s.size());
  out += "\r\n";
  out += s;
  out += "\r\n";
  return out;
}

// The inspect script's reply for a lock held with `token`, recorded since `since_ms`.
std::string inspection(std::string_view since_ms) {
  return "*4\r\n" + bulk(token) + ":29000\r\n" + bulk("42") + "*5\r\n" + bulk(token) + bulk("42") + bulk("host-a") +
         bulk("1234") + bulk(since_ms);
}

TEST(ReplyTest, LockReplies) {
  const auto acquired = read_lock_reply(*resp("*2\r\n:1\r\n:42\r\n"));
  EXPECT_TRUE(acquired.acquired);
  EXPECT_EQ(acquired.fence, 42u);
  const auto held = read_lock_reply(*resp("*2\r\n:0\r\n:29517\r\n"));
  EXPECT_FALSE(held.acquired);
  EXPECT_EQ(held.holder_pttl, 29517);
}

TEST(ReplyTest, Inspections) {
  const auto ours = read_inspection(*resp(inspection("1764136000000")), token);
  EXPECT_EQ(ours.state, process_lock::State::locked);
  EXPECT_TRUE(ours.ours);
  EXPECT_EQ(ours.ttl, 29000ms);
  EXPECT_EQ(ours.fence_counter, 42u);
  ASSERT_TRUE(ours.holder);
  EXPECT_EQ(ours.holder->host, "host-a");
  EXPECT_EQ(ours.holder->pid, 1234);
  EXPECT_EQ(ours.holder->since.time_since_epoch(), 1764136000000ms);
  const auto open =
      read_inspection(*resp("*4\r\n$-1\r\n:-2\r\n$-1\r\n*5\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n"), token);
  EXPECT_EQ(open.state, process_lock::State::open);
  EXPECT_FALSE(open.ours || open.ttl || open.holder);
}

// The inspect script adds the holder's Options::holder_info as a sixth detail when it gave one;
// a 0.1.0 holder's five details have none, and its host is taken whole, newlines and all.
TEST(ReplyTest, HolderInfoIsTheSixthDetail) {
  const auto details = [](std::string_view host, std::optional<std::string_view> info) {
    return "*4\r\n" + bulk(token) + ":29000\r\n" + bulk("42") + (info ? "*6\r\n" : "*5\r\n") + bulk(token) +
           bulk("42") + bulk(host) + bulk("1234") + bulk("1764136000000") + (info ? bulk(*info) : std::string());
  };
  const struct {
    std::string host;
    std::optional<std::string> info;
  } cases[] = {{"host-a", std::nullopt}, {"host-a", "10.0.0.7:8080"}, {"host a", "x\ny\n"}, {"a\nb", std::nullopt}};
  for (const auto& c : cases) {
    const auto seen = read_inspection(*resp(details(c.host, c.info)), token);
    ASSERT_TRUE(seen.holder) << c.host;
    EXPECT_EQ(seen.holder->host, c.host);
    EXPECT_EQ(seen.holder->info, c.info.value_or("")) << c.host;
  }
}

TEST(ReplyTest, WrongShapesAreProtocolErrors) {
  for (const std::string bytes : {"+OK\r\n", ":1\r\n", "*1\r\n:1\r\n", "*2\r\n$1\r\n1\r\n:1\r\n", "*0\r\n"}) {
    const auto reply = resp(bytes);
    EXPECT_EQ(test::failure_of([&] { read_lock_reply(*reply); }).code(), errc::protocol_error) << bytes;
    EXPECT_EQ(test::failure_of([&] { read_inspection(*reply, token); }).code(), errc::protocol_error) << bytes;
  }
}

// Found by fuzz_reply: a since_ms beyond what system_clock holds overflowed (UBSan: signed
// integer overflow); it now counts as unknown.
TEST(ReplyTest, SinceBeyondTheClockIsUnknown) {
  const auto seen = read_inspection(*resp(inspection("99999999999999")), token);
  ASSERT_TRUE(seen.holder);
  EXPECT_EQ(seen.holder->since, std::chrono::system_clock::time_point());
}

// A key whose PTTL is centuries (Redis accepts SET name x PX 10000000000000) made the waiter's
// retry delay overflow on conversion to the steady clock, and wrap negative: a busy loop.
TEST(ReplyTest, RetryDelayForAHugeHolderTtlFitsTheClock) {
  for (const long long pttl : {10'000'000'000'000LL, std::numeric_limits<long long>::max()}) {
    for (const bool notices : {true, false}) {
      const auto delay = process_lock::detail::retry_delay(pttl, 3, notices);
      EXPECT_GE(delay, 0ms);
      EXPECT_LE(delay, 24h + 1s);
      EXPECT_GT(std::chrono::steady_clock::now() + delay, std::chrono::steady_clock::now());
    }
  }
}

}  // namespace
