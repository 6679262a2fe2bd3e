// netpoll/epoll_poller.cc: the epoll backend: registration, the poller role's epoll_wait, fiber-blocking I/O.
#include "netpoll/epoll_poller.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "netpoll/sys.h"
#include "scheduler/park.h"
#include "scheduler/timer.h"

namespace tern::netpoll {
namespace {

// Events taken per epoll_wait. Go uses 128: enough that a busy poller drains its ready list in a call or two, small
// enough to live on the stack.
constexpr int kMaxEvents = 128;
// Event data of the wake eventfd; descriptor tags never take this value (index and generation are never both ~0).
constexpr uint64_t kWakeTag = ~uint64_t{0};

constexpr uint32_t kReadEvents = EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR;
constexpr uint32_t kHupEvents = EPOLLRDHUP | EPOLLHUP | EPOLLERR;
constexpr uint32_t kWriteEvents = EPOLLOUT | EPOLLHUP | EPOLLERR;

}  // namespace

Result<std::unique_ptr<EpollPoller>> EpollPoller::create() {
  int epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) return errno_error(errno, "epoll_create1");
  int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (efd < 0) {
    Error e = errno_error(errno, "eventfd");
    ::close(epfd);
    return e;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;  // level-triggered: stays visible until the blocking poller reads it
  ev.data.u64 = kWakeTag;
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, efd, &ev) < 0) {
    Error e = errno_error(errno, "epoll_ctl(eventfd)");
    ::close(efd);
    ::close(epfd);
    return e;
  }
  return std::unique_ptr<EpollPoller>(new EpollPoller(epfd, efd));
}

EpollPoller::EpollPoller(int epfd, int efd) : epfd_(epfd), efd_(efd) {}

EpollPoller::~EpollPoller() {
  table_.for_each_live([](PollDesc* pd) {
    if (pd->fd >= 0) ::close(pd->fd);
  });
  ::close(efd_);
  ::close(epfd_);
}

size_t EpollPoller::poll(int64_t timeout_ns, sched::GList& out) {
  epoll_event evs[kMaxEvents];
  const int64_t until = timeout_ns > 0 ? sched::now_ns() + timeout_ns : 0;
  int n;
  for (;;) {
    timespec ts{};
    timespec* tsp = nullptr;
    int64_t left = timeout_ns > 0 ? std::max<int64_t>(0, until - sched::now_ns()) : timeout_ns;
    if (left >= 0) {
      ts.tv_sec = left / 1'000'000'000;
      ts.tv_nsec = left % 1'000'000'000;
      tsp = &ts;
    }
    // epoll_pwait2 takes nanoseconds, so a poller sleeping until the next timer wakes on time, not up to 1 ms late.
    n = sys::epoll_pwait2(epfd_, evs, kMaxEvents, tsp);
    if (n == -ENOSYS) {
      int ms = left < 0 ? -1 : static_cast<int>((left + 999'999) / 1'000'000);
      n = epoll_wait(epfd_, evs, kMaxEvents, ms);
      if (n < 0) n = -errno;
    }
    // A signal, or io_uring task work queued to this thread (TIF_NOTIFY_SIGNAL), interrupts the wait but is no
    // reason to return to the scheduler: sleep out the rest.
    if (n == -EINTR && timeout_ns != 0) continue;
    break;
  }
  if (n <= 0) return 0;
  size_t readied = 0;
  for (int i = 0; i < n; i++) {
    uint64_t tag = evs[i].data.u64;
    if (tag == kWakeTag) {
      if (timeout_ns != 0) {
        uint64_t v;
        ssize_t r = ::read(efd_, &v, sizeof v);
        (void)r;  // EAGAIN: another blocking poll read it first; either way the wakeup is delivered
        // Cleared after the read: a wake() between the two saw the flag set and skipped its write, but this poll is
        // returning anyway, which is what that wake() asked for.
        wake_pending_.store(false, std::memory_order_release);
      }
      continue;
    }
    PollDesc* pd = table_.lookup(tag);
    if (pd == nullptr) continue;  // closed since the event was queued
    uint32_t e = evs[i].events;
    if (e & kReadEvents) {
      // Published by rd.notify()'s exchange (wait_slot.h, "Ordering").
      if (e & kHupEvents) pd->rd_hup.store(true, std::memory_order_relaxed);
      if (sched::G* g = pd->rd.notify()) {
        out.push(g);
        readied++;
      }
    }
    if (e & kWriteEvents) {
      if (sched::G* g = pd->wr.notify()) {
        out.push(g);
        readied++;
      }
    }
  }
  return readied;
}

void EpollPoller::wake() {
  if (wake_pending_.exchange(true, std::memory_order_acq_rel)) return;
  uint64_t one = 1;
  ssize_t r = ::write(efd_, &one, sizeof one);
  (void)r;  // cannot fail short of a counter overflow, which a flag-coalesced writer never reaches
}

int EpollPoller::socket_flags() const {
  return SOCK_NONBLOCK;
}

Result<Desc*> EpollPoller::open(int fd, bool /*listening*/) {
  PollDesc* pd = table_.acquire();
  if (pd == nullptr) return errno_code(ENOMEM);
  pd->fd = fd;
  pd->rd.reset();
  pd->wr.reset();
  pd->rd_drained = false;
  pd->rd_hup.store(false, std::memory_order_relaxed);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = DescTable<PollDesc>::tag(pd);
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) < 0) {
    const int err = errno;
    table_.release(pd);
    return errno_code(err);
  }
  return static_cast<Desc*>(pd);
}

