// tools/sweep/report.cc: sweep.json, report.md, the plots and the summary (see report.h).
#include "tools/sweep/report.h"

#include <fmt/core.h>
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace tern::sweep {
namespace {

namespace fs = std::filesystem;

nlohmann::json num(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json();
}

std::string errors_text(const std::map<std::string, uint64_t>& e) {
  std::string s;
  for (const auto& [k, v] : e) s += fmt::format("{}{} {}", s.empty() ? "" : ", ", k, v);
  return s.empty() ? "none" : s;
}

std::string procs_name(const ProcsRun& r) {
  return r.procs > 0 ? fmt::format("procs {}", r.procs) : std::string("the server");
}

nlohmann::json knee_json(const Knee& k) {
  return {{"found", k.found},
          {"concurrency", k.found ? nlohmann::json(k.concurrency) : nlohmann::json()},
          {"interpolated", num(k.interpolated)},
          {"how", k.how}};
}

nlohmann::json step_json(const Step& s) {
  return {{"procs", s.procs},
          {"concurrency", s.concurrency},
          {"elapsed_s", s.elapsed_s},
          {"ok", s.ok},
          {"throughput", s.throughput},
          {"p50_s", num(s.p50_s)},
          {"p99_s", num(s.p99_s)},
          {"p99_9_s", num(s.p999_s)},
          {"errors", s.errors},
          {"server_cpu_per_request_s", num(s.cpu_per_request_s)},
          {"server_cpu_source", s.cpu_source},
          {"server_cpu_util", num(s.server_cpu_util)},
          {"server_cpus_busy", num(s.server_cpus_busy)},
          {"load_cpus_busy", num(s.load_cpus_busy)},
          {"refined", s.refined},
          {"note", s.note}};
}

// "1.2", "41", "1,234" style numbers for tables.
std::string n0(double v) {
  return std::isfinite(v) ? fmt::format("{:.0f}", v) : std::string("–");
}

std::string gp_quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};

}  // namespace

std::string fmt_seconds(double s) {
  if (!std::isfinite(s)) return "–";
  if (s >= 1) return fmt::format("{:.2f} s", s);
  if (s >= 1e-3) return fmt::format("{:.{}f} ms", s * 1e3, s >= 0.1 ? 0 : (s >= 0.01 ? 1 : 2));
  return fmt::format("{:.0f} us", s * 1e6);
}

Result<Prediction> parse_capacity_json(std::string_view text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return make_error("tern-capacity --json: output is not a JSON object");
  Prediction p;
  p.ran = true;
  auto get = [](const nlohmann::json& o, const char* k) {
    return o.contains(k) && o[k].is_number() ? o[k].get<double>() : NAN;
  };
  if (j.contains("knee") && j["knee"].is_object()) {
    p.knee = get(j["knee"], "predicted");
    if (j["knee"].contains("predicted_95")) p.knee_95 = get(j["knee"], "predicted_95");
    p.x_max = get(j["knee"], "x_max");
    p.r0_s = get(j["knee"], "r0");
  }
  if (j.contains("probe") && j["probe"].is_object()) {
    p.cpu_per_request_s = get(j["probe"], "cpu_per_request_s");
    if (j["probe"].contains("cpu_connections"))
      p.cpu_connections = static_cast<int>(get(j["probe"], "cpu_connections"));
  }
  p.n = get(j, "n");
  if (j.contains("binding") && j["binding"].is_string()) p.binding = j["binding"].get<std::string>();
  if (j.contains("problems") && j["problems"].is_array())
    for (const auto& x : j["problems"])
      if (x.is_string()) p.problems.push_back(x.get<std::string>());
  if (!std::isfinite(p.knee)) p.error = "tern-capacity gave no knee (its probe measured no CPU per request)";
  return p;
}

BoundsInputs bounds_inputs(const ProcsRun& r) {
  BoundsInputs in;
  in.r0_s = r.prediction.r0_s;
  std::vector<double> cpu;
  for (const Step& st : r.steps)
    if (std::isfinite(st.cpu_per_request_s) && st.cpu_per_request_s > 0) cpu.push_back(st.cpu_per_request_s);
  if (!cpu.empty() && r.procs > 0) {
    std::sort(cpu.begin(), cpu.end());
    const double d = cpu.size() % 2 ? cpu[cpu.size() / 2] : (cpu[cpu.size() / 2 - 1] + cpu[cpu.size() / 2]) / 2;
    in.x_max = r.procs / d;
    in.measured = true;
    in.x_max_source = fmt::format("{} processor{} / {} (the median server CPU per request over the steps)", r.procs,
                                  r.procs == 1 ? "" : "s", fmt_seconds(d));
  } else {
    in.x_max = r.prediction.x_max;
    in.x_max_source = "the prediction's X_max";
  }
  return in;
}

