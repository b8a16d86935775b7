// process-lock: the caps on what a server may send (size, elements), checked before hiredis
// parses it.
// SPDX-License-Identifier: Apache-2.0
// One part of <process_lock.hpp>, which includes its parts in order; include that, not this.
#ifndef PROCESS_LOCK_HPP_
#error "include <process_lock.hpp>; process_lock/reply_bounds.hpp is one of its parts"
#endif
#ifndef PROCESS_LOCK_REPLY_BOUNDS_HPP_
#define PROCESS_LOCK_REPLY_BOUNDS_HPP_

namespace process_lock {
namespace detail {

/// The most one reply may take: no reply this library expects is larger than a few KiB, so
/// these only stop a broken or hostile server from holding a call's memory without bound.
inline constexpr std::size_t max_reply_bytes = std::size_t(4) << 20;  // 4 MiB
inline constexpr long long max_reply_elements = 65536;                // over all nested arrays

/// Follows the byte stream a server sends just far enough to bound each reply, before the bytes
/// reach hiredis's reader: a reply's total size and its array elements (hiredis 0.14 allocates
/// an array's element table from its header, `*2147483647` included, and neither version
/// bounds a reply's size). It checks framing only; hiredis still parses the contents.
class ReplyBounds {
 public:
  /// The library uses the defaults; other limits are for tests.
  explicit ReplyBounds(std::size_t max_bytes = max_reply_bytes, long long max_elements = max_reply_elements) noexcept
      : max_bytes_(max_bytes), max_elements_(max_elements) {}

  /// Checks the next bytes of the stream (any split: a reply may span calls, a call may hold
  /// several replies). Returns what is wrong, as the end of a sentence whose subject is the
  /// server ("sent a reply over ...", "does not speak ..."), or an empty string. After a fault,
  /// every later call repeats it: the connection is to be dropped.
  [[nodiscard]] std::string check(std::string_view bytes) {
    while (fault_.empty() && !bytes.empty()) {
      const std::size_t used = step(bytes);
      bytes.remove_prefix(used);
      reply_bytes_ += used;
      if (fault_.empty() && reply_bytes_ > max_bytes_) fault_ = size_fault();
      if (reply_ended_) reply_bytes_ = 0;
      reply_ended_ = false;
    }
    return fault_;
  }

 private:
  enum class Phase { type, line, number, bulk };

  // Consumes a prefix of `bytes` (at least one byte) and returns its length.
  std::size_t step(std::string_view bytes) {
    switch (phase_) {
      case Phase::type:
        return read_type(bytes.front());
      case Phase::line: {  // a simple string, error or integer: up to "\r\n", as hiredis reads it
        for (std::size_t i = 0; i < bytes.size(); ++i) {
          if (bytes[i] == '\n' && after_cr_) {
            value_done();
            return i + 1;
          }
          after_cr_ = bytes[i] == '\r';
        }
        return bytes.size();
      }
      case Phase::number:
        return read_number(bytes.front());
      case Phase::bulk: {
        const std::size_t take = static_cast<std::size_t>(std::min<long long>(bulk_left_, static_cast<long long>(bytes.size())));
        bulk_left_ -= static_cast<long long>(take);
        if (bulk_left_ == 0) value_done();
        return take;
      }
    }
    return bytes.size();
  }

  std::size_t read_type(char c) {
    switch (c) {
      case '+':
      case '-':
      case ':':
        phase_ = Phase::line;
        after_cr_ = false;
        break;
      case '$':
      case '*':
        phase_ = Phase::number;
        header_ = c;
        number_ = 0;
        digits_ = 0;
        negative_ = false;
        after_cr_ = false;
        break;
      default:
        // The byte is not shown: a peer that echoes what it was sent would show a password's.
        fault_ = not_redis("a reply or element whose type byte is none of + - : $ *");
    }
    return 1;
  }

  // The length in a `$` or `*` header: -1 (nil) or 0 and more, ended by "\r\n". Stricter than
  // hiredis 0.14 (which reads "+3" as 3 and "1x" as nil), so that the two never disagree on
  // where a value ends: what this rejects, the connection drops.
  std::size_t read_number(char c) {
    const long long limit = header_ == '*' ? max_elements_ : static_cast<long long>(max_bytes_);
    if (after_cr_) {
      if (c == '\n')
        header_done();
      else
        fault_ = not_redis("a malformed length");
    } else if (c >= '0' && c <= '9') {
      number_ = number_ * 10 + (c - '0');
      ++digits_;
      if (!negative_ && number_ > limit) fault_ = header_ == '*' ? elements_fault() : size_fault();
      // Only -1 (nil): hiredis 0.14 reads "-0" as an empty string, which would put the two out of step.
      if (negative_ && (number_ != 1 || digits_ > 1)) fault_ = not_redis("a negative length other than -1");
    } else if (c == '-' && digits_ == 0 && !negative_) {
      negative_ = true;
    } else if (c == '\r' && digits_ > 0) {
      after_cr_ = true;
    } else {
      fault_ = not_redis("a malformed length");
    }
    return 1;
  }

  void header_done() {
    phase_ = Phase::type;
    if (negative_ || number_ == 0) {  // nil, or empty
      if (header_ == '$' && !negative_) {
        phase_ = Phase::bulk;
        bulk_left_ = 2;  // "\r\n"
        return;
      }
      value_done();
      return;
    }
    if (header_ == '$') {
      if (reply_bytes_ + static_cast<std::size_t>(number_) > max_bytes_) {  // known now: fail before it comes
        fault_ = size_fault();
        return;
      }
      phase_ = Phase::bulk;
      bulk_left_ = number_ + 2;
      return;
    }
    elements_ += number_;
    if (elements_ > max_elements_) {
      fault_ = elements_fault();
      return;
    }
    pending_ += number_ - 1;  // the array itself is one value; its elements are owed now
  }

  void value_done() {
    phase_ = Phase::type;
    if (--pending_ > 0) return;
    pending_ = 1;  // the next reply
    elements_ = 0;
    reply_ended_ = true;
  }

  std::string size_fault() const { return "sent a reply over the limit of " + std::to_string(max_bytes_) + " bytes"; }
  std::string elements_fault() const {
    return "sent a reply over the limit of " + std::to_string(max_elements_) + " array elements";
  }
  static std::string not_redis(const std::string& what) {
    return "does not speak the Redis protocol (" + what + ")";
  }

  std::size_t max_bytes_;
  long long max_elements_;
  Phase phase_ = Phase::type;
  char header_ = 0;         // '$' or '*' while reading its length
  long long number_ = 0;    // the length read so far
  int digits_ = 0;
  bool negative_ = false;
  bool after_cr_ = false;    // in a line or length: the last byte was '\r'
  long long bulk_left_ = 0;  // bytes of a bulk string still to come, "\r\n" included
  long long pending_ = 1;    // values still owed to complete the current reply
  long long elements_ = 0;   // array elements announced in the current reply
  std::size_t reply_bytes_ = 0;  // bytes of the current reply so far
  bool reply_ended_ = false;     // the last step ended a reply
  std::string fault_;
};

}  // namespace detail
}  // namespace process_lock

#endif  // PROCESS_LOCK_REPLY_BOUNDS_HPP_
