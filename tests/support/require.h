// tests/support/require.h: the one place a test decides to skip for something the machine lacks. A skip is a failure
// where the machine is known to have what the test needs: CI (.ci/run) sets TERN_REQUIRE_IO_URING=1, as does
// `tools/tern test` when this machine's io_uring probe passes, and then a test that would skip for want of io_uring
// (or, on Linux 6.7 and later, of io_uring's futex wait) fails instead, saying why.
//
//   void SetUp() override { if (GetParam() == "uring") TERN_SKIP_UNLESS_URING(); }
//   if (io.ring_parks == 0) TERN_SKIP_OR_FAIL(tern::test::uring_futex_required(), "no ring parks");
#pragma once

#include <gtest/gtest.h>
#include <sys/utsname.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "netpoll/netpoll.h"

namespace tern::test {

// TERN_REQUIRE_IO_URING=1: io_uring must work here; a test that would skip without it fails.
inline bool io_uring_required() {
  const char* v = std::getenv("TERN_REQUIRE_IO_URING");
  return v != nullptr && std::strcmp(v, "1") == 0;
}

// Whether the running kernel's release is at least major.minor.
inline bool kernel_at_least(int major, int minor) {
  utsname u{};
  int ma = 0, mi = 0;
  if (uname(&u) != 0 || std::sscanf(u.release, "%d.%d", &ma, &mi) != 2) return false;
  return ma > major || (ma == major && mi >= minor);
}

// io_uring is required and the kernel has IORING_OP_FUTEX_WAIT (6.7), which an M parked in its ring sleeps on.
inline bool uring_futex_required() {
  return io_uring_required() && kernel_at_least(6, 7);
}

}  // namespace tern::test

// Skips the current test with the streamed reason, or fails it when `required` (the environment promised what is
// missing). Returns from the enclosing function, as GTEST_SKIP() does.
#define TERN_SKIP_OR_FAIL(required, why)                                                               \
  do {                                                                                                 \
    if (required) {                                                                                    \
      GTEST_FAIL() << why << " (a failure, not a skip: TERN_REQUIRE_IO_URING=1 says it is available)"; \
    } else {                                                                                           \
      GTEST_SKIP() << why;                                                                             \
    }                                                                                                  \
  } while (0)

// Skips (or, under TERN_REQUIRE_IO_URING=1, fails) the current test when io_uring cannot be used here.
#define TERN_SKIP_UNLESS_URING()                                                                         \
  do {                                                                                                   \
    const std::string tern_uring_why_ = ::tern::netpoll::uring_unavailable_reason();                     \
    if (!tern_uring_why_.empty())                                                                        \
      TERN_SKIP_OR_FAIL(::tern::test::io_uring_required(), "io_uring unavailable: " << tern_uring_why_); \
  } while (0)