Comparison compare(const ProcsRun& r) {
  Comparison c;
  if (!std::isfinite(r.prediction.knee)) {
    c.why = r.prediction.error.empty() ? "no prediction" : r.prediction.error;
    return c;
  }
  c.predicted = r.prediction.knee;
  if (!r.analysis) {
    c.why = "no measured knee: " + r.analysis.error().message();
    return c;
  }
  const Knee& k = r.analysis->knee_95;
  if (!k.found) {
    c.why = "no measured knee: " + k.how;
    return c;
  }
  c.measured = std::isfinite(k.interpolated) ? k.interpolated : k.concurrency;
  c.error_pct = (c.predicted - c.measured) / c.measured * 100;
  if (std::isfinite(r.prediction.knee_95)) {
    c.predicted_95 = r.prediction.knee_95;
    c.error_95_pct = (c.predicted_95 - c.measured) / c.measured * 100;
  }
  c.ok = true;
  // Positions over the steps up to 4 N*, where the bounds are apart: beyond, both approach X_max, and the position
  // measures the error of the X_max estimate more than the queueing.
  std::vector<double> pos;
  const BoundsInputs bi = bounds_inputs(r);
  for (const Step& st : r.analysis->steps) {
    if (st.concurrency > kBoundsUpTo * bi.x_max * bi.r0_s) continue;
    const Bounds b = closed_bounds(st.concurrency, bi.r0_s, bi.x_max, st.throughput);
    if (std::isfinite(b.position)) pos.push_back(b.position);
  }
  // The ceiling the prediction assumed against the one measured, with the sweep's own CPU per request (the server's
  // metrics, nanoseconds) at its lowest steps beside the probe's.
  if (std::isfinite(r.prediction.x_max) && r.analysis->peak_throughput > 1.1 * r.prediction.x_max && bi.measured) {
    double low_cpu = NAN;
    int low_n = 0;
    for (const Step& st : r.analysis->steps) {
      if (std::isfinite(st.cpu_per_request_s)) {
        low_cpu = st.cpu_per_request_s, low_n = st.concurrency;
        break;
      }
    }
    double peak_cpu = NAN;
    for (const Step& st : r.analysis->steps)
      if (st.concurrency == r.analysis->peak_concurrency) peak_cpu = st.cpu_per_request_s;
    c.x_max_note = fmt::format(
        "the measured peak ({:.0f}/s) is {:.0f}% above the predicted X_max ({:.0f}/s): the probe measured {} of server "
        "CPU per request at light load ({} connections for 1 s), and the server's metrics show {} at N={} but {} at "
        "the peak: a request costs less CPU the busier the server is (fewer wakeups, polls and system calls per "
        "request), which a probe at light load cannot see",
        r.analysis->peak_throughput, (r.analysis->peak_throughput / r.prediction.x_max - 1) * 100, r.prediction.x_max,
        fmt_seconds(r.prediction.cpu_per_request_s),
        r.prediction.cpu_connections > 0 ? std::to_string(r.prediction.cpu_connections) : std::string("a few"),
        fmt_seconds(low_cpu), low_n, fmt_seconds(peak_cpu));
  }
  if (!pos.empty()) {
    std::sort(pos.begin(), pos.end());
    c.median_position = pos.size() % 2 ? pos[pos.size() / 2] : (pos[pos.size() / 2 - 1] + pos[pos.size() / 2]) / 2;
    const std::string where = fmt::format(
        "X_max {:.0f}/s from {}; over the steps up to 4 X_max × R0, median position {:.0f}% of the way from the "
        "pessimistic bound N/(R0 + (N−1)/X_max) "
        "to the optimistic "
        "min(N/R0, X_max)",
        bi.x_max, bi.x_max_source, c.median_position * 100);
    if (c.median_position < 1.0 / 3)
      c.bounds_note = "the measured throughput follows the pessimistic bound (" + where +
                      "): requests queue behind one another as a convoy, each waiting for the CPU of the others, so "
                      "throughput approaches X_max only slowly and the 95% knee lies well beyond N* = X_max × R0, "
                      "which assumes that none queue before the CPU saturates";
    else if (c.median_position > 2.0 / 3)
      c.bounds_note =
          "the measured throughput follows the optimistic bound (" + where + "), as N* = X_max × R0 assumes";
    else
      c.bounds_note = "the measured throughput lies between the bounds (" + where + ")";
  }
  if (r.analysis->peak_at_end)
    c.caveat = fmt::format(
        "throughput was still rising at the ladder's last step (N={}): the measured knee is a lower "
        "bound; extend the ladder",
        r.analysis->peak_concurrency);
  return c;
}

void finish(Sweep& s) {
  std::vector<Ladder> ladders;
  for (ProcsRun& r : s.runs) {
    r.analysis = analyze(r.steps, s.slo_s);
    if (r.analysis) ladders.push_back(*r.analysis);
  }
  s.recommendation = recommend(ladders);
}

