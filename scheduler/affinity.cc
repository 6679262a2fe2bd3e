// scheduler/affinity.cc: CpuMask (scheduler/affinity.h).
#include "scheduler/affinity.h"

#include <unistd.h>

#include <cerrno>

namespace tern::sched {

namespace {
// The largest PU number a mask may name: far above any machine Linux runs on (its NR_CPUS tops out at 8192), and small
// enough that a garbled index cannot make the mask huge.
constexpr int kMaxCpus = 1 << 16;
}  // namespace

CpuMask CpuMask::of_process() {
  // The kernel rejects a mask smaller than its own (EINVAL): grow until it fits.
  for (int n = CPU_SETSIZE; n <= kMaxCpus; n *= 2) {
    CpuMask m;
    m.set_.reset(CPU_ALLOC(n), Free{});
    if (m.set_ == nullptr) return {};
    m.bytes_ = CPU_ALLOC_SIZE(n);
    CPU_ZERO_S(m.bytes_, m.set_.get());
    if (sched_getaffinity(getpid(), m.bytes_, m.set_.get()) == 0) return m;
    if (errno != EINVAL) return {};
  }
  return {};
}

CpuMask CpuMask::one(int cpu) {
  if (cpu < 0 || cpu >= kMaxCpus) return {};
  CpuMask m;
  m.set_.reset(CPU_ALLOC(cpu + 1), Free{});
  if (m.set_ == nullptr) return {};
  m.bytes_ = CPU_ALLOC_SIZE(cpu + 1);
  CPU_ZERO_S(m.bytes_, m.set_.get());
  CPU_SET_S(static_cast<size_t>(cpu), m.bytes_, m.set_.get());
  return m;
}

int CpuMask::bind_this_thread() const {
  if (set_ == nullptr) return EINVAL;
  return sched_setaffinity(0, bytes_, set_.get()) == 0 ? 0 : errno;
}

}  // namespace tern::sched
