// process-lock: the error category and Error.
// SPDX-License-Identifier: Apache-2.0
// One part of <process_lock.hpp>, which includes its parts in order; include that, not this.
#ifndef PROCESS_LOCK_HPP_
#error "include <process_lock.hpp>; process_lock/error.hpp is one of its parts"
#endif
#ifndef PROCESS_LOCK_ERROR_HPP_
#define PROCESS_LOCK_ERROR_HPP_

namespace process_lock {

inline const std::error_category& category() noexcept {
  class Category final : public std::error_category {
   public:
    const char* name() const noexcept override { return "process_lock"; }
    std::string message(int value) const override {
      switch (static_cast<errc>(value)) {
        case errc::invalid_argument:
          return "invalid argument";
        case errc::invalid_url:
          return "invalid Redis URL";
        case errc::unsupported:
          return "not supported by this build";
        case errc::connect_failed:
          return "cannot connect to Redis";
        case errc::timeout:
          return "timed out";
        case errc::connection_lost:
          return "connection to Redis lost";
        case errc::auth_failed:
          return "authentication failed";
        case errc::permission_denied:
          return "permission denied";
        case errc::server_error:
          return "Redis replied with an error";
        case errc::protocol_error:
          return "protocol error";
        case errc::cancelled:
          return "cancelled";
        case errc::no_quorum:
          return "no quorum of Redis masters";
        case errc::not_replicated:
          return "not acknowledged by enough replicas";
      }
      return "unknown process_lock error";
    }
  };
  static const Category instance;
  return instance;
}

inline std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), category()}; }

inline Error::Error() : std::system_error(std::error_code{}) {}

inline Error::Error(errc kind, std::string message, std::string server_reply)
    : std::system_error(make_error_code(kind)),
      message_(std::make_shared<const std::string>(std::move(message))),
      server_reply_(std::make_shared<const std::string>(std::move(server_reply))) {}

inline const char* Error::what() const noexcept { return message_ ? message_->c_str() : "success"; }

inline const std::string& Error::server_reply() const noexcept {
  static const std::string none;
  return server_reply_ ? *server_reply_ : none;
}

}  // namespace process_lock

#endif  // PROCESS_LOCK_ERROR_HPP_
