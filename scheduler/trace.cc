// scheduler/trace.cc: Tracer (scheduler/trace.h): the per-P buffers, the trace clock and its calibration.
#include "scheduler/trace.h"

#include <time.h>

#include <cstdio>
#include <cstring>

#include "scheduler/g.h"
#include "scheduler/sched.h"
#include "scheduler/ticks.h"

namespace tern::sched {

Tracer::Tracer(size_t events_per_buffer)
    : capacity_(events_per_buffer),
      tsc_((ticks_init(), g_tick_clock.tsc)),
      buffers_(kMaxProcs),
      outside_(events_per_buffer, tsc_) {
  ns0_ = now_ns();
  ticks0_ = ticks();
}

TraceBuffer* Tracer::buffer_for_p(int id) {
  std::lock_guard lk(mu_);
  auto& b = buffers_[static_cast<size_t>(id)];
  if (!b) b = std::make_unique<TraceBuffer>(capacity_, tsc_);
  return b.get();
}

void Tracer::record_outside(TraceKind kind, uint64_t g, uint32_t a, uint16_t b, uint8_t sub) {
  std::lock_guard lk(mu_);
  outside_.record(kind, g, a, b, sub);
}

Tracer::Snapshot Tracer::snapshot() const {
  Snapshot s;
  std::lock_guard lk(mu_);
  for (const auto& b : buffers_) {
    s.per_p.emplace_back();
    s.dropped.push_back(0);
    if (!b) continue;
    const size_t n = b->size();
    s.per_p.back().reserve(n);
    for (size_t i = 0; i < n; i++) s.per_p.back().push_back((*b)[i]);
    s.dropped.back() = b->dropped();
  }
  // Trailing P ids that never recorded are left out.
  while (!s.per_p.empty() && s.per_p.back().empty() && s.dropped.back() == 0) {
    s.per_p.pop_back();
    s.dropped.pop_back();
  }
  const size_t n = outside_.size();
  for (size_t i = 0; i < n; i++) s.outside.push_back(outside_[i]);
  s.outside_dropped = outside_.dropped();
  return s;
}

Tracer::Calibration Tracer::end_calibration() const {
  Calibration c{ticks0_, ticks(), ns0_, now_ns()};
  return c;
}

int64_t Tracer::to_ns(const Calibration& c, uint64_t ticks) {
  const int64_t dt = static_cast<int64_t>(ticks - c.ticks0);
  if (c.ticks1 == c.ticks0) return dt;
  const long double per = static_cast<long double>(c.ns1 - c.ns0) / static_cast<long double>(c.ticks1 - c.ticks0);
  return static_cast<int64_t>(static_cast<long double>(dt) * per);
}

}  // namespace tern::sched
