// process-lock: the Lua scripts (the wire contract: byte for byte, their SHA-1 is the EVALSHA
// name).
// SPDX-License-Identifier: Apache-2.0
// One part of <process_lock.hpp>, which includes its parts in order; include that, not this.
#ifndef PROCESS_LOCK_HPP_
#error "include <process_lock.hpp>; process_lock/scripts.hpp is one of its parts"
#endif
#ifndef PROCESS_LOCK_SCRIPTS_HPP_
#define PROCESS_LOCK_SCRIPTS_HPP_

namespace process_lock {
namespace detail {

/// A Lua script and its SHA-1, computed once.
struct Script {
  std::string_view text;
  std::string sha;
  explicit Script(std::string_view t) : text(t), sha(sha1_hex(t)) {}
};

// The scripts compare the stored owner token with ours; that comparison and the change it
// guards must be one atomic step, or a lock that expires in between could be taken by another
// process and then extended or deleted by us.
// Wire version 3 (PROCESS_LOCK_WIRE_VERSION; 0.1.0 wrote 1, development builds of 0.2.0 up to
// commit f036ebe wrote 2, 0.2.0 writes 3): as version 2, plus
// notices for watchers (see watch_script_text): KEYS[3] may hold the placeholder 'watched' while
// the lock is open, which makes the next acquisition announce itself; version 2 overwrites it
// silently, so a watcher finds its acquisitions by polling.
// Version 2: the holder's details are one string,
// KEYS[3] = LockKeys::owner, "<token> <mark> <fence> <since_ms> <pid> <host>" (host last: it may
// hold spaces; "host\ninfo" with Options::holder_info, split by the inspect script), set with
// the lock's TTL by the SET that writes it. <mark> is '-', or 'w' once a
// waiter that listens for release notices found the lock held; only then does a release publish.
// The lock key, the fencing counter and the channel are as in version 1, so the two versions
// exclude each other and share the counter. Each command left is listed in the README.
// KEYS (lock, update, raise fence): 1 = the lock (value: owner token, as process-lock-node writes
// it), 2 = the fencing counter (never expires), 3 = the holder's details.
// ARGV: 1 = our token, 2 = timeout in ms (lock, update) or force flag (clear), then per script.

/// {1, fence} if the lock was free (now ours, fence counter incremented, holder recorded) or
/// already ours (TTL reset, same fence); {0, PTTL of the holder's lock} if held by another.
/// ARGV[3] = host, ARGV[4] = pid, ARGV[5] = '1' if the caller listens for release notices
/// (its failed attempt marks the holder's record, so that the release is announced).
/// SET NX first: on a free lock it both checks and takes it. The record's SET ... GET costs no
/// command more and tells whether a watcher left its placeholder: only then is the record marked
/// (so that its release is announced too) and the acquisition announced on
/// process_lock:acquired:<key>. A server without SET ... GET (before Redis 6.2) answers an error,
/// and the plain SET follows: no acquisition notices there.
/// (The channel is built here from KEYS[1], so the callers pass the same arguments as version 2.)
inline constexpr std::string_view lock_script_text = R"lua(
if redis.replicate_commands then redis.replicate_commands() end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local fence = redis.call('INCR', KEYS[2])
  local now = redis.call('TIME')
  local record = ARGV[1] .. ' - ' .. fence .. ' ' .. now[1] .. string.format('%03d', math.floor(now[2] / 1000)) ..
                 ' ' .. ARGV[4] .. ' ' .. ARGV[3]
  local old = redis.pcall('SET', KEYS[3], record, 'PX', ARGV[2], 'GET')
  if type(old) == 'table' and old.err then
    redis.call('SET', KEYS[3], record, 'PX', ARGV[2])
  elseif old == 'watched' then
    redis.call('SETRANGE', KEYS[3], #ARGV[1] + 1, 'w')
    redis.pcall('PUBLISH', 'process_lock:acquired:' .. KEYS[1], 'acquired ' .. fence)
  end
  return {1, fence}
end
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
  local owner = redis.call('GET', KEYS[3])
  return {1, tonumber(owner and string.match(owner, '^%S+ %S (%d+) ')) or 0}
end
if ARGV[5] == '1' and holder then
  local owner = redis.call('GET', KEYS[3])
  if owner and string.sub(owner, 1, #holder + 2) == holder .. ' -' then
    redis.call('SETRANGE', KEYS[3], #holder + 1, 'w')
  end
end
return {0, redis.call('PTTL', KEYS[1])}
)lua";

/// 1 if ours and renewed, 0 otherwise. Several masters only: with ARGV[3] = our fence, a
/// master that lost the lock (absent, e.g. restarted without data) gets it back: 2, holder
/// recorded with our fence and the counter raised to it if lower (ARGV[4] = host, ARGV[5] = pid).
inline constexpr std::string_view update_script_text = R"lua(
if redis.replicate_commands then redis.replicate_commands() end
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
  return 1
end
if holder == false and ARGV[3] then
  local now = redis.call('TIME')
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  if (tonumber(redis.call('GET', KEYS[2])) or 0) < tonumber(ARGV[3]) then redis.call('SET', KEYS[2], ARGV[3]) end
  redis.call('SET', KEYS[3], ARGV[1] .. ' - ' .. ARGV[3] .. ' ' .. now[1] .. string.format('%03d', math.floor(now[2] / 1000)) ..
             ' ' .. ARGV[5] .. ' ' .. ARGV[4], 'PX', ARGV[2])
  return 2
end
return 0
)lua";

/// KEYS: 1 = the lock, 2 = the holder's details, 3 = the watchers' lease. -1 if absent, 0 if held
/// by another owner and not forced (ARGV[2] == '1'), else 1: deleted, and if a waiter or a
/// watcher marked the holder's record (or the release is forced), a release notice published on
/// ARGV[3] so that waiters try again at once: 'forced' when it removed another owner's hold, else
/// 'released' (waiters of any version read no more than that a message came). While a watcher's
/// lease lasts, the record is replaced by its placeholder, so that the next acquisition is
/// announced as well. pcall: an ACL user without channel rights still releases; waiters then find
/// out by polling. MGET reads a hash as nil, so an absent lock is looked at again: GET answers
/// WRONGTYPE for a key of another type. replicate_commands: the SET after PTTL (a non-deterministic
/// read) is refused on Redis 5 and 6 under script replication (lua-replicate-commands no), and
/// would come after the DEL and PUBLISH had already run.
inline constexpr std::string_view clear_script_text = R"lua(
if redis.replicate_commands then redis.replicate_commands() end
local v = redis.call('MGET', KEYS[1], KEYS[2])
local holder = v[1]
if holder == false then
  redis.call('GET', KEYS[1])
  return -1
end
if holder == ARGV[1] or ARGV[2] == '1' then
  redis.call('DEL', KEYS[1], KEYS[2])
  if ARGV[2] == '1' or (v[2] and string.sub(v[2], 1, #holder + 2) == holder .. ' w') then
    redis.pcall('PUBLISH', ARGV[3], holder == ARGV[1] and 'released' or 'forced')
    local lease = redis.call('PTTL', KEYS[3])
    if lease > 0 then redis.call('SET', KEYS[2], 'watched', 'PX', lease) end
  end
  return 1
end
return 0
)lua";

/// Read-only: {holder token or nil, PTTL, fence counter or nil, {token, fence, host, pid, since_ms
/// [, info]}}: the record's last field is "host" or "host\ninfo" (Options::holder_info).
/// KEYS[4] = LockKeys::holder, the hash where a 0.1.0 holder keeps its details (no info).
inline constexpr std::string_view inspect_script_text = R"lua(
local holder = redis.call('GET', KEYS[1])
local owner = redis.call('GET', KEYS[3])
local info
if holder and owner then
  local token, fence, since, pid, host = string.match(owner, '^(%S+) %S (%d+) (%d+) (%d+) (.*)$')
  if token == holder then
    local name, extra = string.match(host, '^([^\n]*)\n(.*)$')
    info = {token, fence, name or host, pid, since, extra}
  end
end
if not info then info = redis.call('HMGET', KEYS[4], 'token', 'fence', 'host', 'pid', 'since_ms') end
return {holder, redis.call('PTTL', KEYS[1]), redis.call('GET', KEYS[2]), info}
)lua";

/// A watcher's read (see watch.hpp): the inspect script's answer, and the marks that make the
/// lock's changes announce themselves while the watchers' lease (KEYS[5]) lasts: each read
/// extends it to ARGV[1] ms but never shortens it (another watcher may poll more slowly and need
/// a longer one). The marks: the current holder's record marked 'w' (its release is announced,
/// as for a waiter), or, where there is no record (open, or a holder that records nothing: a
/// process-lock-node or 0.1.0 one), the placeholder 'watched' with the lease's TTL, which the
/// next acquisition finds (see lock_script_text). Once the lease has run out, a hold marked
/// while it lasted still announces its release (PUBLISH, PTTL: see the README's "Watching");
/// later holds cost what they cost unwatched. KEYS: 1 lock, 2 fence, 3 owner, 4 0.1.0 holder
/// hash, 5 lease.
inline constexpr std::string_view watch_script_text = R"lua(
if redis.replicate_commands then redis.replicate_commands() end
local lease = redis.call('PTTL', KEYS[5])
if lease < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[5], '1', 'PX', ARGV[1])
  lease = tonumber(ARGV[1])
end
local holder = redis.call('GET', KEYS[1])
local owner = redis.call('GET', KEYS[3])
local info
if holder and owner then
  local token, mark, fence, since, pid, host = string.match(owner, '^(%S+) (%S) (%d+) (%d+) (%d+) (.*)$')
  if token == holder then
    if mark == '-' then redis.call('SETRANGE', KEYS[3], #holder + 1, 'w') end
    local name, extra = string.match(host, '^([^\n]*)\n(.*)$')
    info = {token, fence, name or host, pid, since, extra}
  end
end
if not info and (not holder or not owner or owner == 'watched') then
  redis.call('SET', KEYS[3], 'watched', 'PX', lease)
end
if not info then info = redis.call('HMGET', KEYS[4], 'token', 'fence', 'host', 'pid', 'since_ms') end
return {holder, redis.call('PTTL', KEYS[1]), redis.call('GET', KEYS[2]), info}
)lua";

inline const Script& watch_script() {
  static const Script s(watch_script_text);
  return s;
}

inline const Script& lock_script() {
  static const Script s(lock_script_text);
  return s;
}
inline const Script& update_script() {
  static const Script s(update_script_text);
  return s;
}
inline const Script& clear_script() {
  static const Script s(clear_script_text);
  return s;
}
inline const Script& inspect_script() {
  static const Script s(inspect_script_text);
  return s;
}

/// Several masters: where the lock is ours (ARGV[1]), raises the fencing counter to ARGV[2], the
/// token the majority gave, if it is lower, and records that token as the holder's; 1 if ours
/// here, else 0. Without it, a master that missed earlier acquisitions keeps a low counter, and
/// a later majority made of such masters could hand out a token that is not the highest.
inline constexpr std::string_view raise_fence_script_text = R"lua(
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if (tonumber(redis.call('GET', KEYS[2])) or 0) < tonumber(ARGV[2]) then redis.call('SET', KEYS[2], ARGV[2]) end
local owner = redis.call('GET', KEYS[3])
local head, rest = string.match(owner or '', '^(%S+ %S) %d+ (.*)$')
if head then
  redis.call('SET', KEYS[3], head .. ' ' .. ARGV[2] .. ' ' .. rest, 'PX', math.max(redis.call('PTTL', KEYS[3]), 1))
end
return 1
)lua";

inline const Script& raise_fence_script() {
  static const Script s(raise_fence_script_text);
  return s;
}

}  // namespace detail
}  // namespace process_lock

#endif  // PROCESS_LOCK_SCRIPTS_HPP_
