// tools/load/load.h: an open-loop HTTP load: requests at a constant rate, each one's latency measured from the time it
// was meant to be sent, so that a server that stalls is charged for every request the stall delayed and not only for
// the few in flight (coordinated omission, which closed-loop tools such as wrk build in). Runs on tern's own fibers
// and tern::net (dial, write, read with deadlines).
//
//   load::Options o{.addr = *net::Address::parse("127.0.0.1:8080"), .path = "/health", .rate = 20'000,
//                   .connections = 50, .duration = 10s};
//   rt.run([&] { result = load::run(o); });
//   result->corrected.quantile(0.999);   // from the intended send time
//   result->uncorrected.quantile(0.999); // from the actual send time: what a closed-loop tool reports
//
// The rate is split evenly over the connections: connection k sends request j at start + (k + j * C) / rate (wrk2's
// schedule). A connection whose reply is late sends its next request at once, still timed from its intended time. A
// rate of 0 is closed-loop: each connection sends as soon as its last reply is in. Errors are counted by kind, and a
// connection that failed is dialed again at its next request's time, so a dead server is not hammered.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"
#include "runtime/net/address.h"
#include "tools/load/histogram.h"

namespace tern::load {

struct Options {
  net::Address addr;
  std::string host;  // the Host header (default: the address)
  std::string path = "/";
  double rate = 0;  // requests per second over all connections; 0: closed loop
  int connections = 10;
  std::chrono::nanoseconds duration = std::chrono::seconds(10);
  // Load before the measured duration, not reported: requests whose intended send time falls in it are sent and
  // answered as any other, and counted nowhere (an overload's onset, connections' first requests).
  std::chrono::nanoseconds warmup{0};
  std::chrono::nanoseconds timeout = std::chrono::seconds(5);  // per request, from its send
  size_t max_body = 64 << 20;
};

struct Result_ {
  uint64_t sent = 0;
  uint64_t ok = 0;                          // 2xx and 3xx replies
  std::map<std::string, uint64_t> errors;   // connect, write, read, timeout, eof, bad response, status 4xx/5xx
  uint64_t late = 0;                        // requests sent more than 1 ms after their intended time
  uint64_t bytes = 0;                       // bytes of the ok replies, headers included
  LatencyHistogram corrected, uncorrected;  // ok replies only, ns
  double elapsed_s = 0;                     // from the warm-up's end (the start) until the last reply or error
  // With a warm-up: its ok replies and their latency (corrected), apart. On the heap, as only a run with a warm-up has
  // it: a histogram is 21 KiB, and a third one inline took tern-capacity's probing fiber past its 256 KiB stack under
  // ASan (a Result_ and the Result<Result_> it is returned in both live on that stack).
  uint64_t warmup_ok = 0;
  std::unique_ptr<LatencyHistogram> warmup_corrected;
  double achieved_rate() const { return elapsed_s > 0 ? static_cast<double>(ok) / elapsed_s : 0; }
};

// "http://HOST:PORT/PATH" (a numeric address or localhost; the path defaults to "/"), as tern-load and tern-capacity's
// --probe take it. An error says what is wrong with it.
struct Url {
  net::Address addr;
  std::string hostport;  // as written: the Host header
  std::string path;
};
Result<Url> parse_url(std::string_view url);

// Must run on a fiber of a Runtime (the connections are fibers of its). Returns an error only for options that cannot
// work (connections < 1, a negative rate, a zero duration); a server that fails shows in the result's errors.
Result<Result_> run(const Options& o);

}  // namespace tern::load
