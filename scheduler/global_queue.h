// scheduler/global_queue.h: the runtime-wide run queue.
//
// Fibers started from outside threads, overflow from full local queues, and fibers of retired Ps land here. A mutex
// guards a ring of G pointers; `size_` is readable without the lock so that the scheduler's "anything there?" checks
// cost one load. A ring of pointers rather than a list linked through the G records: moving a batch in or out then
// touches no G, where walking a list takes a cache miss per fiber, one after another (skynet moves a million fibers
// through here: docs/performance.md has what the walk cost). The ring grows by doubling and never shrinks, so a
// runtime in a steady state allocates nothing here.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

#include "scheduler/g.h"
#include "scheduler/poller.h"

namespace tern::sched {

class GlobalQueue {
 public:
  void push(G* g) {
    std::lock_guard lk(mu_);
    push_locked(g);
    publish();
  }
  void push_batch(G** gs, uint32_t n) {
    std::lock_guard lk(mu_);
    for (uint32_t i = 0; i < n; i++) push_locked(gs[i]);
    publish();
  }
  void push_list(GList& list) {
    std::lock_guard lk(mu_);
    while (G* g = list.pop()) push_locked(g);
    publish();
  }
  G* pop() {
    G* g = nullptr;
    return pop_batch(&g, 1) == 1 ? g : nullptr;
  }
  // Takes up to `max` fibers into out[] under one lock acquisition.
  uint32_t pop_batch(G** out, uint32_t max) {
    if (empty()) return 0;
    std::lock_guard lk(mu_);
    uint32_t n = 0;
    while (n < max && count_ > 0) {
      out[n++] = ring_[head_];
      head_ = (head_ + 1) & (cap_ - 1);
      count_--;
    }
    publish();
    return n;
  }
  bool empty() const { return size_.load(std::memory_order_acquire) == 0; }
  uint64_t size() const { return size_.load(std::memory_order_relaxed); }

 private:
  static constexpr size_t kInitialCapacity = 1024;  // a power of two, as every capacity is

  void push_locked(G* g) {
    if (count_ == cap_) grow();
    ring_[(head_ + count_) & (cap_ - 1)] = g;
    count_++;
  }
  void grow() {
    size_t cap = cap_ == 0 ? kInitialCapacity : cap_ * 2;
    std::unique_ptr<G*[]> ring(new G*[cap]);
    for (size_t i = 0; i < count_; i++) ring[i] = ring_[(head_ + i) & (cap_ - 1)];
    ring_ = std::move(ring);
    cap_ = cap;
    head_ = 0;
  }
  void publish() { size_.store(count_, std::memory_order_release); }

  std::mutex mu_;
  std::unique_ptr<G*[]> ring_;
  size_t cap_ = 0;  // 0 or a power of two
  size_t head_ = 0;
  size_t count_ = 0;
  std::atomic<uint64_t> size_{0};
};

}  // namespace tern::sched
