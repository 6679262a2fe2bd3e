// base/checked_mutex.h: a std::mutex that can say whether the calling thread holds it, so that "called with mu held"
// is an assertion rather than a comment.
//
//   CheckedMutex mu;
//   void pidleput(P* p) { mu.assert_held(); ... }     // TERN_DCHECK builds: aborts if this thread does not hold mu
//   std::lock_guard lk(mu);                            // BasicLockable, like std::mutex
//
// With TERN_DCHECK off it is a std::mutex and assert_held() is nothing. With it on, lock() records the holder's
// thread id after taking the lock and unlock() clears it before releasing, so only the holder ever sees its own id.
#pragma once

#include <atomic>
#include <mutex>
#include <thread>

#include "base/check.h"

namespace tern {

class CheckedMutex {
 public:
  void lock() {
    mu_.lock();
    note_holder();
  }
  bool try_lock() {
    if (!mu_.try_lock()) return false;
    note_holder();
    return true;
  }
  void unlock() {
#if TERN_DCHECK_IS_ON
    holder_.store(std::thread::id(), std::memory_order_relaxed);
#endif
    mu_.unlock();
  }
  void assert_held() const {
#if TERN_DCHECK_IS_ON
    TERN_CHECK(holder_.load(std::memory_order_relaxed) == std::this_thread::get_id());
#endif
  }

 private:
  void note_holder() {
#if TERN_DCHECK_IS_ON
    holder_.store(std::this_thread::get_id(), std::memory_order_relaxed);
#endif
  }
  std::mutex mu_;
#if TERN_DCHECK_IS_ON
  std::atomic<std::thread::id> holder_{};
#endif
};

}  // namespace tern
