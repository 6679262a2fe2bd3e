// scheduler/wait_reason.h: why a fiber is parked, as the fiber dump and the event trace name it.
//
// park() takes one (scheduler/park.h) and stores it in the G with two plain stores, so every park site says what it
// waits on at no measurable cost; nothing reads it but the dump (Sched::fibers, runtime/debug/fibers.h) and the trace.
// The names are stable short strings, Go's goroutine-dump style ("chan receive", "sleep"): tools may match on them.
#pragma once

#include <cstdint>

namespace tern::sched {

enum class WaitReason : uint8_t {
  kNone,         // not parked
  kChanSend,     // Channel::send (runtime/sync/channel.h)
  kChanReceive,  // Channel::recv
  kSelect,       // select() over several channel operations
  kMutex,        // Mutex::lock
  kCondVar,      // CondVar::wait
  kSemaphore,    // Semaphore::acquire
  kWaitGroup,    // WaitGroup::wait
  kOnce,         // Once::call while another fiber runs the function
  kSleep,        // sleep_for / sleep_until (and a sleep without end)
  kJoin,         // JoinHandle::join
  kNetRead,      // a socket read or receive (netpoll)
  kNetWrite,     // a socket write or send
  kNetAccept,    // Listener::accept
  kNetConnect,   // dial's connect
  kIoWait,       // other I/O bookkeeping: a cancelled receive or accept still in flight
  kOther,        // a Waiter or park() whose user named no reason
};

inline constexpr int kWaitReasons = static_cast<int>(WaitReason::kOther) + 1;

constexpr const char* wait_reason_name(WaitReason r) {
  switch (r) {
    case WaitReason::kNone:
      return "none";
    case WaitReason::kChanSend:
      return "chan send";
    case WaitReason::kChanReceive:
      return "chan receive";
    case WaitReason::kSelect:
      return "select";
    case WaitReason::kMutex:
      return "mutex";
    case WaitReason::kCondVar:
      return "cond var";
    case WaitReason::kSemaphore:
      return "semaphore";
    case WaitReason::kWaitGroup:
      return "wait group";
    case WaitReason::kOnce:
      return "once";
    case WaitReason::kSleep:
      return "sleep";
    case WaitReason::kJoin:
      return "join";
    case WaitReason::kNetRead:
      return "net read";
    case WaitReason::kNetWrite:
      return "net write";
    case WaitReason::kNetAccept:
      return "net accept";
    case WaitReason::kNetConnect:
      return "net connect";
    case WaitReason::kIoWait:
      return "io wait";
    case WaitReason::kOther:
      return "other";
  }
  return "other";
}

}  // namespace tern::sched
