// tools/load/main.cc: tern-load, an open-loop HTTP load generator on tern (see tools/load/load.h for the model).
//
//   tern-load http://127.0.0.1:8080/health --rate 20000 -c 50 -d 10s            # constant rate, 50 connections
//   tern-load http://127.0.0.1:8080/work?us=40 -c 100 -d 10s                     # closed loop (no --rate), as wrk
//   tern-load http://127.0.0.1:8080/health --rate 5000 -d 5s --json              # one JSON object on stdout
//
// Latency is measured from each request's intended send time ("corrected") and, beside it, from its actual send
// ("uncorrected", what a closed-loop tool reports). Exit status: 0 when the run completed (errors are counted in the
// result), 2 for a bad flag or URL, 1 when no request succeeded.
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "runtime/config.h"
#include "runtime/net/address.h"
#include "runtime/runtime.h"
#include "tools/load/load.h"

namespace {

constexpr int kExitUsage = 2;

std::string ms(int64_t ns) {
  return fmt::format("{:.3f} ms", static_cast<double>(ns) / 1e6);
}

nlohmann::json histogram_json(const tern::load::LatencyHistogram& h) {
  nlohmann::json j;
  j["count"] = h.count();
  j["min_s"] = static_cast<double>(h.min()) * 1e-9;
  j["mean_s"] = h.mean() * 1e-9;
  j["max_s"] = static_cast<double>(h.max()) * 1e-9;
  for (auto [name, q] :
       {std::pair{"p50_s", 0.5}, {"p90_s", 0.9}, {"p99_s", 0.99}, {"p99_9_s", 0.999}, {"p99_99_s", 0.9999}})
    j[name] = static_cast<double>(h.quantile(q)) * 1e-9;
  return j;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tern-load: an open-loop HTTP/1.1 load generator (latency from each request's intended send time)"};
  std::string url, duration = "10s", timeout = "5s", warmup;
  double rate = 0;
  int connections = 10;
  int procs = 0;
  bool json = false;
  app.add_option("url", url, "http://HOST:PORT/PATH (a numeric address or localhost)")->required();
  app.add_option("-r,--rate", rate, "requests per second over all connections (default 0: closed loop)");
  app.add_option("-c,--connections", connections, "connections (default 10)");
  app.add_option("-d,--duration", duration, "how long to send (default 10s)");
  app.add_option("--warmup", warmup,
                 "load sent before the measured duration and not reported, e.g. an overload's onset (default none)");
  app.add_option("--timeout", timeout, "per-request time limit (default 5s)");
  app.add_option("--procs", procs, "tern processors for the generator (default: the machine's)");
  app.add_flag("--json", json, "print one JSON object instead of the text summary");
  CLI11_PARSE(app, argc, argv);

  auto fail = [](const std::string& what) {
    fmt::print(stderr, "tern-load: {}\n", what);
    return kExitUsage;
  };
  auto target = tern::load::parse_url(url);
  if (!target) return fail(target.error().message());
  tern::load::Options o;
  o.addr = target->addr;
  o.host = target->hostport;
  o.path = target->path;
  o.rate = rate;
  o.connections = connections;
  auto d = tern::parse_duration_ns(duration);
  if (!d || *d <= 0) return fail("--duration " + duration + ": " + (d ? "must be positive" : d.error().message()));
  o.duration = std::chrono::nanoseconds(*d);
  if (!warmup.empty()) {
    auto w = tern::parse_duration_ns(warmup);
    if (!w) return fail("--warmup " + warmup + ": " + w.error().message());
    o.warmup = std::chrono::nanoseconds(*w);
  }
  auto t = tern::parse_duration_ns(timeout);
  if (!t || *t <= 0) return fail("--timeout " + timeout + ": " + (t ? "must be positive" : t.error().message()));
  o.timeout = std::chrono::nanoseconds(*t);
  if (procs < 0) return fail("--procs must be >= 0");

  auto env = tern::Config::from_env();
  if (!env) return fail(env.error().message());
  tern::Config cfg = *env;
  if (procs > 0) cfg.procs = procs;
  auto rt = tern::Runtime::create(cfg);
  if (!rt) return fail(rt.error().message());
  tern::Result<tern::load::Result_> res = tern::make_error("not run");
  (*rt)->run([&] { res = tern::load::run(o); });
  if (!res) return fail(res.error().message());
  const auto& r = *res;

  if (json) {
    nlohmann::json j;
    j["url"] = url;
    j["rate"] = rate;
    j["connections"] = connections;
    j["duration_s"] = static_cast<double>(*d) * 1e-9;
    j["warmup_s"] = std::chrono::duration<double>(o.warmup).count();
    j["sent"] = r.sent;
    j["ok"] = r.ok;
    j["late"] = r.late;
    j["errors"] = r.errors;
    j["elapsed_s"] = r.elapsed_s;
    j["throughput"] = r.achieved_rate();
    j["latency"] = histogram_json(r.corrected);
    j["latency_uncorrected"] = histogram_json(r.uncorrected);
    if (o.warmup.count() > 0) {
      j["warmup_ok"] = r.warmup_ok;
      j["warmup_latency"] = histogram_json(*r.warmup_corrected);
    }
    fmt::print("{}\n", j.dump(2));
  } else {
    fmt::print("tern-load {}: {} connections, {}, {:.1f} s\n", url, connections,
               rate > 0 ? fmt::format("{:.0f} requests/s intended", rate) : std::string("closed loop"),
               static_cast<double>(*d) * 1e-9);
    fmt::print("  {} sent, {} ok, {:.0f} ok/s; {} sent over 1 ms late\n", r.sent, r.ok, r.achieved_rate(), r.late);
    std::string errors;
    for (const auto& [k, v] : r.errors) errors += fmt::format("{}{} {}", errors.empty() ? "" : ", ", k, v);
    fmt::print("  errors: {}\n", errors.empty() ? "none" : errors);
    if (r.ok == 0) return 1;
    fmt::print("  latency from the intended send: p50 {} p90 {} p99 {} p99.9 {} p99.99 {} max {}\n",
               ms(r.corrected.quantile(0.5)), ms(r.corrected.quantile(0.9)), ms(r.corrected.quantile(0.99)),
               ms(r.corrected.quantile(0.999)), ms(r.corrected.quantile(0.9999)), ms(r.corrected.max()));
    fmt::print("  latency from the actual send:   p50 {} p90 {} p99 {} p99.9 {} p99.99 {} max {}\n",
               ms(r.uncorrected.quantile(0.5)), ms(r.uncorrected.quantile(0.9)), ms(r.uncorrected.quantile(0.99)),
               ms(r.uncorrected.quantile(0.999)), ms(r.uncorrected.quantile(0.9999)), ms(r.uncorrected.max()));
  }
  return r.ok > 0 ? 0 : 1;
}
