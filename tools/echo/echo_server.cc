// tools/echo/echo_server.cc: see echo_server.h.
#include "tools/echo/echo_server.h"

#include <time.h>

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <system_error>

#include "runtime/blocking.h"
#include "runtime/go.h"
#include "runtime/limiter.h"
#include "runtime/net/drain.h"
#include "runtime/net/net.h"
#include "runtime/pool.h"
#include "runtime/signals.h"
#include "runtime/sync/wait_group.h"
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
// The same during a drain, which waits for it: a client that has read its last answer closes within a round trip, and
// the drain should not wait two seconds for one that does not.
constexpr auto kDrainLingerTimeout = 200ms;
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

// Reads and drops input until the peer closes, `limit` passes or kLingerMaxBytes arrive.
void linger_close(net::Stream& s, char* buf, size_t cap, std::chrono::nanoseconds limit = kLingerTimeout) {
  s.shutdown(net::Shutdown::write);
  s.set_read_deadline(net::Clock::now() + limit);
  size_t drained = 0;
  while (drained < kLingerMaxBytes) {
    net::IoResult r = s.read(buf, cap);
    if (!r || r.n == 0) break;
    drained += r.n;
  }
  s.close();
}

void count(metrics::Counter* c) {
  if (c != nullptr) c->inc(1);
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
  // `drain` joins the connection to the server's drain (null: none).
  HttpConn(net::Stream s, const ServerOptions& opts, net::Drain* drain)
      : s_(std::move(s)),
        conn_(drain != nullptr ? drain->join(s_) : net::Drain::Conn()),
        opts_(opts),
        limits_(opts.limits),
        metrics_(opts.metrics),
        cpu_pool_(opts.cpu_pool),
        pooled_(opts.buffers == Buffers::kPool) {
    drained_ = drain != nullptr && !conn_.joined();  // a drain had begun: close at once
    request_start_ns_ = mono_ns();                   // the first request's header timeout runs from the accept
  }
  ~HttpConn() { release(); }
  HttpConn(const HttpConn&) = delete;
  HttpConn& operator=(const HttpConn&) = delete;

  void run() {
    if (drained_) return;
    for (;;) {
      if (buf_ == nullptr) acquire();
      if (len_ == cap_) {
        const Growth g = grow();
        if (g == Growth::kAtLimit) return;
        if (g == Growth::kOverBudget) return refuse_for_memory();
      }
      // With nothing buffered the connection is between requests: idle, which a drain may end by closing it, and
      // under the idle timeout. Otherwise a request is arriving, under the header or read timeout.
      const bool between = len_ == 0;
      if (between && !idle()) return;
      const int64_t timeout_ns = between ? opts_.idle_timeout.count() : request_time_left();
      net::IoResult r = timeout_ns > 0 ? s_.read(buf_ + len_, cap_ - len_, std::chrono::nanoseconds(timeout_ns))
                                       : s_.read(buf_ + len_, cap_ - len_);
      if (r.ec == std::errc::timed_out) return timed_out(between);
      if (!r || r.n == 0) return;
      if (between) {
        if (!busy()) return;  // the drain closed it while this read returned
        request_start_ns_ = mono_ns();
      }
      // How long what this read returned sat queued before the fiber ran (the limiter's queueing signal).
      queued_ = tern::this_fiber::queued();
      len_ += r.n;
      if (metrics_.latency != nullptr) read_ns_ = mono_ns();
      if (need_ > len_) continue;  // the body of a request is still arriving: no point parsing again yet
      if (!answer()) return;
      if (closing_) {
        linger_close(s_, buf_, cap_, conn_.draining() ? kDrainLingerTimeout : kLingerTimeout);
        return;
      }
      // Everything answered has been sent, so nothing points into the buffer any more: move the rest to the front.
      std::memmove(buf_, buf_ + parsed_, len_ - parsed_);
      len_ -= parsed_;
      if (need_ != 0) need_ -= parsed_;
      if (parsed_ != 0) request_start_ns_ = mono_ns();  // what is left begins the next request
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
      // Shed beyond --max-inflight: answered at once, and the connection stays open for later requests.
      std::optional<Limiter::Token> token =
          opts_.limiter != nullptr ? opts_.limiter->try_acquire(queued_) : std::optional<Limiter::Token>();
      if (opts_.limiter != nullptr && !token) {
        http::Response shed;
        shed.status = 503;
        shed.body = "over capacity, retry later\n";
        shed.retry_after_s = 1;
        shed.close = conn_.draining();
        out_.add(shed, req);
        count(metrics_.shed);
        parsed_ += p.consumed;
        if (!req.keep_alive || shed.close) closing_ = true;
        continue;
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
      // Draining: this answer ends the connection (Connection: close), as Go's Shutdown has it.
      http::Response resp = route.response;
      resp.close = conn_.draining();
      out_.add(resp, req);
      if (token) token->done();  // measured to the answer's batching; the write follows at once
      tern::count_work(1);       // a request served: the controller's throughput-driven policies read it
      answered_++;
      parsed_ += p.consumed;
      if (!req.keep_alive || resp.close) closing_ = true;
    }
    return flush();
  }

  bool flush() {
    if (out_.empty()) return true;
    std::span<const iovec> iov = out_.iovecs();
    net::IoResult w = opts_.write_timeout.count() > 0
                          ? s_.writev(iov.data(), static_cast<int>(iov.size()), opts_.write_timeout)
                          : s_.writev(iov.data(), static_cast<int>(iov.size()));
    out_.clear();
    count_answered();
    if (w.ec == std::errc::timed_out) count(metrics_.timeouts);
    return static_cast<bool>(w);
  }

  bool idle() { return !conn_.joined() || conn_.idle(); }
  bool busy() { return !conn_.joined() || conn_.busy(); }

  // Time left for the request arriving now: the header timeout until its headers are complete (need_ unknown), then
  // the read timeout; both from its first byte. At least 1 ns (0 means none to the caller); 0 when neither is set.
  int64_t request_time_left() const {
    const int64_t limit = need_ == 0 ? opts_.header_timeout.count() : opts_.read_timeout.count();
    if (limit <= 0) return 0;
    return std::max<int64_t>(request_start_ns_ + limit - mono_ns(), 1);
  }

  // A timeout ended the wait: an idle connection closes without a word; a request cut short is answered 408.
  void timed_out(bool between) {
    count(metrics_.timeouts);
    if (between) return;
    out_.add_error(408);
    if (flush()) linger_close(s_, buf_, cap_);
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

  enum class Growth { kGrown, kAtLimit, kOverBudget };
  // Makes room when the buffer is full: a request bigger than the buffer is arriving. Requests are bounded by the
  // header and body limits, and parsing reports those as errors first, so a full buffer at that bound cannot happen.
  // The bytes come from the server's budget (--max-buffer-memory), taken before they are allocated.
  Growth grow() {
    const size_t max = limits_.max_header_bytes + limits_.max_body_bytes;
    if (cap_ >= max) return Growth::kAtLimit;
    size_t cap = std::min(std::max(need_, cap_ * 2), max);
    if (opts_.buffer_budget != nullptr) {
      if (!opts_.buffer_budget->take(cap - budgeted_)) return Growth::kOverBudget;
      budgeted_ = cap;
    }
    std::unique_ptr<char[]> bigger(new char[cap]);
    std::memcpy(bigger.get(), buf_, len_);
    release_small();
    grown_ = std::move(bigger);
    buf_ = grown_.get();
    cap_ = cap;
    return Growth::kGrown;
  }

  // The request arriving would take the server past --max-buffer-memory: 503 with Retry-After, before its body is
  // read (so the connection closes; what was already sent stays unread). Answers already batched go first.
  void refuse_for_memory() {
    count(metrics_.buffer_refusals);
    out_.add_error(503, 1);
    if (flush()) linger_close(s_, buf_, cap_);
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
    if (budgeted_ != 0) opts_.buffer_budget->give(budgeted_);
    budgeted_ = 0;
    buf_ = nullptr;
    cap_ = 0;
  }

  net::Stream s_;
  net::Drain::Conn conn_;  // after s_: leaves the drain before the stream goes
  const ServerOptions& opts_;
  const http::Limits& limits_;
  const AppMetrics& metrics_;
  Runtime* cpu_pool_;
  int64_t read_ns_ = 0;    // when the last read returned (only with metrics on)
  uint32_t answered_ = 0;  // requests answered and not yet counted
  const bool pooled_;
  ReadBuffer* small_ = nullptr;    // the 16 KiB buffer held, if any
  std::unique_ptr<char[]> grown_;  // or a larger one, for a large request
  size_t budgeted_ = 0;            // grown_'s bytes taken from opts_.buffer_budget
  char* buf_ = nullptr;            // whichever is held; nullptr between requests
  size_t cap_ = 0;
  size_t len_ = 0;     // bytes read into buf_
  size_t parsed_ = 0;  // bytes of buf_ answered (their responses may point into them until flushed)
  size_t need_ = 0;    // buf_ must hold this many bytes before the next request can be complete; 0: unknown
  bool closing_ = false;
  bool drained_ = false;                // a drain had begun when the connection came: it closes unanswered
  int64_t request_start_ns_ = 0;        // the first byte of the request arriving now (the accept, for the first)
  std::chrono::nanoseconds queued_{0};  // how long the last read's data waited for this fiber to run
  http::ResponseBatch out_;
};

void serve_tcp(net::Stream s, net::Drain& drain) {
  net::Drain::Conn conn = drain.join(s);
  std::unique_ptr<char[]> buf(new char[kTcpBufBytes]);
  while (conn.idle()) {
    net::IoResult r = s.read(buf.get(), kTcpBufBytes);
    if (!r || r.n == 0 || !conn.busy()) return;
    if (!s.write_all(buf.get(), r.n)) return;
  }
}

// A connection beyond --max-conns: HTTP gets a 503 that closes it, TCP just the close.
void refuse(net::Stream s, Mode mode) {
  if (mode == Mode::kHttp) {
    static constexpr std::string_view k503 =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 27\r\nRetry-After: 1\r\n"
        "Connection: close\r\n\r\nover capacity, retry later\n";
    if (s.write_all(k503.data(), k503.size(), 1s)) {
      char buf[1024];
      linger_close(s, buf, sizeof buf);
    }
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
  auto shed = metrics::counter("tern_echo_shed_total", "HTTP requests answered 503 beyond --max-inflight");
  if (!shed) return shed.error();
  auto refused = metrics::counter("tern_echo_refused_connections_total", "connections refused beyond --max-conns");
  if (!refused) return refused.error();
  auto timeouts =
      metrics::counter("tern_echo_timeouts_total", "connections ended by a header, read, idle or write timeout");
  if (!timeouts) return timeouts.error();
  m.requests = *c;
  m.latency = *h;
  m.shed = *shed;
  m.refused = *refused;
  auto refusals = metrics::counter("tern_echo_buffer_refusals_total",
                                   "HTTP requests answered 503 because reading them would pass --max-buffer-memory");
  if (!refusals) return refusals.error();
  m.timeouts = *timeouts;
  m.buffer_refusals = *refusals;
  return m;
}

Result<bool> serve(const ServerOptions& opts) {
  Result<net::Address> addr = parse_listen_address(opts.listen);
  if (!addr) return addr.error();
  Result<net::Listener> l = net::listen(*addr);
  if (!l) return l.error().wrap("listen " + opts.listen);

  net::Drain drain;
  drain.watch(*l);
  // The signals' fiber: the first SIGTERM or SIGINT starts the drain, which closes the listener below.
  std::unique_ptr<SignalSubscription> sigs;
  tern::WaitGroup sig_fiber;
  if (opts.drain_on_signals) {
    auto sub = tern::signals({SIGTERM, SIGINT});
    if (!sub) return sub.error();
    sigs = std::move(*sub);
    sig_fiber.add(1);
    tern::go([&] {
      if (std::optional<int> sig = sigs->recv()) {
        std::fprintf(stderr, "tern-echo: %s: draining (at most %lld ms)\n", strsignal(*sig),
                     static_cast<long long>(opts.drain_timeout.count() / 1'000'000));
        drain.start();
      }
      sig_fiber.done();
    });
  }
  // Shared with the connections' fibers, which may outlive this frame after a drain's deadline.
  auto open = std::make_shared<std::atomic<size_t>>(0);
  Result<bool> outcome = true;
  for (;;) {
    Result<net::Stream> s = l->accept();
    if (!s) {
      if (drain.draining()) break;  // the drain closed the listener
      if (permanent(s.error().code())) {
        outcome = s.error().wrap("accept");
        break;
      }
      tern::sleep_for(kAcceptErrorPause);
      continue;
    }
    if (opts.max_conns != 0 && open->load(std::memory_order_relaxed) >= opts.max_conns) {
      count(opts.metrics.refused);
      tern::go([s = std::move(*s), mode = opts.mode]() mutable { refuse(std::move(s), mode); });
      continue;
    }
    open->fetch_add(1, std::memory_order_relaxed);
    if (opts.mode == Mode::kTcp) {
      tern::go([s = std::move(*s), &drain, open]() mutable {
        serve_tcp(std::move(s), drain);
        open->fetch_sub(1, std::memory_order_relaxed);
      });
    } else {
      tern::go([s = std::move(*s), &opts, &drain, open]() mutable {
        HttpConn(std::move(s), opts, &drain).run();
        open->fetch_sub(1, std::memory_order_relaxed);
      });
    }
  }
  if (drain.draining()) {
    // Every connection that joined leaves by the deadline, or is closed then (a request still computing or sleeping
    // leaves when it is done; the process may end first).
    const auto t0 = std::chrono::steady_clock::now();
    const bool clean = drain.wait(t0 + opts.drain_timeout);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
    if (clean) {
      std::fprintf(stderr, "tern-echo: drained in %lld ms\n", static_cast<long long>(ms.count()));
    } else {
      std::fprintf(stderr, "tern-echo: drain deadline passed after %lld ms: %zu connections closed unfinished\n",
                   static_cast<long long>(ms.count()), drain.open());
    }
    if (outcome) outcome = clean;
  }
  if (sigs) sigs->reset();  // ends the signals' fiber if no signal came
  sig_fiber.wait();
  return outcome;
}

}  // namespace tern::echo
