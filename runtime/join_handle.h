// runtime/join_handle.h: the result of tern::spawn, a joinable fiber.
//
//   auto h = tern::spawn([] { return compute(); });
//   auto v = h.join();     // waits; rethrows what the fiber threw
//
// join() may be called from a fiber (parks it) or from a plain thread (blocks it), once. A handle destroyed without
// join() detaches the fiber; an exception it throws is then lost to nobody: it terminates the process, as for go().
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "runtime/sync/waiter.h"

namespace tern {
namespace detail {

[[noreturn]] void terminate_uncaught(uint64_t fiber_id, std::exception_ptr e);
uint64_t current_fiber_id();

// The fiber and the handle share one JoinState. `state` decides, with one atomic exchange on each side, who is last:
// the fiber publishes kDone; a joiner that got there first has published kWaiting (with `waiter` set before), and is
// notified; a handle that detached first has published kDetached, and an error then terminates.
template <class T>
struct JoinState {
  static constexpr uint32_t kRunning = 0, kDone = 1, kWaiting = 2, kDetached = 3;
  std::atomic<uint32_t> state{kRunning};
  Waiter* waiter = nullptr;
  std::exception_ptr error;
  uint64_t fiber_id = 0;
  std::optional<std::conditional_t<std::is_void_v<T>, char, T>> value;

  template <class F>
  void run(F& fn) {
    fiber_id = current_fiber_id();
    try {
      if constexpr (std::is_void_v<T>) {
        fn();
      } else {
        value.emplace(fn());
      }
    } catch (...) {
      error = std::current_exception();
    }
    uint32_t prev = state.exchange(kDone, std::memory_order_acq_rel);
    if (prev == kWaiting) {
      waiter->notify();
    } else if (prev == kDetached && error) {
      terminate_uncaught(fiber_id, error);
    }
  }
};

}  // namespace detail

template <class T>
class JoinHandle {
 public:
  explicit JoinHandle(std::shared_ptr<detail::JoinState<T>> s) : s_(std::move(s)) {}
  JoinHandle(JoinHandle&&) noexcept = default;
  JoinHandle& operator=(JoinHandle&&) noexcept = default;
  ~JoinHandle() { detach(); }

  bool joinable() const { return s_ != nullptr; }

  // Waits for the fiber; returns its value or rethrows its exception.
  T join() {
    auto s = std::move(s_);
    if (s->state.load(std::memory_order_acquire) != detail::JoinState<T>::kDone) {
      Waiter w;
      s->waiter = &w;
      uint32_t expected = detail::JoinState<T>::kRunning;
      if (s->state.compare_exchange_strong(expected, detail::JoinState<T>::kWaiting, std::memory_order_acq_rel)) {
        w.wait(sched::WaitReason::kJoin);
      }
    }
    // Moved out, so the exception's last reference dies here, on the joiner's side: the fiber may still hold the
    // JoinState, and its release would otherwise free the exception through libsupc++'s uninstrumented count, which
    // TSan reports as a race with the joiner's handler.
    if (s->error) std::rethrow_exception(std::exchange(s->error, nullptr));
    if constexpr (!std::is_void_v<T>) return std::move(*s->value);
  }

  void detach() {
    if (!s_) return;
    auto s = std::move(s_);
    if (s->state.exchange(detail::JoinState<T>::kDetached, std::memory_order_acq_rel) == detail::JoinState<T>::kDone &&
        s->error) {
      detail::terminate_uncaught(s->fiber_id, s->error);
    }
  }

 private:
  std::shared_ptr<detail::JoinState<T>> s_;
};

}  // namespace tern
