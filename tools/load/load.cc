// tools/load/load.cc: the open-loop load (see load.h).
#include "tools/load/load.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "runtime/go.h"
#include "runtime/net/dial.h"
#include "runtime/sync/wait_group.h"
#include "tools/load/response.h"

namespace tern::load {
namespace {

using Clock = std::chrono::steady_clock;

int64_t ns_since(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count();
}

struct Conn {
  Result_ r;
  std::unique_ptr<Result_> warm;  // the warm-up's requests (with a warm-up only)
  Clock::time_point last;
};

// One connection's share of the schedule.
void drive(const Options& o, const std::string& request, Clock::time_point start, Clock::time_point measured,
           Clock::time_point end, int k, Conn* c) {
  const bool open = o.rate > 0;
  const auto gap =
      open ? std::chrono::nanoseconds(static_cast<int64_t>(1e9 * o.connections / o.rate)) : std::chrono::nanoseconds(0);
  auto intended = open ? start + std::chrono::nanoseconds(static_cast<int64_t>(1e9 * k / o.rate)) : start;
  net::Stream s;
  std::string buf;
  buf.reserve(16 << 10);
  char chunk[16 << 10];
  ResponseReader reader(o.max_body);
  Result_* r = &c->r;  // where this request counts
  auto fail = [&](const char* kind) {
    r->errors[kind]++;
    s.close();
    buf.clear();
  };
  while (intended < end) {
    if (open) {
      sleep_until(intended);
    } else {
      intended = Clock::now();
      if (intended >= end) break;
    }
    const auto sent_at = Clock::now();
    r = intended >= measured ? &c->r : c->warm.get();
    if (open && sent_at - intended > std::chrono::milliseconds(1)) r->late++;
    const auto deadline = sent_at + o.timeout;
    if (!s.is_open()) {
      auto d = net::dial(o.addr, std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - Clock::now()));
      if (!d) {
        r->sent++;
        fail(d.error() == std::errc::timed_out ? "timeout" : "connect");
        intended += gap;
        continue;
      }
      s = std::move(*d);
    }
    r->sent++;
    s.set_deadline(deadline);
    if (auto w = s.write_all(request.data(), request.size()); !w) {
      fail(w.ec == std::errc::timed_out ? "timeout" : "write");
      intended += gap;
      continue;
    }
    Frame f;
    bool failed = false;
    for (;;) {
      f = reader.frame(buf.data(), buf.size());
      if (f.state == Frame::kDone || f.state == Frame::kBad) break;
      // Into a fixed chunk, then appended: growing the string by the chunk's size would zero 16 KiB per read.
      auto got = s.read(chunk, sizeof chunk);
      buf.append(chunk, got.n);
      if (got.n > 0) continue;
      if (f.state == Frame::kUntilClose && !got.ec) {  // the body ran to the close
        f.state = Frame::kDone;
        f.length = buf.size();
        f.close = true;
        break;
      }
      fail(got.ec == std::errc::timed_out ? "timeout" : got.ec ? "read" : "eof");
      failed = true;
      break;
    }
    if (!failed && f.state == Frame::kBad) {
      fail("bad response");
      failed = true;
    }
    const auto done = Clock::now();
    c->last = done;
    if (!failed) {
      buf.erase(0, f.length);
      if (f.status >= 200 && f.status < 400) {
        r->ok++;
        r->bytes += f.length;
        r->corrected.record(ns_since(intended, done));
        r->uncorrected.record(ns_since(sent_at, done));
      } else {
        r->errors[f.status >= 500 ? "status 5xx" : f.status >= 400 ? "status 4xx" : "status 1xx"]++;
      }
      if (f.close) {
        s.close();
        buf.clear();
      }
    }
    intended += gap;
  }
}

}  // namespace

Result<Url> parse_url(std::string_view url) {
  if (url.substr(0, 7) != "http://") return make_error("the URL must start with http://: " + std::string(url));
  const std::string_view rest = url.substr(7);
  const size_t slash = rest.find('/');
  Url u;
  u.hostport = std::string(rest.substr(0, slash));
  u.path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  auto addr = net::Address::parse(u.hostport);
  if (!addr) return addr.error().wrap(u.hostport);
  u.addr = *addr;
  return u;
}

Result<Result_> run(const Options& o) {
  if (o.connections < 1) return make_error("connections must be at least 1");
  if (!std::isfinite(o.rate) || o.rate < 0) return make_error("rate must be a finite number >= 0 (0: closed loop)");
  if (o.duration.count() <= 0) return make_error("duration must be positive");
  if (o.timeout.count() <= 0) return make_error("timeout must be positive");
  if (o.warmup.count() < 0) return make_error("warm-up must not be negative");
  if (o.addr.empty()) return make_error("no address");
  if (o.path.empty() || o.path[0] != '/' || o.path.find_first_of(" \r\n") != std::string::npos)
    return make_error("path must start with '/' and hold no spaces or line breaks");
  const std::string host = o.host.empty() ? o.addr.to_string() : o.host;
  const std::string request = "GET " + o.path + " HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: tern-load\r\n\r\n";
  std::vector<Conn> conns(static_cast<size_t>(o.connections));
  const auto start = Clock::now();
  const auto measured = start + o.warmup;
  const auto end = measured + o.duration;
  WaitGroup wg;
  for (int k = 0; k < o.connections; k++) {
    if (o.warmup.count() > 0) conns[static_cast<size_t>(k)].warm = std::make_unique<Result_>();
    wg.add(1);
    go([&, k] {
      conns[static_cast<size_t>(k)].last = measured;
      drive(o, request, start, measured, end, k, &conns[static_cast<size_t>(k)]);
      wg.done();
    });
  }
  wg.wait();
  Result_ out;
  if (o.warmup.count() > 0) out.warmup_corrected = std::make_unique<LatencyHistogram>();
  auto last = measured;
  for (const Conn& c : conns) {
    out.sent += c.r.sent;
    out.ok += c.r.ok;
    out.late += c.r.late;
    out.bytes += c.r.bytes;
    for (const auto& [k, v] : c.r.errors) out.errors[k] += v;
    out.corrected.merge(c.r.corrected);
    out.uncorrected.merge(c.r.uncorrected);
    if (c.warm != nullptr) {
      out.warmup_ok += c.warm->ok;
      out.warmup_corrected->merge(c.warm->corrected);
    }
    last = std::max(last, c.last);
  }
  out.elapsed_s = std::chrono::duration<double>(std::max(last, end) - measured).count();
  return out;
}

}  // namespace tern::load
