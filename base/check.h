// base/check.h: invariants that check themselves.
//
//   TERN_CHECK(n >= 0);                  // always evaluated; on failure prints the condition and where, then aborts
//   TERN_DCHECK(p->m == m);              // the same in Debug and sanitizer builds; compiled out (not evaluated) else
//
// TERN_DCHECK is for checks on hot paths (a status transition per context switch, a count per spawn): the sanitizer
// suites and Debug builds pay for them, Release does not. Use TERN_CHECK where a broken invariant would corrupt state
// silently and the check is off the hot path. Neither allocates, so both are safe on a fiber's small stack and in the
// scheduler's own paths.
#pragma once

#include <cstdio>
#include <cstdlib>

#include "base/sanitizer.h"

namespace tern::detail {
[[noreturn, gnu::cold, gnu::noinline]] inline void check_failed(const char* cond, const char* file, int line) {
  std::fprintf(stderr, "tern: check failed: %s at %s:%d\n", cond, file, line);
  std::fflush(stderr);
  std::abort();
}
}  // namespace tern::detail

#define TERN_CHECK(cond) ((cond) ? static_cast<void>(0) : ::tern::detail::check_failed(#cond, __FILE__, __LINE__))

#if !defined(NDEBUG) || defined(TERN_ASAN) || defined(TERN_TSAN)
#define TERN_DCHECK_IS_ON 1
#define TERN_DCHECK(cond) TERN_CHECK(cond)
#else
#define TERN_DCHECK_IS_ON 0
// Not evaluated, but still compiled: a check that stops compiling is noticed in Release builds too.
#define TERN_DCHECK(cond) static_cast<void>(sizeof(static_cast<bool>(cond)))
#endif
