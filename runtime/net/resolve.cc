// runtime/net/resolve.cc: net::resolve: getaddrinfo on the blocking pool, waited for with a deadline.
#include "runtime/net/resolve.h"

#include <netdb.h>
#include <sys/socket.h>

#include <cerrno>
#include <charconv>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "runtime/blocking.h"
#include "runtime/sync/waiter.h"
#include "scheduler/park.h"

namespace tern::net {
namespace {

// RFC 1035's limit on a name's text form; longer text is not a host name and is refused without a lookup.
constexpr size_t kMaxHostLen = 253;

// One lookup, shared by the fiber that waits for it and the pool thread that runs it: whichever lets go last frees it,
// so a lookup that outlives its deadline writes its answer into memory that is still there, for nobody.
struct Lookup {
  std::string host;
  uint16_t port = 0;

  std::mutex mu;             // everything below
  Waiter* waiter = nullptr;  // the fiber's, while it waits; the thread notifies it under mu
  bool done = false;
  int rc = 0;         // getaddrinfo's result
  int sys_errno = 0;  // errno, for EAI_SYSTEM
  std::vector<Address> addrs;
};

Error bad(std::string_view text, const char* why) {
  return {make_error_code(Errc::bad_address), "address \"" + std::string(text) + "\": " + why};
}

void run_lookup(Lookup& l) {
  if (auto hook = detail::lookup_hook.load(std::memory_order_acquire)) hook();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  // No AI_ADDRCONFIG: glibc then ignores loopback when it decides which families are configured, so in a container with
  // only lo "localhost" would not resolve at all. dial tries the addresses in turn instead.
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(l.host.c_str(), nullptr, &hints, &res);
  int err = errno;
  std::vector<Address> addrs;
  if (rc == 0) {
    for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
      Address a = Address::from_sockaddr(ai->ai_addr, ai->ai_addrlen);
      if (a.empty()) continue;  // neither IPv4 nor IPv6
      a = a.with_port(l.port);
      addrs.push_back(a);
    }
    ::freeaddrinfo(res);
  }
  std::lock_guard lk(l.mu);
  l.rc = rc;
  l.sys_errno = err;
  l.addrs = std::move(addrs);
  l.done = true;
  if (l.waiter != nullptr) l.waiter->notify();
}

Error lookup_error(const Lookup& l) {
  std::string what = "lookup " + l.host + ": ";
  switch (l.rc) {
    case EAI_NONAME:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
      return {make_error_code(Errc::no_such_host), what + "no such host"};
    case EAI_SYSTEM:
      return {errno_code(l.sys_errno), what + errno_code(l.sys_errno).message()};
    case EAI_MEMORY:
      return {std::make_error_code(std::errc::not_enough_memory), what + ::gai_strerror(l.rc)};
    default:  // EAI_AGAIN (the name server did not answer), EAI_FAIL, ...
      return {make_error_code(Errc::lookup_failed), what + ::gai_strerror(l.rc)};
  }
}

}  // namespace

namespace detail {

Result<std::vector<Address>> resolve_until(std::string_view host_port, int64_t deadline) {
  if (auto a = Address::parse(host_port)) return std::vector<Address>{*a};  // numeric: no lookup
  if (!sched::in_fiber()) return Errc::not_in_fiber;
  if (!host_port.empty() && host_port.front() == '[') return bad(host_port, "not an IPv6 address");
  size_t colon = host_port.rfind(':');
  if (colon == std::string_view::npos) return bad(host_port, "missing port (want host:port)");
  std::string_view host = host_port.substr(0, colon), port_text = host_port.substr(colon + 1);
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() || port > UINT16_MAX) {
    return bad(host_port, "the port must be a number from 0 to 65535");
  }
  if (host.empty() || host.size() > kMaxHostLen || host.find_first_of(std::string_view(":\0 ", 3)) != host.npos) {
    return bad(host_port, "not a host name");
  }
  if (expired(deadline)) return Error(errno_code(ETIMEDOUT), "lookup " + std::string(host) + ": timed out");

  auto l = std::make_shared<Lookup>();
  l->host = std::string(host);
  l->port = static_cast<uint16_t>(port);
  if (!BlockingPool::instance().submit([l] { run_lookup(*l); })) {
    return Error(std::make_error_code(std::errc::resource_unavailable_try_again),
                 "lookup " + l->host + ": no thread to run it on");
  }
  std::unique_lock lk(l->mu);
  if (!l->done) {
    Waiter w;
    l->waiter = &w;
    w.wait_until(deadline, &lk, sched::WaitReason::kNetConnect);
    // Under mu again: after this the thread cannot reach w, which dies with this scope. A notify() that came after
    // the timeout did nothing.
    l->waiter = nullptr;
  }
  if (!l->done) return Error(errno_code(ETIMEDOUT), "lookup " + l->host + ": timed out");
  if (l->rc != 0) return lookup_error(*l);
  if (l->addrs.empty()) return Error(make_error_code(Errc::no_such_host), "lookup " + l->host + ": no address");
  return std::move(l->addrs);
}

}  // namespace detail

Result<std::vector<Address>> resolve(std::string_view host_port, std::chrono::nanoseconds timeout) {
  return detail::resolve_until(host_port, deadline_after(kNoDeadline, timeout));
}

}  // namespace tern::net
