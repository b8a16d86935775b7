// process-lock: TLS for rediss:// URLs: the verified context one endpoint's links share, and the
// session that encrypts what a link sends and decrypts what it receives.
// SPDX-License-Identifier: Apache-2.0
// One part of <process_lock.hpp>, which includes its parts in order; include that, not this.
#ifndef PROCESS_LOCK_HPP_
#error "include <process_lock.hpp>; process_lock/tls.hpp is one of its parts"
#endif
#ifndef PROCESS_LOCK_TLS_HPP_
#define PROCESS_LOCK_TLS_HPP_

namespace process_lock {
namespace detail {

/// Whether the first bytes a server sent in answer to our TLS hello are the Redis protocol in
/// plain text (an error or status line), not a TLS record: a plain-text port.
inline bool looks_like_plain_redis(std::string_view first_bytes) noexcept {
  return !first_bytes.empty() && (first_bytes.front() == '-' || first_bytes.front() == '+' ||
                                  first_bytes.front() == '$' || first_bytes.front() == '*' || first_bytes.front() == ':');
}

/// The hint every "this is not TLS" message ends with.
inline constexpr std::string_view plain_port_hint = "is it a plain-text port? use redis:// for it";

#if PROCESS_LOCK_WITH_TLS

/// Why a TLS handshake or session failed, in words a user can act on. `verify_result` is
/// SSL_get_verify_result() (X509_V_OK: the certificate was not the problem), `reason` the
/// reason code of OpenSSL's first queued error (0: none), `openssl_text` that error's text,
/// `name` the name the certificate was checked against. Pure (TlsFailureTest is its table).
inline std::string tls_failure_cause(long verify_result, int reason, std::string_view openssl_text,
                                     std::string_view name) {
  switch (verify_result) {
    case X509_V_OK:
      break;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
      return "its certificate is not for " + Endpoint::printable(name) +
             " (set tls_server_name to a name the certificate is for)";
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return "its certificate has expired";
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return "its certificate is not valid yet (is a clock wrong?)";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
      return "its certificate is not signed by a CA we trust (give the server's CA with tls_ca_file): " +
             std::string(X509_verify_cert_error_string(verify_result));
    default:
      return "its certificate was refused: " + std::string(X509_verify_cert_error_string(verify_result));
  }
  switch (reason) {
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_UNKNOWN_PROTOCOL:
    case SSL_R_HTTP_REQUEST:
      return "it does not speak TLS (" + std::string(plain_port_hint) + ")";
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
      return "it requires a client certificate (give tls_cert and tls_key)";
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
      return "it refused our client certificate (" + std::string(openssl_text) + ")";
    default:
      return "TLS failed (" + (openssl_text.empty() ? std::string("no reason given") : std::string(openssl_text)) + ")";
  }
}

struct SslCtxDeleter {
  void operator()(SSL_CTX* c) const noexcept { SSL_CTX_free(c); }
};
struct SslDeleter {
  void operator()(SSL* s) const noexcept { SSL_free(s); }
};

/// The reason code and text of OpenSSL's first queued error, and the queue cleared: it is kept
/// per thread and would otherwise mislead a later call.
struct OpenSslError {
  int reason = 0;
  std::string text;
  static OpenSslError take() {
    OpenSslError e;
    if (const unsigned long code = ERR_get_error()) {
      char buf[256];
      ERR_error_string_n(code, buf, sizeof buf);
      e.reason = ERR_GET_REASON(code);
      const char* reason_text = ERR_reason_error_string(code);
      e.text = reason_text ? reason_text : buf;
    }
    ERR_clear_error();
    return e;
  }
};

int note_certificate_request(SSL* ssl, X509** cert, EVP_PKEY** key) noexcept;

/// An endpoint's TLS setup, loaded once at construction and shared by its links: the CAs to
/// trust (the system's unless given), the client certificate, and whether to verify at all.
class TlsContext {
 public:
  explicit TlsContext(const TlsOptions& options) : options_(options) {
    ERR_clear_error();
    ctx_.reset(SSL_CTX_new(TLS_client_method()));
    if (!ctx_) throw std::bad_alloc();
    SSL_CTX_set_min_proto_version(ctx_.get(), TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx_.get(), options.insecure_skip_verify ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, nullptr);
    if (!options.ca_file.empty() || !options.ca_dir.empty()) {
      if (SSL_CTX_load_verify_locations(ctx_.get(), options.ca_file.empty() ? nullptr : options.ca_file.c_str(),
                                        options.ca_dir.empty() ? nullptr : options.ca_dir.c_str()) != 1)
        fail(options.ca_file.empty() ? "tls_ca_dir " + options.ca_dir : "tls_ca_file " + options.ca_file,
             "cannot be loaded as CA certificates");
    } else if (SSL_CTX_set_default_verify_paths(ctx_.get()) != 1) {
      fail("the system's CA certificates", "cannot be loaded");
    }
    SSL_CTX_set_client_cert_cb(ctx_.get(), &note_certificate_request);
    // A key with a passphrase fails at once: OpenSSL's default would prompt on the terminal.
    SSL_CTX_set_default_passwd_cb(ctx_.get(), &no_passphrase);
    if (options.cert_file.empty() != options.key_file.empty())
      throw Error(errc::invalid_argument, "tls_cert and tls_key go together: give both or neither");
    if (!options.cert_file.empty()) {
      if (SSL_CTX_use_certificate_chain_file(ctx_.get(), options.cert_file.c_str()) != 1)
        fail("tls_cert " + options.cert_file, "cannot be loaded as a PEM certificate");
      if (SSL_CTX_use_PrivateKey_file(ctx_.get(), options.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
          SSL_CTX_check_private_key(ctx_.get()) != 1)
        fail("tls_key " + options.key_file,
             ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH
                 ? "is not the key of tls_cert " + options.cert_file
                 : std::string("cannot be loaded as a PEM private key (it must not need a passphrase)"));
    }
  }

  SSL_CTX* get() const noexcept { return ctx_.get(); }
  const TlsOptions& options() const noexcept { return options_; }

 private:
  static int no_passphrase(char*, int, int, void*) noexcept { return 0; }

  [[noreturn]] static void fail(const std::string& what, const std::string& problem) {
    const OpenSslError e = OpenSslError::take();
    throw Error(errc::invalid_argument, what + " " + problem + (e.text.empty() ? "" : " (" + e.text + ")"));
  }

  TlsOptions options_;
  std::unique_ptr<SSL_CTX, SslCtxDeleter> ctx_;
};

/// What a TLS session failed with: the cause, for messages.
struct TlsFailure {
  std::string cause;
};

/// One TLS session over a link's socket. OpenSSL reads and writes memory buffers only, never
/// the socket: the link moves the bytes with its own send(MSG_NOSIGNAL) and recv() under its
/// time bounds, so TLS can neither raise SIGPIPE nor outlast a deadline. receive() decrypts
/// everything it is given, so no data waits inside OpenSSL unseen by poll().
class TlsSession {
 public:
  /// For a server reached as `host`: its certificate is checked against tls_server_name if
  /// given, else `host` (an IP address as such), which is also sent as SNI unless an address.
  TlsSession(const TlsContext& context, const std::string& host)
      : name_(context.options().server_name.empty() ? host : context.options().server_name) {
    ERR_clear_error();
    ssl_.reset(SSL_new(context.get()));
    BIO* in = BIO_new(BIO_s_mem());
    BIO* out = BIO_new(BIO_s_mem());
    if (!ssl_ || !in || !out) {
      BIO_free(in);
      BIO_free(out);
      throw std::bad_alloc();
    }
    SSL_set_bio(ssl_.get(), in, out);  // the session owns them now
    in_ = in;
    out_ = out;
    SSL_set_connect_state(ssl_.get());
    SSL_set_app_data(ssl_.get(), this);  // for note_certificate_request()
    in6_addr any{};
    const bool is_address =
        inet_pton(AF_INET, name_.c_str(), &any) == 1 || inet_pton(AF_INET6, name_.c_str(), &any) == 1;
    if (!is_address) SSL_set_tlsext_host_name(ssl_.get(), name_.c_str());
    if (!context.options().insecure_skip_verify) {
      const int set = is_address ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_.get()), name_.c_str())
                                 : SSL_set1_host(ssl_.get(), name_.c_str());
      if (set != 1) throw Error(errc::invalid_argument, "the TLS server name " + Endpoint::printable(name_) +
                                                            " cannot be checked against a certificate");
    }
  }

