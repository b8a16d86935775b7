// process-lock: fork counting, this process's pid as text, timeval, and password scrubbing for
// messages.
// SPDX-License-Identifier: Apache-2.0
// One part of <process_lock.hpp>, which includes its parts in order; include that, not this.
#ifndef PROCESS_LOCK_HPP_
#error "include <process_lock.hpp>; process_lock/support.hpp is one of its parts"
#endif
#ifndef PROCESS_LOCK_SUPPORT_HPP_
#define PROCESS_LOCK_SUPPORT_HPP_

namespace process_lock {
namespace detail {

/// Counts forks, in the child, so a connection notices it was inherited without a getpid()
/// system call per call. (A child made by a raw clone() system call, which runs no fork
/// handlers, is not noticed; fork(), and posix_spawn()/vfork() followed by exec, are fine.)
inline unsigned long fork_generation() noexcept {
  static std::atomic<unsigned long> generation{0};
  static const int registered = pthread_atfork(nullptr, nullptr, [] { generation.fetch_add(1); });
  (void)registered;
  return generation.load(std::memory_order_relaxed);
}

/// This process's id in decimal, as the scripts record it; cached per thread until a fork.
inline const std::string& pid_text() {
  thread_local unsigned long generation = ~0UL;
  thread_local std::string text;
  if (generation != fork_generation()) {
    text = std::to_string(getpid());
    generation = fork_generation();
  }
  return text;
}

inline timeval to_timeval(std::chrono::milliseconds ms) noexcept {
  timeval tv{};
  tv.tv_sec = static_cast<decltype(tv.tv_sec)>(ms.count() / 1000);
  tv.tv_usec = static_cast<decltype(tv.tv_usec)>((ms.count() % 1000) * 1000);
  return tv;
}

/// `text` with every stretch covered by an occurrence of `secret` (of any length, overlapping
/// ones included) replaced by `***`: no message may carry a password. Replies to AUTH are never
/// quoted at all (see `auth_refusal`); this guards the other texts against peers that echo what
/// they were sent. A short secret may mask unrelated letters too, which is the price of the
/// rule; the kind of an error is always read from the unscrubbed text.
[[nodiscard]] inline std::string scrub(std::string text, std::string_view secret) {
  if (secret.empty()) return text;
  auto mask_once = [&] {
    std::string out;
    std::size_t covered_to = 0;  // end of the stretch being masked
    for (std::size_t i = 0; i < text.size(); ++i) {
      const bool starts_secret = text.compare(i, secret.size(), secret) == 0;
      if (i >= covered_to) out += starts_secret ? std::string_view("***") : std::string_view(&text[i], 1);
      if (starts_secret) covered_to = std::max(covered_to, i + secret.size());
    }
    text = std::move(out);
  };
  // A mask beside the rest of the text can form the secret again when the secret has a '*';
  // each pass removes at least one of its other bytes, so this ends. A secret of stars only
  // is then all mask: one pass.
  const bool only_stars = secret.find_first_not_of('*') == std::string_view::npos;
  while (text.find(secret) != std::string::npos) {
    mask_once();
    if (only_stars) break;
  }
  return text;
}

}  // namespace detail
}  // namespace process_lock

#endif  // PROCESS_LOCK_SUPPORT_HPP_
