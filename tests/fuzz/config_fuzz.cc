// tests/fuzz/config_fuzz.cc: the parsers of tern's settings (runtime/config.h; runtime/config_parse.cc), which read
// TERN_* environment variables and command-line flags, on arbitrary text. Each must answer a value in its documented
// range or an error naming the setting, never crash or throw.
#include <cmath>
#include <cstdint>
#include <string>

#include "runtime/config.h"
#include "scheduler/limits.h"

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string s(reinterpret_cast<const char*>(data), size);
  if (auto r = tern::parse_procs(s)) {
    check(*r >= 0 && *r <= tern::sched::kMaxProcs);
  } else {
    check(r.error().message().find("procs") != std::string::npos);
  }
  (void)tern::parse_size(s);  // any size_t (0 included: Config::validate bounds the stack size), or an error
  if (auto r = tern::parse_duration_ns(s)) {
    check(*r > 0);
  } else {
    check(!r.error().message().empty());
  }
  if (auto r = tern::parse_number("x", s, -1e6, 1e6)) {
    check(std::isfinite(*r) && *r >= -1e6 && *r <= 1e6);
  } else {
    check(r.error().message().find("x") != std::string::npos);
  }
  if (auto r = tern::parse_on_off("TERN_X", s); !r) check(r.error().message().find("TERN_X") != std::string::npos);
  (void)tern::detail::format_number(static_cast<double>(size) / 7);
  return 0;
}
