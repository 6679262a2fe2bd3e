// runtime/sync/wait_group.h: tern::WaitGroup, waiting for a collection of fibers (or threads) to finish.
//
//   tern::WaitGroup wg;
//   for (int i = 0; i < n; i++) {
//     wg.add(1);                        // before starting the worker, not inside it
//     tern::go([&] { work(); wg.done(); });
//   }
//   wg.wait();                          // parks this fiber, or blocks this thread, until the count is zero
//
// wait() may be called by any number of fibers and threads at once. A WaitGroup may be reused once every wait() of
// the previous round has returned. The count going negative is a bug in the caller: it aborts with a message.
// It is safe to destroy the WaitGroup as soon as wait() returns, even while done() is still returning.
#pragma once

#include <cstdint>
#include <mutex>

#include "runtime/sync/wait_queue.h"
#include "runtime/sync/waiter.h"

namespace tern {

class WaitGroup {
 public:
  explicit WaitGroup(int64_t count = 0) : count_(count) {}
  WaitGroup(const WaitGroup&) = delete;
  WaitGroup& operator=(const WaitGroup&) = delete;

  // Adds n (which may be negative) to the count; at zero every waiter is woken.
  void add(int64_t n = 1);
  void done() { add(-1); }
  // Returns once the count is zero.
  void wait();
  // The current count (a snapshot).
  int64_t count() const;

 private:
  struct Node : detail::WaitLink<Node> {
    Waiter* waiter = nullptr;
  };

  // One lock for count and queue: done() must not touch the WaitGroup after the count reaches zero, because a
  // waiter returning from wait() may destroy it; the wake list is detached under the lock and woken after it.
  mutable std::mutex mu_;
  int64_t count_;
  detail::WaitQueue<Node> q_;
};

}  // namespace tern
