// runtime/sync/select.cc: select over channel cases: lock in order, park on all, one winner.
#include "runtime/sync/select.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <utility>

#include "scheduler/timer.h"

namespace tern::detail {
namespace {

// Per-thread xorshift64* (Vigna): a fair choice among ready cases needs speed, not cryptographic quality. A fiber may
// migrate between threads; each draw still comes from some well-mixed stream.
uint32_t fast_rand() {
  thread_local uint64_t x = 0;
  if (x == 0) {
    x = static_cast<uint64_t>(sched::now_ns()) ^ reinterpret_cast<uintptr_t>(&x);
    if (x == 0) x = 1;
  }
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  return static_cast<uint32_t>((x * 0x2545F4914F6CDD1DULL) >> 32);
}

// Uniform in [0, n) without division (Lemire's multiply-shift).
uint32_t rand_below(uint32_t n) {
  return static_cast<uint32_t>((uint64_t{fast_rand()} * n) >> 32);
}

class Locks {
 public:
  // order: the channel cases, to be sorted by lock address.
  Locks(const SelectCase* cases, uint16_t* order, size_t n) : cases_(cases), order_(order), n_(n) {
    for (size_t i = 1; i < n; i++) {
      uint16_t v = order[i];
      size_t j = i;
      while (j > 0 && std::less<SpinLock*>()(cases[v].mu, cases[order[j - 1]].mu)) {
        order[j] = order[j - 1];
        j--;
      }
      order[j] = v;
    }
  }
  void lock() {
    for (size_t i = 0; i < n_; i++) {
      if (i == 0 || mu(i) != mu(i - 1)) mu(i)->lock();
    }
  }
  void unlock() {
    for (size_t i = n_; i-- > 0;) {
      if (i == 0 || mu(i) != mu(i - 1)) mu(i)->unlock();
    }
  }

 private:
  SpinLock* mu(size_t i) const { return cases_[order_[i]].mu; }
  const SelectCase* cases_;
  uint16_t* order_;
  size_t n_;
};

}  // namespace

int select_run(SelectCase* cases, size_t n, uint16_t* scratch) {
  uint16_t* poll = scratch;
  uint16_t* lock_order = scratch + n;
  size_t nchan = 0;
  int dflt = -1;
  int timeout = -1;
  for (size_t i = 0; i < n; i++) {
    switch (cases[i].kind) {
      case SelectCase::Kind::kChan:
        poll[nchan++] = static_cast<uint16_t>(i);
        break;
      case SelectCase::Kind::kDefault:
        dflt = static_cast<int>(i);
        break;
      case SelectCase::Kind::kTimeout:
        timeout = static_cast<int>(i);
        break;
    }
  }
  int64_t deadline = -1;
  if (timeout >= 0) {
    int64_t d = cases[timeout].timeout_ns;
    if (d <= 0 && dflt < 0 && nchan == 0) return timeout;
    deadline = deadline_after(std::chrono::nanoseconds(d));
  }
  // A random poll order makes the choice among ready cases uniform (Go's pollorder).
  for (size_t i = nchan; i > 1; i--) std::swap(poll[i - 1], poll[rand_below(static_cast<uint32_t>(i))]);
  for (size_t i = 0; i < nchan; i++) lock_order[i] = poll[i];
  Locks locks(cases, lock_order, nchan);

  locks.lock();
  for (size_t i = 0; i < nchan; i++) {
    SelectCase& c = cases[poll[i]];
    Waiter* wake = nullptr;
    if (c.poll(c.self, &wake) != ChanOp::kBlock) {
      locks.unlock();
      if (wake != nullptr) wake->notify_popped();
      return poll[i];
    }
  }
  if (dflt >= 0 || (timeout >= 0 && cases[timeout].timeout_ns <= 0)) {
    locks.unlock();
    return dflt >= 0 ? dflt : timeout;
  }

  Waiter w;
  for (size_t i = 0; i < nchan; i++) cases[poll[i]].enqueue(cases[poll[i]].self, &w);
  // A case completed between this unlock and the park only makes the park return at once.
  locks.unlock();
  w.wait_until(deadline, nullptr, sched::WaitReason::kSelect);

  // Relock to unlink the cases that did not fire; a waker completes its case under that case's lock, so once we hold
  // them all the outcome is settled and no waker still touches w or the nodes.
  locks.lock();
  int taken = -1;
  for (size_t i = 0; i < nchan; i++) {
    if (cases[poll[i]].dequeue(cases[poll[i]].self)) taken = poll[i];
  }
  locks.unlock();
  return taken >= 0 ? taken : timeout;
}

}  // namespace tern::detail
