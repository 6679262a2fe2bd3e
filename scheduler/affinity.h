// scheduler/affinity.h: binding the calling thread to one processing unit, or back to the mask it may run on, for the
// NUMA placement (SchedOptions::placement). Plain sched_setaffinity(2): the topology behind the placement is the
// runtime's business (runtime/topology.h); the scheduler only sees PU numbers.
//
//   CpuMask all = CpuMask::of_process();   // the process's affinity now (taskset, cpuset cgroup)
//   if (int err = CpuMask::one(3).bind_this_thread()) ...   // an errno: EINVAL for a PU the kernel has not
//   all.bind_this_thread();
#pragma once

#include <sched.h>

#include <cstddef>
#include <memory>

namespace tern::sched {

class CpuMask {
 public:
  // The affinity of the process (its main thread's, which taskset and a cpuset cgroup set): what an unbound M runs on.
  // Empty if it cannot be read.
  static CpuMask of_process();
  // A mask with only PU `cpu` (its OS index) set; empty for a negative or absurd index.
  static CpuMask one(int cpu);

  bool empty() const { return set_ == nullptr; }
  bool has(int cpu) const {
    return set_ != nullptr && cpu >= 0 && CPU_ISSET_S(static_cast<size_t>(cpu), bytes_, set_.get());
  }
  // sched_setaffinity on the calling thread: 0, or the errno (EINVAL for an empty mask or a PU the kernel lacks).
  int bind_this_thread() const;

 private:
  struct Free {
    void operator()(cpu_set_t* s) const { CPU_FREE(s); }
  };
  std::shared_ptr<cpu_set_t> set_;
  size_t bytes_ = 0;
};

}  // namespace tern::sched
