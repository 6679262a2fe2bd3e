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
// the previous round has returned. The count going negative, or past 2^31 - 1, is a bug in the caller: it aborts with
// a message. It is safe to destroy the WaitGroup as soon as wait() returns, even while done() is still returning.
//
// add() and done() are one atomic add while the count stays above zero or nobody waits (Go's sync.WaitGroup packs its
// counter and its waiters into one word the same way): a million fibers calling done() on one WaitGroup from every P
// do not queue on a lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>

#include "runtime/sync/wait_queue.h"
#include "runtime/sync/waiter.h"

namespace tern {

class WaitGroup {
 public:
  explicit WaitGroup(int64_t count = 0);
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

  // The count in the high 32 bits (signed), the waiters in the low 32. A waiter counts itself in by a compare-and-swap
  // while the count is above zero, under mu_, and queues its node under the same hold; the add() that brings the
  // count to zero and sees waiters resets the word and takes mu_ to detach them, and they cannot return from wait()
  // before it wakes them, so the WaitGroup is alive until then. An add() that sees no waiter touches nothing after
  // its atomic add: a waiter that then sees the count at zero may destroy the WaitGroup at once.
  std::atomic<uint64_t> state_;
  std::mutex mu_;
  detail::WaitQueue<Node> q_;
};

}  // namespace tern
