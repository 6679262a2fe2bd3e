// alloc/fence.h: asymmetric fences (membarrier(2)), for an exclusion where one side runs often and the other rarely.
//
// The frequent side stores its flag, then loads the other's with only a compiler barrier between
// (std::atomic_signal_fence); the rare side stores its flag, calls heavy_fence(), which runs a full barrier on every
// running thread of the process, then loads the frequent side's flag. Either the rare side sees the frequent one busy,
// or the frequent one sees the rare one's flag. Used by the stack caches (alloc/stack.h) and tern::Pool's cycle
// (runtime/pool.h).
#pragma once

namespace tern::alloc {

// Registers the process for membarrier's private expedited command, once; false where the kernel (before 4.14, or a
// sandbox such as valgrind or gVisor that lacks the syscall) cannot do it. Then the frequent side must use a real
// fence (a seq_cst store) instead.
bool asymmetric_fences_available();
// The heavy side: a full barrier on every running thread of the process; false if the kernel refused it.
bool heavy_fence();

}  // namespace tern::alloc
