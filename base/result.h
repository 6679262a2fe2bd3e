// base/result.h: tern's one error vocabulary at API edges: tern::Error (a std::error_code and the message that says
// what failed) and tern::Result<T> (a value or an Error; C++20 has no std::expected).
//
//   Result<int> r = parse_procs("x");           // Result<void>: success or an Error, nothing else
//   if (!r) std::puts(r.error().message().c_str());
//   else use(*r);
//
//   Result<net::Stream> s = net::dial(addr, 1s);
//   if (s.error() == std::errc::timed_out) ...  // compares the code: std::errc, net::Errc, any error_code
//   if (!fd) return errno_error(errno, "eventfd");            // "eventfd: Too many open files"
//   if (!p) return p.error().wrap("TERN_PROCS");              // same code, "TERN_PROCS: <p's message>"
//
// Every layer reports failures this way: a configuration that does not parse (std::errc::invalid_argument), a system
// call that failed (its errno, std::system_category), tern::net's own conditions (net::Errc). The one other shape is
// net::IoResult, a read or write's byte count beside its std::error_code, because a transfer can fail after moving
// bytes. Exceptions do not cross the scheduler; the library never exits the process.
#pragma once

#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

namespace tern {

inline std::error_code errno_code(int err) {
  return {err, std::system_category()};
}

class Error {
 public:
  Error(std::error_code code) : code_(code) {}
  template <class E>
  requires std::is_error_code_enum_v<E> Error(E e) : code_(make_error_code(e)) {}
  // message: the whole text to show, which should say what was being done ("listen 0.0.0.0:80: Address in use").
  Error(std::error_code code, std::string message) : code_(code), message_(std::move(message)) {}

  const std::error_code& code() const { return code_; }
  // The text given, or the code's own message where none was.
  std::string message() const { return message_.empty() ? code_.message() : message_; }
  // The same code, with "context: " before the message (Go's fmt.Errorf("context: %w", err)).
  Error wrap(std::string_view context) const { return {code_, std::string(context) + ": " + message()}; }

  // Compares the code: with an error_code, an error_condition, or an enum of either (std::errc, net::Errc).
  friend bool operator==(const Error& e, const std::error_code& c) { return e.code_ == c; }
  friend bool operator==(const Error& e, const std::error_condition& c) { return e.code_ == c; }
  template <class E>
  requires(std::is_error_code_enum_v<E> || std::is_error_condition_enum_v<E>) friend bool operator==(const Error& e,
                                                                                                     E c) {
    return e.code_ == c;
  }

 private:
  std::error_code code_;
  std::string message_;
};

// An input that does not parse or a setting that cannot work (std::errc::invalid_argument), with what is wrong.
inline Error make_error(std::string message) {
  return {std::make_error_code(std::errc::invalid_argument), std::move(message)};
}

// A failed system call: errno `err`, described as "what: <strerror>".
inline Error errno_error(int err, std::string_view what) {
  return Error(errno_code(err)).wrap(what);
}

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
  Result(Error e) : v_(std::in_place_index<1>, std::move(e)) {}
  Result(std::error_code ec) : v_(std::in_place_index<1>, ec) {}
  template <class E>
  requires std::is_error_code_enum_v<E> Result(E e) : v_(std::in_place_index<1>, e) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& operator*() { return std::get<0>(v_); }
  const T& operator*() const { return std::get<0>(v_); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  // Only when !ok() (std::bad_variant_access otherwise).
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

// Success or an error, for operations with nothing to return (tern::try_go).
//   if (auto r = tern::try_go(f); !r) log(r.error().message());
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error e) : error_(std::move(e)), ok_(false) {}
  Result(std::error_code ec) : error_(ec), ok_(false) {}
  template <class E>
  requires std::is_error_code_enum_v<E> Result(E e) : error_(e), ok_(false) {}

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  // Only when !ok() (an empty Error otherwise).
  const Error& error() const { return error_; }

 private:
  Error error_{std::error_code()};
  bool ok_ = true;
};

}  // namespace tern
