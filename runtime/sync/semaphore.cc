// runtime/sync/semaphore.cc: Semaphore: counting, FIFO waiters.
#include "runtime/sync/semaphore.h"

namespace tern {

void Semaphore::acquire() {
  std::unique_lock lk(mu_);
  if (permits_ > 0 && q_.empty()) {
    permits_--;
    return;
  }
  Waiter w;
  Node n;
  n.waiter = &w;
  q_.push_back(&n);
  lk.unlock();
  w.wait(sched::WaitReason::kSemaphore);  // release() took our permit for us before waking us
}

bool Semaphore::try_acquire() {
  std::lock_guard lk(mu_);
  if (permits_ > 0 && q_.empty()) {
    permits_--;
    return true;
  }
  return false;
}

void Semaphore::release(int64_t n) {
  std::unique_lock lk(mu_);
  permits_ += n;
  // Each woken waiter gets a permit taken for it here.
  size_t woken = 0;
  Node* first = q_.detach_front(permits_ > 0 ? static_cast<size_t>(permits_) : 0, &woken);
  permits_ -= static_cast<int64_t>(woken);
  lk.unlock();
  // Waiters here never time out, so they are still parked and their nodes alive until notified.
  detail::wake_chain(first);
}

int64_t Semaphore::available() const {
  std::lock_guard lk(mu_);
  return permits_;
}

}  // namespace tern
