// TLS benchmark: lock() + clear() over rediss:// against the minimal correct lock sent by a raw
// TLS client, and the same pair over plain TCP, all against one redis-server (its TLS and its
// plain port) that this program starts with certificates it makes.
//
//   tls_bench [--rounds N] [--cycles C] [--tsv FILE]
//
// Sides, each C acquire+release cycles per round on a lock of its own, in turn (each goes first
// in turn, so drift hits all alike):
//   lib-tls  ProcessLock over rediss:// (the library's own TLS over OpenSSL)
//   min-tls  the minimal lock (SET key token NX PX ttl, then EVALSHA of an owner-checked
//            compare-and-delete) on a raw client: a blocking socket, OpenSSL's SSL_write and
//            SSL_read, hiredis's reader. hiredis_ssl, which does the same, needs hiredis 1.x and
//            cannot be linked beside the 0.14 the library is built with here.
//   lib-tcp  ProcessLock over redis://
//   min-tcp  the minimal lock on raw hiredis over TCP
// Ratios are medians over rounds of (rate of one side / rate of the other in the same round).
#include <gtest/gtest.h>  // test::failure_of in support.hpp

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <cstdio>
#include <cstring>
#include <memory>

#include "../tls_certs.hpp"
#include "bench_common.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr const char* compare_and_delete_text =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// A minimal client: sends a command, reads its reply. Over TLS (OpenSSL directly, on a
/// blocking socket) or plain TCP (hiredis's own I/O).
class RawClient {
 public:
  RawClient(int port, const std::string& ca_file) : tls_(!ca_file.empty()), reader_(redisReaderCreate()) {
    if (!tls_) {
      ctx_ = redisConnect("127.0.0.1", port);
      if (!ctx_ || ctx_->err) throw std::runtime_error("raw TCP connection failed");
      return;
    }
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw std::runtime_error("connect failed");
    const int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // as hiredis sets it
    ssl_ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ssl_ctx_, SSL_VERIFY_PEER, nullptr);
    if (SSL_CTX_load_verify_locations(ssl_ctx_, ca_file.c_str(), nullptr) != 1) throw std::runtime_error("CA load failed");
    ssl_ = SSL_new(ssl_ctx_);
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), "127.0.0.1");
    SSL_set_fd(ssl_, fd_);
    if (SSL_connect(ssl_) != 1) throw std::runtime_error("raw TLS handshake failed");
  }
  ~RawClient() {
    if (ssl_) SSL_free(ssl_);
    if (ssl_ctx_) SSL_CTX_free(ssl_ctx_);
    if (fd_ >= 0) close(fd_);
    if (ctx_) redisFree(ctx_);
    redisReaderFree(reader_);
  }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  /// The reply's integer, 1 for OK, 0 for nil; -1 for an error.
  long long command(const std::vector<std::string>& args) {
    redisReply* reply = tls_ ? tls_command(args) : tcp_command(args);
    const long long v = reply->type == REDIS_REPLY_INTEGER                                ? reply->integer
                        : reply->type == REDIS_REPLY_STATUS || reply->type == REDIS_REPLY_STRING ? 1
                        : reply->type == REDIS_REPLY_NIL                                    ? 0
                                                                                            : -1;
    last_text_ = reply->str ? std::string(reply->str, reply->len) : std::string();
    freeReplyObject(reply);
    return v;
  }
  const std::string& last_text() const { return last_text_; }

 private:
  redisReply* tcp_command(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(redisCommandArgv(ctx_, static_cast<int>(args.size()), argv.data(), lens.data()));
    if (!r) throw std::runtime_error("raw TCP command failed");
    return r;
  }
  redisReply* tls_command(const std::vector<std::string>& args) {
    const std::string out = bench::resp_command(args);
    if (SSL_write(ssl_, out.data(), static_cast<int>(out.size())) != static_cast<int>(out.size()))
      throw std::runtime_error("SSL_write failed");
    for (;;) {
      void* reply = nullptr;
      if (redisReaderGetReply(reader_, &reply) != REDIS_OK) throw std::runtime_error("protocol error");
      if (reply) return static_cast<redisReply*>(reply);
      char buf[16384];
      const int n = SSL_read(ssl_, buf, sizeof buf);
      if (n <= 0) throw std::runtime_error("SSL_read failed");
      redisReaderFeed(reader_, buf, static_cast<size_t>(n));
    }
  }

  bool tls_;
  redisReader* reader_;
  redisContext* ctx_ = nullptr;
  int fd_ = -1;
  SSL_CTX* ssl_ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  std::string last_text_;
};

/// The minimal correct lock on a raw client.
class MinimalLock {
 public:
  MinimalLock(RawClient& client, std::string key) : client_(client), key_(std::move(key)) {
    client_.command({"SCRIPT", "LOAD", compare_and_delete_text});
    sha_ = client_.last_text();
  }
  bool cycle() {
    return client_.command({"SET", key_, token_, "NX", "PX", "10000"}) == 1 &&
           client_.command({"EVALSHA", sha_, "1", key_, token_}) == 1;
  }

 private:
  RawClient& client_;
  std::string key_;
  std::string token_ = "0f1e2d3c-4b5a-4697-8877-665544332211";  // 36 bytes, as the library's UUIDs
  std::string sha_;
};

struct Side {
  std::string name;
  std::function<bool()> cycle;
  std::vector<double> rates;      // per round
  std::vector<double> latencies;  // us, every cycle
};

