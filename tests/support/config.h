// tests/support/config.h: the runtime configuration most tests start from: a fixed processor count (which makes the
// controller's policy static, as an explicit GOMAXPROCS does) and every other setting at its default.
#pragma once

#include "runtime/config.h"

namespace tern::test {

inline Config procs_config(int procs) {
  Config c;
  c.procs = procs;
  return c;
}

}  // namespace tern::test
