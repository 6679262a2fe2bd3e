// runtime/join_handle.h: the result of tern::spawn, a joinable fiber.
//
//   auto h = tern::spawn([] { return compute(); });
//   auto v = h.join();     // waits; rethrows what the fiber threw
//
// join() may be called from a fiber (parks it) or from a plain thread (blocks it), once. A handle destroyed without
// join() detaches the fiber; an exception it throws is then lost to nobody: it terminates the process, as for go().
#pragma once

#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>

#include "runtime/sync/waiter.h"

namespace tern {
namespace detail {

[[noreturn]] void terminate_uncaught(uint64_t fiber_id, std::exception_ptr e);
uint64_t current_fiber_id();

template <class T>
struct JoinState {
  std::mutex mu;
  bool done = false;
  bool detached = false;
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
    std::unique_lock lk(mu);
    done = true;
    if (detached && error) terminate_uncaught(fiber_id, error);
    Waiter* w = waiter;
    lk.unlock();
    if (w != nullptr) w->notify();
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
    Waiter w;
    std::unique_lock lk(s->mu);
    if (!s->done) {
      s->waiter = &w;
      w.wait(lk);
    }
    lk.unlock();
    if (s->error) std::rethrow_exception(s->error);
    if constexpr (!std::is_void_v<T>) return std::move(*s->value);
  }

  void detach() {
    if (!s_) return;
    std::unique_lock lk(s_->mu);
    s_->detached = true;
    if (s_->done && s_->error) detail::terminate_uncaught(s_->fiber_id, s_->error);
    lk.unlock();
    s_.reset();
  }

 private:
  std::shared_ptr<detail::JoinState<T>> s_;
};

}  // namespace tern