  /// Advances the handshake: true once done. Its records to send are in output().
  [[nodiscard]] bool handshake() {
    ERR_clear_error();
    const int r = SSL_do_handshake(ssl_.get());
    if (r == 1) return true;
    const int e = SSL_get_error(ssl_.get(), r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return false;
    throw failure();
  }

  /// Encrypts `plain`; the records to send are in output().
  void send(std::string_view plain) {
    while (!plain.empty()) {
      ERR_clear_error();
      const int chunk = static_cast<int>(std::min<std::size_t>(plain.size(), 1 << 20));
      const int r = SSL_write(ssl_.get(), plain.data(), chunk);
      if (r <= 0) throw failure();
      plain.remove_prefix(static_cast<std::size_t>(r));
    }
  }

  /// Decrypts `bytes` received from the server, handing each piece of plain text to `sink`.
  /// Returns false once the server has closed the session (close_notify). Records OpenSSL
  /// answers with (a key update) are in output().
  template <class Sink>
  [[nodiscard]] bool receive(std::string_view bytes, Sink&& sink) {
    if (BIO_write(in_, bytes.data(), static_cast<int>(bytes.size())) != static_cast<int>(bytes.size()))
      throw std::bad_alloc();
    for (;;) {
      char plain[16384];
      ERR_clear_error();
      const int r = SSL_read(ssl_.get(), plain, sizeof plain);
      if (r > 0) {
        sink(std::string_view(plain, static_cast<std::size_t>(r)));
        continue;
      }
      const int e = SSL_get_error(ssl_.get(), r);
      if (e == SSL_ERROR_WANT_READ) return true;
      if (e == SSL_ERROR_ZERO_RETURN) return false;
      throw failure();
    }
  }

  /// Hands bytes received during the handshake to OpenSSL.
  void take(std::string_view bytes) {
    if (BIO_write(in_, bytes.data(), static_cast<int>(bytes.size())) != static_cast<int>(bytes.size()))
      throw std::bad_alloc();
  }

  /// Moves the records waiting to be sent to the end of `wire`.
  void output(std::string& wire) {
    const std::size_t pending = BIO_ctrl_pending(out_);
    if (pending == 0) return;
    const std::size_t at = wire.size();
    wire.resize(at + pending);
    const int n = BIO_read(out_, wire.data() + at, static_cast<int>(pending));
    wire.resize(at + static_cast<std::size_t>(std::max(n, 0)));
  }

  /// Whether the server asked for a client certificate and we had none: a TLS 1.3 server that
  /// requires one refuses it only after the handshake, and may reset the connection before its
  /// alert can be read; a connection closed before any data then has this cause for certain.
  bool asked_for_missing_certificate() const noexcept { return asked_for_certificate_; }

  /// Whether the handshake has completed.
  bool established() const noexcept { return SSL_is_init_finished(ssl_.get()) == 1; }

  /// The name the server's certificate is checked against.
  const std::string& name() const noexcept { return name_; }

 private:
  TlsFailure failure() const {
    const OpenSslError e = OpenSslError::take();
    return {tls_failure_cause(SSL_get_verify_result(ssl_.get()), e.reason, e.text, name_)};
  }

  std::string name_;
  std::unique_ptr<SSL, SslDeleter> ssl_;
  BIO* in_ = nullptr;   // owned by ssl_: what the server sent, for OpenSSL to read
  BIO* out_ = nullptr;  // owned by ssl_: what OpenSSL wrote, for the link to send
  bool asked_for_certificate_ = false;  // the server asked for a client certificate we do not have
  friend int note_certificate_request(SSL*, X509**, EVP_PKEY**) noexcept;
};

// OpenSSL asks this when the server wants a client certificate and the context has none: the
// answer is none, and the session remembers that it was asked (see asked_for_missing_certificate()).
inline int note_certificate_request(SSL* ssl, X509**, EVP_PKEY**) noexcept {
  static_cast<TlsSession*>(SSL_get_app_data(ssl))->asked_for_certificate_ = true;
  return 0;
}

#endif  // PROCESS_LOCK_WITH_TLS

/// Applies Options::tls over the URLs' TLS keys, and loads each rediss:// endpoint's context
/// once (its files are read here, so a bad one fails at construction, not at the first call).
inline void settle_tls(std::vector<Endpoint>& endpoints, const TlsOptions& given) {
  const bool any_given = !given.ca_file.empty() || !given.ca_dir.empty() || !given.cert_file.empty() ||
                         !given.key_file.empty() || !given.server_name.empty() || given.insecure_skip_verify;
  bool any_tls = false;
  for (Endpoint& ep : endpoints) {
    if (!ep.tls) continue;
    any_tls = true;
    TlsOptions& o = ep.tls_options;
    for (auto [field, value] : {std::pair{&o.ca_file, &given.ca_file}, std::pair{&o.ca_dir, &given.ca_dir},
                                std::pair{&o.cert_file, &given.cert_file}, std::pair{&o.key_file, &given.key_file},
                                std::pair{&o.server_name, &given.server_name}})
      if (!value->empty()) *field = *value;
    if (given.insecure_skip_verify) o.insecure_skip_verify = true;
#if PROCESS_LOCK_WITH_TLS
    ep.tls_context = std::make_shared<const TlsContext>(o);
#endif
  }
  if (any_given && !any_tls)
    throw Error(errc::invalid_argument, "Options::tls is set, but the URL is not a rediss:// URL");
}

}  // namespace detail
}  // namespace process_lock

#endif  // PROCESS_LOCK_TLS_HPP_
