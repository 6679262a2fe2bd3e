// runtime/blocking.h: calls that block their thread, from fibers, without stalling the fibers beside them.
//
//   auto n = tern::blocking([&] { return ::pread(fd, buf, len, off); });   // on this thread, its processor let go
//   auto h = tern::spawn_blocking([] { return expensive_legacy_call(); }); // on the pool's threads
//   auto v = h.join();                                                     // parks this fiber until it is done
//
// tern::blocking(f) runs f on the calling thread after letting go of its processor (scheduler/blocking.cc): when f
// returns within kRetakeNs (20 us) the fiber simply carries on, for a few stores and one compare-and-swap; when it
// takes longer, the monitor hands the processor to another thread, so the fibers queued on it run meanwhile, and the
// fiber coming back takes its old processor if it is idle, else any idle one, else waits in the global queue. Inside
// f the fiber may block its thread (file I/O, fsync, a database client, a std::mutex, getaddrinfo) but must not wait
// on tern's own primitives (channels, tern::Mutex, sleeps, sockets): that parks a fiber, which needs the processor it
// let go, and stops the process with a message saying so. Off fibers it just calls f. Each call in progress holds an
// OS thread: SchedOptions::max_threads (Config::max_threads, TERN_MAX_THREADS, default 10,000) bounds them, and at
// the bound the processor waits for a thread to come back.
//
// tern::spawn_blocking(f) runs f on a pool of plain threads, at most Config::max_blocking_threads of them (default
// 512, one pool per process: the last runtime created sets the bound), started as needed and exiting after 10 s idle;
// calls beyond the bound queue. It returns a tern::JoinHandle: join() parks a fiber (or blocks a plain thread) until
// f is done, and returns its value or rethrows its exception. For a call that may take long and where the caller
// would rather not hold a scheduler thread for it, or from code that is not on a fiber.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <system_error>
#include <type_traits>
#include <utility>

#include "runtime/join_handle.h"
#include "scheduler/park.h"

namespace tern {

template <class F>
decltype(auto) blocking(F&& f) {
  sched::BlockingSection section;
  return std::forward<F>(f)();
}

// The pool behind spawn_blocking. Its threads are not the runtime's: they run no fibers and hold no processor.
class BlockingPool {
 public:
  static constexpr int64_t kIdleExitNs = 10'000'000'000;  // an idle thread exits after this long

  static BlockingPool& instance();

  // Queues a task; starts a thread for it when none is idle and the pool is below its bound. False (the task is not
  // queued) only when the pool has no thread at all and cannot start one.
  bool submit(std::function<void()> task);
  void set_max_threads(int n);  // >= 1

  struct Stats {
    int threads = 0, idle = 0, max_threads = 0;
    uint64_t queued = 0;     // tasks waiting for a thread now
    uint64_t completed = 0;  // tasks run to the end
    uint64_t start_failures = 0;
  };
  Stats stats() const;

 private:
  BlockingPool() = default;
  void worker();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  int threads_ = 0, idle_ = 0, max_ = 512;
  uint64_t completed_ = 0, start_failures_ = 0;
};

template <class F>
auto spawn_blocking(F&& f) {
  using T = std::invoke_result_t<std::decay_t<F>&>;
  auto state = std::make_shared<detail::JoinState<T>>();
  bool queued = BlockingPool::instance().submit([state, fn = std::forward<F>(f)]() mutable { state->run(fn); });
  if (!queued) {
    state->error = std::make_exception_ptr(
        std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again),
                          "tern::spawn_blocking: the pool has no thread and could not start one"));
    state->state.store(detail::JoinState<T>::kDone, std::memory_order_release);
  }
  return JoinHandle<T>(std::move(state));
}

}  // namespace tern
