// runtime/debug/fibers.cc: the fiber dump's renderers (runtime/debug/fibers.h).
#include "runtime/debug/fibers.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <tuple>

namespace tern::debug {
namespace {

struct Group {
  const FiberInfo* first = nullptr;  // state, reason and site of every member
  size_t count = 0;
  int64_t max_ns = 0;
  std::vector<uint64_t> ids;  // the first kGroupIds
};

bool site_known(const std::source_location& s) {
  return s.line() != 0;
}

// Groups by state, reason and site; the largest group first, then by state and site so equal counts print stably.
std::vector<Group> group(const std::vector<FiberInfo>& fibers) {
  using Key = std::tuple<int, int, std::string, uint32_t, std::string>;
  std::map<Key, Group> groups;
  for (const FiberInfo& f : fibers) {
    Key k{static_cast<int>(f.status), static_cast<int>(f.reason), f.site.file_name(), f.site.line(),
          f.site.function_name()};
    Group& g = groups[k];
    if (g.first == nullptr) g.first = &f;
    g.count++;
    g.max_ns = std::max(g.max_ns, f.for_ns);
    if (g.ids.size() < kGroupIds) g.ids.push_back(f.id);
  }
  std::vector<Group> out;
  out.reserve(groups.size());
  for (auto& [k, g] : groups) {
    std::sort(g.ids.begin(), g.ids.end());
    out.push_back(std::move(g));
  }
  std::stable_sort(out.begin(), out.end(), [](const Group& a, const Group& b) { return a.count > b.count; });
  return out;
}

nlohmann::json site_json(const std::source_location& s) {
  if (!site_known(s)) return nullptr;
  return {{"file", s.file_name()}, {"line", s.line()}, {"function", s.function_name()}};
}

double seconds(int64_t ns) {
  return static_cast<double>(ns) / 1e9;
}

// "1.25s", "340ms", "0s": what a person reads; the JSON carries the exact number.
std::string human(int64_t ns) {
  char buf[32];
  if (ns >= 1'000'000'000) {
    std::snprintf(buf, sizeof buf, "%.2fs", seconds(ns));
  } else {
    std::snprintf(buf, sizeof buf, "%" PRId64 "ms", ns / 1'000'000);
  }
  return buf;
}

}  // namespace

std::string fibers_json(const std::vector<FiberInfo>& fibers) {
  using nlohmann::json;
  json states = {{"runnable", 0}, {"running", 0}, {"waiting", 0}};
  json list = json::array();
  for (const FiberInfo& f : fibers) {
    const char* state = sched::gstatus_name(f.status);
    states[state] = states[state].get<uint64_t>() + 1;
    json j = {{"id", f.id}, {"state", state}, {"seconds", seconds(f.for_ns)}, {"p", f.p}, {"site", site_json(f.site)}};
    if (f.status == sched::GStatus::kWaiting) j["reason"] = sched::wait_reason_name(f.reason);
    list.push_back(std::move(j));
  }
  json groups = json::array();
  for (const Group& g : group(fibers)) {
    json j = {{"count", g.count},
              {"state", sched::gstatus_name(g.first->status)},
              {"max_seconds", seconds(g.max_ns)},
              {"site", site_json(g.first->site)},
              {"ids", g.ids}};
    if (g.first->status == sched::GStatus::kWaiting) j["reason"] = sched::wait_reason_name(g.first->reason);
    groups.push_back(std::move(j));
  }
  json out = {{"count", fibers.size()}, {"states", states}, {"groups", groups}, {"fibers", list}};
  return out.dump();
}

std::string fibers_text(const std::vector<FiberInfo>& fibers) {
  size_t n[3] = {};  // runnable, running, waiting
  for (const FiberInfo& f : fibers) {
    if (f.status == sched::GStatus::kRunnable) n[0]++;
    if (f.status == sched::GStatus::kRunning) n[1]++;
    if (f.status == sched::GStatus::kWaiting) n[2]++;
  }
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "tern: %zu fibers (%zu runnable, %zu running, %zu waiting)\n", fibers.size(), n[0],
                n[1], n[2]);
  out += line;
  for (const Group& g : group(fibers)) {
    const FiberInfo& f = *g.first;
    out += '\n';
    out += std::to_string(g.count);
    out += g.count == 1 ? " fiber [" : " fibers [";
    out += sched::gstatus_name(f.status);
    if (f.status == sched::GStatus::kWaiting) {
      out += ": ";
      out += sched::wait_reason_name(f.reason);
    }
    out += g.count == 1 ? ", " : ", up to ";
    out += human(g.max_ns);
    if (g.count == 1 && f.p >= 0)
      out += (f.status == sched::GStatus::kRunning ? ", on P" : ", last on P") + std::to_string(f.p);
    out += "]";
    if (site_known(f.site)) {
      out += " spawned at ";
      out += f.site.file_name();
      out += ':';
      out += std::to_string(f.site.line());
      out += " in ";
      out += f.site.function_name();
    } else {
      out += " spawned at an unknown site";
    }
    out += "\n  ids:";
    for (uint64_t id : g.ids) out += ' ' + std::to_string(id);
    if (g.count > g.ids.size()) out += " ...";
    out += '\n';
  }
  return out;
}

}  // namespace tern::debug
