// process-lock: RAII around hiredis's handles (context, reply), and the library's limits (I/O
// timeouts, masters, "no deadline").
// SPDX-License-Identifier: Apache-2.0
// One part of <process_lock.hpp>, which includes its parts in order; include that, not this.
#ifndef PROCESS_LOCK_HPP_
#error "include <process_lock.hpp>; process_lock/handles.hpp is one of its parts"
#endif
#ifndef PROCESS_LOCK_HANDLES_HPP_
#define PROCESS_LOCK_HANDLES_HPP_

namespace process_lock {
namespace detail {

struct ContextDeleter {
  void operator()(redisContext* c) const noexcept { redisFree(c); }
};
struct ReplyDeleter {
  void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using ContextPtr = std::unique_ptr<redisContext, ContextDeleter>;
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

inline constexpr std::chrono::milliseconds default_io_timeout{2000};
inline constexpr std::chrono::milliseconds max_io_timeout{std::chrono::hours(1)};
inline constexpr std::size_t max_masters = 15;  // a quorum lock's masters
// "No deadline" for calls over several masters. (A plain time point rather than an optional:
// GCC 12 warns falsely about optional time points at -O1.)
inline constexpr std::chrono::steady_clock::time_point no_deadline = std::chrono::steady_clock::time_point::max();

}  // namespace detail
}  // namespace process_lock

#endif  // PROCESS_LOCK_HANDLES_HPP_
