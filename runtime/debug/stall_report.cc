// runtime/debug/stall_report.cc: see stall_report.h.
#include "runtime/debug/stall_report.h"

#define BOOST_STACKTRACE_LINK  // the library linked (boost_stacktrace_backtrace) does the lookups
#include <cstdio>

#include <boost/stacktrace/frame.hpp>

namespace tern::debug {

std::string format_stall(const sched::StallReport& r) {
  char line[256];
  std::snprintf(line, sizeof line,
                "tern: stall: fiber %llu has run %lld ms on processor %d (thread %d) without a switch "
                "(TERN_STALL_MS=%lld)",
                static_cast<unsigned long long>(r.fiber), static_cast<long long>(r.ran_ns / 1'000'000), r.p, r.m,
                static_cast<long long>(r.threshold_ns / 1'000'000));
  std::string out = line;
  if (r.nframes == 0) {
    out += "; its thread recorded no frames (it had moved on, or did not answer the signal)\n";
    return out;
  }
  out += "; it is in:\n";
  for (int i = 0; i < r.nframes; i++) {
    // A return address points after the call: one byte back names the calling line, not the next one.
    const auto* addr = static_cast<const char*>(r.frames[i]);
    boost::stacktrace::frame f(i == 0 ? addr : addr - 1);
    std::string name = f.name();
    if (name.empty()) name = "??";
    std::snprintf(line, sizeof line, "  #%d %p ", i, r.frames[i]);
    out += line;
    out += name;
    const std::string file = f.source_file();
    if (!file.empty()) out += " at " + file + ":" + std::to_string(f.source_line());
    out += "\n";
  }
  return out;
}

}  // namespace tern::debug