nlohmann::json to_json(const Sweep& s) {
  nlohmann::json j;
  j["command_line"] = s.command_line;
  j["machine"] = {{"cpus_online", s.machine.cpus_online},
                  {"cpu_model", s.machine.cpu_model},
                  {"kernel", s.machine.kernel},
                  {"loadavg1_start", num(s.loadavg_start)},
                  {"loadavg1_end", num(s.loadavg_end)}};
  j["started_at"] = s.started_at;
  j["elapsed_s"] = s.elapsed_s;
  j["load_tool"] = s.load_tool;
  j["url"] = s.url;
  j["path"] = s.path;
  j["server"] = s.server;
  j["server_cpus"] = s.server_cpus;
  j["load_cpus"] = s.load_cpus;
  j["step_s"] = s.step_s;
  j["warmup_s"] = s.warmup_s;
  j["slo_s"] = s.slo_s;
  j["refine"] = s.refine;
  j["nice"] = s.niceness;
  j["ladder"] = s.ladder;
  j["runs"] = nlohmann::json::array();
  for (const ProcsRun& r : s.runs) {
    nlohmann::json o;
    o["procs"] = r.procs > 0 ? nlohmann::json(r.procs) : nlohmann::json();
    const Prediction& p = r.prediction;
    o["prediction"] = {{"ran", p.ran},
                       {"knee", num(p.knee)},
                       {"x_max", num(p.x_max)},
                       {"r0_s", num(p.r0_s)},
                       {"cpu_per_request_s", num(p.cpu_per_request_s)},
                       {"n", num(p.n)},
                       {"binding", p.binding},
                       {"problems", p.problems},
                       {"error", p.error},
                       {"raw", p.raw_path}};
    o["steps"] = nlohmann::json::array();
    const BoundsInputs bi = bounds_inputs(r);
    o["bounds_inputs"] = {{"r0_s", num(bi.r0_s)}, {"x_max", num(bi.x_max)}, {"x_max_source", bi.x_max_source}};
    for (const Step& st : r.steps) {
      nlohmann::json sj = step_json(st);
      const Bounds b = closed_bounds(st.concurrency, bi.r0_s, bi.x_max, st.throughput);
      sj["bounds"] = {
          {"pessimistic", num(b.pessimistic)}, {"optimistic", num(b.optimistic)}, {"position", num(b.position)}};
      o["steps"].push_back(sj);
    }
    if (r.analysis) {
      const Ladder& l = *r.analysis;
      nlohmann::json a;
      a["peak_throughput"] = l.peak_throughput;
      a["peak_concurrency"] = l.peak_concurrency;
      a["knee_slo"] = knee_json(l.knee_slo);
      a["knee_95"] = knee_json(l.knee_95);
      if (l.usl) {
        const UslFit& f = *l.usl;
        a["usl"] = {{"lambda", f.lambda}, {"sigma", f.sigma},        {"kappa", f.kappa},
                    {"r2", num(f.r2)},    {"n_star", num(f.n_star)}, {"n_star_note", f.n_star_note},
                    {"points", f.points}};
      } else {
        a["usl"] = {{"error", l.usl.error().message()}};
      }
      a["problems"] = l.problems;
      o["analysis"] = a;
    } else {
      o["analysis"] = {{"error", r.analysis.error().message()}};
    }
    const Comparison c = compare(r);
    o["comparison"] = {{"predicted", num(c.predicted)},
                       {"measured", num(c.measured)},
                       {"error_pct", num(c.error_pct)},
                       {"predicted_95", num(c.predicted_95)},
                       {"error_95_pct", num(c.error_95_pct)},
                       {"measured_is",
                        "knee_95: the smallest concurrency reaching 95% of peak throughput, "
                        "interpolated between the steps around it"},
                       {"why", c.why},
                       {"caveat", c.caveat},
                       {"median_bounds_position", num(c.median_position)},
                       {"bounds_note", c.bounds_note},
                       {"x_max_note", c.x_max_note}};
    o["server_log"] = r.server_log;
    j["runs"].push_back(o);
  }
  j["recommendation"] = {{"found", s.recommendation.found},
                         {"procs", s.recommendation.found ? nlohmann::json(s.recommendation.procs) : nlohmann::json()},
                         {"how", s.recommendation.how}};
  j["notes"] = s.notes;
  j["plots"] = s.plots;
  j["plots_note"] = s.plots_note;
  return j;
}

