// runtime/sync/cond_var.cc: CondVar over tern::Mutex: wait, wait with a deadline, notify.
#include "runtime/sync/cond_var.h"

namespace tern {

void CondVar::wait(std::unique_lock<Mutex>& lk) {
  wait_until_ns(lk, -1);
}

bool CondVar::wait_until_ns(std::unique_lock<Mutex>& lk, int64_t deadline_ns) {
  Waiter w;
  Node n;
  n.waiter = &w;
  n.timed = deadline_ns >= 0;
  {
    std::lock_guard g(mu_);
    q_.push_back(&n);
  }
  // Queued before the user's mutex is released, so a notify issued after that release finds this waiter; a notify
  // that lands before the park below only makes the park return at once.
  lk.unlock();
  bool notified = w.wait_until(deadline_ns, nullptr, sched::WaitReason::kCondVar);
  if (n.timed) {
    // Timed out: unlink. Notified: wait for the notifier, who holds mu_ around notify(), to be done with us.
    std::lock_guard g(mu_);
    q_.remove(&n);
  }
  lk.lock();
  return notified;
}

void CondVar::notify_one() {
  std::unique_lock g(mu_);
  while (Node* n = q_.pop_front()) {
    if (n->timed) {
      // One that already timed out is skipped, so the wakeup goes to a waiter still waiting.
      if (n->waiter->notify()) return;
      continue;
    }
    Waiter* w = n->waiter;
    g.unlock();
    w->notify();
    return;
  }
}

void CondVar::notify_all() {
  std::unique_lock g(mu_);
  Node* wake = nullptr;  // untimed waiters in FIFO order, chained through `next` once unqueued
  Node* last = nullptr;
  while (Node* n = q_.pop_front()) {
    if (n->timed) {
      n->waiter->notify();
    } else if (last != nullptr) {
      last->next = n;
      last = n;
    } else {
      wake = last = n;
    }
  }
  g.unlock();
  while (wake != nullptr) {
    Node* next = wake->next;  // read first: the node dies with its waiter's frame
    wake->waiter->notify();
    wake = next;
  }
}

}  // namespace tern
