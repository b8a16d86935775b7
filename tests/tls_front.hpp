// A TLS front for the hostile servers (tls_test.cpp): it terminates TLS on a free loopback port
// with a certificate of the test's CA and passes the plain bytes both ways to a plain-text server
// (a test::HostileServer), so that rediss:// meets the same replies as redis:// does.
#ifndef PROCESS_LOCK_TESTS_TLS_FRONT_HPP_
#define PROCESS_LOCK_TESTS_TLS_FRONT_HPP_

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <list>
#include <memory>
#include <string>
#include <thread>

#include "hostile.hpp"
#include "tls_certs.hpp"

namespace test {

/// TLS on 127.0.0.1 in front of the plain-text server on `upstream_port`, one thread per
/// connection, all stopped and joined by the destructor. Each side's bytes are sent before more
/// are read from the other, so the front holds at most one read per direction: a server that
/// floods goes no faster than the client reads.
class TlsFront {
 public:
  TlsFront(const CertAuthority& ca, const std::string& cert, int upstream_port)
      : upstream_(upstream_port), ctx_(SSL_CTX_new(TLS_server_method()), &SSL_CTX_free) {
    if (!ctx_ || SSL_CTX_use_certificate_chain_file(ctx_.get(), ca.cert_file(cert).c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx_.get(), ca.key_file(cert).c_str(), SSL_FILETYPE_PEM) != 1)
      throw std::runtime_error("TLS front: cannot load " + ca.cert_file(cert));
    SSL_CTX_set_mode(ctx_.get(), SSL_MODE_ENABLE_PARTIAL_WRITE);
    listener_ = hostile_detail::listen_loopback(port_);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~TlsFront() {
    stopping_ = true;
    acceptor_.join();
    for (std::thread& t : connections_) t.join();
    close(listener_);
  }
  TlsFront(const TlsFront&) = delete;
  TlsFront& operator=(const TlsFront&) = delete;

  /// rediss:// to the front, trusting `ca_file`.
  std::string url(const std::string& ca_file) const {
    return "rediss://127.0.0.1:" + std::to_string(port_) + "?tls_ca_file=" + ca_file;
  }

 private:
  void accept_loop() {
    while (!stopping_) {
      pollfd p{listener_, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      const int fd = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd >= 0) connections_.emplace_back([this, fd] { serve(fd); });
    }
  }

  void serve(int client) {
    // OpenSSL writes to the socket with write(): a client gone would raise SIGPIPE, which would
    // end the test process. Blocked here, it stays pending on this thread and goes with it.
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
    const int server = hostile_detail::connect_loopback(upstream_);
    {
      const std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx_.get()), &SSL_free);
      if (server >= 0 && ssl && SSL_set_fd(ssl.get(), client) == 1) {
        SSL_set_accept_state(ssl.get());
        pump(*ssl, client, server);
      }
    }
    if (server >= 0) close(server);
    close(client);
  }

  // Moves bytes both ways until a side closes or fails, or the front stops.
  void pump(SSL& ssl, int client, int server) const {
    std::string to_server, to_client;
    char buf[16384];
    while (!stopping_) {
      short tls_waits = 0;  // what the TLS side waits for on the client's socket
      bool moved = false;
      ERR_clear_error();
      const bool handshaken = SSL_is_init_finished(&ssl);
      if (!handshaken) {
        const int r = SSL_do_handshake(&ssl);
        if (r <= 0 && !retry(ssl, r, tls_waits)) return;
        moved = r == 1;
      }
      if (handshaken && to_server.empty()) {
        const int r = SSL_read(&ssl, buf, sizeof buf);
        if (r <= 0 && !retry(ssl, r, tls_waits)) return;
        if (r > 0) {
          to_server.assign(buf, static_cast<std::size_t>(r));
          moved = true;
        }
      }
      if (!to_server.empty()) {
        const ssize_t n = send(server, to_server.data(), to_server.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno != EAGAIN && errno != EINTR) return;
        if (n > 0) {
          to_server.erase(0, static_cast<std::size_t>(n));
          moved = true;
        }
      }
      if (handshaken && to_client.empty()) {
        const ssize_t n = recv(server, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return;
        if (n > 0) {
          to_client.assign(buf, static_cast<std::size_t>(n));
          moved = true;
        }
      }
      if (!to_client.empty()) {
        const int r = SSL_write(&ssl, to_client.data(), static_cast<int>(to_client.size()));
        if (r <= 0 && !retry(ssl, r, tls_waits)) return;
        if (r > 0) {
          to_client.erase(0, static_cast<std::size_t>(r));
          moved = true;
        }
      }
      if (moved || SSL_pending(&ssl) > 0) continue;
      const auto server_waits =
          static_cast<short>((handshaken && to_client.empty() ? POLLIN : 0) | (to_server.empty() ? 0 : POLLOUT));
      pollfd fds[2] = {{client, tls_waits, 0}, {server, server_waits, 0}};
      poll(fds, 2, 20);
    }
  }

  // After an SSL call returned `r` <= 0: whether to call it again once the socket is ready for
  // what it waits for (added to `waits`), or the connection is over.
  static bool retry(SSL& ssl, int r, short& waits) {
    switch (SSL_get_error(&ssl, r)) {
      case SSL_ERROR_WANT_READ:
        waits |= POLLIN;
        return true;
      case SSL_ERROR_WANT_WRITE:
        waits |= POLLOUT;
        return true;
      default:
        return false;
    }
  }

  int upstream_;
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::list<std::thread> connections_;  // the acceptor's only, until it is joined
  std::thread acceptor_;
};

}  // namespace test

#endif  // PROCESS_LOCK_TESTS_TLS_FRONT_HPP_
