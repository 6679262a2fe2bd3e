// scheduler/run_queue.h: a P's local run queue.
//
// A fixed ring of kCapacity fiber pointers (Go's runq). Only the owning P pushes and pops at the tail/head; thieves
// take half of it with one CAS on `head_`. Slots are atomics so a thief reading a slot the owner is overwriting is not
// a data race; a thief's CAS on head_ fails if the owner or another thief moved it, and the thief retries.
//
//   RunQueue q;
//   if (!q.push(g)) { /* full: caller moves half to the global queue via pop_half() */ }
//   G* g = q.pop();
//   uint32_t n = victim.steal_into(q);
//
// kCapacity = 256 is Go's and Tokio's choice: large enough that a burst of spawns rarely spills to the global queue,
// small enough that stealing half is a short copy. The capacity is a template parameter only so that tests can run
// the same code at capacity 4, where every operation meets a full or empty ring and the indices wrap constantly
// (Tokio runs its queue at capacity 4 under loom for the same reason); the scheduler uses RunQueue.
#pragma once

#include <atomic>
#include <cstdint>

#include "scheduler/g.h"

namespace tern::sched {

template <uint32_t Capacity>
class BasicRunQueue {
 public:
  // head and tail are free-running uint32_t counters: the ring index (counter % kCapacity) stays continuous across
  // their wrap only if kCapacity divides 2^32.
  static_assert(Capacity >= 2 && (Capacity & (Capacity - 1)) == 0, "the capacity must be a power of two");
  static constexpr uint32_t kCapacity = Capacity;

  BasicRunQueue() = default;
  // Starts both counters at `start`: tests begin just below 2^32 to cross the counters' wrap.
  explicit BasicRunQueue(uint32_t start) : head_(start), tail_(start) {}

  // Owner only. False if the queue is full.
  bool push(G* g) {
    uint32_t h = head_.load(std::memory_order_acquire);  // synchronizes with thieves' CAS: their slots are free
    uint32_t t = tail_.load(std::memory_order_relaxed);
    if (t - h >= kCapacity) return false;
    slots_[t % kCapacity].store(g, std::memory_order_relaxed);
    tail_.store(t + 1, std::memory_order_release);  // publishes the slot to thieves
    return true;
  }

  // Owner only. Removes from the head (FIFO).
  G* pop() {
    uint32_t h = head_.load(std::memory_order_acquire);
    for (;;) {
      uint32_t t = tail_.load(std::memory_order_relaxed);
      if (t == h) return nullptr;
      G* g = slots_[h % kCapacity].load(std::memory_order_relaxed);
      if (head_.compare_exchange_weak(h, h + 1, std::memory_order_acq_rel, std::memory_order_acquire)) return g;
    }
  }

  // Owner only, when the queue is full: takes half of it (oldest first) into out[0..n) and returns n, or 0 if a
  // thief got there first (then push() will succeed).
  uint32_t pop_half(G** out) {
    uint32_t h = head_.load(std::memory_order_acquire);
    uint32_t t = tail_.load(std::memory_order_relaxed);
    uint32_t n = (t - h) / 2;
    if (n != kCapacity / 2) return 0;
    for (uint32_t i = 0; i < n; i++) out[i] = slots_[(h + i) % kCapacity].load(std::memory_order_relaxed);
    if (!head_.compare_exchange_strong(h, h + n, std::memory_order_acq_rel)) return 0;
    return n;
  }

  // Thief: moves half of this queue (rounded up) into `dst`, which must be empty and owned by the caller. Returns the
  // number moved.
  uint32_t steal_into(BasicRunQueue& dst) {
    const uint32_t dt = dst.tail_.load(std::memory_order_relaxed);
    uint32_t n = take_half(
        kCapacity / 2, [&](uint32_t i, G* g) { dst.slots_[(dt + i) % kCapacity].store(g, std::memory_order_relaxed); });
    if (n > 0) dst.tail_.store(dt + n, std::memory_order_release);
    return n;
  }

  // Thief: takes up to half of this queue (rounded up), at most `max`, oldest first, into out[]. Returns the number.
  uint32_t steal_batch(G** out, uint32_t max) {
    return take_half(max, [&](uint32_t i, G* g) { out[i] = g; });
  }

  // Owner only: the i-th oldest fiber, left in place. A thief may take it at any moment, so the result is only a hint
  // (Sched uses it to prefetch).
  G* peek(uint32_t i) const {
    uint32_t h = head_.load(std::memory_order_relaxed);
    uint32_t t = tail_.load(std::memory_order_relaxed);
    if (t - h <= i || t - h > kCapacity) return nullptr;
    return slots_[(h + i) % kCapacity].load(std::memory_order_relaxed);
  }

  uint32_t size() const {
    uint32_t h = head_.load(std::memory_order_acquire);
    uint32_t t = tail_.load(std::memory_order_acquire);
    return t - h > kCapacity ? 0 : t - h;
  }
  bool empty() const { return size() == 0; }

 private:
  // Takes up to half of the queue (rounded up), at most `max`, handing each fiber to put(i, g) before claiming them
  // all with one CAS on the head; a failed CAS (another thief, or the owner) starts over, and put() may be called
  // again for the same i.
  template <class Put>
  uint32_t take_half(uint32_t max, Put&& put) {
    for (;;) {
      uint32_t h = head_.load(std::memory_order_acquire);
      uint32_t t = tail_.load(std::memory_order_acquire);
      uint32_t n = t - h;
      n -= n / 2;
      if (n == 0) return 0;
      if (n > kCapacity / 2) continue;  // read a torn head/tail pair; retry
      n = n < max ? n : max;
      for (uint32_t i = 0; i < n; i++) put(i, slots_[(h + i) % kCapacity].load(std::memory_order_relaxed));
      if (head_.compare_exchange_weak(h, h + n, std::memory_order_acq_rel, std::memory_order_relaxed)) return n;
    }
  }

  alignas(64) std::atomic<uint32_t> head_{0};  // thieves and owner CAS here
  alignas(64) std::atomic<uint32_t> tail_{0};  // owner only writes
  std::atomic<G*> slots_[kCapacity] = {};
};

using RunQueue = BasicRunQueue<256>;

}  // namespace tern::sched
