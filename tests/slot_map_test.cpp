// How a Redis Cluster slot map (the reply to CLUSTER SLOTS) becomes the route of one lock: the
// owner of its slot and the nodes to ask after a failure. No server: the bytes go through
// hiredis's reader as if a node had sent them. Real clusters are in cluster_test.cpp.
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "support.hpp"

namespace {

using process_lock::errc;
using process_lock::detail::Address;
using process_lock::detail::read_slot_map;
using process_lock::detail::ReplyPtr;

ReplyPtr resp(const std::string& bytes) {
  const std::unique_ptr<redisReader, void (*)(redisReader*)> reader(redisReaderCreate(), redisReaderFree);
  void* reply = nullptr;
  if (redisReaderFeed(reader.get(), bytes.data(), bytes.size()) != REDIS_OK ||
      redisReaderGetReply(reader.get(), &reply) != REDIS_OK || reply == nullptr)
    throw std::runtime_error("not one complete RESP reply");
  return ReplyPtr(static_cast<redisReply*>(reply));
}

std::string bulk(std::string_view s) {
  std::string out = "$";
  out += std::to_string(s.size());
  out += "\r\n";
  out += s;
  out += "\r\n";
  return out;
}
std::string integer(long long n) {
  std::string out = ":";
  out += std::to_string(n);
  out += "\r\n";
  return out;
}
std::string array(const std::vector<std::string>& items) {
  std::string out = "*";
  out += std::to_string(items.size());
  out += "\r\n";
  for (const auto& item : items) out += item;
  return out;
}
// A node as Redis 7 describes it: host, port, id, metadata.
std::string node(std::string_view host, long long port) {
  return array({bulk(host), integer(port), bulk("0123456789abcdef0123456789abcdef01234567"), array({})});
}
std::string range(long long start, long long end, const std::vector<std::string>& nodes) {
  std::vector<std::string> items = {integer(start), integer(end)};
  items.insert(items.end(), nodes.begin(), nodes.end());
  return array(items);
}

// Three masters, the second with two replicas.
const std::string three_masters = array({
    range(0, 5460, {node("10.0.0.1", 7000), node("10.0.0.4", 7003)}),
    range(5461, 10922, {node("10.0.0.2", 7001), node("10.0.0.5", 7004), node("10.0.0.6", 7005)}),
    range(10923, 16383, {node("10.0.0.3", 7002)}),
});

struct Routed {
  const char* what;
  std::string map;
  int slot;
  std::optional<Address> owner;
  std::vector<Address> nodes;  // in the order returned
};

class SlotMapTest : public ::testing::TestWithParam<Routed> {};

TEST_P(SlotMapTest, FindsTheOwnerAndEveryNode) {
  const Routed& c = GetParam();
  const auto route = read_slot_map(*resp(c.map), c.slot, "10.9.9.9");
  EXPECT_EQ(route.owner, c.owner);
  EXPECT_EQ(route.nodes, c.nodes);
}

const Address a1{"10.0.0.1", 7000}, a2{"10.0.0.2", 7001}, a3{"10.0.0.3", 7002}, r4{"10.0.0.4", 7003},
    r5{"10.0.0.5", 7004}, r6{"10.0.0.6", 7005};

INSTANTIATE_TEST_SUITE_P(
    Shapes, SlotMapTest,
    ::testing::Values(
        Routed{"first slot", three_masters, 0, a1, {a1, r4, a2, r5, r6, a3}},
        Routed{"range end", three_masters, 5460, a1, {a1, r4, a2, r5, r6, a3}},
        Routed{"range start", three_masters, 5461, a2, {a2, a1, r4, r5, r6, a3}},
        Routed{"last slot", three_masters, 16383, a3, {a3, a1, r4, a2, r5, r6}},
        Routed{"unassigned slot", array({range(0, 99, {node("10.0.0.1", 7000)})}), 100, std::nullopt, {a1}},
        Routed{"empty map (a cluster with no slots assigned)", array({}), 7, std::nullopt, {}},
        // Redis 3-6: host and port only; an empty host is the node that answered.
        Routed{"old two-field nodes, empty host", array({range(0, 16383, {array({bulk(""), integer(7000)})})}), 9,
               Address{"10.9.9.9", 7000}, {Address{"10.9.9.9", 7000}}},
        Routed{"nil host", array({range(0, 16383, {array({"$-1\r\n", integer(7000)})})}), 9, Address{"10.9.9.9", 7000},
               {Address{"10.9.9.9", 7000}}},
        // "?": an endpoint the cluster does not know; such a node cannot be reached.
        Routed{"unknown endpoint", array({range(0, 16383, {node("?", 7000), node("10.0.0.4", 7003)})}), 9, std::nullopt,
               {r4}},
        Routed{"a node serving two ranges is listed once",
               array({range(0, 10, {node("10.0.0.1", 7000)}), range(11, 20, {node("10.0.0.1", 7000)})}), 15, a1, {a1}},
        Routed{"host names and IPv6 addresses",
               array({range(0, 16383, {node("redis-0.cluster.local", 6379), node("::1", 6380)})}), 1,
               Address{"redis-0.cluster.local", 6379}, {Address{"redis-0.cluster.local", 6379}, Address{"::1", 6380}}}),
    [](const ::testing::TestParamInfo<Routed>& info) { return "case" + std::to_string(info.index); });

struct Malformed {
  std::string map;
  const char* says;
};

class MalformedSlotMapTest : public ::testing::TestWithParam<Malformed> {};

TEST_P(MalformedSlotMapTest, IsAProtocolErrorNamingTheProblem) {
  const Malformed& c = GetParam();
  const auto e = test::failure_of([&] { (void)read_slot_map(*resp(c.map), 100, "10.9.9.9"); });
  EXPECT_EQ(e.code(), errc::protocol_error);
  EXPECT_TRUE(test::contains(e.what(), "malformed CLUSTER SLOTS reply")) << e.what();
  EXPECT_TRUE(test::contains(e.what(), c.says)) << e.what();
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, MalformedSlotMapTest,
    ::testing::Values(
        Malformed{integer(3), "not an array"}, Malformed{bulk("slots"), "not an array"},
        Malformed{array({integer(0)}), "range 1 is not an array"},
        Malformed{array({array({integer(0), integer(16383)})}), "range 1 is not an array {start, end, master"},
        Malformed{array({range(0, 16383, {node("a", 1)}), bulk("x")}), "range 2 is not an array"},
        Malformed{array({array({bulk("0"), integer(16383), node("a", 1)})}), "range 1 does not span"},
        Malformed{array({range(-1, 16383, {node("a", 1)})}), "does not span slots within 0..16383"},
        Malformed{array({range(0, 16384, {node("a", 1)})}), "does not span"},
        Malformed{array({range(200, 100, {node("a", 1)})}), "does not span"},
        Malformed{array({range(0, 200, {node("a", 1)}), range(100, 300, {node("b", 1)})}), "slot 100 is in two ranges"},
        Malformed{array({range(0, 16383, {bulk("a")})}), "range 1's master is not an array"},
        Malformed{array({range(0, 16383, {array({bulk("a")})})}), "range 1's master is not an array"},
        Malformed{array({range(0, 16383, {array({integer(1), integer(7000)})})}), "master's host is not a string"},
        Malformed{array({range(0, 16383, {array({bulk("a"), bulk("7000")})})}), "port is not a number"},
        Malformed{array({range(0, 16383, {node("a", 0)})}), "port is not a number from 1 to 65535"},
        Malformed{array({range(0, 16383, {node("a", 1), node("b", 65536)})}), "range 1's replica 1's port"},
        Malformed{array({range(0, 16383, {node("a b", 1)})}), "characters a host name cannot have"},
        Malformed{array({range(0, 16383, {node(std::string("a\0b", 3), 1)})}), "characters a host name cannot have"},
        Malformed{array({range(0, 16383, {node("[::1]", 1)})}), "characters a host name cannot have"},
        Malformed{array({range(0, 16383, {node(std::string(256, 'h'), 1)})}), "empty or too long"}),
    [](const ::testing::TestParamInfo<Malformed>& info) { return "case" + std::to_string(info.index); });

// A range elsewhere that is malformed spoils the whole map: a node that sends it is not trusted
// for our slot either.
TEST(SlotMapShapeTest, AMalformedRangeAnywhereRejectsTheMap) {
  const std::string map = array({range(0, 100, {node("10.0.0.1", 7000)}), range(101, 16383, {node("x", 0)})});
  EXPECT_EQ(test::failure_of([&] { (void)read_slot_map(*resp(map), 5, "h"); }).code(), errc::protocol_error);
}

// What an error reply asks of a call (detail::reroute_of): the decision of Master::routed(),
// table-tested without a server.
TEST(RerouteTest, EachErrorReplyAsksForItsOwnStep) {
  using process_lock::detail::Reroute;
  using process_lock::detail::reroute_of;
  struct Row {
    std::string_view text;
    bool behind_sentinels;
    Reroute::Kind kind;
    Address to;
  };
  const Row rows[] = {
      {"MOVED 3999 127.0.0.1:6381", false, Reroute::moved, {"127.0.0.1", 6381}},
      {"ASK 3999 127.0.0.1:6381", false, Reroute::ask, {"127.0.0.1", 6381}},
      {"MOVED 3999 [::1]:7000", false, Reroute::moved, {"::1", 7000}},
      {"MOVED 3999 :7000", false, Reroute::moved, {"", 7000}},  // the host of the node that answered
      {"MOVED 16384 127.0.0.1:6381", false, Reroute::none, {}},  // no such slot
      {"MOVED 3999 127.0.0.1:0", false, Reroute::none, {}},      // no such port
      {"MOVED 3999 ?:6381", false, Reroute::none, {}},           // an unknown endpoint
      {"TRYAGAIN Multiple keys request during rehashing of slot", false, Reroute::try_again, {}},
      {"READONLY You can't write against a read only replica.", true, Reroute::master_moved, {}},
      {"ERR Error running script (call to f_0a): @user_script:1: @user_script: 1: -READONLY You can't write "
       "against a read only replica.",
       true, Reroute::master_moved, {}},  // Redis 6.0's wrapped form
      {"ERR a script quoted READONLY in its own words", true, Reroute::none, {}},
      {"READONLY You can't write against a read only replica.", false, Reroute::none, {}},  // no sentinels
      {"ERR unknown command", true, Reroute::none, {}},
      {"CLUSTERDOWN The cluster is down", false, Reroute::none, {}},
      {"NOSCRIPT No matching script", false, Reroute::none, {}},  // the script's own fallback, not a reroute
      {"", false, Reroute::none, {}},
  };
  for (const Row& row : rows) {
    const Reroute got = reroute_of(row.text, row.behind_sentinels);
    EXPECT_EQ(got.kind, row.kind) << row.text;
    EXPECT_EQ(got.to, row.to) << row.text;
  }
}

}  // namespace
