// runtime/sync/channel.h: tern::Channel<T>, Go's channels for fibers and threads.
//
//   tern::Channel<int> ch;              // unbuffered: a send waits for a receiver and hands the value over directly
//   tern::Channel<Job> jobs(64);        // buffered: sends wait only while 64 values are queued
//   tern::go([&] {
//     for (int i = 0; i < 3; i++) ch.send(i);
//     ch.close();
//   });
//   while (std::optional<int> v = ch.recv()) use(*v);   // nullopt: closed and drained
//
// Semantics (Go's, with errors as values instead of panics):
//   send(v)    waits for room (buffered) or a receiver (unbuffered); returns false if the channel is closed, or is
//              closed while the send waits (the value is then dropped).
//   recv()     waits for a value; after close() it returns the values still buffered, then nullopt at once.
//   close()    wakes every waiting receiver (nullopt) and sender (false); returns false if already closed.
//   try_send / try_recv never wait: they fail when the operation would block (or the channel is closed).
// Values are delivered in FIFO order, and waiting senders and receivers are served in FIFO order. A value passed to a
// parked receiver is moved straight into the receiver's result (no buffer slot), and a fiber woken from a fiber goes
// to that P's runnext, so a ping-pong pair on one P runs back to back. See select.h to wait on several channels.
//
// Works from fibers (waiters park) and from plain OS threads (waiters block the thread), mixed freely. Cost: every
// operation takes the channel's spinlock once; a blocked one adds one park and one wake, and the park releases the
// lock only once the fiber has switched out, so neither side needs a compare-and-swap to settle the race between
// them. An unbuffered ping-pong round trip between two fibers on one P is six uncontended atomic read-modify-writes
// and four context switches (bench/sync_bench.cc). Destroying a channel with waiters is undefined; values still
// buffered are destroyed with it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "runtime/sync/spin_lock.h"
#include "runtime/sync/wait_queue.h"
#include "runtime/sync/waiter.h"

namespace tern {

namespace detail {

// The outcome of a channel operation attempted under the channel's lock.
enum class ChanOp : uint8_t {
  kDone,    // completed: a value moved
  kClosed,  // completed by the channel being closed (send failed; recv got nullopt)
  kBlock,   // would have to wait
};

// One waiting operation: a blocked send or recv, or one channel case of a blocked select. It lives on the waiter's
// stack and sits in the channel's sendq or recvq. Everything but `waiter` is guarded by the channel's lock.
//
// Completing a node: the other side pops it, moves the value, sets fired/ok and wakes the waiter. A plain node's Waiter
// waited with wait_locked(), so the one who pops it is its only notifier: the value moves first, notify_popped()
// comes after the channel's lock is released, and the waiter reads its node without the lock. A select node shares its
// Waiter with the select's other cases (and a timeout), so notify() decides who wins: the value moves only after
// notify() returned true, under the lock, and the select reads the outcome under the lock after waking.
template <class T>
struct ChanNode : WaitLink<ChanNode<T>> {
  Waiter* waiter = nullptr;
  T* send_value = nullptr;                // sender side: the value to take
  std::optional<T>* recv_slot = nullptr;  // receiver side: where the value goes
  bool select = false;
  bool fired = false;  // completed by the other side
  bool ok = false;     // completed with a value moved (false: by close)
};

template <class T>
struct ChanSelect;  // select.h's access to a channel's internals

}  // namespace detail

template <class T>
class Channel {
 public:
  // capacity 0 makes an unbuffered channel.
  explicit Channel(size_t capacity = 0)
      : cap_(capacity), buf_(capacity > 0 ? std::allocator<T>().allocate(capacity) : nullptr) {}

  ~Channel() {
    for (size_t i = 0; i < count_; i++) std::destroy_at(&buf_[(head_ + i) % cap_]);
    if (buf_ != nullptr) std::allocator<T>().deallocate(buf_, cap_);
  }

  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  // Sends v, waiting while the channel is full (or, unbuffered, until a receiver takes it). False if closed.
  bool send(T v) {
    sched::preempt_point();
    std::unique_lock lk(mu_);
    Waiter* wake = nullptr;
    detail::ChanOp r = send_locked(v, wake);
    if (r != detail::ChanOp::kBlock) {
      lk.unlock();
      if (wake != nullptr) wake->notify_popped();
      return r == detail::ChanOp::kDone;
    }
    Waiter w;
    Node n;
    n.waiter = &w;
    n.send_value = &v;
    sendq_.push_back(&n);
    // The lock is released by the park itself, once this fiber has switched out: whoever pops n then knows it is
    // parked and wakes it without racing the park (Waiter::wait_locked).
    lk.release();
    w.wait_locked(mu_, sched::WaitReason::kChanSend);
    return n.ok;
  }

  // Receives a value, waiting while the channel is empty. nullopt once the channel is closed and drained.
  std::optional<T> recv() {
    sched::preempt_point();
    std::optional<T> out;
    std::unique_lock lk(mu_);
    Waiter* wake = nullptr;
    if (recv_locked(out, wake) != detail::ChanOp::kBlock) {
      lk.unlock();
      if (wake != nullptr) wake->notify_popped();
      return out;
    }
    Waiter w;
    Node n;
    n.waiter = &w;
    n.recv_slot = &out;
    recvq_.push_back(&n);
    lk.release();
    w.wait_locked(mu_, sched::WaitReason::kChanReceive);
    return out;
  }

