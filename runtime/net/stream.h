// runtime/net/stream.h: tern::net::Stream, a connected TCP socket whose operations park the calling fiber.
//
// Streams come from Listener::accept() and dial() (runtime/net/listener.h, runtime/net/dial.h). Every operation must
// run on a fiber of the Runtime that made the stream (elsewhere it returns Errc::not_in_fiber): it returns at once when
// the kernel can do the work now and otherwise parks the fiber, never the thread, until the network poller readies it.
// Errors are values. TCP_NODELAY is on unless the stream was made with it off.
//
//   tern::net::Stream s = std::move(*tern::net::dial(addr, 2s));
//   s.set_deadline(tern::net::Clock::now() + 5s);           // every read and write until then
//   if (auto r = s.write_all(req.data(), req.size()); !r) return r.ec;
//   char buf[4096];
//   auto r = s.read(buf, sizeof buf, 100ms);                 // this read: at most 100 ms, and not past the deadline
//   if (r.ec == std::errc::timed_out) { /* the stream is still usable, or closable */ }
//
// Concurrency: one fiber may read while another writes; two readers (or two writers) at once are not supported. Any
// fiber may close() the stream while others are inside operations on it, as in Go: those operations return at once
// with Errc::closed (with the bytes they moved before), later ones fail with it, and the descriptor is closed only
// once the last of them has left (runtime/net/close_gate.h), so none of them ever touches a descriptor number the
// kernel has handed to another socket. Destruction, unlike close(), must not race with anything: the Stream must
// outlive every fiber that uses it. A Stream must be closed or destroyed before its Runtime. Deadlines set with
// set_deadline() apply to operations that start after the call.
#pragma once

#include <sys/uio.h>

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "runtime/net/address.h"
#include "runtime/net/close_gate.h"
#include "runtime/net/deadline.h"
#include "runtime/net/error.h"

namespace tern::netpoll {
class IoBackend;
struct Desc;
}  // namespace tern::netpoll

namespace tern::net {

enum class Shutdown { read, write, both };
struct DialOptions;
class Stream;
Result<Stream> dial(const Address& addr, std::chrono::nanoseconds timeout, const DialOptions& opts);

class Stream {
 public:
  Stream() = default;
  Stream(Stream&& o) noexcept;
  Stream& operator=(Stream&& o) noexcept;
  ~Stream() { close(); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // Reads what is available, up to len bytes (waiting until something is). n == 0 without error: end of stream.
  IoResult read(void* buf, size_t len) { return read_until(buf, len, rd_deadline_); }
  IoResult read(void* buf, size_t len, std::chrono::nanoseconds timeout) {
    if (timeout == kNoTimeout) return read_until(buf, len, rd_deadline_);
    const int64_t now = sched::now_ns();  // one clock read for the deadline and its check
    return read_until(buf, len, deadline_after(rd_deadline_, timeout, now), now);
  }
  // Reads exactly len bytes; Errc::eof (with n < len) if the stream ends first.
  IoResult read_full(void* buf, size_t len) { return read_full_until(buf, len, rd_deadline_); }
  IoResult read_full(void* buf, size_t len, std::chrono::nanoseconds timeout) {
    return read_full_until(buf, len, deadline_after(rd_deadline_, timeout));
  }
  // Writes all len bytes (n < len only with an error).
  IoResult write_all(const void* buf, size_t len) { return write_all_until(buf, len, wr_deadline_); }
  IoResult write_all(const void* buf, size_t len, std::chrono::nanoseconds timeout) {
    return write_all_until(buf, len, deadline_after(wr_deadline_, timeout));
  }
  // Writes all of the buffers, gathering them into as few sends as the kernel takes.
  IoResult writev(const iovec* iov, int iovcnt) { return writev_until(iov, iovcnt, wr_deadline_); }
  IoResult writev(const iovec* iov, int iovcnt, std::chrono::nanoseconds timeout) {
    if (timeout == kNoTimeout) return writev_until(iov, iovcnt, wr_deadline_);
    const int64_t now = sched::now_ns();
    return writev_until(iov, iovcnt, deadline_after(wr_deadline_, timeout, now), now);
  }

  // Deadlines for later reads and writes; Clock::time_point::max() removes them. An operation that reaches its
  // deadline returns std::errc::timed_out with whatever it moved before.
  void set_deadline(Clock::time_point t) { rd_deadline_ = wr_deadline_ = to_deadline(t); }
  void set_read_deadline(Clock::time_point t) { rd_deadline_ = to_deadline(t); }
  void set_write_deadline(Clock::time_point t) { wr_deadline_ = to_deadline(t); }

  std::error_code shutdown(Shutdown how = Shutdown::write);
  // Closes the socket. Operations other fibers are inside return Errc::closed (close() waits for them to leave, which
  // they do at once), and later ones fail with it. Closing a closed stream, or one another fiber is closing, does
  // nothing. May be called from any fiber of the stream's Runtime, or from a plain thread (which it then blocks for
  // as long as the operations take to leave).
  std::error_code close();

  bool is_open() const { return !gate_.is_shut(); }
  // The descriptor, or -1 once closed; another fiber's close() may close it as soon as this returns.
  int fd() const;
  Result<Address> local_addr() const;
  Result<Address> peer_addr() const;

  // Takes ownership of `fd`, a connected stream socket created with io->socket_flags(); for Listener and dial.
  static Result<Stream> adopt(netpoll::IoBackend* io, int fd, bool nodelay);

 private:
  friend Result<Stream> dial(const Address& addr, std::chrono::nanoseconds timeout, const DialOptions& opts);
  Stream(netpoll::IoBackend* io, netpoll::Desc* d) : io_(io), d_(d), opened_(true), gate_(true) {}
  // Enters the gate for an operation (which must then leave it), or the error why not.
  std::error_code enter();
  // The error of an operation that failed with `ec` (or, for a read, reached end of stream): Errc::closed if close()
  // began meanwhile, whatever its shutdown made the system call say.
  std::error_code failed(std::error_code ec) const;
  // `now`: a clock reading the caller took just before (the deadline's check uses it), or -1 to read the clock.
  IoResult read_until(void* buf, size_t len, int64_t deadline, int64_t now = -1);
  IoResult read_full_until(void* buf, size_t len, int64_t deadline);
  IoResult write_all_until(const void* buf, size_t len, int64_t deadline);
  IoResult writev_until(const iovec* iov, int iovcnt, int64_t deadline, int64_t now = -1);

  // io_ and d_ change only in close() once every operation has left, and in moves (which nothing races).
  netpoll::IoBackend* io_ = nullptr;
  netpoll::Desc* d_ = nullptr;
  bool opened_ = false;  // false: default-constructed or moved from (Errc::not_open rather than Errc::closed)
  mutable CloseGate gate_;
  int64_t rd_deadline_ = kNoDeadline;
  int64_t wr_deadline_ = kNoDeadline;
};

}  // namespace tern::net
