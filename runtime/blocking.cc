// runtime/blocking.cc: spawn_blocking's pool (see blocking.h).
#include "runtime/blocking.h"

#include <chrono>
#include <cstdio>
#include <system_error>
#include <thread>

#include "scheduler/affinity.h"

namespace tern {

BlockingPool& BlockingPool::instance() {
  // Never destroyed: its threads are detached and may still be inside a task when the process exits.
  static BlockingPool* pool = new BlockingPool;
  return *pool;
}

void BlockingPool::set_max_threads(int n) {
  std::lock_guard lk(mu_);
  max_ = n < 1 ? 1 : n;
}

bool BlockingPool::submit(std::function<void()> task) {
  std::unique_lock lk(mu_);
  queue_.push_back(std::move(task));
  if (idle_ > 0) {
    cv_.notify_one();
    return true;
  }
  if (threads_ >= max_) return true;  // at the bound: it waits for a thread to finish what it runs
  threads_++;
  try {
    std::thread(&BlockingPool::worker, this).detach();
  } catch (const std::system_error& e) {
    threads_--;
    start_failures_++;
    if (threads_ > 0) return true;  // a running thread will take it
    queue_.pop_back();
    std::fprintf(stderr, "tern: spawn_blocking: could not start a thread (%s)\n", e.what());
    return false;
  }
  return true;
}

void BlockingPool::worker() {
  // A thread starts with its creator's binding, and the creator is usually a fiber's M, bound to one PU by the NUMA
  // placement: the pool's threads run on the process's whole mask instead.
  sched::CpuMask::of_process().bind_this_thread();
  std::unique_lock lk(mu_);
  for (;;) {
    while (queue_.empty()) {
      idle_++;
      const bool woken = cv_.wait_for(lk, std::chrono::nanoseconds(kIdleExitNs), [&] { return !queue_.empty(); });
      idle_--;
      if (!woken) {
        threads_--;
        return;
      }
    }
    auto task = std::move(queue_.front());
    queue_.pop_front();
    lk.unlock();
    task();  // JoinState::run catches what it throws
    task = nullptr;
    lk.lock();
    completed_++;
  }
}

BlockingPool::Stats BlockingPool::stats() const {
  std::lock_guard lk(mu_);
  Stats s;
  s.threads = threads_;
  s.idle = idle_;
  s.max_threads = max_;
  s.queued = queue_.size();
  s.completed = completed_;
  s.start_failures = start_failures_;
  return s;
}

}  // namespace tern
