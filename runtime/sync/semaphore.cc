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
  w.wait();  // release() took our permit for us before waking us
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
  Node* first = nullptr;
  Node* last = nullptr;
  while (permits_ > 0 && !q_.empty()) {
    Node* w = q_.pop_front();
    permits_--;
    if (last != nullptr) {
      last->next = w;
    } else {
      first = w;
    }
    last = w;
  }
  lk.unlock();
  // Waiters here never time out, so they are still parked and their nodes alive until notified.
  while (first != nullptr) {
    Node* next = first->next;
    first->waiter->notify();
    first = next;
  }
}

int64_t Semaphore::available() const {
  std::lock_guard lk(mu_);
  return permits_;
}

}  // namespace tern