  // Sends v if that needs no waiting; on failure (full, no receiver, or closed) v is left untouched.
  bool try_send(T&& v) {
    std::unique_lock lk(mu_);
    Waiter* wake = nullptr;
    bool sent = send_locked(v, wake) == detail::ChanOp::kDone;
    lk.unlock();
    if (wake != nullptr) wake->notify_popped();
    return sent;
  }
  bool try_send(const T& v) {
    T copy(v);
    return try_send(std::move(copy));
  }

  // Receives a value if one is ready; nullopt if none is (check closed() to tell "empty" from "closed and drained").
  std::optional<T> try_recv() {
    std::optional<T> out;
    std::unique_lock lk(mu_);
    Waiter* wake = nullptr;
    recv_locked(out, wake);
    lk.unlock();
    if (wake != nullptr) wake->notify_popped();
    return out;
  }

  // Closes the channel and wakes every waiter. Returns false if it was already closed.
  bool close() {
    std::unique_lock lk(mu_);
    if (closed_) return false;
    closed_ = true;
    Node* wake = nullptr;  // plain waiters in FIFO order, chained through `next` once unqueued
    Node* last = nullptr;
    for (detail::WaitQueue<Node>* q : {&recvq_, &sendq_}) {
      while (Node* n = q->pop_front()) {
        if (!claim(n)) continue;
        n->fired = true;
        n->ok = false;
        if (n->select) continue;
        if (last != nullptr) {
          last->next = n;
        } else {
          wake = n;
        }
        last = n;
      }
    }
    lk.unlock();
    while (wake != nullptr) {
      Node* next = wake->next;  // read first: the node dies with its waiter's frame
      wake->waiter->notify_popped();
      wake = next;
    }
    return true;
  }

  bool closed() const {
    std::lock_guard lk(mu_);
    return closed_;
  }
  // Values buffered now.
  size_t size() const {
    std::lock_guard lk(mu_);
    return count_;
  }
  size_t capacity() const { return cap_; }

 private:
  friend struct detail::ChanSelect<T>;
  using Node = detail::ChanNode<T>;

  // Claims n for completion; false if n is a select node whose select was already decided (n is then dropped, and
  // that select, unlinking its cases, finds it gone).
  static bool claim(Node* n) { return !n->select || n->waiter->notify(); }
  // Records the outcome. A plain waiter is returned in `wake`, to be notified only after mu_ is released: once woken
  // it may return and destroy the channel, so the lock must be free by then. (A select relocks the channel after
  // waking, so notifying it under the lock is safe.)
  static void finish(Node* n, bool ok, Waiter*& wake) {
    n->fired = true;
    n->ok = ok;
    if (!n->select) wake = n->waiter;
  }

  // With mu_ held: sends v now if possible (moving from v only then).
  detail::ChanOp send_locked(T& v, Waiter*& wake) {
    if (closed_) return detail::ChanOp::kClosed;
    while (Node* r = recvq_.pop_front()) {
      if (!claim(r)) continue;
      r->recv_slot->emplace(std::move(v));
      finish(r, true, wake);
      return detail::ChanOp::kDone;
    }
    if (count_ < cap_) {
      std::construct_at(&buf_[(head_ + count_) % cap_], std::move(v));
      count_++;
      return detail::ChanOp::kDone;
    }
    return detail::ChanOp::kBlock;
  }

  // With mu_ held: receives into out now if possible (kClosed leaves out empty).
  detail::ChanOp recv_locked(std::optional<T>& out, Waiter*& wake) {
    if (count_ > 0) {
      T* v = &buf_[head_];
      out.emplace(std::move(*v));
      std::destroy_at(v);
      head_ = head_ + 1 == cap_ ? 0 : head_ + 1;
      count_--;
      // A full buffer may have a sender waiting: its value takes the freed slot, keeping FIFO order.
      while (Node* s = sendq_.pop_front()) {
        if (!claim(s)) continue;
        std::construct_at(&buf_[(head_ + count_) % cap_], std::move(*s->send_value));
        count_++;
        finish(s, true, wake);
        break;
      }
      return detail::ChanOp::kDone;
    }
    while (Node* s = sendq_.pop_front()) {
      if (!claim(s)) continue;
      out.emplace(std::move(*s->send_value));
      finish(s, true, wake);
      return detail::ChanOp::kDone;
    }
    return closed_ ? detail::ChanOp::kClosed : detail::ChanOp::kBlock;
  }

  // One short lock per operation; nothing under it blocks (plain waiters are notified after it is released).
  mutable SpinLock mu_;
  const size_t cap_;
  T* buf_;  // ring of cap_ slots; [head_, head_ + count_) are constructed
  size_t head_ = 0;
  size_t count_ = 0;
  bool closed_ = false;
  detail::WaitQueue<Node> recvq_;
  detail::WaitQueue<Node> sendq_;
};

}  // namespace tern
