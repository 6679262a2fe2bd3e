// base/result.h: tern::Result<T>, an expected-like value-or-error for API edges (C++20 has no std::expected).
//
//   Result<int> r = parse_procs("x");      // Result<void>: success or an error, nothing else
//   if (!r) std::puts(r.error().c_str());
//   else use(*r);
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace tern {

struct Error {
  std::string message;
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
  Result(Error e) : v_(std::in_place_index<1>, std::move(e)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& operator*() { return std::get<0>(v_); }
  const T& operator*() const { return std::get<0>(v_); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  T& value() { return std::get<0>(v_); }
  const std::string& error() const { return std::get<1>(v_).message; }

 private:
  std::variant<T, Error> v_;
};

// Success or an error, for operations with nothing to return (tern::try_go).
//   if (auto r = tern::try_go(f); !r) log(r.error());
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error e) : error_(std::move(e.message)), ok_(false) {}

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const std::string& error() const { return error_; }

 private:
  std::string error_;
  bool ok_ = true;
};

inline Error make_error(std::string message) {
  return Error{std::move(message)};
}

}  // namespace tern
