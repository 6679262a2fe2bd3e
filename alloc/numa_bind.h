// alloc/numa_bind.h: the two kernel calls alloc/ makes on a range of fresh pages, in one place: binding the range to a
// NUMA node (mbind(2), MPOL_PREFERRED), and advising a batch of ranges in one process_madvise(2) call.
//
//   if (int err = alloc::prefer_node(addr, len, node); err != 0) { ... strerror(err) ... }
//
//   static alloc::BatchAdvice populate{MADV_POPULATE_WRITE};
//   long done = populate.advise(iov, count);  // -1 with errno when the kernel refuses it, or refused it earlier
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstddef>

namespace tern::alloc {

// mbind(addr, len, MPOL_PREFERRED, {node}): pages of the range faulted in from now on come from `node` while it has
// free memory, from the nearest other node otherwise. Pages already resident stay where they are. 0, or the errno
// (EINVAL for a node the machine does not have, ENOSYS on a kernel without NUMA).
int prefer_node(void* addr, size_t len, int node);

// One process_madvise(2) of `advice` over a batch of ranges of the calling process, named by PIDFD_SELF (Linux 6.15;
// a pidfd from pidfd_open would name the parent in a forked child). Remembers whether the kernel takes it: once it
// refused (an older kernel: EINVAL, EBADF, ENOSYS; EPERM), advise() returns -1 without a system call and the caller
// falls back to what it does without it.
class BatchAdvice {
 public:
  explicit constexpr BatchAdvice(int advice) : advice_(advice) {}
  // The bytes advised (short when the kernel stopped part way: out of memory), or -1 with errno.
  long advise(const iovec* iov, size_t count);
  // False once the kernel refused the call.
  bool usable() const { return state_.load(std::memory_order_relaxed) != 0; }

 private:
  const int advice_;
  std::atomic<int> state_{-1};  // -1: untried, 0: refused, 1: works
};

}  // namespace tern::alloc
