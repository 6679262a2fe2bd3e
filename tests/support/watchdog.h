// tests/support/watchdog.h: turns a hang (a lost wakeup, typically) into a prompt failure that names what stalled,
// instead of a ctest timeout minutes later. A plain thread checks that the test calls kick() at least once per `stall`
// (generous: seconds, so a loaded CI machine never trips it); if not, it prints what stalled and aborts the process.
//
//   tern::test::Watchdog dog("WaitSlot rounds");
//   for (...) { ...one round that must end...; dog.kick(); }
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

namespace tern::test {

class Watchdog {
 public:
  explicit Watchdog(std::string what, std::chrono::seconds stall = std::chrono::seconds(20))
      : what_(std::move(what)), stall_(stall), thread_([this] { watch(); }) {}
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;
  ~Watchdog() {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }

  // Progress: the thing watched is not stuck.
  void kick() { progress_.fetch_add(1, std::memory_order_relaxed); }

 private:
  void watch() {
    std::unique_lock lk(mu_);
    uint64_t seen = progress_.load(std::memory_order_relaxed);
    auto last = std::chrono::steady_clock::now();
    while (!stop_) {
      cv_.wait_for(lk, std::chrono::milliseconds(100));
      const uint64_t now_seen = progress_.load(std::memory_order_relaxed);
      const auto now = std::chrono::steady_clock::now();
      if (now_seen != seen) {
        seen = now_seen;
        last = now;
      } else if (!stop_ && now - last > stall_) {
        std::fprintf(stderr, "watchdog: %s made no progress in %lld s after %llu steps (a lost wakeup?)\n",
                     what_.c_str(), static_cast<long long>(stall_.count()), static_cast<unsigned long long>(seen));
        std::fflush(stderr);
        std::abort();
      }
    }
  }

  const std::string what_;
  const std::chrono::seconds stall_;
  std::atomic<uint64_t> progress_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;  // last: started once the members it reads exist
};

}  // namespace tern::test
