// netpoll/uring_accept.cc: io_uring connection setup: accept (one in flight per listener, ended at close) and connect.
#include "netpoll/uring_poller.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>

#include "netpoll/uring_internal.h"
#include "scheduler/park.h"

namespace tern::netpoll {

using uring_detail::kResubmit;
using uring_detail::kTagAccept;

int UringPoller::accept(Desc* d, int64_t deadline_ns) {
  auto* ud = static_cast<UringDesc*>(d);
  ListenState* ls = ud->listen;
  if (ls == nullptr) return -EINVAL;
  for (;;) {
    bool arm = false;
    {
      std::lock_guard lk(ls->mu);
      if (!ls->ready.empty()) {
        int fd = ls->ready.front();
        ls->ready.pop_front();
        return fd;
      }
      if (ls->error != 0) {
        int e = ls->error;
        ls->error = 0;
        return -e;
      }
      if (!ls->armed) arm = ls->armed = true;
    }
    if (arm) {
      // One connection per submission, on demand: a multishot accept would take every incoming connection into the
      // process however slowly accept() is called (see kMaxAcceptAhead). The kernel tries the accept at once, so
      // with a connection queued it completes inline and the submit's reap has it.
      int lfd = ud->fd;
      ls->ring = thread_ring();
      submit([&](io_uring_sqe* sqe) { io_uring_prep_accept(sqe, lfd, nullptr, nullptr, SOCK_CLOEXEC); },
             reinterpret_cast<uint64_t>(ls) | kTagAccept);
      continue;  // the submit reaped inline completions: look at the queue again
    }
    if (ls->slot.wait(deadline_ns, waiters_, sched::WaitReason::kNetAccept) == WaitSlot::kTimedOut) {
      timeouts_.fetch_add(1, std::memory_order_relaxed);
      return -ETIMEDOUT;
    }
  }
}

void UringPoller::wait_disarmed(ListenState* ls) {
  for (;;) {
    {
      // Seeing armed == false under the lock means the reaper of the final completion is done with `ls`.
      std::lock_guard lk(ls->mu);
      if (!ls->armed) return;
    }
    if (sched::in_fiber()) {
      ls->slot.wait(-1, waiters_, sched::WaitReason::kIoWait);
    } else {
      // A Listener destroyed outside the runtime's fibers: reap on this thread until the final completion shows.
      sched::GList ready;
      reap_all(ready, true);
      if (!ready.empty()) sched::ready_list(ready);
      usleep(100);
    }
  }
}

int UringPoller::connect(Desc* d, const sockaddr* addr, socklen_t len, int64_t deadline_ns) {
  int fd = d->fd;
  for (;;) {
    int res;
    if (deadline_ns >= 0) {
      // The kernel copies the address when it first issues the connect, within the submit: nothing of the caller's
      // is left for it to read, and the fiber may leave at its deadline.
      res = run_until(deadline_ns, sched::WaitReason::kNetConnect,
                      [&](io_uring_sqe* sqe) { io_uring_prep_connect(sqe, fd, addr, len); });
      if (res == -ETIMEDOUT) timeouts_.fetch_add(1, std::memory_order_relaxed);
    } else {
      Op op;
      res = run(op, sched::WaitReason::kNetConnect,
                [&](io_uring_sqe* sqe) { io_uring_prep_connect(sqe, fd, addr, len); });
    }
    if (res != kResubmit) return res;
  }
}

}  // namespace tern::netpoll
