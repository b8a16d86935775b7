// libFuzzer harness for the interpretation of replies: bytes -> hiredis reader ->
// process_lock::detail::read_lock_reply, read_inspection and, for the text of error and status
// replies, parse_redirect (Redis Cluster's MOVED/ASK).
//
// The input is fed to a hiredis reader as if it came from the server; every reply it yields is
// handed to each parser (and the raw input to parse_redirect too). Checked, besides the absence
// of crashes and sanitizer reports:
//   - a parser throws nothing but process_lock::Error with errc::protocol_error;
//   - a lock reply that acquired has no holder TTL, one that did not has no fence, and the
//     waiter's retry delay computed from it is non-negative and fits the steady clock;
//   - an inspection that says "open" has no TTL, holder or ownership; "ours" only when the
//     stored token is the one asked about; a TTL is never negative;
//   - a redirection is MOVED or ASK as the text says, to a port from 1 to 65535 and a host
//     without spaces or brackets.
#include <process_lock.hpp>

#include <hiredis/hiredis.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string_view>

namespace {

namespace detail = process_lock::detail;

// An owner token as the library makes them; the seeds hold replies that name it.
constexpr std::string_view our_token = "2f1e5c3a-8b7d-4e6f-9a0b-1c2d3e4f5a6b";

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_reply: %s\n", what);
  std::abort();
}

template <class F>
void expect_protocol_error_only(F&& parse) {
  try {
    parse();
  } catch (const process_lock::Error& e) {
    if (e.code() != process_lock::errc::protocol_error) fail("an error other than protocol_error");
    if (std::string_view(e.what()).empty()) fail("empty error message");
  }
  // Anything else thrown escapes to libFuzzer, which reports it as a crash.
}

void check_inspection(const redisReply& reply, std::string_view token) {
  expect_protocol_error_only([&] {
    const process_lock::Inspection seen = detail::read_inspection(reply, token);
    if (seen.state == process_lock::State::open && (seen.ours || seen.ttl || seen.holder))
      fail("an open lock with an owner, TTL or holder");
    if (seen.ours && seen.state != process_lock::State::locked) fail("ours but not locked");
    if (seen.ours && (reply.element[0]->type != REDIS_REPLY_STRING ||
                      std::string_view(reply.element[0]->str, reply.element[0]->len) != token))
      fail("ours with another token");
    if (seen.ttl && seen.ttl->count() < 0) fail("negative TTL");
  });
}

void check_redirect(std::string_view text) {
  const std::optional<detail::Redirect> r = detail::parse_redirect(text);
  if (!r) return;
  if (r->ask != (text.substr(0, 4) == "ASK ")) fail("redirect kind disagrees with the text");
  if (!r->ask && text.substr(0, 6) != "MOVED ") fail("redirect from text that is neither MOVED nor ASK");
  if (r->address.port < 1 || r->address.port > 65535) fail("redirect port out of range");
  if (r->address.host.find_first_of(" []") != std::string::npos) fail("redirect host with a space or bracket");
}

void check(const redisReply& reply) {
  if (reply.type == REDIS_REPLY_ERROR || reply.type == REDIS_REPLY_STATUS || reply.type == REDIS_REPLY_STRING)
    check_redirect(std::string_view(reply.str, reply.len));
  expect_protocol_error_only([&] {
    const detail::LockReply r = detail::read_lock_reply(reply);
    if (r.acquired && r.holder_pttl != 0) fail("acquired with a holder TTL");
    if (!r.acquired && r.fence != 0) fail("not acquired but with a fence");
    if (r.acquired) return;
    // A waiter sleeps retry_delay(holder_pttl) on the steady clock: it must convert to it without
    // overflow (UBSan checks the conversion) and never be negative.
    for (const bool notices : {true, false}) {
      const std::chrono::milliseconds delay = detail::retry_delay(r.holder_pttl, 3, notices);
      const auto on_clock = std::chrono::duration_cast<std::chrono::steady_clock::duration>(delay);
      if (on_clock.count() < 0) fail("negative retry delay");
      if (delay > std::chrono::hours(24 * 365 * 100)) fail("retry delay beyond a century");
    }
  });
  check_inspection(reply, our_token);
  check_inspection(reply, "");
}

// hiredis 0.14 allocates an array reply's element table as soon as it reads the header, with no
// upper bound (1.x has maxelements), so "*2000000000\r\n" is an allocation failure inside hiredis,
// not a finding about process-lock: such inputs are skipped.
bool has_huge_array(std::string_view in) {
  for (auto star = in.find('*'); star != std::string_view::npos; star = in.find('*', star + 1)) {
    std::size_t digits = 0;
    while (star + 1 + digits < in.size() && in[star + 1 + digits] >= '0' && in[star + 1 + digits] <= '9') ++digits;
    if (digits > 4) return true;
  }
  return false;
}

struct ReaderDeleter {
  void operator()(redisReader* r) const noexcept { redisReaderFree(r); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  check_redirect(input);
  if (has_huge_array(input)) return 0;
  const std::unique_ptr<redisReader, ReaderDeleter> reader(redisReaderCreate());
  if (!reader) return 0;
  if (redisReaderFeed(reader.get(), input.data(), input.size()) != REDIS_OK) return 0;
  for (int n = 0; n < 64; ++n) {
    void* raw = nullptr;
    if (redisReaderGetReply(reader.get(), &raw) != REDIS_OK || raw == nullptr) break;
    const detail::ReplyPtr reply(static_cast<redisReply*>(raw));
    check(*reply);
  }
  return 0;
}
