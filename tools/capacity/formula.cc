// tools/capacity/formula.cc: the capacity terms (see formula.h).
#include "tools/capacity/formula.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>

namespace tern::capacity {
namespace {

// A known input must be a finite number above zero (overhead_per_conn may be zero); else an error naming it.
Result<void> check(const char* name, const Input& in, bool zero_ok = false) {
  if (!in.known) return {};
  if (!std::isfinite(in.value)) return make_error(fmt::format("{} is not a finite number ({})", name, in.source));
  if (in.value < 0 || (!zero_ok && in.value == 0))
    return make_error(fmt::format("{} must be {} 0, not {} ({})", name, zero_ok ? ">=" : ">", in.value, in.source));
  return {};
}

}  // namespace

Result<Report> compute(const Inputs& in) {
  struct Named {
    const char* name;
    const Input* in;
    bool zero_ok;
  };
  for (const Named& n : {Named{"cores", &in.cores, false},
                         {"k_cpu", &in.k_cpu, false},
                         {"memory_bytes", &in.memory_bytes, false},
                         {"fiber_bytes", &in.fiber_bytes, false},
                         {"fds", &in.fds, false},
                         {"overhead_per_conn", &in.overhead_per_conn, true},
                         {"fixed_bytes", &in.fixed_bytes, true},
                         {"fds_per_conn", &in.fds_per_conn, false},
                         {"fixed_fds", &in.fixed_fds, true},
                         {"bandwidth_bps", &in.bandwidth_bps, false},
                         {"response_bytes", &in.response_bytes, false},
                         {"latency_s", &in.latency_s, false},
                         {"x_max", &in.x_max, false},
                         {"r0_s", &in.r0_s, false}}) {
    if (auto r = check(n.name, *n.in, n.zero_ok); !r) return r.error();
  }

  Report r;
  auto need = [&](const char* term, std::initializer_list<std::pair<const char*, const Input*>> ins) {
    std::string missing;
    for (const auto& [name, i] : ins)
      if (!i->known) missing += std::string(missing.empty() ? "" : ", ") + name;
    if (!missing.empty()) r.left_out.push_back(std::string(term) + ": needs " + missing);
    return missing.empty();
  };

  if (need("cpu", {{"cores", &in.cores}, {"k_cpu", &in.k_cpu}})) {
    Term t{"cpu",
           std::floor(in.cores.value * in.k_cpu.value),
           {{"cores", in.cores}, {"k_cpu", in.k_cpu}},
           false,
           fmt::format("floor({:g} cores x K_cpu {:g})", in.cores.value, in.k_cpu.value)};
    r.terms.push_back(std::move(t));
  }
  if (in.fixed_bytes.known && need("memory", {{"memory_bytes", &in.memory_bytes}, {"fiber_bytes", &in.fiber_bytes}})) {
    Term t{
        "memory",
        std::floor(std::max(0.0, in.memory_bytes.value - in.fixed_bytes.value) / in.fiber_bytes.value),
        {{"memory_bytes", in.memory_bytes}, {"fixed_bytes", in.fixed_bytes}, {"fiber_bytes", in.fiber_bytes}},
        false,
        fmt::format("floor(({:.0f} MiB - {:.1f} MiB fixed) / {:.1f} KiB per connection)",
                    in.memory_bytes.value / (1 << 20), in.fixed_bytes.value / (1 << 20), in.fiber_bytes.value / 1024)};
    r.terms.push_back(std::move(t));
  } else if (need("memory", {{"memory_bytes", &in.memory_bytes}, {"fiber_bytes", &in.fiber_bytes}})) {
    Term t{"memory",
           std::floor(in.memory_bytes.value / in.fiber_bytes.value),
           {{"memory_bytes", in.memory_bytes}, {"fiber_bytes", in.fiber_bytes}},
           false,
           fmt::format("floor({:.0f} MiB / {:.1f} KiB per request)", in.memory_bytes.value / (1 << 20),
                       in.fiber_bytes.value / 1024)};
    r.terms.push_back(std::move(t));
  }
  if (in.fds_per_conn.known && in.fixed_fds.known && in.fds.known) {
    Term t{"fds",
           std::floor(std::max(0.0, in.fds.value - in.fixed_fds.value) / in.fds_per_conn.value),
           {{"fds", in.fds}, {"fixed_fds", in.fixed_fds}, {"fds_per_conn", in.fds_per_conn}},
           false,
           fmt::format("floor(({:g} fds - {:g} fixed) / {:.2f} per connection)", in.fds.value, in.fixed_fds.value,
                       in.fds_per_conn.value)};
    r.terms.push_back(std::move(t));
  } else if (need("fds", {{"fds", &in.fds}, {"overhead_per_conn", &in.overhead_per_conn}})) {
    Term t{"fds",
           std::floor(in.fds.value / (2 + in.overhead_per_conn.value)),
           {{"fds", in.fds}, {"overhead_per_conn", in.overhead_per_conn}},
           false,
           fmt::format("floor({:g} fds / (2 + {:g}))", in.fds.value, in.overhead_per_conn.value)};
    r.terms.push_back(std::move(t));
  }
  if (in.bandwidth_bps.known && in.response_bytes.known) {
    r.bandwidth_rate = in.bandwidth_bps.value / (8 * in.response_bytes.value);
  }
  if (need("bandwidth", {{"bandwidth_bps", &in.bandwidth_bps},
                         {"response_bytes", &in.response_bytes},
                         {"latency_s", &in.latency_s}})) {
    Term t{
        "bandwidth",
        std::floor(r.bandwidth_rate * in.latency_s.value),
        {{"bandwidth_bps", in.bandwidth_bps}, {"response_bytes", in.response_bytes}, {"latency_s", in.latency_s}},
        false,
        fmt::format("floor({:.0f} Mbit/s / {:g} bytes per response = {:.0f} responses/s, x {:.3f} ms latency)",
                    in.bandwidth_bps.value / 1e6, in.response_bytes.value, r.bandwidth_rate, in.latency_s.value * 1e3)};
    r.terms.push_back(std::move(t));
  }
  if (r.terms.empty()) return make_error("no term can be computed: " + (r.left_out.empty() ? "" : r.left_out[0]));
  // Inputs each finite and above zero can still make a term that is not (1e-304 bytes per fiber, say): out of range.
  for (const Term& t : r.terms) {
    if (!std::isfinite(t.value)) return make_error(fmt::format("the {} term is out of range: {}", t.name, t.formula));
  }
  if (r.bandwidth_rate != -1 && !std::isfinite(r.bandwidth_rate))
    return make_error("the bandwidth rate is out of range (bandwidth_bps / response_bytes)");
  Term* min = &r.terms.front();
  for (Term& t : r.terms)
    if (t.value < min->value) min = &t;
  min->binds = true;
  r.n = min->value;
  r.binding = min->name;
  if (in.x_max.known && in.r0_s.known) {
    r.knee = in.x_max.value * in.r0_s.value;
    if (!std::isfinite(r.knee))
      return make_error(
          fmt::format("the knee x_max x r0_s is out of range: {:g} x {:g}", in.x_max.value, in.r0_s.value));
    r.knee_95 = knee_95(in.x_max.value, in.r0_s.value, in.cores.known ? std::max(1.0, in.cores.value) : 1);
  }
  return r;
}

double knee_95(double x_max, double r0_s, double servers) {
  if (!std::isfinite(x_max) || !std::isfinite(r0_s) || !std::isfinite(servers) || x_max <= 0 || r0_s <= 0 ||
      servers < 1)
    return -1;
  const double d = servers / x_max;  // one request's CPU
  if (r0_s < d) return -1;
  const double demand = d / servers;                              // the queueing part
  const double delay = (r0_s - d) + d * (servers - 1) / servers;  // the rest of R0
  const double target = kKneePeakFraction * x_max;
  // X(N) rises to X_max; within 10^7 steps for any N* below ~10^6 (the loop ends at the first N past the target).
  double q = 0;
  for (int n = 1; n <= 10'000'000; n++) {
    const double r = demand * (1 + q);
    const double x = n / (r + delay);
    if (x >= target) return n;
    q = x * r;
  }
  return -1;
}

}  // namespace tern::capacity
