// tests/fuzz/exposition_fuzz.cc: the Prometheus text reader behind tern-top, tern-capacity --from and tern-sweep
// (tools/top/exposition.h), on arbitrary text as a scrape could return it. A line it cannot read must be an error
// naming the line, never a crash; what it accepts must be consistent.
#include <cmath>
#include <cstdint>
#include <string_view>

#include "tools/top/exposition.h"

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto r = tern::top::parse_exposition(text);
  if (!r) {
    check(r.error().message().find("line") != std::string::npos);
    return 0;
  }
  for (const tern::top::Sample& s : r->samples) {
    check(!s.name.empty());
    for (const auto& [k, v] : s.labels) check(!k.empty() && s.label(k).data() != nullptr);
    const tern::top::Sample* f = r->find(s.name);
    check(f != nullptr);
    (void)r->sum(s.name);
    check(!r->all(s.name).empty());
  }
  return 0;
}
