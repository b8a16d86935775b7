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

// Error replies, as each server words them (rows marked with a version are what that server
// sent here: Redis 6.0.16 from bullseye, Redis 7.0.15, Valkey 8.0.1): a script's failed call is
// read the same wrapped (Redis up to 6.2) or not, and a code word anywhere but where the rule
// looks changes nothing.
TEST(ReplyTest, ErrorRepliesAreReadTheSameWrappedOrNot) {
  using process_lock::detail::error_reply_kind;
  using process_lock::detail::is_readonly_error;
  using process_lock::detail::read_error_reply;
  const errc auth = errc::auth_failed, denied = errc::permission_denied, other = errc::server_error;
  struct Row {
    std::string_view text;
    errc kind;
    std::string_view code;
    bool readonly;
  };
  const Row rows[] = {
      // Plain.
      {"NOAUTH Authentication required.", auth, "NOAUTH", false},
      {"WRONGPASS invalid username-password pair or user is disabled.", auth, "WRONGPASS", false},
      {"NOPERM this user has no permissions to run the 'evalsha' command", denied, "NOPERM", false},  // 7.0
      {"NOPERM User limited has no permissions to run the 'set' command", denied, "NOPERM", false},   // Valkey
      {"NOPERM No permissions to access a key", denied, "NOPERM", false},                             // Valkey
      {"NOPERM", denied, "NOPERM", false},
      {"READONLY You can't write against a read only replica.", other, "READONLY", true},
      {"WRONGTYPE Operation against a key holding the wrong kind of value", other, "WRONGTYPE", false},
      {"ERR value is not an integer or out of range", other, "ERR", false},
      {"MOVED 3999 127.0.0.1:6381", other, "MOVED", false},
      // A script's failed call, passed through with its code (Redis 7+, Valkey).
      {"WRONGTYPE Operation against a key holding the wrong kind of value script: "
       "4e6d8fc8bb01276962cce5371fa795a7763657ae, on @user_script:1.",
       other, "WRONGTYPE", false},
      {"READONLY You can't write against a read only replica. script: b0e7bbc2efc136be74cdebcb73a106ad46ea881b, on "
       "@user_script:1.",
       other, "READONLY", true},
      // A script's command refused by the ACL: a sentence of the server's, no code.
      {"ERR The user executing the script can't run this command or subcommand script: "
       "b0e7bbc2efc136be74cdebcb73a106ad46ea881b, on @user_script:1.",
       denied, "ERR", false},  // 7.0
      {"ERR The user executing the script can't access at least one of the keys mentioned in the command arguments "
       "script: 51c16fd9e83aad88324dbcdf6b1984449c17ff29, on @user_script:1.",
       denied, "ERR", false},  // 7.0
      {"ERR ACL failure in script: User limited has no permissions to run the 'set' command script: "
       "b0e7bbc2efc136be74cdebcb73a106ad46ea881b, on @user_script:1.",
       denied, "ERR", false},  // Valkey
      {"ERR ACL failure in script: No permissions to access a key script: 51c16fd9e83aad88324dbcdf6b1984449c17ff29, "
       "on @user_script:1.",
       denied, "ERR", false},  // Valkey
      // Wrapped (Redis 2.6 to 6.2): the command's reply without its "-", behind the handler's position.
      {"ERR Error running script (call to f_4e6d8fc8bb01276962cce5371fa795a7763657ae): @user_script:1: WRONGTYPE "
       "Operation against a key holding the wrong kind of value",
       other, "WRONGTYPE", false},  // 6.0
      {"ERR Error running script (call to f_4e6d8fc8bb01276962cce5371fa795a7763657ae): @user_script:1: NOPERM this "
       "user has no permissions to run the 'set' command",
       denied, "NOPERM", false},
      {"ERR Error running script (call to f_4e6d8fc8bb01276962cce5371fa795a7763657ae): @user_script:1: ERR value is "
       "not an integer or out of range",
       other, "ERR", false},
      // Wrapped: an error the server raised itself, behind a second position, with its "-".
      {"ERR Error running script (call to f_b0e7bbc2efc136be74cdebcb73a106ad46ea881b): @user_script:1: "
       "@user_script: 1: -READONLY You can't write against a read only replica.",
       other, "READONLY", true},  // 6.0
      {"ERR Error running script (call to f_b0e7bbc2efc136be74cdebcb73a106ad46ea881b): @user_script:1: "
       "@user_script: 1: -NOPERM this user has no permissions to run the 'set' command",
       denied, "NOPERM", false},
      {"ERR Error running script (call to f_b0e7bbc2efc136be74cdebcb73a106ad46ea881b): @user_script:1: "
       "@user_script: 1: The user executing the script can't run this command or subcommand",
       denied, "ERR", false},  // 6.0
      {"ERR Error running script (call to f_51c16fd9e83aad88324dbcdf6b1984449c17ff29): @user_script:1: "
       "@user_script: 1: The user executing the script can't access at least one of the keys mentioned in the "
       "command arguments",
       denied, "ERR", false},  // 6.0
      {"ERR Error running script (call to f_206396248e12c6e742fd7296250433c8d7343b74): @user_script:1: "
       "@user_script: 1: Unknown Redis command called from Lua script",
       other, "ERR", false},  // 6.0
      // A code word where the rule does not look: part of a message.
      {"ERR Error running script (call to f_a013bdcdbd1aaba84a181d24c68efcf618ba3d72): @user_script:1: "
       "user_script:1: NOPERM boom",
       other, "ERR", false},  // 6.0: the script's own error("NOPERM boom")
      {"ERR user_script:1: NOPERM boom script: a013bdcdbd1aaba84a181d24c68efcf618ba3d72, on @user_script:1.", other,
       "ERR", false},  // 7.0, the same
      {"ERR Error running script (call to f_a013bdcdbd1aaba84a181d24c68efcf618ba3d72): @user_script:1: "
       "user_script:1: READONLY",
       other, "ERR", false},
      {"WRONGTYPE key NOPERM holds a list, not READONLY", other, "WRONGTYPE", false},
      {"ERR unknown command 'NOPERM', with args beginning with: ", other, "ERR", false},
      {"ERR Error compiling script: The user executing the script can't", other, "ERR", false},
      {"BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.", other, "BUSY", false},
      {"NOPERMISSION denied", other, "NOPERMISSION", false},
      {"READONLYISH x", other, "READONLYISH", false},
      {"-NOPERM no such code", other, "-NOPERM", false},
      {"noperm lower case", other, "noperm", false},
      // Not the wrapped form after all: cut short, an unnamed or spaced function, no code word.
      {"ERR Error running script", other, "ERR", false},
      {"ERR Error running script (call to f_x", other, "ERR", false},
      {"ERR Error running script (call to ): NOPERM x", other, "ERR", false},
      {"ERR Error running script (call to f x): NOPERM x", other, "ERR", false},
      {"ERR Error running script (call to f_x): @user_script:1: NOPERMx", other, "ERR", false},
      {"ERR Error running script (call to f_x): @user_script:1: @user_script: 1: -", other, "ERR", false},
      {"ERR Error running script (call to f_x): @user_script:1: @user_script: 1: -NOPERM", denied, "NOPERM", false},
      {"", other, "", false},
  };
  for (const Row& r : rows) {
    EXPECT_EQ(error_reply_kind(r.text), r.kind) << r.text;
    EXPECT_EQ(read_error_reply(r.text).code, r.code) << r.text;
    EXPECT_EQ(is_readonly_error(r.text), r.readonly) << r.text;
  }
  // The message is what follows the code, wrapped or not.
  EXPECT_EQ(read_error_reply("ERR Error running script (call to f_4e6d): @user_script:1: WRONGTYPE Operation "
                             "against a key")
                .message,
            "Operation against a key");
  EXPECT_EQ(read_error_reply("NOPERM").message, "");
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
