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
#pragma once

#include <cstddef>

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

}  // namespace tern::detail
