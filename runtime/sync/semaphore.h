// runtime/sync/semaphore.h: tern::Semaphore, a counting semaphore that parks fibers, not threads.
//
//   tern::Semaphore slots(8);           // at most 8 requests to the backend at once
//   slots.acquire();
//   call_backend();
//   slots.release();
//
// Waiters are served in FIFO order and permits are handed to them directly, so a stream of try_acquire() calls cannot
// starve a waiter, and a waiter asking for permits is not overtaken by a later one. Works from fibers and threads.
#pragma once

#include <cstdint>
#include <mutex>

#include "runtime/sync/wait_queue.h"
#include "runtime/sync/waiter.h"

namespace tern {

class Semaphore {
 public:
  explicit Semaphore(int64_t permits = 0) : permits_(permits) {}
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;

  // Takes one permit, waiting for it if none is free.
  void acquire();
  // Takes one permit if one is free and nobody is queued for it.
  bool try_acquire();
  // Returns n permits, waking as many waiters as they serve.
  void release(int64_t n = 1);
  // Free permits now (a snapshot).
  int64_t available() const;

 private:
  struct Node : detail::WaitLink<Node> {
    Waiter* waiter = nullptr;
  };

  mutable std::mutex mu_;
  int64_t permits_;
  detail::WaitQueue<Node> q_;
};

}  // namespace tern
