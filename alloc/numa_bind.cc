// alloc/numa_bind.cc: see numa_bind.h.
#include "alloc/numa_bind.h"

#include <linux/mempolicy.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace tern::alloc {
namespace {
// process_madvise(2)'s name for the calling process (Linux 6.15, linux/pidfd.h; Debian 12's headers predate it).
constexpr int kPidfdSelfProcess = -10001;
// Node masks up to 1024 nodes (the kernel's MAX_NUMNODES on the largest configurations).
constexpr size_t kBitsPerWord = 8 * sizeof(unsigned long);
constexpr size_t kMaxNodeWords = 1024 / kBitsPerWord;
}  // namespace

int prefer_node(void* addr, size_t len, int node) {
  if (node < 0 || static_cast<size_t>(node) >= kMaxNodeWords * kBitsPerWord) return EINVAL;
  // One bit per node, as many words as `node` needs; the kernel reads maxnode - 1 bits.
  unsigned long mask[kMaxNodeWords] = {};
  const auto n = static_cast<size_t>(node);
  mask[n / kBitsPerWord] = 1UL << (n % kBitsPerWord);
  const size_t maxnode = (n / kBitsPerWord + 1) * kBitsPerWord + 1;
  return syscall(SYS_mbind, addr, len, MPOL_PREFERRED, mask, maxnode, 0) == 0 ? 0 : errno;
}

long BatchAdvice::advise(const iovec* iov, size_t count) {
  if (state_.load(std::memory_order_relaxed) == 0) {
    errno = EOPNOTSUPP;
    return -1;
  }
  const long done = syscall(SYS_process_madvise, kPidfdSelfProcess, iov, count, advice_, 0);
  if (done >= 0) {
    state_.store(1, std::memory_order_relaxed);
  } else if (errno == EINVAL || errno == EBADF || errno == ENOSYS || errno == EPERM) {
    const int err = errno;
    state_.store(0, std::memory_order_relaxed);
    errno = err;
  }
  return done;
}

}  // namespace tern::alloc
