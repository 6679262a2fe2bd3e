// Wakeups the scheduler owes nobody in particular: fibers readied by I/O on an M that holds no P, and the monitor when
// a P goes busy by a way other than startm(). Each test sets up the interleaving the lost wakeup needs, with a
// scripted poller and SchedOptions::on_point holding one M at the point where it acts on a stale view.
#include <gtest/gtest.h>

#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <semaphore>
#include <thread>
#include <vector>

#include "runtime/go.h"
#include "runtime/runtime.h"
#include "scheduler/futex.h"
#include "scheduler/park.h"
#include "scheduler/sched.h"

namespace tern {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Spins until pred() or the limit passes; returns pred().
template <class Pred>
bool spin_until(Pred pred, Clock::duration limit = std::chrono::seconds(5)) {
  const auto until = Clock::now() + limit;
  while (!pred()) {
    if (Clock::now() > until) return pred();
    std::this_thread::yield();
  }
  return true;
}

// A poller whose events the test hands out. A fiber "waits for I/O" with wait_io(); the test then completes it either
// through the next blocking poll() (the M holding the poller role) or through park() (an M asleep in its own ring, as
// io_uring's Ms are). Non-blocking polls never return anything, so the busy Ms and the monitor cannot take a
// delivery meant for a particular M.
class ScriptedPoller final : public sched::Poller {
 public:
  size_t poll(int64_t timeout_ns, sched::GList& out) override {
    std::unique_lock lk(mu_);
    if (timeout_ns != 0) {
      blocked_++;
      cv_.notify_all();
      auto ready = [&] { return woken_ || !for_poll_.empty(); };
      if (timeout_ns < 0) {
        cv_.wait(lk, ready);
      } else {
        cv_.wait_for(lk, std::chrono::nanoseconds(timeout_ns), ready);
      }
      blocked_--;
      woken_ = false;
    }
    return take(for_poll_, out);
  }
  void wake() override {
    std::lock_guard lk(mu_);
    woken_ = true;
    cv_.notify_all();
  }
  bool has_waiters() const override { return waiting_.load() > 0; }
  const char* name() const override { return "scripted"; }
  bool park(std::atomic<uint32_t>* word, sched::GList& out) override {
    std::unique_lock lk(mu_);
    parked_++;
    cv_.notify_all();
    // The futex wakeup on the word does not reach this condition variable: look at the word every millisecond.
    while (word->load() == 0 && for_park_.empty()) cv_.wait_for(lk, milliseconds(1));
    parked_--;
    take(for_park_, out);
    return true;
  }

  // Called by a fiber: parks it until the test completes its I/O.
  void wait_io() {
    sched::park(
        [](sched::G* g, void* self) {
          auto* p = static_cast<ScriptedPoller*>(self);
          std::lock_guard lk(p->mu_);
          p->pending_.push_back(g);
          p->waiting_.fetch_add(1);
          p->cv_.notify_all();
          return true;
        },
        this, sched::WaitReason::kNetRead);
  }
  // Completes the I/O of the oldest waiting fiber, to be handed out by the next blocking poll or by park.
  void complete_to_poll() { complete(for_poll_); }
  void complete_to_park() { complete(for_park_); }

  template <class Pred>
  bool wait_for(Pred pred, Clock::duration limit = std::chrono::seconds(5)) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, limit, [&] { return pred(*this); });
  }
  size_t pending() const { return pending_.size(); }  // under wait_for
  int blocked() const { return blocked_; }            // threads in a blocking poll, under wait_for
  int parked() const { return parked_; }              // threads in park, under wait_for

 private:
  void complete(std::vector<sched::G*>& to) {
    std::lock_guard lk(mu_);
    ASSERT_FALSE(pending_.empty());
    to.push_back(pending_.front());
    pending_.erase(pending_.begin());
    waiting_.fetch_sub(1);
    cv_.notify_all();
  }
  static size_t take(std::vector<sched::G*>& from, sched::GList& out) {
    size_t n = from.size();
    for (sched::G* g : from) out.push(g);
    from.clear();
    return n;
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<sched::G*> pending_, for_poll_, for_park_;
  std::atomic<int> waiting_{0};
  bool woken_ = false;
  int blocked_ = 0;
  int parked_ = 0;
};

