// process-lock: the quorum's decisions as pure functions (majority, when a round is settled,
// verdicts, which masters to raise or give back).
// SPDX-License-Identifier: Apache-2.0
// One part of <process_lock.hpp>, which includes its parts in order; include that, not this.
#ifndef PROCESS_LOCK_HPP_
#error "include <process_lock.hpp>; process_lock/tally.hpp is one of its parts"
#endif
#ifndef PROCESS_LOCK_TALLY_HPP_
#define PROCESS_LOCK_TALLY_HPP_

namespace process_lock {
namespace detail {

/// The quorum's decisions read only the masters' answers (detail::Votes), so each rule is a
/// pure function with table tests (tests/quorum_tally_test.cpp).
namespace tally {

inline std::size_t majority(std::size_t masters) noexcept { return masters / 2 + 1; }

/// How the masters answered a yes-or-no question (granted / renewed).
struct Count {
  std::size_t yes = 0, no = 0, failed = 0;
};
template <class T, class Yes>
Count count(const Votes<T>& votes, Yes&& is_yes) {
  Count c;
  for (const auto& vote : votes) ++(!vote.first ? c.failed : is_yes(*vote.first) ? c.yes : c.no);
  return c;
}

/// agreed: a majority said yes in time. refused: the answer is no whatever the failed masters
/// would have said (every master answered, or so many said no that no majority was possible).
/// no_quorum: too many failed to tell.
enum class Outcome { agreed, refused, no_quorum };
inline Outcome decide(std::size_t masters, Count c, bool in_time) noexcept {
  if (c.yes >= majority(masters) && in_time) return Outcome::agreed;
  if (c.failed == 0 || c.no > masters - majority(masters)) return Outcome::refused;
  return Outcome::no_quorum;
}

/// Whether an acquire's round can stop waiting for the `outstanding` masters (counted in
/// `c.failed`, having no answer yet): decide() gives agreed, or refused, however they still
/// answer (yes, no, or not at all). A round bound for no_quorum waits for every master (within
/// its time), so that the error can name each one's fate.
inline bool acquire_decided(std::size_t masters, Count c, std::size_t outstanding) noexcept {
  if (outstanding == 0) return true;
  if (outstanding > c.failed) return false;  // not a count a round can give
  const std::size_t failed = c.failed - outstanding;
  const Outcome now = decide(masters, c, true);
  if (now == Outcome::no_quorum) return false;
  for (std::size_t yes = 0; yes <= outstanding; ++yes)
    for (std::size_t no = 0; yes + no <= outstanding; ++no)
      if (decide(masters, {c.yes + yes, c.no + no, failed + outstanding - yes - no}, true) != now) return false;
  return true;
}

/// The fencing token a granted majority hands out: the highest counter among the masters that
/// granted. Every master of the majority must count at least that far, so that any later
/// majority, which shares a master with this one, hands out a higher one.
inline std::uint64_t fence_to_hand_out(const Votes<LockReply>& votes) noexcept {
  std::uint64_t fence = 0;
  for (const auto& vote : votes)
    if (vote.first && vote.first->acquired) fence = std::max(fence, vote.first->fence);
  return fence;
}

/// The masters that granted but count below `fence`: they are raised to it.
inline std::vector<std::size_t> masters_to_raise(const Votes<LockReply>& votes, std::uint64_t fence) {
  std::vector<std::size_t> raise;
  for (std::size_t i = 0; i < votes.size(); ++i)
    if (votes[i].first && votes[i].first->acquired && votes[i].first->fence < fence) raise.push_back(i);
  return raise;
}

/// After an acquire that did not succeed: what may be ours is given back at once, not at
/// expiry: the masters that granted, and those whose answer was lost (the release checks the
/// token, so it is harmless where the lock is not ours).
inline std::vector<std::size_t> masters_to_release(const Votes<LockReply>& votes) {
  std::vector<std::size_t> release;
  for (std::size_t i = 0; i < votes.size(); ++i)
    if (!votes[i].first || votes[i].first->acquired) release.push_back(i);
  return release;
}

/// The shortest remaining TTL among the masters that refused (a waiter's hint), or -1.
inline long long shortest_holder_pttl(const Votes<LockReply>& votes) noexcept {
  long long pttl = -1;
  for (const auto& vote : votes)
    if (vote.first && !vote.first->acquired && vote.first->holder_pttl > 0 && (pttl < 0 || vote.first->holder_pttl < pttl))
      pttl = vote.first->holder_pttl;
  return pttl;
}

/// Renewals answer 1 (renewed), 2 (re-acquired) or 0 (not ours). A master that lost the lock
/// (restarted without its data) gets it back, but only while our hold is `valid` and a majority
/// still renewed it: then nobody else can have held a majority meanwhile. (A lock force-cleared
/// everywhere is not brought back: it is lost.)
inline std::vector<std::size_t> masters_to_reacquire(const Votes<long long>& votes, bool valid) {
  std::vector<std::size_t> reacquire;
  if (!valid || count(votes, [](long long r) { return r != 0; }).yes < majority(votes.size())) return reacquire;
  for (std::size_t i = 0; i < votes.size(); ++i)
    if (votes[i].first && *votes[i].first == 0) reacquire.push_back(i);
  return reacquire;
}

/// clear() over several masters, whose answers are 1 (deleted), 0 (another owner's, kept) or
/// -1 (absent): ours if a majority held our token; else any master another owner holds makes
/// it theirs; else ours if any master held it; else not locked. `quorum` is false when fewer
/// than a majority answered.
struct ClearVerdict {
  bool quorum = false;
  std::optional<bool> cleared;
};
/// clear() stops waiting (the releases still under way finish on their own) once clear_verdict()
/// cannot change however the `outstanding` masters answer: a majority released our token (the
/// usual case), or another owner's lock was found and too few can still release ours.
// What the masters answered to a release so far: how many, how many deleted our token, and
// whether any holds another owner's.
struct ClearCounts {
  std::size_t answered = 0, deleted = 0;
  bool any_other = false;
};
inline ClearCounts clear_counts(const Votes<long long>& votes) noexcept {
  ClearCounts c;
  for (const auto& vote : votes) {
    if (!vote.first) continue;
    ++c.answered;
    c.deleted += *vote.first == 1;
    c.any_other |= *vote.first == 0;
  }
  return c;
}

inline bool clear_decided(const Votes<long long>& votes, std::size_t outstanding) noexcept {
  if (outstanding == 0) return true;
  const auto [answered, deleted, any_other] = clear_counts(votes);
  const std::size_t needed = majority(votes.size());
  if (deleted >= needed) return true;
  return answered >= needed && any_other && deleted + outstanding < needed;
}

inline ClearVerdict clear_verdict(const Votes<long long>& votes) noexcept {
  const auto [answered, deleted, any_other] = clear_counts(votes);
  if (answered < majority(votes.size())) return {};
  if (deleted >= majority(votes.size())) return {true, true};
  if (any_other) return {true, false};
  if (deleted > 0) return {true, true};
  return {true, std::nullopt};
}

/// state() over several masters (each answers whether it holds the key): locked if any master
/// holds it (a lock on a minority still keeps others from a majority); open only when a
/// majority answered and none holds it; nullopt: no quorum.
/// state() is certain once any master holds the lock; "open" needs every answer there is.
inline bool state_settled(const Votes<bool>& votes, std::size_t outstanding) noexcept {
  if (outstanding == 0) return true;
  for (const auto& vote : votes)
    if (vote.first && *vote.first) return true;
  return false;
}

inline std::optional<State> state_verdict(const Votes<bool>& votes) noexcept {
  std::size_t answered = 0;
  for (const auto& vote : votes) {
    if (vote.first && *vote.first) return State::locked;
    answered += vote.first.has_value();
  }
  if (answered >= majority(votes.size())) return State::open;
  return std::nullopt;
}

/// inspect() over several masters: locked if any holds it; ours if a majority holds our token;
/// the holder and TTL as a master records them (ours if we hold a majority, else another's);
/// the highest counter. nullopt: no quorum (fewer than a majority answered and none holds it).
inline std::optional<Inspection> merge_inspections(const Votes<Inspection>& votes) {
  std::size_t answered = 0, ours = 0;
  std::uint64_t counter = 0;
  for (const auto& vote : votes) {
    if (!vote.first) continue;
    ++answered;
    ours += vote.first->ours;
    counter = std::max(counter, vote.first->fence_counter);
  }
  const bool prefer_ours = ours >= majority(votes.size());
  const Inspection* shown = nullptr;
  for (const auto& vote : votes)
    if (vote.first && vote.first->state == State::locked && (!shown || shown->ours != prefer_ours)) shown = &*vote.first;
  if (answered < majority(votes.size()) && !shown) return std::nullopt;
  Inspection result = shown ? *shown : Inspection{};
  result.ours = prefer_ours;
  result.fence_counter = counter;
  return result;
}

}  // namespace tally

}  // namespace detail
}  // namespace process_lock

#endif  // PROCESS_LOCK_TALLY_HPP_