void EpollPoller::close(Desc* d) {
  auto* pd = static_cast<PollDesc*>(d);
  // Deregister before close: a dup of the fd (a fork, say) would otherwise keep delivering events to this record.
  epoll_ctl(epfd_, EPOLL_CTL_DEL, pd->fd, nullptr);
  ::close(pd->fd);
  table_.release(pd);
}

bool EpollPoller::await(WaitSlot& slot, int64_t deadline_ns, sched::WaitReason why) {
  if (slot.wait(deadline_ns, waiters_, why) == WaitSlot::kNotified) return true;
  timeouts_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

ssize_t EpollPoller::read(Desc* d, void* buf, size_t len, int64_t deadline_ns) {
  auto* pd = static_cast<PollDesc*>(d);
  bool waited = false;
  bool expired = false;
  if (pd->rd_drained && !pd->rd_hup.load(std::memory_order_relaxed)) {
    // Request-response: the previous read emptied the queue, so data for this one comes with a new edge, which
    // either has latched rd already or will wake us. Parking first saves the receive that would fail with EAGAIN.
    // A hang-up, though, may have come with an edge that coalesced into the one that woke the previous read, and
    // its end of stream is still to be received: rd_hup says so.
    pd->rd_drained = false;
    waited = true;
    sched::ResumeHint hint(buf);
    // At the deadline the receive is still tried: data whose edge no poll has handled yet (every M busy) is read,
    // not reported as a timeout.
    expired = pd->rd.wait(deadline_ns, waiters_, sched::WaitReason::kNetRead) == WaitSlot::kTimedOut;
  }
  for (;;) {
    ssize_t n = sys::recv(pd->fd, buf, len, 0);
    if (n >= 0) {
      pd->rd_drained = waited && n > 0 && static_cast<size_t>(n) < len;
      return n;
    }
    if (n == -EINTR) continue;
    if (n != -EAGAIN) return n;
    if (expired) {
      timeouts_.fetch_add(1, std::memory_order_relaxed);
      return -ETIMEDOUT;
    }
    bool ready;
    {
      sched::ResumeHint hint(buf);  // the receive after the wait writes buf first
      ready = await(pd->rd, deadline_ns, sched::WaitReason::kNetRead);
    }
    if (!ready) return -ETIMEDOUT;
    waited = true;
  }
}

ssize_t EpollPoller::write(Desc* d, const void* buf, size_t len, int64_t deadline_ns) {
  auto* pd = static_cast<PollDesc*>(d);
  for (;;) {
    ssize_t n = sys::send(pd->fd, buf, len, MSG_NOSIGNAL);
    if (n >= 0) return n;
    if (n == -EINTR) continue;
    if (n != -EAGAIN) return n;
    if (!await(pd->wr, deadline_ns, sched::WaitReason::kNetWrite)) return -ETIMEDOUT;
  }
}

ssize_t EpollPoller::writev(Desc* d, const iovec* iov, int iovcnt, int64_t deadline_ns) {
  auto* pd = static_cast<PollDesc*>(d);
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(iov);
  msg.msg_iovlen = static_cast<size_t>(iovcnt);
  for (;;) {
    ssize_t n = sys::sendmsg(pd->fd, &msg, MSG_NOSIGNAL);
    if (n >= 0) return n;
    if (n == -EINTR) continue;
    if (n != -EAGAIN) return n;
    if (!await(pd->wr, deadline_ns, sched::WaitReason::kNetWrite)) return -ETIMEDOUT;
  }
}

int EpollPoller::connect(Desc* d, const sockaddr* addr, socklen_t len, int64_t deadline_ns) {
  auto* pd = static_cast<PollDesc*>(d);
  if (::connect(pd->fd, addr, len) == 0) return 0;
  // EINTR on a non-blocking connect means the attempt goes on in the background, like EINPROGRESS.
  if (errno != EINPROGRESS && errno != EINTR) return -errno;
  for (;;) {
    if (!await(pd->wr, deadline_ns, sched::WaitReason::kNetConnect)) return -ETIMEDOUT;
    int err = 0;
    socklen_t elen = sizeof err;
    if (getsockopt(pd->fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0) return -errno;
    if (err != 0) return -err;
    // The registration itself may have latched a writable or hang-up edge from before the connect; only a socket
    // with a peer is connected.
    sockaddr_storage peer;
    socklen_t plen = sizeof peer;
    if (getpeername(pd->fd, reinterpret_cast<sockaddr*>(&peer), &plen) == 0) return 0;
    if (errno != ENOTCONN) return -errno;
  }
}

int EpollPoller::accept(Desc* d, int64_t deadline_ns) {
  auto* pd = static_cast<PollDesc*>(d);
  for (;;) {
    int fd = ::accept4(pd->fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) return fd;
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return -errno;
    if (!await(pd->rd, deadline_ns, sched::WaitReason::kNetAccept)) return -ETIMEDOUT;
  }
}

}  // namespace tern::netpoll
