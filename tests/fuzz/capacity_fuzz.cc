// tests/fuzz/capacity_fuzz.cc: the capacity formula (tools/capacity/formula.h) over inputs made of arbitrary doubles
// (NaN, infinities, negatives, zero, huge and tiny values), each input known or not as the input says. compute() must
// answer with an error naming a bad input or a report whose figures are finite and non-negative, and must not loop for
// long: knee_95's mean-value analysis runs one step per concurrency, so a huge X_max * R0 is where it could.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "tools/capacity/formula.h"

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tern::capacity::Inputs in;
  tern::capacity::Input* fields[] = {&in.cores,
                                     &in.k_cpu,
                                     &in.memory_bytes,
                                     &in.fiber_bytes,
                                     &in.fds,
                                     &in.overhead_per_conn,
                                     &in.fixed_bytes,
                                     &in.fds_per_conn,
                                     &in.fixed_fds,
                                     &in.bandwidth_bps,
                                     &in.response_bytes,
                                     &in.latency_s,
                                     &in.x_max,
                                     &in.r0_s};
  size_t at = 0;
  for (tern::capacity::Input* f : fields) {
    if (at + 9 > size) break;
    const bool known = data[at] & 1;
    double v;
    std::memcpy(&v, data + at + 1, sizeof v);
    at += 9;
    if (known) *f = tern::capacity::Input(v, "fuzz");
  }
  auto r = tern::capacity::compute(in);
  if (!r) {
    check(!r.error().message().empty());
    return 0;
  }
  check(std::isfinite(r->n) && r->n >= 0);
  for (const auto& t : r->terms) check(std::isfinite(t.value) && t.value >= 0);
  check(r->knee == -1 || (std::isfinite(r->knee) && r->knee >= 0));
  check(r->knee_95 == -1 || (std::isfinite(r->knee_95) && r->knee_95 >= 0));
  return 0;
}