std::string markdown(const Sweep& s) {
  std::string m;
  auto line = [&m](const std::string& t) { m += t + "\n"; };
  line(fmt::format("# tern-sweep: {} on {}", s.path, s.server));
  line("");
  line(fmt::format(
      "{}: {} closed loop, {} per step after a {} warmup, {} steps, {} in all.", s.started_at, s.load_tool,
      fmt_seconds(s.step_s), fmt_seconds(s.warmup_s),
      [&] {
        size_t n = 0;
        for (const auto& r : s.runs) n += r.steps.size();
        return n;
      }(),
      fmt_seconds(s.elapsed_s)));
  line("");
  line("## Summary");
  line("");
  line(
      "The **knee** is the concurrency (requests in flight: here connections, each waiting for its reply before "
      "sending again) beyond which more concurrency adds no throughput, only queueing delay. tern-capacity predicts "
      "it before any load as N* = X_max × R0: the peak throughput the server's CPU allows (its processors / CPU per "
      "request) times the latency of one request alone. The sweep measures it two ways:");
  line("");
  line(
      "- **knee (b), 95% of peak**: the smallest concurrency whose throughput reaches 95% of the peak, interpolated "
      "between the two steps around that line. This is what N* predicts, and what the prediction is scored against.");
  line(
      fmt::format("- **knee (a), within the SLO**: the highest concurrency whose p99 stays under {} with throughput "
                  "at least 95% of the peak (and at most {:g}% errors): how far past the knee the server can be driven "
                  "before its tail breaks the SLO.",
                  fmt_seconds(s.slo_s), kSloMaxErrorRatio * 100));
  line("");
  line(
      "| processors | predicted knee N* | measured knee (b) | error | predicted 95% point | its error | knee (a), SLO "
      "| "
      "peak throughput | binding term |");
  line("|---|---|---|---|---|---|---|---|---|");
  for (const ProcsRun& r : s.runs) {
    const Comparison c = compare(r);
    std::string kb = "–", ka = "–", peak = "–";
    if (r.analysis) {
      const Ladder& l = *r.analysis;
      if (l.knee_95.found)
        kb = fmt::format("{:.1f} (first step at 95%: N={})",
                         std::isfinite(l.knee_95.interpolated) ? l.knee_95.interpolated : l.knee_95.concurrency,
                         l.knee_95.concurrency);
      ka = l.knee_slo.found ? fmt::format("N={}", l.knee_slo.concurrency) : std::string("none");
      peak = fmt::format("{:.0f}/s at N={}", l.peak_throughput, l.peak_concurrency);
    }
    line(fmt::format(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} |", r.procs > 0 ? std::to_string(r.procs) : "?",
        std::isfinite(r.prediction.knee) ? fmt::format("{:.1f}", r.prediction.knee) : "none: " + r.prediction.error, kb,
        c.ok ? fmt::format("{:+.1f}%{}", c.error_pct, c.caveat.empty() ? "" : " (" + c.caveat + ")") : c.why,
        std::isfinite(c.predicted_95) ? fmt::format("{:.0f}", c.predicted_95) : "–",
        std::isfinite(c.error_95_pct) ? fmt::format("{:+.1f}%", c.error_95_pct) : "–", ka, peak,
        r.prediction.binding.empty() ? "–" : r.prediction.binding));
  }
  line("");
  for (const ProcsRun& r : s.runs) {
    const Comparison c = compare(r);
    if (c.bounds_note.empty() && c.x_max_note.empty()) continue;
    line(fmt::format("Why the knee of {} {} the prediction: {}.", procs_name(r),
                     c.ok && std::fabs(c.error_pct) <= 15 ? "matches" : "misses",
                     c.bounds_note + (!c.bounds_note.empty() && !c.x_max_note.empty() ? "; " : "") + c.x_max_note));
    line("");
  }
  if (s.recommendation.found) {
    line(fmt::format("**Recommended processor count: {}** — {}.", s.recommendation.procs, s.recommendation.how));
  } else {
    line(fmt::format("No processor count to recommend: {}.", s.recommendation.how));
  }
  line("");
  line(
      "The binding term is the term of the capacity formula (cpu, memory, fds, bandwidth) with the smallest "
      "concurrency, as tern-capacity computed it for this server; the knee is the CPU's.");
  for (const std::string& n : s.notes) line("- note: " + n);
  line("");

  for (const ProcsRun& r : s.runs) {
    line(fmt::format("## {}", r.procs > 0 ? fmt::format("{} processor{}", r.procs, r.procs == 1 ? "" : "s")
                                          : std::string("The server")));
    line("");
    const Prediction& p = r.prediction;
    if (std::isfinite(p.knee)) {
      line(fmt::format(
          "Predicted (tern-capacity, {}): knee N* = X_max × R0 = {:.0f}/s × {} = **{:.1f}**; CPU per "
          "request {}; the formula's N = {}, bound by {}.",
          p.raw_path.empty() ? "--probe" : fs::path(p.raw_path).filename().string(), p.x_max, fmt_seconds(p.r0_s),
          p.knee, fmt_seconds(p.cpu_per_request_s), n0(p.n), p.binding.empty() ? "?" : p.binding));
      if (std::isfinite(p.knee_95))
        line(fmt::format(
            "N* is the corner of the closed system's optimistic bound; a measured curve bends below the corner, so "
            "95% of the peak comes later. Mean-value analysis of the same model (tern-capacity's knee_95: R0 − D away "
            "from the CPU, D on it) puts the 95% point at **{:.0f}**.",
            p.knee_95));
    } else {
      line(fmt::format("No prediction: {}.", p.error));
    }
    for (const auto& x : p.problems) line("- tern-capacity: " + x);
    line("");
    if (!r.analysis) {
      line(fmt::format("No analysis: {}.", r.analysis.error().message()));
      line("");
    }
    const BoundsInputs bi = bounds_inputs(r);
    const Ladder* l = r.analysis ? &*r.analysis : nullptr;
    line(
        "| N | throughput | % of peak | p50 | p99 | p99.9 | errors | server CPU/request | server CPU | its CPUs busy | "
        "load CPUs busy | "
        "bounds: pessimistic – optimistic (position) | |");
    line("|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|");
    std::vector<Step> steps = r.steps;
    std::sort(steps.begin(), steps.end(), [](const Step& a, const Step& b) { return a.concurrency < b.concurrency; });
    for (const Step& st : steps) {
      std::string mark;
      if (l && l->knee_95.found && l->knee_95.concurrency == st.concurrency) mark += "knee (b) ";
      if (l && l->knee_slo.found && l->knee_slo.concurrency == st.concurrency) mark += "knee (a) ";
      if (l && l->peak_concurrency == st.concurrency) mark += "peak ";
      if (st.refined) mark += "refined ";
      if (!st.note.empty()) mark += "— " + st.note;
      auto pct = [](double v) { return std::isfinite(v) ? fmt::format("{:.0f}%", v * 100) : std::string("–"); };
      line(fmt::format(
          "| {} | {:.0f}/s | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |", st.concurrency, st.throughput,
          l && l->peak_throughput > 0 ? fmt::format("{:.1f}%", st.throughput / l->peak_throughput * 100) : "–",
          fmt_seconds(st.p50_s), fmt_seconds(st.p99_s), fmt_seconds(st.p999_s), errors_text(st.errors),
          std::isfinite(st.cpu_per_request_s) ? fmt::format("{:.1f} us", st.cpu_per_request_s * 1e6) : "–",
          pct(st.server_cpu_util), pct(st.server_cpus_busy), pct(st.load_cpus_busy),
          [&] {
            const Bounds b = closed_bounds(st.concurrency, bi.r0_s, bi.x_max, st.throughput);
            if (!std::isfinite(b.optimistic)) return std::string("–");
            return fmt::format("{:.0f} – {:.0f}/s ({})", b.pessimistic, b.optimistic,
                               std::isfinite(b.position) ? fmt::format("{:.0f}%", b.position * 100) : "–");
          }(),
          mark));
    }
    line("");
    line(
        "Server CPU: the server process's CPU time over the step's wall time (100% = one CPU). Its CPUs busy: how "
        "busy the CPUs it is pinned to were with anything, itself, interrupts or other processes; far above the "
        "server's own share means it was sharing them. Load CPUs busy: the same for the load generator's CPUs (near "
        "100%, the load may be what limits the step). Bounds: the closed system's asymptotic bounds from the "
        "probe's R0 and X_max = processors / the median server CPU per request measured here (throughput N/(R0 + "
        "(N−1)/X_max) if every request queued behind all the others, "
        "min(N/R0, X_max) if none queued before the CPU saturates; the knee N* is the corner of the latter) and where "
        "the measurement lies between them, 0% at the pessimistic one.");
    line("");
    if (l) {
      line(fmt::format("- knee (b): {}", l->knee_95.found ? l->knee_95.how : "none: " + l->knee_95.how));
      line(fmt::format("- knee (a): {}{}", l->knee_slo.found ? fmt::format("N={}: ", l->knee_slo.concurrency) : "",
                       l->knee_slo.how));
      if (l->usl) {
        const UslFit& f = *l->usl;
        line(
            fmt::format("- USL fit over {} steps: X(N) = λN / (1 + σ(N−1) + κN(N−1)) with λ = {:.1f}/s, σ = {:.4g}, "
                        "κ = {:.3g}, R² = {:.4f}; N* = {}",
                        f.points, f.lambda, f.sigma, f.kappa, f.r2,
                        std::isfinite(f.n_star) ? fmt::format("{:.0f} ({})", f.n_star, f.n_star_note) : f.n_star_note));
        if (f.r2 < 0.95)
          line(
              "  (R² under 0.95: a closed loop whose requests mostly wait can rise linearly and flatten at once, a "
              "corner the USL's smooth curve fits loosely; read σ and κ as a summary, not as the knee)");
        if (std::isfinite(p.r0_s) && std::isfinite(p.x_max) && p.r0_s > 0 && p.x_max > 0)
          line(
              fmt::format("  σ against the prediction's inputs: one request's CPU / R0 = {:.4f}. The pessimistic "
                          "bound N/(R0 + (N−1)D) is the USL with λ = 1/R0, σ = D/R0, κ = 0: a σ near D/R0 says each "
                          "request waited for the CPU of all the others",
                          1 / p.x_max / p.r0_s));
      } else {
        line("- USL fit: " + l->usl.error().message());
      }
      for (const auto& x : l->problems) line("- " + x);
    }
    if (!r.server_log.empty()) line(fmt::format("- server output: {}", r.server_log));
    line("");
  }

  line("## Plots");
  line("");
  if (s.plots.empty()) {
    line("None: " + s.plots_note + ".");
  } else {
    for (const auto& p : s.plots) line(fmt::format("![{}]({})", p, p));
    line("");
    line(
        "Solid lines with points: measured; dashed: the USL fit; dotted and dash-dotted: the optimistic and "
        "pessimistic bounds from R0 and the measured X_max; dash-dot vertical: the predicted knee; open circle: the "
        "measured knee (b).");
  }
  line("");
  line("## How it was run");
  line("");
  line("```");
  line(s.command_line);
  line("```");
  line("");
  line(fmt::format("- machine: {} CPUs online, {}; {}", s.machine.cpus_online, s.machine.cpu_model, s.machine.kernel));
  line(
      fmt::format("- load average (1 min): {:.2f} at the start, {:.2f} at the end (anything else running shares the "
                  "CPUs with the server and the load)",
                  s.loadavg_start, s.loadavg_end));
  line(fmt::format("- server: {}; CPUs {}", s.server, s.server_cpus.empty() ? "not pinned" : s.server_cpus));
  if (s.niceness != 0)
    line(
        fmt::format("- nice value {} for the server, the load and the probe (--nice): ahead of other work on the "
                    "same CPUs, which still takes what they leave",
                    s.niceness));
  line(fmt::format("- load: {} at {}, closed loop (each connection sends when its last reply is in); CPUs {}",
                   s.load_tool, s.url, s.load_cpus.empty() ? "not pinned" : s.load_cpus));
  std::string ladder;
  for (int n : s.ladder) ladder += fmt::format("{}{}", ladder.empty() ? "" : ", ", n);
  line(fmt::format("- ladder: {}; up to {} more steps between the two around the 95% line (--refine)", ladder,
                   s.refine));
  line(
      fmt::format("- each step: a {} warmup run (discarded), then {} measured; the server's CPU per request is its "
                  "CPU time over the measured run divided by the requests it answered (its metrics, else "
                  "/proc/PID/stat and the load's count)",
                  fmt_seconds(s.warmup_s), fmt_seconds(s.step_s)));
  line(fmt::format("- total: {}", fmt_seconds(s.elapsed_s)));
  line("- raw output of every run: raw/");
  return m;
}

