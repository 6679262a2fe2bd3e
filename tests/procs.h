// tests/procs.h: a Config with a fixed processor count, the way most tests start a Runtime.
//
//   tern::Runtime rt(tern::test::procs(2));
#pragma once

#include "runtime/config.h"

namespace tern::test {

inline Config procs(int n) {
  Config cfg;
  cfg.procs = n;
  return cfg;
}

}  // namespace tern::test
