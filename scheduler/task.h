// scheduler/task.h: the body of a fiber, a move-once callable stored inside the G record.
//
// Callables up to kInline bytes (a lambda capturing a few pointers or a small struct) live in the G itself, so a
// steady-state spawn allocates nothing; larger ones are moved to the heap once, at spawn.
//
//   Task t;
//   t.emplace([&] { work(); });
//   t();        // runs and destroys the callable
#pragma once

#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>

namespace tern::sched {

class Task {
 public:
  static constexpr size_t kInline = 64;  // one cache line: fits a lambda with up to 8 captured words

  Task() = default;
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task() { reset(); }

  template <class F>
  void emplace(F&& f) {
    using Fn = std::decay_t<F>;
    reset();
    if constexpr (sizeof(Fn) <= kInline && alignof(Fn) <= alignof(std::max_align_t)) {
      ::new (static_cast<void*>(buf_)) Fn(std::forward<F>(f));
      call_ = [](void* p) {
        Fn* fn = std::launder(static_cast<Fn*>(p));
        struct Destroy {
          Fn* fn;
          ~Destroy() { fn->~Fn(); }
        } d{fn};
        (*fn)();
      };
      drop_ = [](void* p) { std::launder(static_cast<Fn*>(p))->~Fn(); };
    } else {
      Fn* heap = new Fn(std::forward<F>(f));
      ::new (static_cast<void*>(buf_)) Fn*(heap);
      call_ = [](void* p) {
        Fn* fn = *std::launder(static_cast<Fn**>(p));
        struct Destroy {
          Fn* fn;
          ~Destroy() { delete fn; }
        } d{fn};
        (*fn)();
      };
      drop_ = [](void* p) { delete *std::launder(static_cast<Fn**>(p)); };
    }
  }

  // Runs the callable and destroys it (also when it throws).
  void operator()() {
    auto call = call_;
    call_ = nullptr;
    drop_ = nullptr;
    call(buf_);
  }
  // Destroys a callable that never ran (runtime shutdown with fibers still queued).
  void reset() {
    if (drop_) drop_(buf_);
    call_ = nullptr;
    drop_ = nullptr;
  }
  explicit operator bool() const { return call_ != nullptr; }

 private:
  alignas(std::max_align_t) unsigned char buf_[kInline];
  void (*call_)(void*) = nullptr;
  void (*drop_)(void*) = nullptr;
};

}  // namespace tern::sched
