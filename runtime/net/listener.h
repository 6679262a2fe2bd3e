// runtime/net/listener.h: tern::net::listen and Listener, a listening TCP socket whose accept() parks the fiber.
//
//   auto l = tern::net::listen("[::]:8080", {.reuse_port = true});
//   if (!l) return l.error();
//   for (;;) {
//     auto s = l->accept();
//     if (!s) { log(s.error().message()); continue; }
//     tern::go([s = std::move(*s)]() mutable { serve(s); });
//   }
//
// accept() rides out descriptor exhaustion: on EMFILE, ENFILE, ENOBUFS or ENOMEM it sleeps (1 ms doubling to 64 ms),
// counts the back-off (accept_backoffs(), and the backend's IoStats), and tries again, so a process at its fd limit
// neither spins a core nor fails; the pending connection waits in the kernel's backlog meanwhile. Connection errors
// that accept(2) passes on from an aborted handshake are retried silently.
//
// Same rules as Stream: operations on fibers of the Runtime that made it, one acceptor at a time (for several, open
// several listeners with reuse_port), close before the Runtime goes. close() from another fiber ends a parked accept()
// with Errc::closed (a server's shutdown path: close the listener, and the accept loop returns), as in Go.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string_view>

#include "runtime/net/address.h"
#include "runtime/net/close_gate.h"
#include "runtime/net/deadline.h"
#include "runtime/net/error.h"
#include "runtime/net/stream.h"

namespace tern::net {

struct ListenOptions {
  bool reuse_port = false;  // SO_REUSEPORT: listeners on the same port share its connections, balanced by the kernel
  bool reuse_addr = true;   // SO_REUSEADDR: rebinding a port whose old connections sit in TIME_WAIT
  int backlog = SOMAXCONN;  // the kernel caps it at net.core.somaxconn
  bool nodelay = true;      // TCP_NODELAY on accepted streams
};

// The first back-off after EMFILE and friends, and its cap. 1 ms lets a freed descriptor be picked up almost at once;
// 64 ms bounds a starved listener to a few retries a second at about a microsecond of CPU each.
inline constexpr std::chrono::milliseconds kAcceptBackoffMin{1};
inline constexpr std::chrono::milliseconds kAcceptBackoffMax{64};

class Listener {
 public:
  Listener() = default;
  Listener(Listener&& o) noexcept;
  Listener& operator=(Listener&& o) noexcept;
  ~Listener() { close(); }
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  Result<Stream> accept() { return accept_until(kNoDeadline); }
  Result<Stream> accept(std::chrono::nanoseconds timeout) { return accept_until(deadline_after(kNoDeadline, timeout)); }

  // Closes the listening socket; an accept() in progress on another fiber returns Errc::closed, and close() waits for
  // it to leave (it does at once). Closing a closed listener does nothing.
  std::error_code close();
  bool is_open() const { return !gate_.is_shut(); }
  // The descriptor, or -1 once closed.
  int fd() const;
  // Where it listens (the kernel's choice of port when asked for port 0).
  const Address& local_addr() const { return local_; }
  uint64_t accept_backoffs() const { return backoffs_.load(std::memory_order_relaxed); }

 private:
  friend Result<Listener> listen(const Address& addr, const ListenOptions& opts);
  Result<Stream> accept_until(int64_t deadline);

  // io_ and d_ change only in close() once the accept in progress has left, and in moves.
  netpoll::IoBackend* io_ = nullptr;
  netpoll::Desc* d_ = nullptr;
  bool opened_ = false;  // false: default-constructed or moved from (Errc::not_open rather than Errc::closed)
  mutable CloseGate gate_;
  bool nodelay_ = true;
  Address local_;
  std::atomic<uint64_t> backoffs_{0};
};

Result<Listener> listen(const Address& addr, const ListenOptions& opts = {});
Result<Listener> listen(std::string_view addr, const ListenOptions& opts = {});

}  // namespace tern::net
