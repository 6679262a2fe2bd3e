// scheduler/global_queue.h: the runtime-wide run queue.
//
// Fibers started from outside threads, overflow from full local queues, and fibers of retired Ps land here. A mutex
// guards an intrusive list (G::next); `size_` is readable without the lock so that the scheduler's "anything there?"
// checks cost one load.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>

#include "scheduler/g.h"
#include "scheduler/poller.h"

namespace tern::sched {

class GlobalQueue {
 public:
  void push(G* g) {
    std::lock_guard lk(mu_);
    push_locked(g);
  }
  void push_batch(G** gs, uint32_t n) {
    std::lock_guard lk(mu_);
    for (uint32_t i = 0; i < n; i++) push_locked(gs[i]);
  }
  void push_list(GList& list) {
    std::lock_guard lk(mu_);
    while (G* g = list.pop()) push_locked(g);
  }
  G* pop() {
    if (empty()) return nullptr;
    std::lock_guard lk(mu_);
    return pop_locked();
  }
  // Takes up to `max` fibers into out[] under one lock acquisition.
  uint32_t pop_batch(G** out, uint32_t max) {
    if (empty()) return 0;
    std::lock_guard lk(mu_);
    uint32_t n = 0;
    while (n < max) {
      G* g = pop_locked();
      if (g == nullptr) break;
      out[n++] = g;
    }
    return n;
  }
  bool empty() const { return size_.load(std::memory_order_acquire) == 0; }
  uint64_t size() const { return size_.load(std::memory_order_relaxed); }

 private:
  void push_locked(G* g) {
    g->next = nullptr;
    if (tail_ != nullptr) {
      tail_->next = g;
    } else {
      head_ = g;
    }
    tail_ = g;
    size_.store(size_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }
  G* pop_locked() {
    G* g = head_;
    if (g == nullptr) return nullptr;
    head_ = g->next;
    if (head_ == nullptr) tail_ = nullptr;
    g->next = nullptr;
    size_.store(size_.load(std::memory_order_relaxed) - 1, std::memory_order_release);
    return g;
  }

  std::mutex mu_;
  G* head_ = nullptr;
  G* tail_ = nullptr;
  std::atomic<uint64_t> size_{0};
};

}  // namespace tern::sched
