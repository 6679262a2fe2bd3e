// runtime/net/close_gate.h: CloseGate, which lets close() run while other fibers are inside operations on the same
// Stream or Listener: Go's fdMutex (internal/poll/fd_mutex.go) reduced to a count of operations and a closed bit.
//
// Every operation enters the gate before it touches the descriptor and leaves it after. close() shuts the gate (later
// operations fail to enter), wakes the fibers inside (Stream and Listener shut the socket down: a state, not an event,
// so an operation that entered just before the shutdown and submits just after it still fails at once, and no wakeup
// can be lost between an operation's check and its park), waits for the last one to leave, and only then closes the
// descriptor. So the fd is never closed, and its number never handed to another socket by the kernel, while a fiber
// is in a system call on it or waits for an io_uring operation on it; operations the backend leaves in flight past
// their fiber (uring_poller.h) are the backend's close() to cancel, as before.
//
//   if (!gate_.enter()) return Errc::closed;
//   CloseGate::Inside in(gate_);                              // leaves on return
//   ssize_t n = io_->read(d_, buf, len, deadline);
//   if (n <= 0 && gate_.is_shut()) return Errc::closed;       // not the shutdown's end of stream
//
//   // close():
//   if (!gate_.shut([&] { ::shutdown(d_->fd, SHUT_RDWR); })) return {};  // closed already, or closing elsewhere
//   io_->close(d_);
//
// Costs an uncontended compare-and-swap and a fetch_sub per operation, on the Stream's own cache line.
#pragma once

#include <atomic>
#include <cstdint>

#include "runtime/sync/waiter.h"
#include "scheduler/wait_reason.h"

namespace tern::net {

class CloseGate {
 public:
  // A gate that was never open (a default-constructed or moved-from Stream) refuses every operation.
  explicit CloseGate(bool open = false) : state_(open ? 0 : kShut) {}
  CloseGate(const CloseGate&) = delete;
  CloseGate& operator=(const CloseGate&) = delete;

  // Whether the operation may go ahead; if so, it must leave().
  bool enter() {
    uint64_t s = state_.load(std::memory_order_relaxed);
    do {
      if (s & kShut) return false;
      // Acquire: an operation that enters sees everything done to the descriptor before the gate was (re)opened.
    } while (!state_.compare_exchange_weak(s, s + 1, std::memory_order_acquire, std::memory_order_relaxed));
    return true;
  }

  void leave() {
    // Release: what the operation did with the descriptor happens-before close() closes it.
    uint64_t s = state_.fetch_sub(1, std::memory_order_acq_rel);
    if (s == (kShut | 1)) {
      // The last operation out of a shut gate. The closer may not have published its Waiter yet: whichever of the
      // two exchanges comes second sees the other's, so exactly one of us knows the closer must not wait.
      Waiter* w = closer_.exchange(done(), std::memory_order_acq_rel);
      if (w != nullptr) w->notify();
    }
  }

  // Whether close() has begun: an operation that failed after it began reports the close, not what the shutdown
  // made the system call return (end of stream, EPIPE, EINVAL).
  bool is_shut() const { return (state_.load(std::memory_order_acquire) & kShut) != 0; }

  // Shuts the gate, calls wake() if operations are inside, and waits (parking a fiber, or blocking a plain thread)
  // until they have all left. Returns false, at once, if the gate was shut already (another close() owns the
  // descriptor). wake() must make every operation inside return promptly.
  template <class Wake>
  bool shut(Wake&& wake) {
    uint64_t s = state_.fetch_or(kShut, std::memory_order_acq_rel);
    if (s & kShut) return false;
    if (s == 0) return true;  // nobody inside, and nobody can enter now
    wake();
    Waiter w;
    if (closer_.exchange(&w, std::memory_order_acq_rel) != done()) w.wait(sched::WaitReason::kIoWait);
    return true;
  }

  // Leaves the gate when an operation that entered it returns, whichever way it does.
  class Inside {
   public:
    explicit Inside(CloseGate& g) : g_(g) {}
    ~Inside() { g_.leave(); }
    Inside(const Inside&) = delete;
    Inside& operator=(const Inside&) = delete;

   private:
    CloseGate& g_;
  };

  // For a Stream's or Listener's move (never concurrent with an operation or close()): this gate takes o's state,
  // and o is left shut.
  void take(CloseGate& o) {
    state_.store(o.state_.exchange(kShut, std::memory_order_relaxed), std::memory_order_relaxed);
    closer_.store(nullptr, std::memory_order_relaxed);
  }

 private:
  static constexpr uint64_t kShut = uint64_t{1} << 63;
  // A Waiter address no Waiter has: "the last operation has left".
  static Waiter* done() { return reinterpret_cast<Waiter*>(alignof(Waiter)); }

  std::atomic<uint64_t> state_;  // kShut | the number of operations inside
  std::atomic<Waiter*> closer_{nullptr};
};

}  // namespace tern::net
