// tools/echo/echo_server.h: tern-echo's accept loop and its HTTP and TCP connection handlers, on runtime/net.
//
// One fiber accepts; every connection gets a fiber of its own. An HTTP connection keeps one read buffer for its whole
// life: each read is followed by parsing every complete request in the buffer and answering them all with a single
// writev (pipelined requests cost one write per read, not one per request). A request that must wait (/sleep, /block)
// first sends the answers batched before it, so earlier requests are not held back.
//
//   rt.run([&] {
//     tern::echo::ServerOptions opts;
//     opts.listen = "127.0.0.1:8080";
//     tern::Error e = tern::echo::serve(opts);           // returns only when it cannot serve
//     fmt::print(stderr, "tern-echo: {}\n", e.message);
//   });
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <string>

#include "base/result.h"
#include "runtime/metrics/metrics.h"
#include "runtime/net/address.h"
#include "tools/echo/http_parser.h"

namespace tern {
class Runtime;
class Limiter;
}  // namespace tern

namespace tern::echo {

enum class Mode { kHttp, kTcp };

// Where an HTTP connection's read buffer comes from for each request (tern-echo --buffers). A connection takes a buffer
// before it reads and gives it back once everything read has been answered, so a keep-alive connection takes one per
// request (its read waits with the buffer: io_uring reads into it). kPool: a tern::Pool of 16 KiB buffers, each P
// reusing the ones its connections gave back, still hot in its core's cache. kAlloc: new and delete each time.
enum class Buffers { kPool, kAlloc };

// Application metrics (runtime/metrics/metrics.h), counted when set: tern-echo sets them with --metrics.
struct AppMetrics {
  metrics::Counter* requests = nullptr;   // tern_echo_requests_total
  metrics::Histogram* latency = nullptr;  // tern_echo_request_seconds: request read to response sent
  metrics::Counter* shed = nullptr;       // tern_echo_shed_total: requests answered 503 by --max-inflight
  metrics::Counter* refused = nullptr;    // tern_echo_refused_connections_total: connections beyond --max-conns
  metrics::Counter* timeouts = nullptr;   // tern_echo_timeouts_total: connections closed by a timeout
  // tern_echo_buffer_refusals_total: requests answered 503 because reading them would pass --max-buffer-memory
  metrics::Counter* buffer_refusals = nullptr;
};

// The bytes of large read buffers held at once over every connection (tern-echo --max-buffer-memory). A request
// larger than the pooled 16 KiB buffer grows its connection's buffer to its full size before it can be answered, so
// without a bound N connections each sending the largest body allowed hold N times --max-body: a few hundred of them
// take a container past its memory limit and the kernel kills the server. With one, a request whose buffer would
// pass the bound is answered 503 with Retry-After before its body is read, and the server keeps serving.
class BufferBudget {
 public:
  explicit BufferBudget(size_t limit) : limit_(limit) {}
  // Takes n bytes if they fit under the limit.
  bool take(size_t n) {
    size_t used = used_.load(std::memory_order_relaxed);
    do {
      if (used > limit_ || n > limit_ - used) return false;
    } while (!used_.compare_exchange_weak(used, used + n, std::memory_order_relaxed));
    return true;
  }
  void give(size_t n) { used_.fetch_sub(n, std::memory_order_relaxed); }
  size_t limit() const { return limit_; }

 private:
  const size_t limit_;
  std::atomic<size_t> used_{0};
};

// Registers tern-echo's application metrics.
Result<AppMetrics> register_app_metrics();

struct ServerOptions {
  std::string listen = "127.0.0.1:8080";
  Mode mode = Mode::kHttp;
  http::Limits limits;
  AppMetrics metrics;  // unset: not counted
  // Where /work burns its CPU (tern-echo --cpu-pool): a second runtime, handed each request with tern::go_on while
  // the connection's fiber waits parked, so a burst of CPU work holds that runtime's processors and not the ones
  // that read sockets and answer /health. Null: in the connection's fiber, as always. Must outlive serve().
  Runtime* cpu_pool = nullptr;
  // Timeouts; zero for none. header: from a request's first byte to the end of its header block; read: from its first
  // byte to the end of its body (both answered 408, then the connection closes); idle: a kept-alive connection waiting
  // for the next request's first byte (closed without a word, as Go's IdleTimeout); write: each write of answers
  // (the connection closes).
  std::chrono::nanoseconds header_timeout = std::chrono::seconds(10);
  std::chrono::nanoseconds read_timeout = std::chrono::seconds(30);
  std::chrono::nanoseconds idle_timeout = std::chrono::seconds(60);
  std::chrono::nanoseconds write_timeout = std::chrono::seconds(30);
  // Connections open at once beyond this are accepted, answered 503 (HTTP) or closed (TCP), and counted; 0: no limit.
  size_t max_conns = 0;
  // Requests in flight beyond its limit are answered 503 with Retry-After: 1 (--max-inflight). Null: all admitted.
  // Must outlive serve().
  Limiter* limiter = nullptr;
  // On SIGTERM or SIGINT: stop accepting, let the requests in flight finish (their answers say Connection: close),
  // close idle connections, and return within drain_timeout. Off: the signals keep their default action.
  bool drain_on_signals = true;
  std::chrono::nanoseconds drain_timeout = std::chrono::seconds(10);
  Buffers buffers = Buffers::kPool;
  // Bounds the large read buffers held at once (--max-buffer-memory). Null: no bound. Must outlive serve().
  BufferBudget* buffer_budget = nullptr;
};

// Parses a --listen value (runtime/net's numeric forms: "127.0.0.1:8080", "[::1]:8080", ":8080").
Result<net::Address> parse_listen_address(const std::string& listen);

// Listens and serves until a drain on SIGTERM/SIGINT ends, with true when every connection left within the drain's
// timeout and false when some were closed unfinished (stderr says which), or until the listener fails (an error
// saying why: it could not listen, or accepting failed for good). Must run on a fiber of a Runtime.
Result<bool> serve(const ServerOptions& opts);

}  // namespace tern::echo
