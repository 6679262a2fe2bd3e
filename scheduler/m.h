// scheduler/m.h: M, an OS thread of a runtime.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <thread>

#include "scheduler/context.h"
#include "scheduler/futex.h"
#include "scheduler/g.h"

namespace tern::sched {

class Sched;
struct P;

// What a fiber asks its M to do once it has switched out to the scheduler stack.
// kBlockedNoP: back from tern::blocking with its P handed on and none idle: queue the fiber, and the M goes idle.
enum class MAction : uint8_t { kNone, kYield, kPark, kExit, kBlockedNoP };

struct M {
  int id = 0;
  Sched* sched = nullptr;
  P* p = nullptr;                // held P, or nullptr while idle
  G* curg = nullptr;             // running fiber
  ctx::fcontext_t g0 = nullptr;  // the scheduler context, saved while a fiber runs
  MAction action = MAction::kNone;
  G* yielded = nullptr;  // a fiber that yielded with nothing else queued on this P; find_runnable runs it next
  // A fiber that parked by switching straight to the next fiber instead of to g0 (Sched::take_handoff); the fiber
  // switched to finishes its park (runs its commit) on arrival.
  G* parked_from = nullptr;
  // The stall detector (scheduler/stall.cc): the monitor asks for the frames of the fiber with id stall_want; the
  // signal handler, on this M's thread, writes them and publishes their count in stall_n (-1 until then).
  static constexpr int kStallFrames = 48;
  std::atomic<uint64_t> stall_want{0};
  std::atomic<pthread_t> pthread{0};  // set by the thread itself first thing (m_main): whom to signal
  std::atomic<int> stall_n{-1};
  void* stall_frames[kStallFrames] = {};
  // lock_to_thread: the only fiber this M runs while set (Sched::run_locked); locked_wait while it sleeps for it.
  G* locked_g = nullptr;
  std::atomic<bool> locked_wait{false};
  // The P this M gave up to run tern::blocking (Sched::enter_blocking), nullptr otherwise. Atomic for stats().
  std::atomic<P*> blocking_p{nullptr};

  // Idle parking (sched_mu_ guards link/nextp/next_spinning; note wakes).
  Note note;
  M* link = nullptr;
  bool in_idle_list = false;  // on midle_ (park_idle_m pushes, whoever takes it off clears)
  P* nextp = nullptr;
  bool next_spinning = false;
  bool spinning = false;

  // Placement (SchedOptions::placement), the M's own: the PU its thread is bound to, kUnbound while it runs on the
  // process's mask, kBindUnknown before it first looks (a thread inherits its creator's binding). `node`: the node of
  // the P it held last, which startm() matches an idle M to.
  static constexpr int kUnbound = -1;
  static constexpr int kBindUnknown = -2;
  int bound_pu = kBindUnknown;
  int node = 0;

  uint64_t rand_state = 0;
  int arena_node = -1;  // the node arena this thread is bound to (alloc::bind_thread), -1: none yet
  // The chaos schedule's stream (SchedOptions::chaos_seed), seeded from the seed and the id: a seed replays each M's
  // decisions.
  uint64_t chaos_state = 0;
  std::thread thread;
  std::atomic<bool> exited{false};  // m_main returned (the shutdown leak check's proof that the M is done)

  // Sanitizer bookkeeping for the scheduler stack.
  const void* g0_bottom = nullptr;
  size_t g0_size = 0;
  void* g0_fake_stack = nullptr;
  void* g0_tsan_fiber = nullptr;
};

// The M running on this thread, or nullptr. Not inlined on purpose: a fiber may resume on another thread, and the
// compiler must not reuse a thread-local address it computed before a switch.
M* this_m();
void set_this_m(M* m);

}  // namespace tern::sched
