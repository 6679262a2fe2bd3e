// runtime/sync/wait_group.cc: WaitGroup: the count and the waiters it releases at zero.
#include "runtime/sync/wait_group.h"

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace tern {
namespace {
constexpr int kCountShift = 32;

int64_t count_of(uint64_t state) {
  return static_cast<int32_t>(static_cast<uint32_t>(state >> kCountShift));
}
uint32_t waiters_of(uint64_t state) {
  return static_cast<uint32_t>(state);
}

[[noreturn]] void bad_count(int64_t count) {
  if (count < 0) {
    std::fprintf(stderr, "tern::WaitGroup: negative count %" PRId64 " (more done() than add())\n", count);
  } else {
    std::fprintf(stderr, "tern::WaitGroup: count %" PRId64 " past 2^31 - 1, the most one WaitGroup holds\n", count);
  }
  std::abort();
}
}  // namespace

WaitGroup::WaitGroup(int64_t count) {
  if (count < 0 || count > std::numeric_limits<int32_t>::max()) bad_count(count);
  state_.store(static_cast<uint64_t>(count) << kCountShift, std::memory_order_relaxed);
}

void WaitGroup::add(int64_t n) {
  // Wrapping arithmetic on the count's half; the waiters' half is untouched because the shift drops n's high bits.
  const uint64_t delta = static_cast<uint64_t>(n) << kCountShift;
  const uint64_t before = state_.fetch_add(delta, std::memory_order_acq_rel);
  const int64_t count = count_of(before) + n;
  if (count < 0 || count > std::numeric_limits<int32_t>::max()) bad_count(count);
  if (count > 0 || waiters_of(before) == 0) return;
  // Zero with waiters: nothing else may change the word now (an add() racing a zero that releases waiters is the
  // caller's bug, as in Go). Reset it, so that the next round starts clean, then release them.
  state_.store(0, std::memory_order_relaxed);
  Node* first;
  {
    std::lock_guard lk(mu_);
    first = q_.detach_front();
  }
  // Detached: only the waiters' own nodes and Waiters (on their stacks) are touched from here, never *this.
  detail::wake_chain(first);
}

void WaitGroup::wait() {
  if (count_of(state_.load(std::memory_order_acquire)) == 0) return;
  Waiter w;
  Node n;
  n.waiter = &w;
  {
    std::lock_guard lk(mu_);
    uint64_t s = state_.load(std::memory_order_acquire);
    do {
      if (count_of(s) == 0) return;
    } while (!state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel, std::memory_order_acquire));
    q_.push_back(&n);
  }
  w.wait(sched::WaitReason::kWaitGroup);
}

int64_t WaitGroup::count() const {
  return count_of(state_.load(std::memory_order_acquire));
}

}  // namespace tern
