// base/sanitizer.h: which sanitizer this translation unit is built with, spelled once, and its interface headers.
//
//   #include "base/sanitizer.h"
//   #ifdef TERN_ASAN
//     __asan_unpoison_memory_region(p, n);
//   #endif
//
// TERN_ASAN / TERN_TSAN are defined (to 1) under AddressSanitizer / ThreadSanitizer: from the compiler's own macro, or
// from the build's TERN_SANITIZE_ADDRESS / TERN_SANITIZE_THREAD (tern_sanitize() in cmake/TernWarnings.cmake defines
// them for tern and everything that links it).
#pragma once

#if defined(TERN_SANITIZE_ADDRESS) || defined(__SANITIZE_ADDRESS__)
#ifndef TERN_ASAN
#define TERN_ASAN 1
#endif
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if defined(TERN_SANITIZE_THREAD) || defined(__SANITIZE_THREAD__)
#ifndef TERN_TSAN
#define TERN_TSAN 1
#endif
#include <sanitizer/tsan_interface.h>
#endif
