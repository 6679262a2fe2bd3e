// runtime/sync/select.h: tern::select, waiting on several channel operations at once (Go's select statement).
//
//   int taken = tern::select(
//       tern::recv_case(jobs, [&](std::optional<Job> j) { if (j) run(*j); else done = true; }),
//       tern::send_case(results, r, [&] { sent++; }),
//       tern::timeout_case(std::chrono::milliseconds(10), [&] { idle++; }));
//   // taken is the index (0, 1, 2 here) of the case that ran
//
// Cases:
//   recv_case(ch, f)            f(std::optional<T>): a value, or nullopt when ch is closed and drained.
//   send_case(ch, v, f)         f() after v was sent; f(bool sent) if f takes a bool, called with false when ch is
//                               closed (a nullary f is then not called, but the case still counts as taken).
//   send_case(ch, v)            the same without a callback.
//   default_case(f)             taken at once when no other case is ready (f optional).
//   timeout_case(duration, f)   taken when no channel case became ready within `duration` (f optional).
// At most one default_case and one timeout_case; a channel may appear in several cases.
//
// Semantics: if several channel cases are ready, one is chosen uniformly at random (so no case starves); otherwise
// the default case runs if there is one; otherwise the caller waits (a fiber parks, a thread blocks) with one waiter
// node per channel case, all sharing one Waiter, until the first case completes or the timeout passes. The waker that
// wins Waiter::notify() completes its case; the others find notify() false and move on, and the select unlinks its
// remaining nodes. The chosen case's callback runs after every lock is released, on the calling fiber; its
// exceptions propagate out of select().
//
// Cost: the channels are locked together (in address order, so selects cannot deadlock) once to poll and, when the
// select had to wait, once more to unlink. Nothing is allocated.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <utility>

#include "runtime/deadline.h"
#include "runtime/sync/channel.h"
#include "runtime/sync/waiter.h"

namespace tern {

// Cases in one select (the scratch arrays live on the caller's stack).
inline constexpr size_t kSelectMaxCases = 64;

namespace detail {

// One case, type-erased for the select engine (select.cc).
struct SelectCase {
  enum class Kind : uint8_t { kChan, kDefault, kTimeout };
  Kind kind = Kind::kChan;
  SpinLock* mu = nullptr;  // the channel's lock
  // With mu held: completes the case now if it can. A plain waiter it completed is returned in *wake, to be
  // notified once every lock is released.
  ChanOp (*poll)(void* self, Waiter** wake) = nullptr;
  // With mu held: queues the case's node, waking `w` when the case completes.
  void (*enqueue)(void* self, Waiter* w) = nullptr;
  // With mu held: unqueues the node if still queued; returns whether the case completed.
  bool (*dequeue)(void* self) = nullptr;
  void* self = nullptr;
  int64_t timeout_ns = 0;  // kTimeout
};

// Runs the select over cases[0, n) and returns the index of the case taken. scratch holds 2 * n entries.
int select_run(SelectCase* cases, size_t n, uint16_t* scratch);

template <class T>
struct ChanSelect {
  static SpinLock* mu(Channel<T>& c) { return &c.mu_; }
  static ChanOp send(Channel<T>& c, T& v, Waiter** wake) { return c.send_locked(v, *wake); }
  static ChanOp recv(Channel<T>& c, std::optional<T>& out, Waiter** wake) { return c.recv_locked(out, *wake); }
  static void enqueue_send(Channel<T>& c, ChanNode<T>* n) { c.sendq_.push_back(n); }
  static void enqueue_recv(Channel<T>& c, ChanNode<T>* n) { c.recvq_.push_back(n); }
  static void dequeue_send(Channel<T>& c, ChanNode<T>* n) { c.sendq_.remove(n); }
  static void dequeue_recv(Channel<T>& c, ChanNode<T>* n) { c.recvq_.remove(n); }
};

struct NoOp {
  void operator()() const {}
};

template <class T, class F>
class RecvCase {
 public:
  RecvCase(Channel<T>& ch, F f) : ch_(&ch), f_(std::move(f)) {}

  SelectCase select_case() {
    SelectCase c;
    c.mu = ChanSelect<T>::mu(*ch_);
    c.self = this;
    c.poll = [](void* self, Waiter** wake) {
      auto* rc = static_cast<RecvCase*>(self);
      return ChanSelect<T>::recv(*rc->ch_, rc->value_, wake);
    };
    c.enqueue = [](void* self, Waiter* w) {
      auto* rc = static_cast<RecvCase*>(self);
      rc->node_.waiter = w;
      rc->node_.recv_slot = &rc->value_;
      rc->node_.select = true;
      ChanSelect<T>::enqueue_recv(*rc->ch_, &rc->node_);
    };
    c.dequeue = [](void* self) {
      auto* rc = static_cast<RecvCase*>(self);
      ChanSelect<T>::dequeue_recv(*rc->ch_, &rc->node_);
      return rc->node_.fired;
    };
    return c;
  }

  void finish() { f_(std::move(value_)); }

