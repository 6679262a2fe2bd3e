// tools/top/frame.cc: a tern-top frame from two scrapes, and its text (see frame.h).
#include "tools/top/frame.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <utility>

namespace tern::top {
namespace {

bool known(double x) {
  return std::isfinite(x);
}

// cur - prev for a counter over the interval; the whole count when prev is missing or the counter went backwards
// (the program restarted between the scrapes); NaN when cur is missing.
double delta(double prev, double cur) {
  if (!known(cur)) return NAN;
  if (!known(prev) || cur < prev) return cur;
  return cur - prev;
}

double rate(const Scrape* prev, const Scrape& cur, std::string_view name, double dt) {
  if (prev == nullptr || dt <= 0) return -1;
  const double d = delta(prev->sum(name), cur.sum(name));
  return known(d) ? d / dt : -1;
}

template <class F>
void by_label(const Scrape& s, std::string_view name, std::string_view key, std::map<std::string, double>* out,
              F&& value) {
  for (const Sample* x : s.all(name)) (*out)[std::string(x->label(key))] = value(*x);
}

std::string si(double x, const char* unit = "") {
  if (!known(x) || x < 0) return "-";
  if (x >= 1e9) return fmt::format("{:.1f}G{}", x / 1e9, unit);
  if (x >= 1e6) return fmt::format("{:.1f}M{}", x / 1e6, unit);
  if (x >= 1e4) return fmt::format("{:.1f}k{}", x / 1e3, unit);
  return fmt::format("{:.0f}{}", x, unit);
}

std::string bytes(double x) {
  if (!known(x) || x < 0) return "-";
  if (x >= 1 << 30) return fmt::format("{:.1f} GiB", x / (1 << 30));
  if (x >= 1 << 20) return fmt::format("{:.1f} MiB", x / (1 << 20));
  if (x >= 1 << 10) return fmt::format("{:.1f} KiB", x / (1 << 10));
  return fmt::format("{:.0f} B", x);
}

std::string seconds(double s) {
  if (!known(s) || s < 0) return "-";
  if (s < 1e-3) return fmt::format("{:.0f} us", s * 1e6);
  if (s < 1) return fmt::format("{:.1f} ms", s * 1e3);
  return fmt::format("{:.2f} s", s);
}

std::string num(double x, int prec = 0) {
  if (!known(x) || x < 0) return "-";
  return fmt::format("{:.{}f}", x, prec);
}

std::string fit(std::string s, int width) {
  if (width > 0 && static_cast<int>(s.size()) > width) s.resize(static_cast<size_t>(width));
  return s;
}

}  // namespace

double histogram_quantile(const Scrape* prev, const Scrape& cur, const std::string& base, double q) {
  const std::string name = base + "_bucket";
  std::vector<std::pair<double, double>> buckets;  // (le, cumulative count in the interval)
  for (const Sample* s : cur.all(name)) {
    const std::string le(s->label("le"));
    double bound;
    if (le == "+Inf") {
      bound = INFINITY;
    } else {
      char* end = nullptr;
      bound = std::strtod(le.c_str(), &end);
      if (le.empty() || end != le.c_str() + le.size()) continue;
    }
    double before = NAN;
    if (prev != nullptr) {
      if (const Sample* p = prev->find(name, {{"le", le}})) before = p->value;
    }
    buckets.emplace_back(bound, delta(before, s->value));
  }
  std::sort(buckets.begin(), buckets.end());
  if (buckets.empty() || !known(buckets.back().second) || buckets.back().second <= 0) return -1;
  const double total = buckets.back().second, rank = q * total;
  double lo = 0, below = 0;
  for (const auto& [le, count] : buckets) {
    if (count >= rank) {
      if (!known(le)) return lo;  // in the +Inf bucket: the highest finite bound, as PromQL answers
      if (count <= below) return le;
      return lo + (le - lo) * (rank - below) / (count - below);
    }
    lo = le;
    below = count;
  }
  return lo;
}

Frame make_frame(const Scrape* prev, const Scrape& cur, double dt) {
  Frame f;
  f.dt = prev != nullptr ? dt : 0;
  f.procs = cur.value("tern_procs");
  auto value = [](const Sample& s) { return s.value; };
  by_label(cur, "tern_procs_limit", "source", &f.procs_limit, value);
  by_label(cur, "tern_threads", "state", &f.threads, value);
  by_label(cur, "tern_fibers", "state", &f.fibers, value);
  f.global_runq = cur.value("tern_global_runq_length");

  std::map<int, ProcRow> rows;
  for (const Sample* s : cur.all("tern_runq_length")) {
    const int p = std::atoi(std::string(s->label("p")).c_str());
    rows[p].id = p;
    rows[p].runq = s->value;
  }
  if (prev != nullptr && dt > 0) {
    double busy_sum = 0;
    bool any = false;
    for (const Sample* s : cur.all("tern_proc_busy_seconds_total")) {
      const std::string p(s->label("p"));
      const Sample* before = prev->find("tern_proc_busy_seconds_total", {{"p", p}});
      const double d = delta(before ? before->value : NAN, s->value);
      if (!known(d)) continue;
      const int id = std::atoi(p.c_str());
      if (rows.count(id) == 0 && id >= static_cast<int>(f.procs)) continue;  // a retired P
      rows[id].id = id;
      rows[id].busy = std::clamp(d / dt, 0.0, 1.0);
      busy_sum += d / dt;
      any = true;
    }
    if (any) f.busy_procs = busy_sum;
    f.cpu_cores = rate(prev, cur, "process_cpu_seconds_total", dt);
  }
  for (auto& [id, row] : rows) f.per_p.push_back(row);

  f.lat_p50_s = histogram_quantile(prev, cur, "tern_sched_latency_seconds", 0.5);
  f.lat_p99_s = histogram_quantile(prev, cur, "tern_sched_latency_seconds", 0.99);
  f.oldest_runnable_s = cur.value("tern_oldest_runnable_seconds");

  f.target = cur.value("tern_controller_target_procs");
  f.shadow = cur.value("tern_controller_shadow_procs");
  f.rollbacks = cur.sum("tern_controller_rollbacks_total");
  for (const Sample* s : cur.all("tern_controller_decisions_total")) {
    double before = NAN;
    if (prev != nullptr) {
      if (const Sample* p = prev->find(s->name, {{"policy", s->label("policy")}, {"direction", s->label("direction")}}))
        before = p->value;
    }
    const double d = prev != nullptr ? delta(before, s->value) : s->value;
    f.decisions[std::string(s->label("policy")) + " " + std::string(s->label("direction"))] = d;
  }
  f.quota_cores = cur.value("tern_cgroup_cpu_quota_cores");
  if (prev != nullptr) {
    f.throttled_periods =
        delta(prev->sum("tern_cgroup_throttled_periods_total"), cur.sum("tern_cgroup_throttled_periods_total"));
    f.throttled_s =
        delta(prev->sum("tern_cgroup_throttled_seconds_total"), cur.sum("tern_cgroup_throttled_seconds_total"));
  }
  f.work_rate = rate(prev, cur, "tern_work_total", dt);
  f.steal_rate = rate(prev, cur, "tern_steals_total", dt);
  f.switch_rate = rate(prev, cur, "tern_context_switches_total", dt);
  f.connections = cur.value("tern_connections_open");
  f.fds_open = cur.value("tern_fds_open");
  f.fds_limit = cur.value("tern_fds_limit");
  by_label(cur, "tern_heap_bytes", "kind", &f.heap_bytes, value);
  by_label(cur, "tern_stack_bytes", "state", &f.stack_bytes, value);
  return f;
}

std::vector<std::string> render(const Frame& f, const std::string& source, int width) {
  std::vector<std::string> out;
  auto line = [&](std::string s) { out.push_back(fit(std::move(s), width)); };
  auto get = [](const std::map<std::string, double>& m, const char* k) {
    auto it = m.find(k);
    return it == m.end() ? -1.0 : it->second;
  };

  std::string limits;
  for (const auto& [src, v] : f.procs_limit) limits += fmt::format("{}{} {}", limits.empty() ? "" : ", ", src, num(v));
  line(fmt::format("tern-top {}{}   procs {}{}", source, f.dt > 0 ? fmt::format("   every {:.1f} s", f.dt) : "",
                   num(f.procs), limits.empty() ? "" : " (limits: " + limits + ")"));
  line(fmt::format(
      "controller: target {}  shadow {}  rollbacks {}   cgroup: quota {} cores, throttled {} periods "
      "({}) in the interval",
      num(f.target), f.shadow > 0 ? num(f.shadow) : std::string("none"), num(f.rollbacks),
      known(f.quota_cores) ? num(f.quota_cores, 2) : "none", num(f.throttled_periods), seconds(f.throttled_s)));
  std::string decisions;
  for (const auto& [k, v] : f.decisions)
    if (known(v) && v > 0) decisions += fmt::format("{}{} {}", decisions.empty() ? "" : ", ", k, num(v));
  line("decisions" + std::string(f.dt > 0 ? " in the interval: " : " (total): ") +
       (decisions.empty() ? "none" : decisions));
  line(
      fmt::format("threads: running {} idle {} spinning {} blocked {}   fibers: running {} runnable {} waiting {}   "
                  "global queue {}",
                  num(get(f.threads, "running")), num(get(f.threads, "idle")), num(get(f.threads, "spinning")),
                  num(get(f.threads, "blocked")), num(get(f.fibers, "running")), num(get(f.fibers, "runnable")),
                  num(get(f.fibers, "waiting")), num(f.global_runq)));
  line(fmt::format("CPU: Ps busy {} of {}, process {} cores   sched latency p50 {} p99 {}   oldest runnable {}",
                   num(f.busy_procs, 2), num(f.procs), num(f.cpu_cores, 2), seconds(f.lat_p50_s), seconds(f.lat_p99_s),
                   seconds(f.oldest_runnable_s)));
  line(fmt::format("rates: work {}/s  steals {}/s  switches {}/s   connections {}   fds {} of {}", si(f.work_rate),
                   si(f.steal_rate), si(f.switch_rate), num(f.connections), num(f.fds_open), num(f.fds_limit)));
  line(fmt::format("memory: heap allocated {} active {} resident {}   stacks in use {} cached {}",
                   bytes(get(f.heap_bytes, "allocated")), bytes(get(f.heap_bytes, "active")),
                   bytes(get(f.heap_bytes, "resident")), bytes(get(f.stack_bytes, "in_use")),
                   bytes(get(f.stack_bytes, "cached"))));
  line("");
  line(fmt::format("{:>4}  {:<42} {:>6}", "P", "busy", "runq"));
  const int bar = 32;
  for (const ProcRow& p : f.per_p) {
    std::string meter = "-";
    if (p.busy >= 0) {
      const int n = static_cast<int>(std::lround(p.busy * bar));
      meter = "[" + std::string(static_cast<size_t>(n), '#') + std::string(static_cast<size_t>(bar - n), ' ') +
              fmt::format("] {:3.0f}%", p.busy * 100);
    }
    line(fmt::format("{:>4}  {:<42} {:>6}", p.id, meter, num(p.runq)));
  }
  return out;
}

}  // namespace tern::top