std::string summary_text(const Sweep& s, const std::string& out_dir) {
  std::string m;
  auto line = [&m](const std::string& t) { m += t + "\n"; };
  size_t steps = 0;
  for (const auto& r : s.runs) steps += r.steps.size();
  line(fmt::format("tern-sweep: GET {} on {}, {} closed loop, {} steps in {}", s.path, s.server, s.load_tool, steps,
                   fmt_seconds(s.elapsed_s)));
  line(
      "The knee is the concurrency (connections with a request in flight) past which more connections add latency, "
      "not throughput.");
  for (const ProcsRun& r : s.runs) {
    if (!r.analysis) {
      line(fmt::format("  {}: {}", procs_name(r), r.analysis.error().message()));
      continue;
    }
    const Ladder& l = *r.analysis;
    const Comparison c = compare(r);
    std::string measured = l.knee_95.found
                               ? fmt::format("{:.1f}", std::isfinite(l.knee_95.interpolated) ? l.knee_95.interpolated
                                                                                             : l.knee_95.concurrency)
                               : "none";
    std::string predicted = std::isfinite(r.prediction.knee)
                                ? fmt::format("predicted {:.1f} (X_max {:.0f}/s x R0 {}, binding term {})",
                                              r.prediction.knee, r.prediction.x_max, fmt_seconds(r.prediction.r0_s),
                                              r.prediction.binding.empty() ? "?" : r.prediction.binding)
                                : "no prediction (" + r.prediction.error + ")";
    line(fmt::format("  {}: peak {:.0f}/s at N={}; knee measured {} (95% of peak), {}{}", procs_name(r),
                     l.peak_throughput, l.peak_concurrency, measured, predicted,
                     c.ok ? fmt::format(": error {:+.1f}%", c.error_pct) : ""));
    if (c.ok && std::isfinite(c.predicted_95))
      line(fmt::format("    the same model's 95% point (mean-value analysis): {:.0f}, error {:+.1f}%", c.predicted_95,
                       c.error_95_pct));
    if (!c.caveat.empty()) line("    but " + c.caveat);
    if (!c.bounds_note.empty()) line("    " + c.bounds_note);
    if (!c.x_max_note.empty()) line("    " + c.x_max_note);
    line(fmt::format("    p99 stays under the {} SLO at >= 95% of peak up to N={}", fmt_seconds(s.slo_s),
                     l.knee_slo.found ? std::to_string(l.knee_slo.concurrency) : std::string("(no such step)")));
  }
  if (s.recommendation.found) {
    const ProcsRun* best = nullptr;
    for (const auto& r : s.runs)
      if (r.procs == s.recommendation.procs && r.analysis) best = &r;
    std::string conc;
    if (best && best->analysis->knee_slo.found && best->analysis->knee_95.found && !best->analysis->peak_at_end)
      conc = fmt::format(", and a concurrency limit between N={} (the knee) and N={} (the SLO's edge)",
                         best->analysis->knee_95.concurrency, best->analysis->knee_slo.concurrency);
    if (s.runs.size() > 1)
      line(fmt::format("Set: {} processor{}{} ({}).", s.recommendation.procs, s.recommendation.procs == 1 ? "" : "s",
                       conc, s.recommendation.how));
    else if (!conc.empty())
      line(fmt::format("Set: a concurrency limit between N={} (the knee) and N={} (the SLO's edge).",
                       best->analysis->knee_95.concurrency, best->analysis->knee_slo.concurrency));
  }
  for (const auto& n : s.notes) line("note: " + n);
  line(fmt::format("Report: {}/report.md, data: {}/sweep.json{}", out_dir, out_dir,
                   s.plots.empty() ? ", no plots (" + s.plots_note + ")"
                                   : fmt::format(", plots: {}/{}", out_dir, fmt::join(s.plots, ", " + out_dir + "/"))));
  return m;
}