 private:
  Channel<T>* ch_;
  F f_;
  std::optional<T> value_;
  ChanNode<T> node_;
};

template <class T, class F>
class SendCase {
 public:
  SendCase(Channel<T>& ch, T v, F f) : ch_(&ch), value_(std::move(v)), f_(std::move(f)) {}

  SelectCase select_case() {
    SelectCase c;
    c.mu = ChanSelect<T>::mu(*ch_);
    c.self = this;
    c.poll = [](void* self, Waiter** wake) {
      auto* sc = static_cast<SendCase*>(self);
      ChanOp r = ChanSelect<T>::send(*sc->ch_, sc->value_, wake);
      sc->sent_ = r == ChanOp::kDone;
      return r;
    };
    c.enqueue = [](void* self, Waiter* w) {
      auto* sc = static_cast<SendCase*>(self);
      sc->node_.waiter = w;
      sc->node_.send_value = &sc->value_;
      sc->node_.select = true;
      ChanSelect<T>::enqueue_send(*sc->ch_, &sc->node_);
    };
    c.dequeue = [](void* self) {
      auto* sc = static_cast<SendCase*>(self);
      ChanSelect<T>::dequeue_send(*sc->ch_, &sc->node_);
      sc->sent_ = sc->node_.ok;
      return sc->node_.fired;
    };
    return c;
  }

  void finish() {
    if constexpr (std::is_invocable_v<F&, bool>) {
      f_(sent_);
    } else {
      if (sent_) f_();
    }
  }

 private:
  Channel<T>* ch_;
  T value_;
  F f_;
  bool sent_ = false;
  ChanNode<T> node_;
};

template <class F>
class DefaultCase {
 public:
  explicit DefaultCase(F f) : f_(std::move(f)) {}
  SelectCase select_case() {
    SelectCase c;
    c.kind = SelectCase::Kind::kDefault;
    return c;
  }
  void finish() { f_(); }

 private:
  F f_;
};

template <class F>
class TimeoutCase {
 public:
  TimeoutCase(std::chrono::nanoseconds d, F f) : d_(d), f_(std::move(f)) {}
  SelectCase select_case() {
    SelectCase c;
    c.kind = SelectCase::Kind::kTimeout;
    c.timeout_ns = d_.count();
    return c;
  }
  void finish() { f_(); }

 private:
  std::chrono::nanoseconds d_;
  F f_;
};

template <class C>
inline constexpr int kIsDefaultCase = 0;
template <class F>
inline constexpr int kIsDefaultCase<DefaultCase<F>> = 1;
template <class C>
inline constexpr int kIsTimeoutCase = 0;
template <class F>
inline constexpr int kIsTimeoutCase<TimeoutCase<F>> = 1;

}  // namespace detail

template <class T, class F>
detail::RecvCase<T, std::decay_t<F>> recv_case(Channel<T>& ch, F&& f) {
  static_assert(std::is_invocable_v<std::decay_t<F>&, std::optional<T>&&>,
                "recv_case callback must take std::optional<T>");
  return {ch, std::forward<F>(f)};
}

template <class T, class V, class F>
detail::SendCase<T, std::decay_t<F>> send_case(Channel<T>& ch, V&& v, F&& f) {
  static_assert(std::is_invocable_v<std::decay_t<F>&, bool> || std::is_invocable_v<std::decay_t<F>&>,
                "send_case callback must take no argument or a bool");
  return {ch, T(std::forward<V>(v)), std::forward<F>(f)};
}

template <class T, class V>
detail::SendCase<T, detail::NoOp> send_case(Channel<T>& ch, V&& v) {
  return {ch, T(std::forward<V>(v)), detail::NoOp{}};
}

template <class F = detail::NoOp>
detail::DefaultCase<std::decay_t<F>> default_case(F&& f = {}) {
  return detail::DefaultCase<std::decay_t<F>>(std::forward<F>(f));
}

// d saturates (runtime/deadline.h): hours::max() never fires rather than wrapping into a timeout that fires at once.
template <class Rep, class Period, class F = detail::NoOp>
detail::TimeoutCase<std::decay_t<F>> timeout_case(std::chrono::duration<Rep, Period> d, F&& f = {}) {
  return {detail::saturating_ns(d), std::forward<F>(f)};
}

// Waits for the first of `cases` to be ready, runs its callback and returns its index (see the top of this file).
template <class... Cases>
int select(Cases&&... cases) {
  constexpr size_t n = sizeof...(Cases);
  static_assert(n > 0 && n <= kSelectMaxCases, "select needs 1 to kSelectMaxCases cases");
  static_assert((detail::kIsDefaultCase<std::decay_t<Cases>> + ... + 0) <= 1, "at most one default_case");
  static_assert((detail::kIsTimeoutCase<std::decay_t<Cases>> + ... + 0) <= 1, "at most one timeout_case");
  detail::SelectCase ops[n] = {cases.select_case()...};
  uint16_t scratch[2 * n];
  int taken = detail::select_run(ops, n, scratch);
  int i = 0;
  ((i++ == taken ? cases.finish() : void()), ...);
  return taken;
}

}  // namespace tern
