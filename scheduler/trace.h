// scheduler/trace.h: the event trace's recording side (TERN_TRACE; runtime/debug/trace_file.h writes it out).
//
// What is recorded: a fiber spawned, run on a P and stopped (parked with its reason, yielded, exited), readied, a
// steal, a poll that found fibers, a resize (set_procs) and a controller decision. Each P records into its own
// TraceBuffer, written only by the M that holds the P, so the hot path takes no lock and touches no shared line: an
// event is a timestamp and a 24-byte store. Events from threads that hold no P (a spawn from main, a poller M without
// a P, the monitor, set_procs, the controller) go to one buffer under a mutex; they are rare.
//
// Bounded, and full means dropped: each buffer holds a fixed number of events (kTraceEventsPerP), and an event that
// finds its buffer full is counted and dropped. Why not a writer thread that drains full buffers to the file: the
// output is Chrome trace JSON (what ui.perfetto.dev opens), about 100 bytes an event, and formatting it while the
// program runs takes CPU from the program the trace is meant to show (skynet records ~20 million events a second on
// two cores: a writer formatting them would cost more than the program); and a trace of millions of events is too
// large for the viewer anyway. Why not a ring that overwrites the oldest: then the cost is paid for the whole run,
// and the Ps' windows end up covering different spans. So the trace covers the first events of each P, the file says
// how many were dropped per P, and a long-running server is traced by starting it with TERN_TRACE for the interval
// of interest. Memory: kTraceEventsPerP * 24 bytes (6 MiB) per P that records anything, allocated when tracing is on.
//
// Off (no Tracer given to the Sched), each event site costs one predictable branch: `p->trace` is null.
//
// Timestamps are the TSC where the kernel itself uses it as its clock source (then it is invariant and synchronized
// across CPUs, and reading it costs a third of clock_gettime's 27 ns on the reference VM), else CLOCK_MONOTONIC; ticks
// are converted to nanoseconds when written, from two (ticks, CLOCK_MONOTONIC) pairs taken at start and at the end.
//
// Readers: a buffer's count is published with a release store after the event is written, so a reader sees a
// complete prefix at any time; the trace file is written after the runtime's threads have stopped, or at process exit
// from what the buffers hold then (runtime/debug/trace_file.cc).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "scheduler/wait_reason.h"

namespace tern::sched {

// Events per P buffer (and for the buffer of threads without a P): 6 MiB each. About 30 ms of skynet on one P, minutes
// of a server at a few thousand requests a second; ui.perfetto.dev opens the resulting JSON of a few Ps.
inline constexpr size_t kTraceEventsPerP = 256 * 1024;

enum class TraceKind : uint8_t {
  kSpawn,     // g: the new fiber
  kRun,       // g starts running on the buffer's P
  kStop,      // g stops running: sub is a TraceStop; a = its WaitReason when parked
  kReady,     // g made runnable; sub = 1 when by a timer
  kSteal,     // g = fibers taken, a = the victim P; sub = 1 for a rescue of a stalled P
  kPoll,      // a poll that found fibers: g = how many; sub = 1 for a blocking poll
  kResize,    // set_procs: a = from, b = to
  kDecision,  // the controller changes procs: a = from, b = to; sub = 1 when the limits forced it, 2 a rollback
};

enum class TraceStop : uint8_t { kPark, kYield, kExit };

struct TraceEvent {
  uint64_t ticks;  // Tracer::ticks()
  uint64_t g;      // a fiber id, or a count (kSteal, kPoll)
  uint32_t a;
  uint16_t b;
  TraceKind kind;
  uint8_t sub;
};
static_assert(sizeof(TraceEvent) == 24);

int64_t now_ns();  // scheduler/timer.cc

// The trace clock: TSC ticks when `tsc` (the kernel's own clock source is the TSC), else CLOCK_MONOTONIC ns.
inline uint64_t trace_ticks(bool tsc) {
#if defined(__x86_64__)
  if (tsc) return __builtin_ia32_rdtsc();
#else
  (void)tsc;
#endif
  return static_cast<uint64_t>(now_ns());
}

// One P's events (or the no-P buffer's). Written by one thread at a time, read by anyone (see above). A cache line of
// its own: the buffers of P0 and P1, allocated one after the other, shared a line, and the two owners' stores to
// their counts made the trace cost skynet a tenth of its speed.
class alignas(64) TraceBuffer {
 public:
  TraceBuffer(size_t capacity, bool tsc) : events_(new TraceEvent[capacity]), capacity_(capacity), tsc_(tsc) {}

