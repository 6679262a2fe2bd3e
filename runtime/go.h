// runtime/go.h: starting fibers and giving up the processor.
//
//   tern::go([] { serve(); });                    // detached; an escaping exception terminates with the fiber's id
//   if (auto r = tern::try_go(f); !r) ...         // as go(), but running out of stacks is an error, not an abort
//   auto h = tern::spawn([] { return 42; });      // joinable
//   int v = h.join();                             // parks this fiber (or blocks this thread); rethrows f's exception
//   tern::yield();
//   tern::sleep_for(std::chrono::milliseconds(5));
//   auto r = tern::go_on(cpu_pool, [&] { return compress(img); }).join();  // work on another runtime; waits parked
//
// tern::go/spawn called inside a fiber start the new fiber in the same runtime. Outside fibers, use Runtime::go or
// tern::spawn(rt, f).
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <source_location>
#include <type_traits>
#include <utility>

#include "base/result.h"
#include "runtime/deadline.h"
#include "runtime/join_handle.h"
#include "runtime/runtime.h"
#include "scheduler/park.h"
#include "scheduler/sched.h"

namespace tern {

namespace detail {
[[noreturn]] void go_outside_fiber();

// The error try_go returns: which limit ran out and how to raise it (alloc::StackPool::exhausted_message).
Error stack_exhausted_error(sched::Sched& s);

template <class F>
Result<void> try_go(sched::Sched& s, F&& f, std::source_location site = std::source_location::current()) {
  if (s.try_go(std::forward<F>(f), site)) return {};
  return stack_exhausted_error(s);
}

inline sched::Sched& current_sched() {
  sched::Sched* s = sched::Sched::current();
  if (s == nullptr) go_outside_fiber();
  return *s;
}
}  // namespace detail

// `site` (every entry point here has one) is the caller's line, which the fiber dump shows as where the fiber was
// spawned (runtime/debug/fibers.h); leave it defaulted.
template <class F>
void go(F&& f, std::source_location site = std::source_location::current()) {
  detail::current_sched().go(std::forward<F>(f), site);
}

// Like go(), but when no stack can be had for the fiber (vm.max_map_count or memory exhausted, and no P's cache has
// one to spare) it returns the error and f is not run, instead of stopping the process when the fiber first runs.
// The stack is bound here rather than at first run. Outside fibers, use Runtime::try_go.
//   if (auto r = tern::try_go([c = std::move(conn)]() mutable { serve(c); }); !r) shed_load(r.error().message());
template <class F>
Result<void> try_go(F&& f, std::source_location site = std::source_location::current()) {
  return detail::try_go(detail::current_sched(), std::forward<F>(f), site);
}

// Starts a joinable fiber in the caller's runtime.
template <class F>
auto spawn(F&& f, std::source_location site = std::source_location::current()) {
  return detail::spawn(detail::current_sched(), std::forward<F>(f), site);
}

// Starts a joinable fiber in rt; callable from any thread.
template <class F>
auto spawn(Runtime& rt, F&& f, std::source_location site = std::source_location::current()) {
  return rt.spawn(std::forward<F>(f), site);
}

// Hands f to another runtime: starts it as a joinable fiber of rt (a CPU pool beside the IO pool the caller runs on,
// say) and returns its handle. Callable from any thread, a fiber of any runtime included. join() from a fiber of
// another runtime parks that fiber on its own runtime (its M goes on running that runtime's other fibers), and rt's
// fiber, when it finishes, readies it there: a fiber's G belongs to its runtime's scheduler (sched::ready queues it on
// that runtime's global queue and wakes one of its Ms), so nothing of rt runs the waiter. The value or exception comes
// back as from spawn(). rt must outlive the waits on its fibers (destroying a Runtime discards its fibers, and a
// handle on one of them then never completes), and a runtime whose fibers wait must outlive what they wait on (its
// finish readies them there): destroy the pool before the runtimes that hand it work.
//
//   tern::Runtime cpu(cpu_cfg);                        // cpu_cfg.name = "cpu", cpu_cfg.procs = 1
//   io.run([&] {
//     for (;;) tern::go([&, c = accept()] { reply(c, tern::go_on(cpu, [&] { return render(c); }).join()); });
//   });
//
// What a hand-off costs: a fiber start on rt and, if the caller waits before f is done, a park here and a ready from
// rt's thread (microseconds). Work much shorter than that is cheaper run in place.
template <class F>
auto go_on(Runtime& rt, F&& f, std::source_location site = std::source_location::current()) {
  return rt.spawn(std::forward<F>(f), site);
}

// Like go_on(), but when rt can get no stack for the fiber it returns the error (f is not run) instead of stopping
// the process: a server sheds the request rather than dies (try_go's rule).
template <class F>
auto try_go_on(Runtime& rt, F&& f, std::source_location site = std::source_location::current())
    -> Result<JoinHandle<std::invoke_result_t<std::decay_t<F>&>>> {
  return rt.try_spawn(std::forward<F>(f), site);
}

// Adds n to the application's work counter (requests served, say): the controller's throughput-driven policies
// (hill, and rollback) measure throughput by it; without it they count finished fibers. Costs a relaxed increment of a
// per-processor counter. Outside a fiber it does nothing (use Runtime::count_work from plain threads).
inline void count_work(uint64_t n = 1) {
  if (sched::Sched* s = sched::Sched::current()) s->count_work(n);
}

inline void yield() {
  sched::yield();
}

// Go's runtime.LockOSThread / UnlockOSThread: until as many unlock_thread() calls as lock_to_thread() calls, the
// calling fiber runs only on its current OS thread, and that thread runs no other fiber, for thread-affine libraries
// and thread_local state. Each wait costs two thread wakeups (the thread sleeps while the fiber waits). Off fibers:
// nothing.
inline void lock_to_thread() {
  sched::lock_to_thread();
}
inline void unlock_thread() {
  sched::unlock_thread();
}

// Yields if the monitor has seen this fiber run a whole 10 ms period without a switch (the runtime's channel and socket
// operations do the same): a long computation calls it in its loop so the fibers queued behind it, and on one
// processor the network and the timers, get their turn. One load when not marked.
inline void preempt_point() {
  sched::preempt_point();
}

namespace detail {
// Parks the fiber until the CLOCK_MONOTONIC deadline (kNoDeadline: for good); outside fibers, sleeps the thread.
void sleep_until_ns(int64_t deadline_ns);
}  // namespace detail

// Parks the fiber until `deadline` (CLOCK_MONOTONIC based steady_clock); outside fibers, sleeps the thread.
inline void sleep_until(std::chrono::steady_clock::time_point deadline) {
  detail::sleep_until_ns(detail::deadline_at(deadline));
}
// Any duration; it saturates (runtime/deadline.h), so sleep_for(hours::max()) sleeps rather than returning at once.
template <class Rep, class Period>
void sleep_for(std::chrono::duration<Rep, Period> d) {
  detail::sleep_until_ns(detail::deadline_after(d));
}

namespace this_fiber {
// The current fiber's id (unique within the process), 0 outside fibers.
inline uint64_t id() {
  return sched::current_id();
}
// How long this fiber waited runnable before its current run began (zero outside fibers, and when the scheduler did
// not time that wait: it times every fiber's first wake in each 10 ms and one in 32 after). A server fiber that just
// read a request learns how long the request sat queued behind other work: tern::Limiter's admission signal.
inline std::chrono::nanoseconds queued() {
  return std::chrono::nanoseconds(sched::last_sched_wait_ns());
}
}  // namespace this_fiber

}  // namespace tern
