// runtime/net/address.h: an IPv4 or IPv6 socket address.
//
// Numeric only: names are resolved by net::resolve and dial (runtime/net/resolve.h), which take this parse as their
// fast path. Accepted forms: "127.0.0.1:8080", "[::1]:8080", "localhost:8080" (127.0.0.1), ":8080"
// (0.0.0.0, all IPv4 interfaces), "[::]:8080" (all interfaces, IPv6 and, where the system allows, IPv4).
//
//   auto a = tern::net::Address::parse("[::1]:0");
//   if (!a) return a.error();
//   auto l = tern::net::listen(*a);
//   std::string where = l->local_addr().to_string();   // "[::1]:41234"
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "runtime/net/error.h"

namespace tern::net {

class Address {
 public:
  Address() = default;

  static Result<Address> parse(std::string_view text);
  // A copy of a kernel-supplied address (AF_INET or AF_INET6; anything else gives an empty Address).
  static Address from_sockaddr(const sockaddr* sa, socklen_t len);
  static Address loopback_v4(uint16_t port);
  static Address loopback_v6(uint16_t port);

  bool empty() const { return len_ == 0; }
  bool is_v6() const { return ss_.ss_family == AF_INET6; }
  int family() const { return ss_.ss_family; }
  uint16_t port() const;
  // The same host with another port.
  Address with_port(uint16_t port) const;
  // "1.2.3.4:80" or "[::1]:80".
  std::string to_string() const;

  const sockaddr* sockaddr_ptr() const { return reinterpret_cast<const sockaddr*>(&ss_); }
  socklen_t size() const { return len_; }

 private:
  sockaddr_storage ss_{};
  socklen_t len_ = 0;
};

}  // namespace tern::net
