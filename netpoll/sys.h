// netpoll/sys.h: the system calls on the backends' per-request paths, made directly rather than through glibc.
//
// glibc's recv, send, sendmsg and epoll_pwait2 are cancellation points: each wraps its system call in
// __pthread_enable_asynccancel and __pthread_disable_asynccancel, two atomic read-modify-writes of the thread's cancel
// word, which cost tern-echo 1.9% of its instructions a request (callgrind, docs/performance.md 2026-12-08). A thread
// that runs fibers is never cancelled (pthread_cancel would unwind fiber stacks it does not own), so tern makes these
// calls with the plain `syscall` instruction: same kernel entry, no cancellation bookkeeping, and the result comes back
// as bytes or -errno without touching errno.
//
// Sanitizer builds keep glibc's functions: ASan's and TSan's interceptors check the buffers and model the ordering a
// socket gives between a send and the receive that sees it, which tests built on socket round trips rely on.
//
//   ssize_t n = netpoll::sys::recv(fd, buf, len, 0);   // bytes, or -EAGAIN, -ECONNRESET, ...
#pragma once

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstddef>
#include <ctime>

#include "base/sanitizer.h"

#if defined(TERN_ASAN) || defined(TERN_TSAN)
#define TERN_SYS_LIBC 1
#endif

namespace tern::netpoll::sys {

#if !defined(TERN_SYS_LIBC)
// A system call with up to six arguments; the kernel's result (-errno in [-4095, -1] on failure).
inline long raw(long nr, long a1, long a2, long a3, long a4 = 0, long a5 = 0, long a6 = 0) {
#if defined(__x86_64__)
  long ret;
  register long r10 asm("r10") = a4;
  register long r8 asm("r8") = a5;
  register long r9 asm("r9") = a6;
  asm volatile("syscall"
               : "=a"(ret)
               : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
               : "rcx", "r11", "memory");
  return ret;
#else
  long ret = ::syscall(nr, a1, a2, a3, a4, a5, a6);  // glibc's syscall() is not a cancellation point
  return ret < 0 ? -errno : ret;
#endif
}
#endif

// Bytes received, or -errno.
inline ssize_t recv(int fd, void* buf, size_t len, int flags) {
#if defined(TERN_SYS_LIBC)
  ssize_t n = ::recv(fd, buf, len, flags);
  return n < 0 ? -errno : n;
#else
  return raw(SYS_recvfrom, fd, reinterpret_cast<long>(buf), static_cast<long>(len), flags, 0, 0);
#endif
}

// Bytes sent, or -errno.
inline ssize_t send(int fd, const void* buf, size_t len, int flags) {
#if defined(TERN_SYS_LIBC)
  ssize_t n = ::send(fd, buf, len, flags);
  return n < 0 ? -errno : n;
#else
  return raw(SYS_sendto, fd, reinterpret_cast<long>(buf), static_cast<long>(len), flags, 0, 0);
#endif
}

// Bytes sent, or -errno.
inline ssize_t sendmsg(int fd, const msghdr* msg, int flags) {
#if defined(TERN_SYS_LIBC)
  ssize_t n = ::sendmsg(fd, msg, flags);
  return n < 0 ? -errno : n;
#else
  return raw(SYS_sendmsg, fd, reinterpret_cast<long>(msg), flags);
#endif
}

// Events, or -errno (-ENOSYS before Linux 5.11). No signal mask.
inline int epoll_pwait2(int epfd, epoll_event* evs, int maxevents, const timespec* timeout) {
#if defined(TERN_SYS_LIBC)
  int n = ::epoll_pwait2(epfd, evs, maxevents, timeout, nullptr);
  return n < 0 ? -errno : n;
#else
  // The kernel reads a __kernel_timespec, which on 64-bit Linux is struct timespec.
  static_assert(sizeof(timespec) == 16, "epoll_pwait2 takes a 64-bit timespec");
  return static_cast<int>(raw(SYS_epoll_pwait2, epfd, reinterpret_cast<long>(evs), maxevents,
                              reinterpret_cast<long>(timeout), 0, _NSIG / 8));
#endif
}

}  // namespace tern::netpoll::sys
