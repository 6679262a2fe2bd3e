// tests/scale.h: scales a test's iteration counts by TERN_TEST_SCALE (sanitizer runs set 0.1), never below `min`.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>

namespace tern::test {

inline double scale_factor() {
  const char* s = std::getenv("TERN_TEST_SCALE");
  if (s == nullptr) return 1.0;
  double f = std::atof(s);
  return f > 0 ? f : 1.0;
}

inline int64_t scaled(int64_t n, int64_t min = 1) {
  return std::max<int64_t>(min, static_cast<int64_t>(static_cast<double>(n) * scale_factor()));
}

}  // namespace tern::test
