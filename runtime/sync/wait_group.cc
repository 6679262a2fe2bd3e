// runtime/sync/wait_group.cc: WaitGroup: the count and the waiters it releases at zero.
#include "runtime/sync/wait_group.h"

#include <cinttypes>
#include <cstdio>
#include <cstdlib>

namespace tern {

void WaitGroup::add(int64_t n) {
  std::unique_lock lk(mu_);
  count_ += n;
  if (count_ < 0) {
    std::fprintf(stderr, "tern::WaitGroup: negative count %" PRId64 " (more done() than add())\n", count_);
    std::abort();
  }
  if (count_ > 0 || q_.empty()) return;
  // Detach the waiters; after the unlock only their own Waiters (on their stacks) are touched, never *this.
  Node* first = q_.detach_front();
  lk.unlock();
  detail::wake_chain(first);
}

void WaitGroup::wait() {
  std::unique_lock lk(mu_);
  if (count_ == 0) return;
  Waiter w;
  Node n;
  n.waiter = &w;
  q_.push_back(&n);
  lk.unlock();
  w.wait(sched::WaitReason::kWaitGroup);
}

int64_t WaitGroup::count() const {
  std::lock_guard lk(mu_);
  return count_;
}

}  // namespace tern
