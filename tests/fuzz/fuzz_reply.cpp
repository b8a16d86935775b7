// libFuzzer harness for reading replies, the way a connection does: bytes -> the reply limits
// (process_lock::detail::ReplyBounds) -> hiredis reader -> process_lock::detail::read_lock_reply,
// read_inspection, read_slot_map (Redis Cluster's CLUSTER SLOTS) and, for the text of error and
// status replies, parse_redirect (Redis Cluster's MOVED/ASK).
//
// The input is checked against the limits as if it came from the server, in one piece and in
// pieces (as reads would split it); what passes is fed to a hiredis reader; every reply it yields
// is handed to each parser (and the raw input to parse_redirect too). Checked, besides the
// absence of crashes and sanitizer reports:
//   - the limits' verdict does not depend on how the bytes are split into reads;
//   - no reply that gets past the limits holds more array elements or string bytes than they
//     allow (checked with the library's limits and with small ones the input can reach);
//   - a parser throws nothing but process_lock::Error with errc::protocol_error;
//   - a lock reply that acquired has no holder TTL, one that did not has no fence, and the
//     waiter's retry delay computed from it is non-negative and fits the steady clock;
//   - an inspection that says "open" has no TTL, holder or ownership; "ours" only when the
//     stored token is the one asked about; a TTL is never negative;
//   - a redirection is MOVED or ASK as the text says, to a port from 1 to 65535 and a host
//     without spaces or brackets;
//   - a slot route names each node once, the owner first, every one with a port from 1 to 65535
//     and a non-empty host without spaces or brackets.
#include <process_lock.hpp>

#include <hiredis/hiredis.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

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

void check_slot_map(const redisReply& reply) {
  for (const int slot : {0, 5000, 16383}) {
    expect_protocol_error_only([&] {
      const detail::SlotRoute route = detail::read_slot_map(reply, slot, "asked.host");
      for (std::size_t i = 0; i < route.nodes.size(); ++i) {
        const detail::Address& a = route.nodes[i];
        if (a.port < 1 || a.port > 65535) fail("slot map node port out of range");
        if (a.host.empty() || a.host.find_first_of(" []") != std::string::npos) fail("slot map node with a bad host");
        for (std::size_t j = 0; j < i; ++j)
          if (route.nodes[j] == a) fail("slot map node listed twice");
      }
      if (route.owner && (route.nodes.empty() || route.nodes.front() != *route.owner))
        fail("slot map owner not first among the nodes");
    });
  }
}

void check(const redisReply& reply) {
  check_slot_map(reply);
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

// Array elements and string bytes in a reply, nested ones included.
void measure(const redisReply& reply, long long& elements, std::size_t& bytes) {
  if (reply.type == REDIS_REPLY_STRING || reply.type == REDIS_REPLY_STATUS || reply.type == REDIS_REPLY_ERROR)
    bytes += reply.len;
  if (reply.type != REDIS_REPLY_ARRAY) return;
  elements += static_cast<long long>(reply.elements);
  for (std::size_t i = 0; i < reply.elements; ++i) measure(*reply.element[i], elements, bytes);
}

// What of `input` gets past limits of `max_bytes` and `max_elements`, fed in pieces of `piece`
// bytes (0: in one piece), and the verdict.
std::pair<std::string_view, std::string> admitted(std::string_view input, std::size_t piece, std::size_t max_bytes,
                                                  long long max_elements) {
  detail::ReplyBounds bounds(max_bytes, max_elements);
  if (piece == 0) piece = input.size() + 1;
  for (std::size_t at = 0; at < input.size(); at += piece) {
    std::string fault = bounds.check(input.substr(at, piece));
    if (!fault.empty()) return {input.substr(0, at), fault};  // the connection stops here
  }
  return {input, ""};
}

struct ReaderDeleter {
  void operator()(redisReader* r) const noexcept { redisReaderFree(r); }
};


// Feeds what the limits admit to a hiredis reader; checks each reply against the limits and,
// with `parse`, the parsers.
void read_replies(std::string_view admitted_bytes, std::size_t max_bytes, long long max_elements, bool parse) {
  const std::unique_ptr<redisReader, ReaderDeleter> reader(redisReaderCreate());
  if (!reader) return;
  if (redisReaderFeed(reader.get(), admitted_bytes.data(), admitted_bytes.size()) != REDIS_OK) return;
  for (int n = 0; n < 64; ++n) {
    void* raw = nullptr;
    if (redisReaderGetReply(reader.get(), &raw) != REDIS_OK || raw == nullptr) break;
    const detail::ReplyPtr reply(static_cast<redisReply*>(raw));
    long long elements = 0;
    std::size_t bytes = 0;
    measure(*reply, elements, bytes);
    if (elements > max_elements) fail("a reply past the limits has too many array elements");
    if (bytes > max_bytes) fail("a reply past the limits has too many bytes");
    if (parse) check(*reply);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  check_redirect(input);
  // The library's limits, then small ones that inputs of a few KiB can reach.
  const std::pair<std::size_t, long long> limits[] = {{detail::max_reply_bytes, detail::max_reply_elements},
                                                      {64 + size % 200, static_cast<long long>(1 + size % 12)}};
  for (const auto& [max_bytes, max_elements] : limits) {
    const auto whole = admitted(input, 0, max_bytes, max_elements);
    for (const std::size_t piece : {std::size_t(1), 1 + size % 13}) {
      if (admitted(input, piece, max_bytes, max_elements).second != whole.second)
        fail("the limits' verdict depends on how the bytes are split");
    }
    read_replies(whole.first, max_bytes, max_elements, max_bytes == detail::max_reply_bytes);
  }
  return 0;
}
