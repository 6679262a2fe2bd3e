#include "runtime/sync/once.h"

namespace tern {

bool Once::begin() {
  std::unique_lock lk(mu_);
  for (;;) {
    uint32_t s = state_.load(std::memory_order_relaxed);
    if (s == kDone) return false;
    if (s == kIdle) {
      state_.store(kRunning, std::memory_order_relaxed);
      return true;
    }
    Waiter w;
    Node n;
    n.waiter = &w;
    q_.push_back(&n);
    lk.unlock();
    w.wait();
    lk.lock();
  }
}

void Once::finish(bool ok) {
  std::unique_lock lk(mu_);
  // Release: whoever sees kDone on the fast path also sees what f wrote.
  state_.store(ok ? kDone : kIdle, std::memory_order_release);
  // After a failure every waiter retries; the first to get mu_ runs its f, the others wait again.
  Node* first = q_.detach_front();
  lk.unlock();
  detail::wake_chain(first);
}

}  // namespace tern
