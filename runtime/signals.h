// runtime/signals.h: signals delivered to a channel, Go's signal.Notify for fibers.
//
//   auto sig = tern::signals({SIGTERM, SIGINT});
//   if (!sig) { fmt::print(stderr, "{}\n", sig.error().message()); return 1; }
//   tern::go([&] {
//     if (std::optional<int> s = sig->recv()) server.drain(...);   // waits, parking the fiber
//   });
//
// A handler installed for each signal writes its number into a pipe (one async-signal-safe write, errno kept), and a
// process-wide relay thread ("tern-signals") reads the pipe and passes the number to every subscription that asked
// for it, with a try_send: a subscriber never blocks the relay, and a subscription whose channel is full loses the
// signal, as Go's does (give it room: the default capacity is 8). Fibers and plain threads may wait on `channel()`
// (recv, or select with other channels). Signals of the same number can merge in the kernel before the handler runs;
// subscribers see each one the handler saw.
//
// While a subscription for a signal exists, its disposition is tern's handler; when the last one for it goes (reset()
// or destruction), the disposition it had before the first is restored. Refused with an error: numbers outside
// 1..SIGRTMAX, SIGKILL and SIGSTOP (the kernel's), the synchronous faults SIGSEGV, SIGBUS, SIGFPE and SIGILL (the stack
// guard's and the kernel's way of killing a faulting thread), and SIGURG (the stall detector's).
#pragma once

#include <initializer_list>
#include <memory>
#include <optional>
#include <vector>

#include "base/result.h"
#include "runtime/sync/channel.h"

namespace tern {

class SignalSubscription {
 public:
  SignalSubscription(const SignalSubscription&) = delete;
  SignalSubscription& operator=(const SignalSubscription&) = delete;
  SignalSubscription(SignalSubscription&&) = delete;
  ~SignalSubscription() { reset(); }

  // The next signal, waiting for one; nullopt once reset() has run.
  std::optional<int> recv() { return ch_.recv(); }
  Channel<int>& channel() { return ch_; }
  const std::vector<int>& signals() const { return sigs_; }
  // Stops delivery (restoring the signals' earlier dispositions where this was their last subscription) and closes
  // the channel. Idempotent.
  void reset();

 private:
  friend Result<std::unique_ptr<SignalSubscription>> signals(std::initializer_list<int> sigs, size_t capacity);
  SignalSubscription(std::vector<int> sigs, size_t capacity) : sigs_(std::move(sigs)), ch_(capacity) {}
  std::vector<int> sigs_;
  Channel<int> ch_;
  bool active_ = false;
};

// Subscribes to `sigs` (at least one) with a channel of `capacity` (at least 1).
Result<std::unique_ptr<SignalSubscription>> signals(std::initializer_list<int> sigs, size_t capacity = 8);

}  // namespace tern