// Item: fibers an M readies with no P to run them must not wait beside an idle P. The M back from a blocking poll
// finds every P busy and queues the fiber globally; before that push is visible, the only busy M runs dry, gives its P
// back and blocks in the poller with no deadline. Go's injectglist starts an M for such fibers; tern's wakep after
// the push does the same.
TEST(Wakeup, FiberReadiedByAPollerWithoutAPRunsWhenThePRunsDry) {
  ScriptedPoller poller;
  std::atomic<bool> held{false};           // the poller M reached kReadiedWithoutP
  std::atomic<bool> other_blocked{false};  // ... and meanwhile another M blocked in the poller
  sched::SchedOptions opts;
  opts.procs = 2;
  opts.poller = &poller;
  opts.on_point = [&](sched::SchedPoint pt) {
    if (pt != sched::SchedPoint::kReadiedWithoutP || held.exchange(true)) return;
    // Hold this M until the other has blocked in a poll of its own (its previous one has returned: that was ours).
    other_blocked = poller.wait_for([](const ScriptedPoller& p) { return p.blocked() >= 1; });
  };
  sched::Sched s(opts);

  // Two Ms: two fibers that each wait until both run.
  {
    std::atomic<int> in{0};
    std::counting_semaphore<2> done(0);
    for (int i = 0; i < 2; i++) {
      s.go([&] {
        in.fetch_add(1);
        spin_until([&] { return in.load() == 2; });
        done.release();
      });
    }
    done.acquire();
    done.acquire();
    ASSERT_EQ(in.load(), 2);
  }
  s.set_procs(1);  // one P, and two Ms to share it

  std::atomic<bool> x_ran{false};
  std::atomic<bool> y_done{false};
  // Y, then X, wait for I/O (completions go oldest first). Then one M sleeps in a blocking poll, the other in park.
  s.go([&] {
    poller.wait_io();
    // Running on the only P: stay on it until the poller M has found no P for X and stopped at the point.
    spin_until([&] { return held.load(); });
    y_done = true;
  });
  ASSERT_TRUE(poller.wait_for([](const ScriptedPoller& p) { return p.pending() == 1; }));
  s.go([&] {
    poller.wait_io();
    x_ran = true;
  });
  ASSERT_TRUE(
      poller.wait_for([](const ScriptedPoller& p) { return p.pending() == 2 && p.blocked() == 1 && p.parked() >= 1; }));
  // Y's completion wakes a parked M, which takes the idle P; the poller M sleeps on.
  poller.complete_to_park();
  ASSERT_TRUE(spin_until([&] { return s.stats().idle_procs == 0; }))
      << "idle " << s.stats().idle_procs << " procs " << s.stats().procs << " threads " << s.stats().threads
      << " park_io_wakes " << s.stats().park_io_wakes << " takes " << s.stats().park_io_takes;
  // X's completion returns from the blocking poll; the P is Y's.
  poller.complete_to_poll();
  ASSERT_TRUE(spin_until([&] { return y_done.load(); }));
  ASSERT_TRUE(spin_until([&] { return held.load(); }));
  const bool on_time = spin_until([&] { return x_ran.load(); }, milliseconds(100));
  EXPECT_TRUE(other_blocked.load()) << "the interleaving did not happen: the other M never blocked in the poller";
  EXPECT_TRUE(on_time) << "X waited in the global queue beside an idle P";
  // Let a stranded X run anyway, so the runtime can shut down.
  while (!x_ran.load()) {
    poller.wake();
    std::this_thread::sleep_for(milliseconds(1));
  }
}

// Item: a P taken by the poller M (acquire_idle_p) must wake a sleeping monitor, which otherwise cannot see a fiber
// holding that P while others wait behind it. With every P idle and no I/O waiters the monitor sleeps; a timer then
// brings the poller M back, it takes the P and runs a fiber that holds it.
TEST(Wakeup, APTakenByThePollerMWakesTheMonitor) {
  Config cfg;
  cfg.procs = 1;
  Runtime rt(cfg);
  std::atomic<bool> behind_ran{false};
  rt.run([&] {
    JoinHandle<void> hog = spawn([&] {
      // While this sleeps every P is idle and nothing waits for I/O: the monitor goes to sleep.
      sleep_for(milliseconds(50));
      go([&] { behind_ran = true; });  // queued behind this fiber, on the only P
      spin_until([&] { return rt.stats().long_running > 0; }, milliseconds(500));
    });
    hog.join();
    while (!behind_ran.load()) yield();
  });
  EXPECT_TRUE(behind_ran.load());
  EXPECT_GT(rt.stats().long_running, 0u) << "nobody noticed a fiber holding the only P with work queued behind it";
}

}  // namespace
}  // namespace tern
