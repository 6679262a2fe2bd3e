// scheduler/chaos.cc: the hooked paths: SchedOptions::on_point and the chaos schedule (TERN_CHAOS), which picks among
// the legal places for a readied fiber and delays Ms at the wakeup protocol's points.
#include "scheduler/sched.h"

#include <thread>

#include "scheduler/global_queue.h"
#include "scheduler/m.h"
#include "scheduler/p.h"
#include "scheduler/sched_internal.h"

namespace tern::sched {

// ready() with a hook set: the chaos schedule picks among the places a readied fiber may legally go (runnext, the
// local queue's tail, the global queue), with delays at the points around them.
void Sched::ready_hooked(G* g, bool next) {
  point_slow(SchedPoint::kReady);
  M* m = this_m();
  P* p = (m != nullptr && m->sched == this) ? m->p : nullptr;
  bool global = p == nullptr;
  if (!global && chaos_) {
    const uint32_t r = chaos_rand();
    if (next) {
      if (r % 4 == 2) next = false;
      if (r % 4 == 3) global = true;
    } else if (r % 8 == 0) {
      global = true;
    }
  }
  if (global) {
    point_slow(SchedPoint::kGlobalPush);
    global_->push(g);
    point_slow(SchedPoint::kGlobalPushed);
  } else {
    runq_put(p, g, next);
  }
  wakep();
}

void Sched::trace_slow(TraceKind kind, uint64_t g, uint32_t a, uint16_t b, uint8_t sub) {
  M* m = this_m();
  if (m != nullptr && m->sched == this && m->p != nullptr) {
    // A held P records in its own buffer; one whose buffer filled records nothing more (not the shared no-P buffer,
    // whose lock every spawn would then take).
    if (m->p->trace != nullptr && !m->p->trace->record(kind, g, a, b, sub)) m->p->trace = nullptr;
  } else {
    tracer_->record_outside(kind, g, a, b, sub);
  }
}

void Sched::point_slow(SchedPoint pt) {
  if (opts_.on_point) opts_.on_point(pt);
  if (chaos_) chaos_delay();
}

uint32_t Sched::chaos_rand() {
  M* m = this_m();
  if (m != nullptr && m->sched == this) return xorshift(m->chaos_state);
  // A plain thread (a test's, the monitor): its own stream, reseeded when it meets another seed.
  static std::atomic<uint64_t> next_stream{1u << 20};
  thread_local uint64_t seed = 0, state = 0;
  if (seed != opts_.chaos_seed || state == 0) {
    seed = opts_.chaos_seed;
    state = chaos_stream(seed, next_stream.fetch_add(1, std::memory_order_relaxed));
  }
  return xorshift(state);
}

void Sched::chaos_delay() {
  const uint32_t r = chaos_rand();
  switch (r % 8) {
    case 0:
      std::this_thread::yield();
      break;
    case 1:
    case 2: {
      // A few hundred ns: long enough for another M to act on what it saw, too short to look like a stall.
      const int64_t until = now_ns() + static_cast<int64_t>((r >> 8) % 500);
      while (now_ns() < until) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
      }
      break;
    }
    default:
      break;
  }
}

}  // namespace tern::sched
