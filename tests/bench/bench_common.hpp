// Shared by the benchmarks: where Redis is, a raw hiredis connection (the floor the library is
// measured against), and the statistics the results table reports.
#ifndef PROCESS_LOCK_BENCH_COMMON_HPP_
#define PROCESS_LOCK_BENCH_COMMON_HPP_

#include <process_lock.hpp>

#include <hiredis/hiredis.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

namespace bench {

/// Host and port of a `redis://HOST:PORT` URL; the benchmarks run over TCP loopback only.
struct TcpEndpoint {
  std::string host;
  int port = 0;
};

inline TcpEndpoint tcp_endpoint(const std::string& url) {
  const std::string scheme = "redis://";
  const auto colon = url.rfind(':');
  if (url.rfind(scheme, 0) != 0 || colon == std::string::npos || colon < scheme.size())
    throw std::invalid_argument("the benchmarks need REDIS_URL=redis://HOST:PORT (got \"" + url + "\")");
  TcpEndpoint e;
  e.host = url.substr(scheme.size(), colon - scheme.size());
  e.port = std::atoi(url.c_str() + colon + 1);
  if (e.host.empty() || e.port <= 0 || e.port > 65535)
    throw std::invalid_argument("the benchmarks need REDIS_URL=redis://HOST:PORT (got \"" + url + "\")");
  return e;
}

/// A plain hiredis connection with the same settings as a ProcessLock's: TCP, connect timeout
/// on connect, command timeout on every read and write.
class RawConnection {
 public:
  RawConnection(const TcpEndpoint& e, std::chrono::milliseconds connect_timeout,
                std::chrono::milliseconds command_timeout)
      : ctx_(redisConnectWithTimeout(e.host.c_str(), e.port, tv(connect_timeout))) {
    if (!ctx_ || ctx_->err) {
      const std::string why = ctx_ ? ctx_->errstr : "out of memory";
      if (ctx_) redisFree(ctx_);
      throw std::runtime_error("raw connection to " + e.host + ":" + std::to_string(e.port) + " failed: " + why);
    }
    if (redisSetTimeout(ctx_, tv(command_timeout)) != REDIS_OK) {
      redisFree(ctx_);
      throw std::runtime_error("raw connection: cannot set the command timeout");
    }
  }
  ~RawConnection() { redisFree(ctx_); }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  int fd() const { return ctx_->fd; }
  /// One command; the reply (never null: a transport failure throws). Free it with freeReplyObject.
  redisReply* command(int argc, const char* const* argv, const size_t* lens) {
    auto* reply = static_cast<redisReply*>(redisCommandArgv(ctx_, argc, const_cast<const char**>(argv), lens));
    if (!reply) throw std::runtime_error(std::string("raw connection: ") + ctx_->errstr);
    return reply;
  }
  /// For setup: a command from strings, its reply checked for errors.
  std::string run(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.c_str());
      lens.push_back(a.size());
    }
    redisReply* r = command(static_cast<int>(argv.size()), argv.data(), lens.data());
    std::string text = r->str ? std::string(r->str, r->len) : std::to_string(r->integer);
    const bool error = r->type == REDIS_REPLY_ERROR;
    freeReplyObject(r);
    if (error) throw std::runtime_error(args[0] + ": " + text);
    return text;
  }

 private:
  static timeval tv(std::chrono::milliseconds ms) {
    timeval t{};
    t.tv_sec = static_cast<decltype(t.tv_sec)>(ms.count() / 1000);
    t.tv_usec = static_cast<decltype(t.tv_usec)>((ms.count() % 1000) * 1000);
    return t;
  }
  redisContext* ctx_;
};

/// One command in the Redis protocol (RESP), as a raw client sends it.
inline std::string resp_command(const std::vector<std::string>& args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return out;
}

/// Nearest-rank percentile (q in (0, 1]) of a sorted sample.
inline double percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return NAN;
  const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  return sorted[std::min(sorted.size(), std::max<std::size_t>(rank, 1)) - 1];
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  if (v.empty()) return NAN;
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/// How evenly work was spread: per-participant counts.
struct Spread {
  double min = 0, max = 0, mean = 0;
  double cv = 0;    // coefficient of variation: population standard deviation / mean
  double jain = 1;  // Jain's fairness index: (sum x)^2 / (n * sum x^2); 1 = perfectly even, 1/n = one took all
};

inline Spread spread(const std::vector<double>& x) {
  Spread s;
  if (x.empty()) return s;
  const double n = static_cast<double>(x.size());
  const double sum = std::accumulate(x.begin(), x.end(), 0.0);
  double squares = 0;
  for (double v : x) squares += v * v;
  s.min = *std::min_element(x.begin(), x.end());
  s.max = *std::max_element(x.begin(), x.end());
  s.mean = sum / n;
  double var = 0;
  for (double v : x) var += (v - s.mean) * (v - s.mean);
  s.cv = s.mean > 0 ? std::sqrt(var / n) / s.mean : 0;
  s.jain = squares > 0 ? sum * sum / (n * squares) : 1;
  return s;
}

}  // namespace bench

#endif  // PROCESS_LOCK_BENCH_COMMON_HPP_
