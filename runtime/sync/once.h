// runtime/sync/once.h: tern::Once, running an initialization exactly once among racing fibers and threads.
//
//   tern::Once once;
//   Config* cfg = nullptr;
//   void use() {
//     once.call([] { cfg = load_config(); });   // the first caller runs it; the others park until it has finished
//     cfg->...;
//   }
//
// Like std::call_once: if f throws, the exception reaches that caller, the Once stays not-done, and one of the
// waiting callers (or the next caller) runs its own f. After a successful call, call() is one acquire load.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <utility>

#include "runtime/sync/wait_queue.h"
#include "runtime/sync/waiter.h"

namespace tern {

class Once {
 public:
  Once() = default;
  Once(const Once&) = delete;
  Once& operator=(const Once&) = delete;

  template <class F>
  void call(F&& f) {
    if (done()) return;
    if (!begin()) return;
    struct Finish {
      Once* once;
      bool ok = false;
      ~Finish() { once->finish(ok); }
    } finish{this};
    std::invoke(std::forward<F>(f));
    finish.ok = true;
  }

  bool done() const { return state_.load(std::memory_order_acquire) == kDone; }

 private:
  // state_ holds the phase and, in kLocked, the lock over q_ and the phase: one word, so that finish() can make the
  // Once done and release its lock with one store, its last touch of *this (whoever sees it done may destroy it, as
  // a std::mutex may be destroyed by whoever sees it free).
  static constexpr uint32_t kIdle = 0, kRunning = 1, kDone = 2, kPhase = 3, kLocked = 4;

  struct Node : detail::WaitLink<Node> {
    Waiter* waiter = nullptr;
    bool done = false;  // set by finish() before the wake: the Once is done, and may be gone
  };

  // Returns true if the caller must run f (the Once is now running); false once another caller has completed it.
  bool begin();
  // Records the outcome of f and wakes the waiters.
  void finish(bool ok);
  // Takes kLocked unless the Once is done; returns the phase it found (kDone: not locked).
  uint32_t lock_unless_done();

  std::atomic<uint32_t> state_{kIdle};
  detail::WaitQueue<Node> q_;  // under kLocked
};

}  // namespace tern
