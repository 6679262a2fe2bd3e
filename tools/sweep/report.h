// tools/sweep/report.h: a finished sweep as data, and what tern-sweep writes of it: sweep.json, report.md, the gnuplot
// plots (throughput.png, p99.png) and the short summary on stdout.
//
//   Sweep s = ...;                               // filled by main.cc as the steps run
//   finish(s);                                   // analysis per processor count, the recommendation
//   write_outputs(s, "sweep-20250101-120000");   // sweep.json, report.md, plots (skipped, and said, without gnuplot)
//   fmt::print("{}", summary_text(s));
//
// The prediction is tern-capacity's knee N* = X_max × R0 from a short unloaded probe of the same server; the measured
// knee it is compared with is (b), the smallest concurrency reaching 95% of the peak (interpolated between the two
// steps around the 95% line), since that is what N* estimates: the concurrency at which the CPU saturates.
#pragma once

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "tools/sweep/analysis.h"
#include "tools/sweep/run.h"

namespace tern::sweep {

struct Prediction {
  bool ran = false;
  std::string error;     // why there is none
  double knee = NAN;     // knee.predicted: N* = X_max × R0
  double knee_95 = NAN;  // knee.predicted_95: where the same model's throughput reaches 95% of X_max
  double x_max = NAN;
  double r0_s = NAN;
  double cpu_per_request_s = NAN;  // the probe's
  int cpu_connections = 0;         // the connections it measured that at
  double n = NAN;                  // the formula's minimum over its terms
  std::string binding;             // the binding term
  std::vector<std::string> problems;
  std::string raw_path;  // tern-capacity's output, kept
};

// tern-capacity --json's object.
Result<Prediction> parse_capacity_json(std::string_view text);

struct ProcsRun {
  int procs = 0;  // 0: a server tern-sweep did not start (its processors as its metrics say, if they do)
  Prediction prediction;
  std::vector<Step> steps;
  Result<Ladder> analysis = make_error("not analyzed");
  std::string server_log;
};

struct Comparison {
  bool ok = false;
  double predicted = NAN, measured = NAN, error_pct = NAN;  // (predicted − measured) / measured
  double predicted_95 = NAN, error_95_pct = NAN;            // the same for the prediction's knee_95
  std::string why;                                          // when not ok
  std::string caveat;                                       // when the measured knee is only a bound
  // Where the measured steps lie between the closed system's bounds (analysis.h, closed_bounds): the median position
  // over the steps, and what it means for the prediction.
  double median_position = NAN;
  std::string bounds_note;
  std::string x_max_note;  // when the measured peak is well above the predicted X_max
};
// The bounds' median position is taken over the steps up to this many times N*.
inline constexpr double kBoundsUpTo = 4;
Comparison compare(const ProcsRun& r);

// What the bounds are computed from: R0 from the probe, and X_max = processors / the median of the server's CPU per
// request over the steps (its metrics, nanoseconds, measured under the load itself) where the steps have it, else
// the probe's X_max (/proc ticks over a short run). The bounds ask whether requests queued, so they take the better
// measured ceiling; the prediction keeps its own.
struct BoundsInputs {
  double r0_s = NAN, x_max = NAN;
  std::string x_max_source;
  bool measured = false;  // x_max from the steps, not the probe
};
BoundsInputs bounds_inputs(const ProcsRun& r);

struct Sweep {
  std::string command_line;
  MachineInfo machine;
  std::string started_at;  // local time
  double elapsed_s = 0;
  double loadavg_start = NAN, loadavg_end = NAN;
  std::string load_tool, url, path;
  std::string server;                  // "started: tern-echo ..." or the given HOST:PORT
  std::string server_cpus, load_cpus;  // as given ("" unpinned)
  double step_s = 0, warmup_s = 0, slo_s = 0;
  int refine = 0;
  int niceness = 0;  // of the children (--nice)
  std::vector<int> ladder;
  std::vector<ProcsRun> runs;
  Recommendation recommendation;
  std::vector<std::string> notes;  // anything that went wrong on the way
  std::vector<std::string> plots;  // written
  std::string plots_note;          // why there are none
};

// Analyses every run and picks the processor count.
void finish(Sweep& s);

nlohmann::json to_json(const Sweep& s);
std::string markdown(const Sweep& s);
std::string summary_text(const Sweep& s, const std::string& out_dir);
// The data files, the gnuplot script and its PNGs in dir; fills s.plots or s.plots_note. Not an error without gnuplot.
void write_plots(Sweep& s, const std::string& dir, const std::string& gnuplot);
// sweep.json and report.md (plots first, so the report can name them).
Result<void> write_outputs(Sweep& s, const std::string& dir, const std::string& gnuplot);

// "1.2 ms", "350 us", "2.10 s".
std::string fmt_seconds(double s);

}  // namespace tern::sweep
