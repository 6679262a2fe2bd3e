// tools/echo/echo_server.cc: see echo_server.h.
#include "tools/echo/echo_server.h"

#include <time.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <system_error>

#include "runtime/blocking.h"
#include "runtime/go.h"
#include "runtime/net/net.h"
#include "runtime/pool.h"
#include "tools/echo/cpu_burn.h"
#include "tools/echo/echo_routes.h"
#include "tools/echo/http_response.h"

namespace tern::echo {
namespace {

using namespace std::chrono_literals;

// A connection's read buffer: a wrk request is ~40 bytes and a browser's ~1 KiB, so 16 KiB takes a deep pipeline of
// them in one read; larger bodies grow the buffer (up to the header plus body limits) for that request.
constexpr size_t kReadBufBytes = 16 << 10;
// Pooled read buffers kept per P: more than the connections one P serves at once in the benchmarks (100), so that a
// steady load neither misses nor drops.
constexpr size_t kPooledBuffersPerProc = 256;
// TCP mode's buffer: one read's worth of bytes echoed per write.
constexpr size_t kTcpBufBytes = 64 << 10;
// After answering a request with "Connection: close" or an error, the server stops writing but keeps reading (and
// discarding) for a while: closing a socket with unread input makes the kernel send a reset, which can destroy the
// response before the client has read it (RFC 9112 section 9.6). The client normally closes within a round trip;
// these bound what a client that does not can cost.
constexpr auto kLingerTimeout = 2s;
constexpr size_t kLingerMaxBytes = 4 << 20;
// accept() failures that are neither descriptor exhaustion (the listener rides those out) nor a closed listener are
// retried after this pause, so that a persistent one costs a few wakeups a second rather than a spinning core.
constexpr auto kAcceptErrorPause = 10ms;

// /block: a call that blocks its thread (a sleep standing in for file I/O or a database client), made the way a
// server should make one, inside tern::blocking: the fibers queued behind it run on another thread meanwhile.
void block_thread_ms(uint64_t ms) {
  tern::blocking([ms] {
    timespec ts{static_cast<time_t>(ms / 1000), static_cast<long>((ms % 1000) * 1'000'000)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
  });
}

// Reads and drops input until the peer closes, kLingerTimeout passes or kLingerMaxBytes arrive.
void linger_close(net::Stream& s, char* buf, size_t cap) {
  s.shutdown(net::Shutdown::write);
  s.set_read_deadline(net::Clock::now() + kLingerTimeout);
  size_t drained = 0;
  while (drained < kLingerMaxBytes) {
    net::IoResult r = s.read(buf, cap);
    if (!r || r.n == 0) break;
    drained += r.n;
  }
  s.close();
}

struct ReadBuffer {
  char bytes[kReadBufBytes];
};

tern::Pool<ReadBuffer>& read_buffers() {
  // Leaked: connection fibers still running during static destruction may give buffers back.
  static auto* pool = new tern::Pool<ReadBuffer>("echo_read_buffers", {.per_proc = kPooledBuffersPerProc});
  return *pool;
}

class HttpConn {
 public:
  HttpConn(net::Stream s, const ServerOptions& opts)
      : s_(std::move(s)),
        limits_(opts.limits),
        metrics_(opts.metrics),
        cpu_pool_(opts.cpu_pool),
        pooled_(opts.buffers == Buffers::kPool) {}
  ~HttpConn() { release(); }
  HttpConn(const HttpConn&) = delete;
  HttpConn& operator=(const HttpConn&) = delete;

  void run() {
    for (;;) {
      if (buf_ == nullptr) acquire();
      if (len_ == cap_ && !grow()) return;
      net::IoResult r = s_.read(buf_ + len_, cap_ - len_);
      if (!r || r.n == 0) return;
      len_ += r.n;
      if (metrics_.latency != nullptr) read_ns_ = mono_ns();
      if (need_ > len_) continue;  // the body of a request is still arriving: no point parsing again yet
      if (!answer()) return;
      if (closing_) {
        linger_close(s_, buf_, cap_);
        return;
      }
      // Everything answered has been sent, so nothing points into the buffer any more: move the rest to the front.
      std::memmove(buf_, buf_ + parsed_, len_ - parsed_);
      len_ -= parsed_;
      if (need_ != 0) need_ -= parsed_;
      parsed_ = 0;
      if (len_ == 0) release();  // between requests: the buffer goes back (--buffers)
    }
  }

 private:
  // Answers every complete request in buf_[parsed_, len_) and sends the answers. False if sending failed.
  bool answer() {
    while (parsed_ < len_ && !closing_) {
      http::Request req;
      http::ParseResult p = http::parse_request({buf_ + parsed_, len_ - parsed_}, limits_, req);
      if (p.state == http::ParseState::kNeedMore) {
        need_ = p.need == 0 ? 0 : parsed_ + p.need;
        break;
      }
      need_ = 0;
      if (p.state == http::ParseState::kError) {
        out_.add_error(p.status);
        closing_ = true;
        break;
      }
      Route route = echo::route(req);
      switch (route.action) {
        case Action::kRespond:
          break;
        case Action::kWork:
          if (cpu_pool_ == nullptr) {
            burn_cpu_us(route.amount);
            break;
          }
          // The wait parks this fiber: send what is batched first, as for /sleep.
          if (!flush()) return false;
          tern::go_on(*cpu_pool_, [us = route.amount] { burn_cpu_us(us); }).join();
          break;
        case Action::kSleep:
          if (!flush()) return false;
          tern::sleep_for(std::chrono::milliseconds(route.amount));
          break;
        case Action::kBlock:
          if (!flush()) return false;
          block_thread_ms(route.amount);
          break;
        case Action::kMix:
          if (!flush()) return false;
          if (route.amount > 0) tern::sleep_for(std::chrono::milliseconds(route.amount));
          burn_cpu_us(route.cpu_us);
          break;
      }
      out_.add(route.response, req);
      tern::count_work(1);  // a request served: the controller's throughput-driven policies read it
      answered_++;
      parsed_ += p.consumed;
      if (!req.keep_alive) closing_ = true;
    }
    return flush();
  }

  bool flush() {
    if (out_.empty()) return true;
    std::span<const iovec> iov = out_.iovecs();
    net::IoResult w = s_.writev(iov.data(), static_cast<int>(iov.size()));
    out_.clear();
    count_answered();
    return static_cast<bool>(w);
  }

  // The requests answered since the last count: each took from the read that completed it to this write (pipelined
  // requests share both times; two clock reads per write, not per request).
  void count_answered() {
    if (answered_ == 0) return;
    if (metrics_.requests != nullptr) metrics_.requests->inc(answered_);
    if (metrics_.latency != nullptr) {
      const double s = static_cast<double>(mono_ns() - read_ns_) * 1e-9;
      for (uint32_t i = 0; i < answered_; i++) metrics_.latency->observe(s);
    }
    answered_ = 0;
  }

  static int64_t mono_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
  }

  // Makes room when the buffer is full: a request bigger than the buffer is arriving. Requests are bounded by the
  // header and body limits, and parsing reports those as errors first, so a full buffer at that bound cannot happen.
  bool grow() {
    const size_t max = limits_.max_header_bytes + limits_.max_body_bytes;
    if (cap_ >= max) return false;
    size_t cap = std::min(std::max(need_, cap_ * 2), max);
    std::unique_ptr<char[]> bigger(new char[cap]);
    std::memcpy(bigger.get(), buf_, len_);
    release_small();
    grown_ = std::move(bigger);
    buf_ = grown_.get();
    cap_ = cap;
    return true;
  }

  // A 16 KiB buffer for the next request: from this P's pool, or new (--buffers).
  void acquire() {
    small_ = pooled_ ? read_buffers().get() : new ReadBuffer;
    if (small_ == nullptr) throw std::bad_alloc();
    buf_ = small_->bytes;
    cap_ = kReadBufBytes;
  }
  void release_small() {
    if (small_ == nullptr) return;
    if (pooled_) {
      read_buffers().put(small_);
    } else {
      delete small_;
    }
    small_ = nullptr;
  }
  // Gives the buffer back; a grown one (a large request's) is freed, not pooled.
  void release() {
    release_small();
    grown_.reset();
    buf_ = nullptr;
    cap_ = 0;
  }

  net::Stream s_;
  const http::Limits& limits_;
  const AppMetrics& metrics_;
  Runtime* cpu_pool_;
  int64_t read_ns_ = 0;    // when the last read returned (only with metrics on)
  uint32_t answered_ = 0;  // requests answered and not yet counted
  const bool pooled_;
  ReadBuffer* small_ = nullptr;    // the 16 KiB buffer held, if any
  std::unique_ptr<char[]> grown_;  // or a larger one, for a large request
  char* buf_ = nullptr;            // whichever is held; nullptr between requests
  size_t cap_ = 0;
  size_t len_ = 0;     // bytes read into buf_
  size_t parsed_ = 0;  // bytes of buf_ answered (their responses may point into them until flushed)
  size_t need_ = 0;    // buf_ must hold this many bytes before the next request can be complete; 0: unknown
  bool closing_ = false;
  http::ResponseBatch out_;
};

void serve_tcp(net::Stream s) {
  std::unique_ptr<char[]> buf(new char[kTcpBufBytes]);
  for (;;) {
    net::IoResult r = s.read(buf.get(), kTcpBufBytes);
    if (!r || r.n == 0) return;
    if (!s.write_all(buf.get(), r.n)) return;
  }
}

bool permanent(std::error_code ec) {
  return ec == net::Errc::not_open || ec == net::Errc::closed || ec == net::Errc::not_in_fiber ||
         ec == net::Errc::no_poller;
}

}  // namespace

Result<net::Address> parse_listen_address(const std::string& listen) {
  Result<net::Address> a = net::Address::parse(listen);
  if (!a) return a.error().wrap("'" + listen + "'");
  return *a;
}

Result<AppMetrics> register_app_metrics() {
  AppMetrics m;
  auto c = metrics::counter("tern_echo_requests_total", "HTTP requests answered");
  if (!c) return c.error();
  // 1 us to about 67 s, doubling.
  auto h = metrics::histogram("tern_echo_request_seconds", "HTTP request latency: its read to its response's write");
  if (!h) return h.error();
  m.requests = *c;
  m.latency = *h;
  return m;
}

Error serve(const ServerOptions& opts) {
  Result<net::Address> addr = parse_listen_address(opts.listen);
  if (!addr) return addr.error();
  Result<net::Listener> l = net::listen(*addr);
  if (!l) return l.error().wrap("listen " + opts.listen);
  for (;;) {
    Result<net::Stream> s = l->accept();
    if (!s) {
      if (permanent(s.error().code())) return s.error().wrap("accept");
      tern::sleep_for(kAcceptErrorPause);
      continue;
    }
    if (opts.mode == Mode::kTcp) {
      tern::go([s = std::move(*s)]() mutable { serve_tcp(std::move(s)); });
    } else {
      tern::go([s = std::move(*s), &opts]() mutable { HttpConn(std::move(s), opts).run(); });
    }
  }
}

}  // namespace tern::echo
