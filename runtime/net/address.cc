// runtime/net/address.cc: net::Address: parsing and formatting host:port, sockaddr conversion.
#include "runtime/net/address.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace tern::net {
namespace {

bool parse_port(std::string_view s, uint16_t* port) {
  if (s.empty()) return false;
  unsigned v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v > UINT16_MAX) return false;
  *port = static_cast<uint16_t>(v);
  return true;
}

}  // namespace

Result<Address> Address::parse(std::string_view text) {
  std::string_view host, port_text;
  bool v6 = false;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') return Errc::bad_address;
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
    v6 = true;
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return Errc::bad_address;
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return Errc::bad_address;  // bare IPv6 needs brackets
  }
  uint16_t port;
  if (!parse_port(port_text, &port)) return Errc::bad_address;

  Address a;
  std::string h(host);
  if (v6) {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&a.ss_);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    if (inet_pton(AF_INET6, h.c_str(), &sin6->sin6_addr) != 1) return Errc::bad_address;
    a.len_ = sizeof(sockaddr_in6);
    return a;
  }
  auto* sin = reinterpret_cast<sockaddr_in*>(&a.ss_);
  sin->sin_family = AF_INET;
  sin->sin_port = htons(port);
  if (h.empty()) {
    sin->sin_addr.s_addr = htonl(INADDR_ANY);
  } else if (h == "localhost") {
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  } else if (inet_pton(AF_INET, h.c_str(), &sin->sin_addr) != 1) {
    return Errc::bad_address;
  }
  a.len_ = sizeof(sockaddr_in);
  return a;
}

Address Address::from_sockaddr(const sockaddr* sa, socklen_t len) {
  Address a;
  if (sa == nullptr) return a;
  if ((sa->sa_family == AF_INET && len >= sizeof(sockaddr_in)) ||
      (sa->sa_family == AF_INET6 && len >= sizeof(sockaddr_in6))) {
    a.len_ = sa->sa_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    std::memcpy(&a.ss_, sa, a.len_);
  }
  return a;
}

Address Address::loopback_v4(uint16_t port) {
  Address a;
  auto* sin = reinterpret_cast<sockaddr_in*>(&a.ss_);
  sin->sin_family = AF_INET;
  sin->sin_port = htons(port);
  sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.len_ = sizeof(sockaddr_in);
  return a;
}

Address Address::loopback_v6(uint16_t port) {
  Address a;
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&a.ss_);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(port);
  sin6->sin6_addr = in6addr_loopback;
  a.len_ = sizeof(sockaddr_in6);
  return a;
}

uint16_t Address::port() const {
  if (ss_.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&ss_)->sin_port);
  if (ss_.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&ss_)->sin6_port);
  return 0;
}

Address Address::with_port(uint16_t port) const {
  Address a = *this;
  if (a.ss_.ss_family == AF_INET) reinterpret_cast<sockaddr_in*>(&a.ss_)->sin_port = htons(port);
  if (a.ss_.ss_family == AF_INET6) reinterpret_cast<sockaddr_in6*>(&a.ss_)->sin6_port = htons(port);
  return a;
}

std::string Address::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss_.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&ss_)->sin_addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(port());
  }
  if (ss_.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&ss_)->sin6_addr, buf, sizeof buf);
    return "[" + std::string(buf) + "]:" + std::to_string(port());
  }
  return "";
}

}  // namespace tern::net
