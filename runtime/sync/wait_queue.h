// runtime/sync/wait_queue.h: the intrusive FIFO of waiting operations inside every primitive of runtime/sync.
//
// Nodes live on the waiters' stacks, so queueing allocates nothing; the owning primitive's lock guards the queue.
// remove() lets a waiter that gave up (a timeout, a select case that lost) unlink itself in O(1).
//
//   struct Node : tern::detail::WaitLink<Node> { tern::Waiter* w = nullptr; };
//   tern::detail::WaitQueue<Node> q;   // guarded by the primitive's lock
//   Node n;
//   q.push_back(&n);
//   Node* first = q.pop_front();       // nullptr when empty
//   q.remove(&n);                      // false if n was no longer queued
//
// Waking many: detach them under the lock, then notify after unlocking, so that nothing touches the primitive once a
// woken waiter may have returned and destroyed it:
//   Node* woken = q.detach_front();    // under the lock
//   lk.unlock();
//   tern::detail::wake_chain(woken);   // each node's `waiter` is notified; the nodes die with their waiters
#pragma once

#include <cstddef>
#include <cstdint>

namespace tern::detail {

template <class Node>
struct WaitLink {
  Node* prev = nullptr;
  Node* next = nullptr;
  bool queued = false;
};

template <class Node>
class WaitQueue {
 public:
  WaitQueue() = default;
  WaitQueue(const WaitQueue&) = delete;
  WaitQueue& operator=(const WaitQueue&) = delete;

  bool empty() const { return head_ == nullptr; }
  Node* front() const { return head_; }

  void push_back(Node* n) {
    n->prev = tail_;
    n->next = nullptr;
    n->queued = true;
    if (tail_ != nullptr) {
      tail_->next = n;
    } else {
      head_ = n;
    }
    tail_ = n;
  }

  void push_front(Node* n) {
    n->prev = nullptr;
    n->next = head_;
    n->queued = true;
    if (head_ != nullptr) {
      head_->prev = n;
    } else {
      tail_ = n;
    }
    head_ = n;
  }

  Node* pop_front() {
    Node* n = head_;
    if (n != nullptr) unlink(n);
    return n;
  }

  bool remove(Node* n) {
    if (!n->queued) return false;
    unlink(n);
    return true;
  }

  // Unlinks up to `max` nodes from the front and returns them as a chain through `next`, in queue order (nullptr if
  // none). `taken`, if given, receives how many.
  Node* detach_front(size_t max = SIZE_MAX, size_t* taken = nullptr) {
    Node* first = head_;
    Node* last = nullptr;
    size_t n = 0;
    for (Node* w = head_; w != nullptr && n < max; w = w->next, n++) {
      w->prev = nullptr;
      w->queued = false;
      last = w;
    }
    if (taken != nullptr) *taken = n;
    if (last == nullptr) return nullptr;
    head_ = last->next;
    if (head_ != nullptr) {
      head_->prev = nullptr;
    } else {
      tail_ = nullptr;
    }
    last->next = nullptr;
    return first;
  }

 private:
  void unlink(Node* n) {
    if (n->prev != nullptr) {
      n->prev->next = n->next;
    } else {
      head_ = n->next;
    }
    if (n->next != nullptr) {
      n->next->prev = n->prev;
    } else {
      tail_ = n->prev;
    }
    n->prev = n->next = nullptr;
    n->queued = false;
  }

  Node* head_ = nullptr;
  Node* tail_ = nullptr;
};

// Notifies each node's `waiter` in a chain from detach_front(). Call it without the primitive's lock.
template <class Node>
void wake_chain(Node* first) {
  while (first != nullptr) {
    Node* next = first->next;  // read before notify: the node dies with its waiter's frame
    first->waiter->notify();
    first = next;
  }
}

}  // namespace tern::detail
