// tests/support/race.h: who goes first, a notify or a deadline, steered to the point where they land together, so that
// a race test sees both outcomes on any machine (release or sanitizer build, idle or loaded) instead of one outcome
// almost always. The lead is a signed time: positive, the waiter's deadline is that far ahead; negative, the deadline
// is now and the notifier holds back that long before notifying. After each round, report who won: a notify that won
// moves the lead toward the deadline, a timeout toward the notify; it settles where each wins about half the time.
//
//   tern::test::RaceDeadline race;
//   round.store(i);                                   // the notifier: race.hold_notify(); w->notify();
//   bool notified = w.wait_until(sched::now_ns() + race.offset_ns());
//   race.record(notified);
//   ...
//   EXPECT_TRUE(race.both_outcomes()) << race.summary();
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "scheduler/timer.h"

namespace tern::test {

class RaceDeadline {
 public:
  // How far ahead the waiter's deadline goes.
  int64_t offset_ns() const { return std::max<int64_t>(0, lead_.load(std::memory_order_relaxed)); }
  // For the notifier, before it notifies: spins for as long as the notify is to lag the deadline.
  void hold_notify() const {
    const int64_t d = -lead_.load(std::memory_order_relaxed);
    if (d <= 0) return;
    const int64_t until = sched::now_ns() + d;
    while (sched::now_ns() < until) {
    }
  }

  // The waiter, after each round (the notifier must be done with it).
  void record(bool notified) {
    int64_t lead = lead_.load(std::memory_order_relaxed);
    const int64_t step = std::max<int64_t>(200, std::abs(lead) / 4);
    lead = notified ? lead - step : lead + step;
    lead_.store(std::clamp(lead, -kMaxNs, kMaxNs), std::memory_order_relaxed);
    (notified ? notified_ : timed_out_)++;
  }

  int notified() const { return notified_; }
  int timed_out() const { return timed_out_; }
  // Each outcome in at least a tenth of the rounds: the feedback keeps them near even, so less means the race was
  // not exercised (or one side never wins, which is a bug of its own).
  bool both_outcomes() const {
    const int n = notified_ + timed_out_;
    return notified_ * 10 >= n && timed_out_ * 10 >= n && notified_ > 0 && timed_out_ > 0;
  }
  std::string summary() const {
    return std::to_string(notified_) + " notified, " + std::to_string(timed_out_) + " timed out, last lead " +
           std::to_string(lead_.load(std::memory_order_relaxed)) + " ns";
  }

 private:
  static constexpr int64_t kMaxNs = 50'000'000;  // 50 ms: far past any notify that is not lost
  std::atomic<int64_t> lead_{0};  // written by the waiter, read by the notifier after the round is published
  int notified_ = 0, timed_out_ = 0;
};

}  // namespace tern::test
