// scheduler/poller.h: what the scheduler asks of a network poller (netpoll/ implements it; scheduler/ knows no
// backend).
//
// The scheduler calls poll() in three ways:
//   - poll(0, out) from an M looking for work, when has_waiters() says fibers wait on I/O;
//   - poll(timeout, out) from the single idle M that holds the "poller" role (no P held: invariant 3), with the time
//     until the earliest timer, or -1 when there is none;
//   - poll(0, out) from the monitor thread when nobody has polled for 10 ms.
// Several calls may run at once (one blocking, others not), so implementations must be thread-safe.
// wake() makes a blocked poll() return soon; it is called when new work or an earlier timer appears.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace tern::sched {

struct G;

// An intrusive list of fibers, linked through G::next.
struct GList {
  G* head = nullptr;
  G* tail = nullptr;
  size_t size = 0;

  void push(G* g);
  G* pop();
  bool empty() const { return head == nullptr; }
};

class Poller {
 public:
  virtual ~Poller() = default;
  // Appends fibers made runnable by I/O to `out` and returns how many. timeout_ns: 0 = do not block, < 0 = block until
  // an event or wake(), > 0 = block at most that long.
  virtual size_t poll(int64_t timeout_ns, GList& out) = 0;
  virtual void wake() = 0;
  // True if any fiber is parked waiting for I/O (a cheap relaxed read).
  virtual bool has_waiters() const = 0;
  virtual const char* name() const = 0;
  // The calling M is about to sleep with no P (parked = true), or has woken (false). A backend that binds I/O to the
  // thread that submitted it can move that I/O off a thread that sleeps for long.
  virtual void thread_parked(bool /*parked*/) {}
  // Sleeps the calling M, which holds no P, until *word is not 0 (a futex wakeup on the word ends the sleep) or I/O
  // that this thread submitted completes, and appends the fibers that I/O readied to `out`. May return early with
  // neither. Returns false, at once, where the backend cannot sleep this way; the caller then waits on the word itself.
  // A backend whose completion work runs on the submitting thread (io_uring) lets that thread act on it this way,
  // instead of being woken for the work only to sleep again while another thread is woken for the result.
  virtual bool park(std::atomic<uint32_t>* /*word*/, GList& /*out*/) { return false; }
  // Called by the runtime's monitor thread once a period (kMonitorPeriodNs) while it runs, and at each of its fast
  // looks (kRetakePeriodNs) while tern::blocking calls run: for work a backend must see done by threads that are busy
  // or blocked (io_uring's deferred rings: UringPoller::monitor_tick).
  virtual void monitor_tick(int64_t /*now_ns*/) {}
};

}  // namespace tern::sched