void write_plots(Sweep& s, const std::string& dir, const std::string& gnuplot) {
  if (gnuplot.empty()) {
    s.plots_note = "gnuplot is not installed (apt-get install gnuplot-nox)";
    return;
  }
  const fs::path abs = fs::absolute(dir);
  double xmin = 1e18, xmax = 0, ymin = 1e18, ymax = s.slo_s * 1e3;  // y: p99 in ms, the SLO in view
  bool any = false;
  for (const ProcsRun& r : s.runs) {
    for (const Step& st : r.steps) {
      xmin = std::min<double>(xmin, st.concurrency);
      xmax = std::max<double>(xmax, st.concurrency);
      for (double v : {st.p50_s, st.p99_s}) {
        if (std::isfinite(v) && v > 0) ymin = std::min(ymin, v * 1e3), ymax = std::max(ymax, v * 1e3);
      }
      any = true;
    }
    // The predicted knee in view too, so that a short ladder shows how far from it it stayed.
    if (std::isfinite(r.prediction.knee) && r.prediction.knee >= 1) {
      xmin = std::min(xmin, r.prediction.knee);
      xmax = std::max(xmax, r.prediction.knee);
    }
  }
  if (!any) {
    s.plots_note = "no steps to plot";
    return;
  }
  const double lo = xmin / 1.3, hi = std::max(xmax * 1.3, xmin * 2);
  std::string tp, lat;  // the two plot commands' parts
  std::string arrows_tp, arrows_lat;
  int arrow = 1;
  for (size_t i = 0; i < s.runs.size(); i++) {
    const ProcsRun& r = s.runs[i];
    const std::string color = kColors[i % std::size(kColors)];
    const std::string name = procs_name(r);
    const fs::path data = abs / fmt::format("steps-{}.dat", r.procs);
    {
      std::ofstream f(data);
      f << "# concurrency throughput_per_s p50_ms p99_ms p99_9_ms\n";
      std::vector<Step> steps = r.steps;
      std::sort(steps.begin(), steps.end(), [](const Step& a, const Step& b) { return a.concurrency < b.concurrency; });
      for (const Step& st : steps)
        f << fmt::format("{} {:.3f} {} {} {}\n", st.concurrency, st.throughput,
                         std::isfinite(st.p50_s) ? fmt::format("{:.4f}", st.p50_s * 1e3) : "NaN",
                         std::isfinite(st.p99_s) ? fmt::format("{:.4f}", st.p99_s * 1e3) : "NaN",
                         std::isfinite(st.p999_s) ? fmt::format("{:.4f}", st.p999_s * 1e3) : "NaN");
    }
    auto sep = [](std::string& x) {
      if (!x.empty()) x += ", \\\n     ";
    };
    sep(tp);
    tp += fmt::format("{} using 1:2 with linespoints lw 2 pt 7 ps 1.1 lc rgb \"{}\" title \"{}, measured\"",
                      gp_quote(data.string()), color, name);
    sep(lat);
    lat += fmt::format("{} using 1:4 with linespoints lw 2 pt 7 ps 1.1 lc rgb \"{}\" title \"{}, p99\"",
                       gp_quote(data.string()), color, name);
    sep(lat);
    lat += fmt::format("{} using 1:3 with linespoints lw 1 dt 3 pt 1 lc rgb \"{}\" title \"{}, p50\"",
                       gp_quote(data.string()), color, name);
    if (r.analysis && r.analysis->usl) {
      const UslFit& f = *r.analysis->usl;
      sep(tp);
      tp += fmt::format(
          "{:.9g}*x/(1+{:.9g}*(x-1)+{:.9g}*x*(x-1)) with lines dt 2 lw 1.5 lc rgb \"{}\" title "
          "\"{}, USL fit (σ={:.3g}, κ={:.2g}, R²={:.3f})\"",
          f.lambda, f.sigma, f.kappa, color, name, f.sigma, f.kappa, f.r2);
    }
    if (r.analysis && r.analysis->knee_95.found) {
      const Knee& k = r.analysis->knee_95;
      const double kx = std::isfinite(k.interpolated) ? k.interpolated : k.concurrency;
      const fs::path kd = abs / fmt::format("knee-{}.dat", r.procs);
      std::ofstream(kd) << fmt::format("{} {}\n", kx, kPeakFraction * r.analysis->peak_throughput);
      sep(tp);
      tp += fmt::format(
          "{} using 1:2 with points pt 6 ps 3 lw 2 lc rgb \"{}\" title \"{}, measured knee (95% of "
          "peak): {:.1f}{}\"",
          gp_quote(kd.string()), color, name, kx, r.analysis->peak_at_end ? " (a lower bound: still rising)" : "");
    }
    if (const BoundsInputs p = bounds_inputs(r);
        std::isfinite(p.r0_s) && std::isfinite(p.x_max) && p.r0_s > 0 && p.x_max > 0) {
      // The closed system's bounds from the prediction's inputs: the measurement lies between them, and which one it
      // follows says why the knee is or is not where N* puts it (analysis.h, closed_bounds).
      sep(tp);
      tp += fmt::format(
          "(x / {0:.9g} < {1:.9g} ? x / {0:.9g} : {1:.9g}) with lines lw 1.2 dt 3 lc rgb \"{2}\" title "
          "\"{3}, optimistic bound min(N/R0, X_max measured): none queue\"",
          p.r0_s, p.x_max, color, name);
      sep(tp);
      tp += fmt::format(
          "x / ({0:.9g} + (x - 1) / {1:.9g}) with lines lw 1.2 dt (8,4,2,4) lc rgb \"{2}\" title "
          "\"{3}, pessimistic bound N/(R0 + (N−1)/X_max measured): each waits for all\"",
          p.r0_s, p.x_max, color, name);
    }
    if (std::isfinite(r.prediction.knee_95) && std::isfinite(r.prediction.x_max)) {
      // The prediction's 95% point, where the measured knee's open circle should sit if the model holds.
      const fs::path pd = abs / fmt::format("predicted-95-{}.dat", r.procs);
      std::ofstream(pd) << fmt::format("{} {}\n", r.prediction.knee_95, kPeakFraction * r.prediction.x_max);
      sep(tp);
      tp += fmt::format(
          "{} using 1:2 with points pt 4 ps 2.5 lw 2 lc rgb \"{}\" title \"{}, predicted 95% point (mean-value "
          "analysis of the probe's R0 and X_max): {:.0f}\"",
          gp_quote(pd.string()), color, name, r.prediction.knee_95);
    }
    if (std::isfinite(r.prediction.knee)) {
      const double k = r.prediction.knee;
      const std::string label = fmt::format("predicted knee, {}: {:.1f}", name, k);
      if (k >= lo && k <= hi) {
        for (std::string* a : {&arrows_tp, &arrows_lat}) {
          *a += fmt::format("set arrow {} from {}, graph 0 to {}, graph 1 nohead dt 4 lw 2 lc rgb \"{}\"\n", arrow, k,
                            k, color);
          // Beside the line, on whichever side has room (x is a log scale).
          const bool right_half = std::log(k / lo) / std::log(hi / lo) > 0.55;
          *a += fmt::format("set label {} {} at {}, graph {:.2f} {} offset {},0 textcolor rgb \"{}\"\n", arrow,
                            gp_quote(label), k, 0.96 - 0.06 * static_cast<double>(i), right_half ? "right" : "left",
                            right_half ? "-0.6" : "0.6", color);
        }
        arrow++;
      }
    }
  }
  const std::string title =
      fmt::format("tern-echo GET {} ({} closed loop; server CPUs {}, load CPUs {})", s.path, s.load_tool,
                  s.server_cpus.empty() ? "any" : s.server_cpus, s.load_cpus.empty() ? "any" : s.load_cpus);
  std::string gp;
  // The key goes below the plot, one entry a row, in a bottom margin sized to it (gnuplot's own "below" lets the
  // x label and the key's box overlap).
  auto titles = [](const std::string& plot) {
    size_t n = 0;
    for (size_t at = plot.find(" title "); at != std::string::npos; at = plot.find(" title ", at + 1)) n++;
    return n;
  };
  const size_t rows = std::max(titles(tp), titles(lat));
  const int height = 620 + 20 * static_cast<int>(rows);
  auto key_at_bottom = [&](size_t n) {
    const double h = height;
    return fmt::format(
        "set key at screen 0.5, screen {:.4f} center bottom vertical maxcols 1 box\n"
        "set bmargin at screen {:.4f}\n",
        8 / h, (52 + 8 + 12 + 19 * static_cast<double>(n)) / h);
  };
  gp += fmt::format("set terminal pngcairo noenhanced size 1200,{} font \"DejaVu Sans,11\"\n", height);
  gp += "set encoding utf8\nset grid\nset logscale x 2\nset format x \"%g\"\nset samples 600\n";
  gp += fmt::format("set xrange [{}:{}]\n", lo, hi);
  gp += "set xlabel \"concurrency N (connections, one request each in flight)\"\n";
  gp += fmt::format("set output {}\n", gp_quote((abs / "throughput.png").string()));
  gp += fmt::format("set title {}\n", gp_quote("Throughput vs concurrency — " + title));
  gp += "set ylabel \"throughput (ok replies/s)\"\nset yrange [0:*]\n";
  gp += key_at_bottom(titles(tp));
  gp += arrows_tp;
  gp += "plot " + tp + "\n";
  gp += "unset arrow\nunset label\n";
  gp += fmt::format("set output {}\n", gp_quote((abs / "p99.png").string()));
  gp += fmt::format("set title {}\n", gp_quote("p99 (and p50) latency vs concurrency — " + title));
  gp += "set ylabel \"latency (ms, log scale)\"\nset logscale y\n";
  gp += key_at_bottom(titles(lat));
  {
    // Log-scale tics at 1, 2, 5 per decade, labelled (gnuplot labels only the decades, too few over a short range).
    const double y0 = ymin / 1.5, y1 = ymax * 1.5;
    std::string tics;
    for (double d = std::pow(10.0, std::floor(std::log10(y0))); d <= y1; d *= 10)
      for (double m : {1.0, 2.0, 5.0})
        if (d * m >= y0 && d * m <= y1) tics += fmt::format("{}\"{:g}\" {:g}", tics.empty() ? "" : ", ", d * m, d * m);
    gp += fmt::format("set yrange [{:g}:{:g}]\n", y0, y1);
    if (!tics.empty()) gp += "set ytics (" + tics + ")\n";
  }
  gp += arrows_lat;
  gp += fmt::format("set arrow {} from graph 0, first {} to graph 1, first {} nohead dt 3 lw 2 lc rgb \"#555555\"\n",
                    arrow, s.slo_s * 1e3, s.slo_s * 1e3);
  gp += fmt::format("set label {} {} at graph 0.01, first {} offset 0,0.7 textcolor rgb \"#555555\"\n", arrow,
                    gp_quote(fmt::format("SLO: p99 {}", fmt_seconds(s.slo_s))), s.slo_s * 1e3);
  gp += "plot " + lat + "\n";
  const fs::path script = abs / "plots.gp";
  std::ofstream(script) << gp;
  auto p = Process::start({gnuplot, script.string()}, {}, (abs / "gnuplot.log").string());
  if (!p) {
    s.plots_note = "gnuplot did not run: " + p.error().message();
    return;
  }
  auto st = p->wait_for(std::chrono::seconds(60));
  if (!st) {
    s.plots_note = "gnuplot ran past 60 s: stopped";
    return;
  }
  for (const char* png : {"throughput.png", "p99.png"}) {
    std::error_code ec;
    if (fs::file_size(abs / png, ec) > 0 && !ec) s.plots.push_back(png);
  }
  if (*st != 0 || s.plots.size() != 2) {
    std::ifstream f(abs / "gnuplot.log");
    std::string log((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    s.plots_note = fmt::format("gnuplot {} (plots.gp, gnuplot.log): {}", describe_status(*st), log.substr(0, 400));
  }
}

Result<void> write_outputs(Sweep& s, const std::string& dir, const std::string& gnuplot) {
  write_plots(s, dir, gnuplot);
  {
    std::ofstream f(fs::path(dir) / "sweep.json");
    f << to_json(s).dump(2) << "\n";
    if (!f) return errno_error(errno, "write " + dir + "/sweep.json");
  }
  std::ofstream f(fs::path(dir) / "report.md");
  f << markdown(s);
  if (!f) return errno_error(errno, "write " + dir + "/report.md");
  return {};
}

}  // namespace tern::sweep
