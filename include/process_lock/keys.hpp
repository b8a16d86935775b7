// process-lock: the keys of one lock: printable names, the Cluster slot of a key, companion
// keys, LockKeys.
// SPDX-License-Identifier: Apache-2.0
// One part of <process_lock.hpp>, which includes its parts in order; include that, not this.
#ifndef PROCESS_LOCK_HPP_
#error "include <process_lock.hpp>; process_lock/keys.hpp is one of its parts"
#endif
#ifndef PROCESS_LOCK_KEYS_HPP_
#define PROCESS_LOCK_KEYS_HPP_

namespace process_lock {
namespace detail {

/// Shows a lock name in messages: printable ASCII as is, other bytes as \xHH, long names cut.
inline std::string printable_name(std::string_view name) {
  std::string out = "\"";
  constexpr std::size_t limit = 80;
  for (std::size_t i = 0; i < name.size() && i < limit; ++i) {
    const auto c = static_cast<unsigned char>(name[i]);
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      static constexpr char digits[] = "0123456789abcdef";
      out += "\\x";
      out += digits[c >> 4];
      out += digits[c & 15];
    }
  }
  if (name.size() > limit) out += "...";
  return out + "\"";
}

/// CRC-16/XMODEM, the hash Redis Cluster uses for key slots; `crc` continues an earlier run.
inline std::uint16_t crc16(std::string_view data, std::uint16_t crc = 0) noexcept {
  static const auto table = [] {
    std::array<std::uint16_t, 256> t{};
    for (unsigned i = 0; i < 256; ++i) {
      auto v = static_cast<std::uint16_t>(i << 8);
      for (int bit = 0; bit < 8; ++bit) v = static_cast<std::uint16_t>((v & 0x8000) ? (v << 1) ^ 0x1021 : v << 1);
      t[i] = v;
    }
    return t;
  }();
  for (const char c : data)
    crc = static_cast<std::uint16_t>((crc << 8) ^ table[((crc >> 8) ^ static_cast<unsigned char>(c)) & 0xff]);
  return crc;
}

/// The part of a key Redis Cluster hashes: the first non-empty {hash tag}, else all of it.
inline std::string_view hashed_part(std::string_view key) noexcept {
  const auto open = key.find('{');
  if (open == std::string_view::npos) return key;
  const auto close = key.find('}', open + 1);
  if (close == std::string_view::npos || close == open + 1) return key;
  return key.substr(open + 1, close - open - 1);
}

/// The Redis Cluster slot (0..16383) of a key.
inline int key_slot(std::string_view key) noexcept { return crc16(hashed_part(key)) & 16383; }

/// A key for data that belongs to `key` (its fencing counter, its holder's details), in the same
/// Redis Cluster slot whatever `key` contains, so that one script may touch both.
inline std::string companion_key(const std::string& key, std::string_view suffix) {
  const int slot = key_slot(key);
  std::string candidate;
  if (key.find('{') != std::string::npos) {
    candidate = key + std::string(suffix);  // keeps a hash tag the key already has
    if (key_slot(candidate) == slot) return candidate;
  }
  candidate = "{" + key + "}" + std::string(suffix);  // the whole key as the tag
  if (key_slot(candidate) == slot) return candidate;
  // The key has a '}' that cuts such a tag short and no tag of its own, so its slot comes from
  // all of it: append two bytes chosen so that the CRC lands in the same slot. Braces are
  // skipped so the bytes cannot form a tag; CRC-16 reaches every value with two free bytes.
  const std::string prefix = key + std::string(suffix) + ":";
  const std::uint16_t base = crc16(prefix);
  for (int a = 0; a < 256; ++a) {
    for (int b = 0; b < 256; ++b) {
      if (a == '{' || a == '}' || b == '{' || b == '}') continue;
      const char pad[2] = {static_cast<char>(a), static_cast<char>(b)};
      if ((crc16(std::string_view(pad, 2), base) & 16383) != slot) continue;
      candidate = prefix + std::string(pad, 2);
      if (key_slot(candidate) == slot) return candidate;
    }
  }
  throw std::logic_error("process_lock: no companion key in the lock's slot");  // unreachable
}

/// The names that go with one lock key.
struct LockKeys {
  std::string lock;     // the lock itself: value = owner token, shared with process-lock-node
  std::string fence;    // fencing counter, incremented by each acquisition; never expires
  std::string owner;    // the holder's details and the waiters' mark, one string; same TTL as the lock
  std::string holder;   // 0.1.0's hash of the holder's details (wire version 1), only read now
  std::string watch;    // the watchers' lease: while it lives, changes are announced (see watch_script_text)
  std::string channel;  // pub/sub channel where releases are announced
  std::string acquired_channel;  // where watched acquisitions are announced (named by the lock script too)

