// Test support for TLS: a throwaway certificate authority that issues server and client
// certificates into a private directory (PEM files, as redis-server and the library read them),
// and a redis-server that serves TLS on a second port with them.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "support.hpp"

namespace test {

struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const noexcept { EVP_PKEY_free(k); }
};
struct X509Deleter {
  void operator()(X509* x) const noexcept { X509_free(x); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using X509Ptr = std::unique_ptr<X509, X509Deleter>;

/// A CA of the test's own: `ca.crt` in `dir`, and certificates it (or nobody) signs.
class CertAuthority {
 public:
  /// Files go to `dir`, named after `name` (two CAs may share a directory).
  CertAuthority(std::string dir, std::string name = "ca") : dir_(std::move(dir)), name_(std::move(name)) {
    key_ = new_key();
    cert_ = make(name_, *key_, nullptr, "", -3600, 86400, true);
    write_cert(cert_.get(), ca_file());
  }

  std::string ca_file() const { return dir_ + "/" + name_ + ".crt"; }
  /// A directory holding this CA's certificate under its subject hash, as `openssl rehash`
  /// makes it (for tls_ca_dir).
  std::string hashed_dir() const {
    std::string dir = dir_ + "/" + name_ + ".d";  // not const: returned by move
    std::filesystem::create_directories(dir);
    char hash[16];
    std::snprintf(hash, sizeof hash, "%08lx.0", X509_subject_name_hash(cert_.get()));
    write_cert(cert_.get(), dir + "/" + hash);
    return dir;
  }
  std::string cert_file(const std::string& name) const { return dir_ + "/" + name + ".crt"; }
  std::string key_file(const std::string& name) const { return dir_ + "/" + name + ".key"; }

  /// Writes `name`.crt and `name`.key: a certificate for `sans` (e.g. "IP:127.0.0.1,DNS:localhost"),
  /// valid from `not_before` to `not_after` seconds from now, signed by this CA (or by itself).
  /// With `passphrase`, the key is written encrypted with it.
  void issue(const std::string& name, const std::string& sans = "IP:127.0.0.1,DNS:localhost", long not_before = -3600,
             long not_after = 86400, bool self_signed = false, const std::string& passphrase = "") const {
    const PkeyPtr key = new_key();
    const X509Ptr cert = make(name, *key, self_signed ? nullptr : this, sans, not_before, not_after, false);
    write_cert(cert.get(), cert_file(name));
    std::FILE* f = std::fopen(key_file(name).c_str(), "w");
    auto* secret = reinterpret_cast<unsigned char*>(const_cast<char*>(passphrase.data()));
    if (!f || PEM_write_PrivateKey(f, key.get(), passphrase.empty() ? nullptr : EVP_aes_128_cbc(),
                                   passphrase.empty() ? nullptr : secret, static_cast<int>(passphrase.size()), nullptr,
                                   nullptr) != 1)
      throw std::runtime_error("cannot write " + key_file(name));
    std::fclose(f);
  }

 private:
  static PkeyPtr new_key() {
    PkeyPtr key(EVP_EC_gen("P-256"));
    if (!key) throw std::runtime_error("EC key generation failed");
    return key;
  }
  X509Ptr make(const std::string& cn, EVP_PKEY& key, const CertAuthority* issuer, const std::string& sans,
               long not_before, long not_after, bool is_ca) const {
    X509Ptr x(X509_new());
    X509_set_version(x.get(), 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x.get()), static_cast<long>(++serial_));
    X509_gmtime_adj(X509_getm_notBefore(x.get()), not_before);
    X509_gmtime_adj(X509_getm_notAfter(x.get()), not_after);
    X509_set_pubkey(x.get(), &key);
    X509_NAME* subject = X509_get_subject_name(x.get());
    X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1,
                               -1, 0);
    X509* issuer_cert = issuer ? issuer->cert_.get() : x.get();
    X509_set_issuer_name(x.get(), X509_get_subject_name(issuer_cert));
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer_cert, x.get(), nullptr, nullptr, 0);
    std::vector<std::pair<int, std::string>> extensions = {{NID_basic_constraints, is_ca ? "critical,CA:TRUE" : "CA:FALSE"}};
    if (is_ca) extensions.emplace_back(NID_key_usage, "critical,keyCertSign,cRLSign");
    if (!sans.empty()) extensions.emplace_back(NID_subject_alt_name, sans);
    for (const auto& [nid, value] : extensions) {
      X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
      if (!ext) throw std::runtime_error("bad certificate extension " + value);
      X509_add_ext(x.get(), ext, -1);
      X509_EXTENSION_free(ext);
    }
    if (X509_sign(x.get(), issuer ? issuer->key_.get() : &key, EVP_sha256()) == 0)
      throw std::runtime_error("signing failed");
    return x;
  }
  static void write_cert(X509* cert, const std::string& path) {
    std::FILE* f = std::fopen(path.c_str(), "w");
    if (!f || PEM_write_X509(f, cert) != 1) throw std::runtime_error("cannot write " + path);
    std::fclose(f);
  }

  std::string dir_;
  std::string name_;
  PkeyPtr key_;
  X509Ptr cert_;
  mutable long serial_ = 0;
};

/// A redis-server that also serves TLS, on tls_port(), with certificate `cert` of `ca` (its
/// plain port stays, for the test's own raw client). `auth_clients`: "no", "yes" or "optional".
class TlsRedisServer {
 public:
  TlsRedisServer(const CertAuthority& ca, const std::string& cert, const std::string& auth_clients = "no",
                 std::vector<std::string> extra_args = {})
      : tls_port_(free_port()), server_(args(ca, cert, auth_clients, tls_port_, std::move(extra_args))) {}

  int tls_port() const { return tls_port_; }
  /// rediss:// to the TLS port, trusting `ca_file`, with `query` added.
  std::string url(const std::string& ca_file, const std::string& query = "") const {
    return "rediss://127.0.0.1:" + std::to_string(tls_port_) + "?tls_ca_file=" + ca_file + query;
  }
  RedisServer& plain() { return server_; }

 private:
  static std::vector<std::string> args(const CertAuthority& ca, const std::string& cert, const std::string& auth_clients,
                                       int tls_port, std::vector<std::string> extra) {
    std::vector<std::string> a = {"--tls-port",      std::to_string(tls_port), "--tls-cert-file",    ca.cert_file(cert),
                                  "--tls-key-file",  ca.key_file(cert),        "--tls-ca-cert-file", ca.ca_file(),
                                  "--tls-auth-clients", auth_clients};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }

  int tls_port_;
  RedisServer server_;
};

/// A private directory for certificates, removed at the end.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/process-lock-tls-XXXXXX";
    if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace test
