// scheduler/timer.h: one-shot timers kept in per-P heaps.
//
// A Timer is owned by its caller (often it lives on the waiting fiber's stack). add_timer() puts it into the current
// P's heap; the M that owns that P (or any M looking for work) fires it once `when` has passed by calling `fire`
// under that heap's lock. `fire` must be short: it may touch atomics and return a fiber to make runnable, but must not
// block, take locks of its own, or call add_timer/cancel_timer/ready.
//
// cancel_timer() removes a timer that has not fired; once it returns, `fire` is neither running nor going to run, so
// the caller may destroy the Timer.
//
// A timer whose deadline keeps moving later (an I/O deadline renewed by every read) need not leave the heap each time:
// Go's lazy modification. Its owner records the current deadline where `fire` can see it and leaves the timer in the
// heap; when the old `when` comes, `fire` moves `when` later (it may only move it later) and returns nullptr, and the
// heap keeps the timer at its new place. move_timer_earlier() is the other direction, which cannot wait.
//
//   struct Sleep { sched::Timer t; sched::G* g; };
//   Sleep s; s.g = sched::current(); s.t.when = sched::now_ns() + 1'000'000;
//   s.t.fire = [](sched::Timer* t) { return reinterpret_cast<Sleep*>(t)->g; };
//   sched::park([](sched::G*, void* a) { sched::add_timer(static_cast<sched::Timer*>(a)); return true; }, &s.t,
//               sched::WaitReason::kSleep);
#pragma once

#include <atomic>
#include <cstdint>

namespace tern::sched {

struct G;
struct P;

struct Timer {
  int64_t when = 0;              // CLOCK_MONOTONIC nanoseconds
  G* (*fire)(Timer*) = nullptr;  // returns a fiber to ready, or nullptr
  void* arg = nullptr;           // for the owner's use

  // Bookkeeping of the heap it sits in; the owner does not touch these.
  std::atomic<P*> p{nullptr};
  int32_t index = -1;
};

// Monotonic clock in nanoseconds.
int64_t now_ns();

// Adds `t` to the current P's heap. Must be called on an M that holds a P: from a fiber, or from a park commit.
void add_timer(Timer* t);
// Removes `t` if it has not fired; returns true if it was removed (fire never ran), false if it already fired or was
// never added. Callable from any thread.
bool cancel_timer(Timer* t);
// If `t` is in a heap and due later than `when`, moves it to `when`. Returns false if it is in no heap (it fired or was
// never added). Must be called on an M that holds a P, like add_timer.
bool move_timer_earlier(Timer* t, int64_t when);

}  // namespace tern::sched
