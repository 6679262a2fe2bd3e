// runtime/net/error.h: how tern::net reports errors: values, never exceptions.
//
// System errors are std::error_code in std::system_category (compare with std::errc: a deadline gives
// std::errc::timed_out, a reset peer std::errc::connection_reset). tern::net's own conditions use net::Errc.
//
//   tern::net::IoResult r = stream.read(buf, sizeof buf);
//   if (r.ec == std::errc::timed_out) { ... }      // the stream stays usable
//   else if (!r) return r.ec;
//   else if (r.n == 0) { ... }                     // end of stream
//
//   tern::net::NetResult<tern::net::Stream> s = tern::net::dial(addr, 1s);
//   if (!s) log(s.error().message());
#pragma once

#include <cstddef>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

namespace tern::net {

enum class Errc {
  eof = 1,       // the stream ended before read_full() had all it asked for
  not_in_fiber,  // called outside a fiber of a Runtime: tern::net operations must run on fibers
  no_poller,     // the calling fiber's runtime has no network poller
  not_open,      // the Stream or Listener is closed (or default-constructed)
  bad_address,   // an address that does not parse
};

const std::error_category& net_category();
std::error_code make_error_code(Errc e);

inline std::error_code errno_code(int err) {
  return {err, std::system_category()};
}

// The outcome of a read or write: bytes moved, and the error that stopped it (n may be non-zero with an error: the
// bytes moved before it).
struct [[nodiscard]] IoResult {
  size_t n = 0;
  std::error_code ec;

  explicit operator bool() const { return !ec; }
};

// A value or an error_code.
template <class T>
class [[nodiscard]] NetResult {
 public:
  NetResult(T value) : v_(std::in_place_index<0>, std::move(value)) {}
  NetResult(std::error_code ec) : v_(std::in_place_index<1>, ec) {}
  NetResult(Errc e) : v_(std::in_place_index<1>, make_error_code(e)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& operator*() { return std::get<0>(v_); }
  const T& operator*() const { return std::get<0>(v_); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  T& value() { return std::get<0>(v_); }
  std::error_code error() const { return ok() ? std::error_code{} : std::get<1>(v_); }

 private:
  std::variant<T, std::error_code> v_;
};

}  // namespace tern::net

template <>
struct std::is_error_code_enum<tern::net::Errc> : std::true_type {};
