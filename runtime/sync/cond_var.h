// runtime/sync/cond_var.h: tern::CondVar, a condition variable over tern::Mutex that parks fibers, not threads.
//
//   tern::Mutex mu;
//   tern::CondVar cv;
//   std::deque<Job> jobs;
//   // consumer
//   std::unique_lock lk(mu);
//   cv.wait(lk, [&] { return !jobs.empty(); });
//   // producer
//   { std::lock_guard g(mu); jobs.push_back(j); }
//   cv.notify_one();
//
// Waiters are woken in FIFO order. There are no spurious wakeups, but another fiber may take the mutex between a
// notify and the woken waiter's return, so wait on a predicate. Works from fibers and plain threads alike.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <utility>

#include "runtime/deadline.h"
#include "runtime/sync/mutex.h"
#include "runtime/sync/wait_queue.h"
#include "runtime/sync/waiter.h"

namespace tern {

class CondVar {
 public:
  CondVar() = default;
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  // Unlocks lk, waits for a notify, and locks lk again.
  void wait(std::unique_lock<Mutex>& lk);

  template <class Pred>
  void wait(std::unique_lock<Mutex>& lk, Pred pred) {
    while (!pred()) wait(lk);
  }

  // Like wait(), giving up at `deadline`; lk is locked again either way. Time points of any clock; one too far away
  // for int64 nanoseconds (time_point::max(), say) means no deadline (runtime/deadline.h).
  template <class Clock, class Duration>
  std::cv_status wait_until(std::unique_lock<Mutex>& lk, const std::chrono::time_point<Clock, Duration>& deadline) {
    return wait_until_ns(lk, detail::deadline_at(deadline)) ? std::cv_status::no_timeout : std::cv_status::timeout;
  }

  // Returns pred() at the end: false only when the deadline passed with the predicate still false.
  template <class Clock, class Duration, class Pred>
  bool wait_until(std::unique_lock<Mutex>& lk, const std::chrono::time_point<Clock, Duration>& deadline, Pred pred) {
    return wait_until_pred(lk, detail::deadline_at(deadline), std::move(pred));
  }

  // Durations saturate: hours::max() and the like wait for a notify, however long (runtime/deadline.h).
  template <class Rep, class Period>
  std::cv_status wait_for(std::unique_lock<Mutex>& lk, const std::chrono::duration<Rep, Period>& d) {
    return wait_until_ns(lk, detail::deadline_after(d)) ? std::cv_status::no_timeout : std::cv_status::timeout;
  }

  template <class Rep, class Period, class Pred>
  bool wait_for(std::unique_lock<Mutex>& lk, const std::chrono::duration<Rep, Period>& d, Pred pred) {
    return wait_until_pred(lk, detail::deadline_after(d), std::move(pred));
  }

  // Wakes the longest-waiting fiber or thread, if any.
  void notify_one();
  // Wakes every current waiter.
  void notify_all();

 private:
  struct Node : detail::WaitLink<Node> {
    Waiter* waiter = nullptr;
    bool timed = false;
  };

  template <class Pred>
  bool wait_until_pred(std::unique_lock<Mutex>& lk, int64_t deadline_ns, Pred pred) {
    while (!pred()) {
      if (!wait_until_ns(lk, deadline_ns)) return pred();
    }
    return true;
  }

  // Returns false on timeout. deadline_ns: CLOCK_MONOTONIC nanoseconds, or detail::kNoDeadline (-1) to wait untimed.
  bool wait_until_ns(std::unique_lock<Mutex>& lk, int64_t deadline_ns);

  // Guards q_. An untimed waiter is notified after mu_ is released: once woken it may destroy the CondVar, which
  // std::condition_variable allows as soon as every waiter has been notified. A timed waiter can time out, so it is
  // notified under mu_ (to learn whether the wakeup took) and, once awake, takes mu_ itself before leaving.
  std::mutex mu_;
  detail::WaitQueue<Node> q_;
};

}  // namespace tern