  // Stamps and records one event. False when the buffer is full: the event is counted dropped (without reading the
  // clock), and a P's event sites then stop calling (trace_p clears P::trace), so a full buffer costs the rest of the
  // run nothing but the one branch tracing-off costs; its drop count is then 1, meaning "full from here on".
  bool record(TraceKind kind, uint64_t g, uint32_t a = 0, uint16_t b = 0, uint8_t sub = 0) {
    const size_t n = n_.load(std::memory_order_relaxed);
    if (n == capacity_) [[unlikely]] {
      dropped_.store(dropped_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      return false;
    }
    events_[n] = TraceEvent{trace_ticks(tsc_), g, a, b, kind, sub};
    n_.store(n + 1, std::memory_order_release);  // publishes the event to a reader (a plain store on x86)
    return true;
  }

  size_t size() const { return n_.load(std::memory_order_acquire); }
  const TraceEvent& operator[](size_t i) const { return events_[i]; }
  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  std::unique_ptr<TraceEvent[]> events_;
  const size_t capacity_;
  const bool tsc_;
  std::atomic<size_t> n_{0};
  std::atomic<uint64_t> dropped_{0};
};

// The trace of one runtime: a buffer per P id (made when the P is created) and the no-P buffer. Owned by the
// runtime (runtime/runtime.cc); the Sched records into it (SchedOptions::tracer).
class Tracer {
 public:
  explicit Tracer(size_t events_per_buffer = kTraceEventsPerP);
  Tracer(const Tracer&) = delete;
  Tracer& operator=(const Tracer&) = delete;

  // The buffer of P `id` (0 <= id < kMaxProcs), made on the first call; its address is stable.
  TraceBuffer* buffer_for_p(int id);
  // Records from a thread that holds no P (or an event that belongs to no P): under a mutex.
  void record_outside(TraceKind kind, uint64_t g, uint32_t a = 0, uint16_t b = 0, uint8_t sub = 0);

  uint64_t ticks() const { return trace_ticks(tsc_); }
  bool tsc() const { return tsc_; }

  // Reading (the trace file). A snapshot of what the buffers hold now: per P id (empty where none), then the no-P
  // buffer's events last.
  struct Snapshot {
    std::vector<std::vector<TraceEvent>> per_p;
    std::vector<uint64_t> dropped;  // per P id
    std::vector<TraceEvent> outside;
    uint64_t outside_dropped = 0;
  };
  Snapshot snapshot() const;
  // Nanoseconds since the tracer started, for a tick value: interpolated between the start's and `end`'s (ticks, ns)
  // pairs, taken by end_calibration() (call it once recording is over, or at least just before writing).
  struct Calibration {
    uint64_t ticks0, ticks1;
    int64_t ns0, ns1;
  };
  Calibration end_calibration() const;
  static int64_t to_ns(const Calibration& c, uint64_t ticks);

 private:
  const size_t capacity_;
  bool tsc_ = false;
  uint64_t ticks0_ = 0;
  int64_t ns0_ = 0;
  mutable std::mutex mu_;                              // buffers_ growth; outside_
  std::vector<std::unique_ptr<TraceBuffer>> buffers_;  // by P id
  TraceBuffer outside_;
};

}  // namespace tern::sched
