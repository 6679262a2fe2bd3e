// tools/echo/echo_routes.h: what tern-echo answers to each request, as data.
//
// route() decides; the connection loop acts. Keeping the decision a pure function of the request lets the tests cover
// every path and status without a socket, and lets the epoll responder peer answer the same way.
//
//   tern::echo::Route r = tern::echo::route(req);
//   switch (r.action) {
//     case Action::kRespond: break;
//     case Action::kWork:  burn_cpu_us(r.amount); break;
//     case Action::kSleep: tern::sleep_for(std::chrono::milliseconds(r.amount)); break;
//     case Action::kBlock: block_thread_ms(r.amount); break;
//   }
//   out.add(r.response, req);
//
// Paths: GET /health -> 200 "OK\n"; POST /echo -> 200 with the request body; GET /work?us=N -> burn N us of CPU, 200;
// GET /sleep?ms=N -> park the fiber N ms, 200; GET /block?ms=N -> block the thread N ms (nanosleep), 200;
// GET /mix?sleep_ms=M&cpu_us=N -> park M ms, then burn N us (a request that waits on something, then computes, as
// real ones do: its server's knee sits at tens or hundreds of connections, not at the core count; either may be
// left out for 0), 200; with &bytes=B its body is B bytes of 'x' instead of "OK\n" (large replies, for a link's
// bandwidth: bench/capacity.sh). HEAD is
// accepted wherever GET is. A known path with another method is 405, an unknown path 404, a missing or out-of-range N
// 400.
#pragma once

#include <cstdint>

#include "tools/echo/http_parser.h"
#include "tools/echo/http_response.h"

namespace tern::echo {

// Caps on N: a single request may hold a processor (/work, /block) or a connection (/sleep) this long at most, enough
// for any experiment and short enough that a typo cannot wedge a server for hours.
inline constexpr uint64_t kMaxWorkUs = 10'000'000;
inline constexpr uint64_t kMaxSleepMs = 60'000;
inline constexpr uint64_t kMaxBlockMs = 60'000;
// /mix's bytes=B: at most this (one static buffer of it, made on first use, backs every such reply).
inline constexpr uint64_t kMaxMixBytes = 4 << 20;

enum class Action { kRespond, kWork, kSleep, kBlock, kMix };

struct Route {
  Action action = Action::kRespond;
  uint64_t amount = 0;  // us for kWork, ms for kSleep, kBlock and kMix (its sleep)
  uint64_t cpu_us = 0;  // kMix: the CPU burned after the sleep
  http::Response response;
};

Route route(const http::Request& req);

}  // namespace tern::echo
