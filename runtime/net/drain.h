// runtime/net/drain.h: tern::net::Drain, a server's graceful shutdown, as Go's http.Server.Shutdown.
//
//   tern::net::Drain drain;
//   drain.watch(listener);                        // closed when the drain starts: accept() returns Errc::closed
//   for (;;) {
//     auto s = listener.accept();
//     if (!s) break;                              // closed by the drain (or a real error)
//     tern::go([&, s = std::move(*s)]() mutable {
//       auto conn = drain.join(s);                // a handle for this connection; draining already: it is closed
//       while (conn.idle()) {                     // false once a drain has begun: finish, closing
//         auto r = s.read(...);                   // a drain closes an idle connection: this returns Errc::closed
//         if (!r || !conn.busy()) break;          // busy() false: the drain closed it while the read returned
//         ... answer; if (conn.draining()) mark the response "Connection: close" ...
//       }
//     });
//   }
//   // On SIGTERM (tern::signals), from any fiber:
//   drain.start();                                 // stop accepting, close idle connections
//   bool clean = drain.wait(deadline);             // until every joined connection left; past the deadline the rest
//                                                  // are closed (clean == false)
//
// A connection is busy from busy() (its request's first bytes have been read) until idle() (its answers are sent and
// it is about to wait for the next request). start() closes the listeners it watches and every idle connection at
// once, and marks the busy ones: their idle() returns false, so each finishes the request it has, says
// "Connection: close" (the program's part, on draining()), and leaves. A request whose bytes arrive while the drain
// closes its idle connection is lost to a close, never half-answered: HTTP clients retry an idempotent request on a
// keep-alive connection closed under it (RFC 9112 section 9.3.1), the race Go's Shutdown has too.
//
// wait() returns by its deadline even when a connection does not leave (a request still computing, or sleeping, when
// its stream was closed): the handles share the drain's state, so the Drain may go before them.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>

#include "runtime/net/listener.h"
#include "runtime/net/stream.h"

namespace tern::net {

class Drain {
  struct State;

  // A joined connection's record, inside its Conn (so on the connection's own, already warm, memory: a request's two
  // state changes touch no other cache line). The drain's list points at it; `index` is its place there.
  struct Entry {
    Stream* s = nullptr;
    std::atomic<uint8_t> state{0};
    size_t index = 0;
  };

 public:
  // One joined connection. Movable (a move re-points the drain's list under its lock); leaving (destruction) tells
  // wait() it is gone.
  class Conn {
   public:
    Conn();
    Conn(Conn&& o) noexcept;
    Conn& operator=(Conn&&) = delete;
    Conn(const Conn&) = delete;
    ~Conn();
    // About to wait for the next request: false once a drain has begun (the caller finishes and closes), or if the
    // drain closed this connection.
    bool idle();
    // A request's bytes arrived: false if the drain closed this connection meanwhile (the read raced the close).
    bool busy();
    // Whether a drain has begun: a response written now should end the connection.
    bool draining() const;
    bool joined() const { return st_ != nullptr; }

   private:
    friend class Drain;
    Conn(std::shared_ptr<State> st, Stream& s);
    std::shared_ptr<State> st_;  // null: not joined
    Entry e_;
  };

  Drain();
  Drain(const Drain&) = delete;
  Drain& operator=(const Drain&) = delete;
  ~Drain();

  // Closes `l` when the drain starts (at once if it has). `l` must stay alive until then or until unwatch(l).
  void watch(Listener& l);
  void unwatch(Listener& l);
  // Joins a connection, busy (it was just accepted: its request is on the way). If the drain has begun, the handle is
  // not joined (joined() false) and the caller should close the stream. The stream must outlive the handle.
  Conn join(Stream& s);

  // Begins the drain: closes the watched listeners and the idle connections, marks the rest. Idempotent; false if it
  // had begun.
  bool start();
  bool draining() const;
  // Starts the drain if it has not begun, and waits until every joined connection has left or `deadline` passes;
  // then closes the streams of those still there and returns false.
  bool wait(std::chrono::steady_clock::time_point deadline);
  // Joined connections not yet left.
  size_t open() const;

 private:
  std::shared_ptr<State> st_;
};

}  // namespace tern::net