  explicit LockKeys(std::string key)
      : lock(std::move(key)),
        fence(companion_key(lock, ":fence")),
        owner(companion_key(lock, ":owner")),
        holder(companion_key(lock, ":holder")),
        watch(companion_key(lock, ":watch")),
        channel("process_lock:released:" + lock),
        acquired_channel("process_lock:acquired:" + lock) {}
};

/// 16 bytes from the OS's CSPRNG, as a lowercase RFC 4122 version-4 UUID.
inline std::string random_uuid_v4() {
  unsigned char b[16];
  std::size_t got = 0;
  while (got < sizeof b) {
    const ssize_t n = getrandom(b + got, sizeof b - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::system_error(errno, std::generic_category(), "process_lock: cannot make an owner token (getrandom)");
    }
    got += static_cast<std::size_t>(n);
  }
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);  // version 4
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
  static constexpr char digits[] = "0123456789abcdef";
  std::string s;
  s.reserve(36);
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s += '-';
    s += digits[b[i] >> 4];
    s += digits[b[i] & 15];
  }
  return s;
}

/// SHA-1 as hex, for EVALSHA (the server names scripts by it). Not used for security.
inline std::string sha1_hex(std::string_view data) {
  std::uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
  std::string msg(data);
  const std::uint64_t bit_len = static_cast<std::uint64_t>(data.size()) * 8u;
  msg += static_cast<char>(0x80);
  while (msg.size() % 64 != 56) msg += '\0';
  for (int i = 7; i >= 0; --i) msg += static_cast<char>((bit_len >> (i * 8)) & 0xffu);
  auto rotl = [](std::uint32_t x, int n) { return (x << n) | (x >> (32 - n)); };
  for (std::size_t chunk = 0; chunk < msg.size(); chunk += 64) {
    std::uint32_t w[80];
    for (int i = 0; i < 16; ++i) {
      w[i] = 0;
      for (int j = 0; j < 4; ++j)
        w[i] = (w[i] << 8) | static_cast<unsigned char>(msg[chunk + static_cast<std::size_t>(i * 4 + j)]);
    }
    for (int i = 16; i < 80; ++i) w[i] = rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    std::uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; ++i) {
      std::uint32_t f, k;
      if (i < 20) {
        f = (b & c) | (~b & d);
        k = 0x5A827999u;
      } else if (i < 40) {
        f = b ^ c ^ d;
        k = 0x6ED9EBA1u;
      } else if (i < 60) {
        f = (b & c) | (b & d) | (c & d);
        k = 0x8F1BBCDCu;
      } else {
        f = b ^ c ^ d;
        k = 0xCA62C1D6u;
      }
      const std::uint32_t t = rotl(a, 5) + f + e + k + w[i];
      e = d;
      d = c;
      c = rotl(b, 30);
      b = a;
      a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
  }
  char out[41];
  std::snprintf(out, sizeof out, "%08x%08x%08x%08x%08x", h[0], h[1], h[2], h[3], h[4]);
  return out;
}

}  // namespace detail
}  // namespace process_lock

#endif  // PROCESS_LOCK_KEYS_HPP_