double median(std::vector<double> v) { return bench::median(v); }

}  // namespace

int main(int argc, char** argv) {
  int rounds = 10, cycles = 2000;
  std::string tsv;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--rounds") rounds = std::max(1, std::atoi(argv[i + 1]));
    else if (a == "--cycles") cycles = std::max(10, std::atoi(argv[i + 1]));
    else if (a == "--tsv") tsv = argv[i + 1];
    else {
      std::fprintf(stderr, "usage: tls_bench [--rounds N] [--cycles C] [--tsv FILE]\n");
      return 64;
    }
  }
  try {
    const test::TempDir dir;
    const test::CertAuthority ca(dir.path());
    ca.issue("server");
    test::TlsRedisServer server(ca, "server");
    process_lock::Options tls_options;
    tls_options.url = server.url(ca.ca_file());
    process_lock::Options tcp_options;
    tcp_options.url = server.plain().url();
    process_lock::ProcessLock lib_tls("bench-tls-lib", 10, tls_options);
    process_lock::ProcessLock lib_tcp("bench-tcp-lib", 10, tcp_options);
    RawClient raw_tls(server.tls_port(), ca.ca_file());
    RawClient raw_tcp(server.plain().port(), "");
    MinimalLock min_tls(raw_tls, "bench-tls-min");
    MinimalLock min_tcp(raw_tcp, "bench-tcp-min");
    std::vector<Side> sides = {
        {"lib-tls", [&] { return lib_tls.lock() && lib_tls.clear() == true; }, {}, {}},
        {"min-tls", [&] { return min_tls.cycle(); }, {}, {}},
        {"lib-tcp", [&] { return lib_tcp.lock() && lib_tcp.clear() == true; }, {}, {}},
        {"min-tcp", [&] { return min_tcp.cycle(); }, {}, {}},
    };
    for (Side& s : sides)  // warm up: connections open, scripts loaded
      for (int i = 0; i < 200; ++i)
        if (!s.cycle()) throw std::runtime_error(s.name + ": wrong answer in the warm-up");
    for (int r = 0; r < rounds; ++r) {
      for (std::size_t k = 0; k < sides.size(); ++k) {
        Side& s = sides[(k + static_cast<std::size_t>(r)) % sides.size()];
        const auto start = Clock::now();
        for (int i = 0; i < cycles; ++i) {
          const auto a = Clock::now();
          if (!s.cycle()) throw std::runtime_error(s.name + ": wrong answer");
          s.latencies.push_back(std::chrono::duration<double, std::micro>(Clock::now() - a).count());
        }
        s.rates.push_back(cycles / std::chrono::duration<double>(Clock::now() - start).count());
      }
    }
    auto ratio = [&](std::size_t a, std::size_t b) {
      std::vector<double> v;
      for (int r = 0; r < rounds; ++r) v.push_back(sides[a].rates[r] / sides[b].rates[r]);
      std::sort(v.begin(), v.end());
      return std::array<double, 3>{median(v), v.front(), v.back()};
    };
    std::printf("tls_bench: %d rounds of %d lock+clear cycles per side\n", rounds, cycles);
    std::printf("%-8s %12s %10s %10s\n", "side", "cycles/s", "p50 us", "p99 us");
    for (Side& s : sides) {
      std::sort(s.latencies.begin(), s.latencies.end());
      std::printf("%-8s %12.0f %10.1f %10.1f\n", s.name.c_str(), median(s.rates), bench::percentile(s.latencies, .5),
                  bench::percentile(s.latencies, .99));
    }
    const auto tls_to_min = ratio(0, 1), tcp_to_min = ratio(2, 3), tls_to_tcp = ratio(0, 2);
    std::printf("lib-tls / min-tls %.3f (%.3f-%.3f); lib-tcp / min-tcp %.3f (%.3f-%.3f); lib-tls / lib-tcp %.3f\n",
                tls_to_min[0], tls_to_min[1], tls_to_min[2], tcp_to_min[0], tcp_to_min[1], tcp_to_min[2], tls_to_tcp[0]);
    if (!tsv.empty()) {
      std::FILE* f = std::fopen(tsv.c_str(), "w");
      if (!f) throw std::runtime_error("cannot write " + tsv);
      std::fprintf(f, "lib_tls_ops_s\tmin_tls_ops_s\tlib_tcp_ops_s\tmin_tcp_ops_s\ttls_to_min\ttls_to_min_lo\ttls_to_min_hi\t"
                      "tcp_to_min\ttls_to_tcp\tlib_tls_p50_us\tlib_tls_p99_us\tmin_tls_p50_us\tmin_tls_p99_us\trounds\n");
      std::fprintf(f, "%.0f\t%.0f\t%.0f\t%.0f\t%.4f\t%.4f\t%.4f\t%.4f\t%.4f\t%.1f\t%.1f\t%.1f\t%.1f\t%d\n",
                   median(sides[0].rates), median(sides[1].rates), median(sides[2].rates), median(sides[3].rates),
                   tls_to_min[0], tls_to_min[1], tls_to_min[2], tcp_to_min[0], tls_to_tcp[0],
                   bench::percentile(sides[0].latencies, .5), bench::percentile(sides[0].latencies, .99),
                   bench::percentile(sides[1].latencies, .5), bench::percentile(sides[1].latencies, .99), rounds);
      std::fclose(f);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tls_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
