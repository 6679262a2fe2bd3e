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
#include <mutex>
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
  static constexpr uint32_t kIdle = 0, kRunning = 1, kDone = 2;

  struct Node : detail::WaitLink<Node> {
    Waiter* waiter = nullptr;
  };

  // Returns true if the caller must run f (the Once is now running); false once another caller has completed it.
  bool begin();
  // Records the outcome of f and wakes the waiters.
  void finish(bool ok);

  std::atomic<uint32_t> state_{kIdle};  // changed under mu_; read without it on the fast path
  std::mutex mu_;
  detail::WaitQueue<Node> q_;
};

}  // namespace tern
