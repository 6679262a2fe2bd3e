// scheduler/context.h: switching between an M's scheduler stack and fibers, with the annotations that let
// AddressSanitizer and ThreadSanitizer follow Boost.Context's stack switches.
//
// Every jump_fcontext in the scheduler is bracketed by before_switch() and after_switch(): ASan is told which stack we
// are entering (start_switch) and learns which we left (finish_switch); TSan is switched to the target's fiber handle.
#pragma once

#include <boost/context/detail/fcontext.hpp>

#include <cstddef>

#include "base/sanitizer.h"

namespace tern::sched::ctx {

namespace bctx = boost::context::detail;
using fcontext_t = bctx::fcontext_t;
using transfer_t = bctx::transfer_t;

inline void* tsan_current() {
#ifdef TERN_TSAN
  return __tsan_get_current_fiber();
#else
  return nullptr;
#endif
}
inline void* tsan_create() {
#ifdef TERN_TSAN
  return __tsan_create_fiber(0);
#else
  return nullptr;
#endif
}
inline void tsan_destroy(void* f) {
#ifdef TERN_TSAN
  if (f != nullptr) __tsan_destroy_fiber(f);
#else
  (void)f;
#endif
}

// Before jumping. `save` receives the leaving side's fake-stack pointer; pass nullptr when the leaving fiber is dead.
inline void before_switch(void** save, const void* bottom, size_t size, void* tsan_fiber) {
#ifdef TERN_ASAN
  __sanitizer_start_switch_fiber(save, bottom, size);
#else
  (void)save, (void)bottom, (void)size;
#endif
#ifdef TERN_TSAN
  __tsan_switch_to_fiber(tsan_fiber, 0);
#else
  (void)tsan_fiber;
#endif
}

// After arriving. Returns the stack we came from through old_bottom/old_size (ASan only).
inline void after_switch(void* fake_stack, const void** old_bottom, size_t* old_size) {
#ifdef TERN_ASAN
  __sanitizer_finish_switch_fiber(fake_stack, old_bottom, old_size);
#else
  (void)fake_stack, (void)old_bottom, (void)old_size;
#endif
}

}  // namespace tern::sched::ctx
