// The limits on what a server may send (detail::ReplyBounds), checked on byte streams with no
// server: which streams pass, which are stopped, and that a stream's split into reads never
// changes the verdict. The fuzzer tests/fuzz/fuzz_reply feeds the same class what it makes up.
#include <gtest/gtest.h>

#include <process_lock.hpp>
#include <string>
#include <initializer_list>
#include <string_view>
#include <vector>

namespace {

using process_lock::detail::max_reply_bytes;
using process_lock::detail::max_reply_elements;
using process_lock::detail::ReplyBounds;

// Pieces joined by appending: GCC 12 warns falsely (-Wrestrict) about "literal" + string at -O3.
std::string cat(std::initializer_list<std::string_view> pieces) {
  std::string s;
  for (const std::string_view piece : pieces) s.append(piece);
  return s;
}
std::string bulk(std::size_t size) { return cat({"$", std::to_string(size), "\r\n", std::string(size, 'x'), "\r\n"}); }
std::string integers(long long count) {
  std::string s = cat({"*", std::to_string(count), "\r\n"});
  for (long long i = 0; i < count; ++i) s += ":1\r\n";
  return s;
}

// The verdict on `stream` fed in one piece, and the same fed in pieces of `piece` bytes.
std::string verdict(std::string_view stream, std::size_t piece = 0) {
  ReplyBounds bounds;
  if (piece == 0) return bounds.check(stream);
  std::string fault;
  for (std::size_t at = 0; at < stream.size() && fault.empty(); at += piece) fault = bounds.check(stream.substr(at, piece));
  return fault;
}

struct Case {
  const char* what;
  std::string stream;
  std::string fault;  // a part of the expected fault; empty when the stream must pass
};

std::vector<Case> cases() {
  const std::string size_limit = cat({"sent a reply over the limit of ", std::to_string(max_reply_bytes), " bytes"});
  const std::string element_limit =
      cat({"sent a reply over the limit of ", std::to_string(max_reply_elements), " array elements"});
  // A bulk string whose reply is exactly the size limit, and one a byte longer.
  const std::size_t header = 1 + std::to_string(max_reply_bytes).size() + 2;  // "$N\r\n"
  const std::size_t fits = max_reply_bytes - header - 2;
  return {
      {"a lock reply", "*2\r\n:1\r\n:42\r\n", ""},
      {"status, error, integer", "+OK\r\n-ERR no\r\n:7\r\n", ""},
      {"nil and empty values", "$-1\r\n*-1\r\n$0\r\n\r\n*0\r\n", ""},
      {"nested arrays", "*2\r\n*2\r\n$1\r\na\r\n:1\r\n*0\r\n", ""},
      {"a subscribe confirmation and a message", "*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"
                                                 "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\n1\r\n", ""},
      {"a bulk string exactly at the size limit", bulk(fits), ""},
      {"a bulk string a byte over it", bulk(fits + 1), size_limit},
      {"a bulk string announced at 1 GiB", "$1073741824\r\n", size_limit},
      {"a bulk length with endless digits", cat({"$", std::string(40, '9')}), size_limit},
      {"a simple string without end", cat({"+", std::string(max_reply_bytes, 'a')}), size_limit},
      {"many small values in one reply", integers(max_reply_elements), ""},
      {"an array announced at 2^31-1 elements", "*2147483647\r\n", element_limit},
      {"an array a element over the limit", cat({"*", std::to_string(max_reply_elements + 1), "\r\n"}), element_limit},
      {"nested arrays over the limit together", cat({"*2\r\n", integers(40000), "*30000\r\n"}), element_limit},
      {"the element count is per reply", integers(60000) + integers(60000), ""},
      {"the size is per reply", bulk(fits) + bulk(fits), ""},
      {"not the Redis protocol", "HTTP/1.1 400 Bad Request\r\n", "does not speak the Redis protocol"},
      {"a negative length other than -1", "$-2\r\n", "does not speak the Redis protocol"},
      {"a bulk length of -0 (hiredis 0.14 reads an empty string)", "$-0\r\n\r\n", "does not speak the Redis protocol"},
      {"an array length of -0", "*-0\r\n", "does not speak the Redis protocol"},
      {"a nil length with a leading zero", "$-01\r\n", "does not speak the Redis protocol"},
      {"a length with no digits", "*\r\n", "does not speak the Redis protocol"},
      {"a length with a letter", "$1x\r\n", "does not speak the Redis protocol"},
      {"a length with a sign", "*+3\r\n", "does not speak the Redis protocol"},
      {"a length with a carriage return inside", "$1\r2\r\n", "does not speak the Redis protocol"},
      // hiredis ends a line at "\r\n" only; a lone '\n' is part of the line, and the bulk length
      // that follows it here is part of the error text: the 1 GiB never comes into play.
      {"a line with a lone newline", "-ERR a\n$1073741824\r\n+OK\r\n", ""},
  };
}

TEST(ReplyBoundsTest, StreamsThatPassAndStreamsThatAreStopped) {
  for (const Case& c : cases()) {
    for (std::size_t piece : {std::size_t(0), std::size_t(1), std::size_t(3), std::size_t(4096)}) {
      if (piece == 1 && c.stream.size() > 100000) continue;  // byte by byte is covered by the short ones
      const std::string fault = verdict(c.stream, piece);
      if (c.fault.empty())
        EXPECT_EQ(fault, "") << c.what << ", in pieces of " << piece;
      else
        EXPECT_NE(fault.find(c.fault), std::string::npos) << c.what << ", in pieces of " << piece << ": " << fault;
    }
  }
}

TEST(ReplyBoundsTest, AFaultIsFoundBeforeTheBytesThatWouldCostMemory) {
  // The header alone is enough: nothing of the 1 GiB or of the 2^31 elements needs to come.
  ReplyBounds big_bulk;
  EXPECT_NE(big_bulk.check("$1073741824\r"), "");
  ReplyBounds big_array;
  EXPECT_NE(big_array.check("*2147483647"), "");
}

TEST(ReplyBoundsTest, AFaultStays) {
  ReplyBounds bounds;
  const std::string fault = bounds.check("*99999999\r\n");
  ASSERT_NE(fault, "");
  EXPECT_EQ(bounds.check("+OK\r\n"), fault) << "a stream out of step cannot be trusted again";
}

}  // namespace
