// tools/sweep/analysis.h: what tern-sweep makes of a concurrency ladder, as pure functions of the steps it measured
// (so the tests feed them synthetic ladders): the peak, the knee two ways, the Universal Scalability Law fit and the
// processor count to recommend.
//
//   std::vector<Step> steps = ...;                       // one per concurrency, one processor count
//   Result<Ladder> a = analyze(steps, 0.100);            // SLO: p99 under 100 ms
//   a->knee_slo;     // (a) the issue's: the highest concurrency with p99 under the SLO and >= 95% of peak throughput
//   a->knee_95;      // (b) the validation target's: the smallest concurrency reaching 95% of peak throughput
//   a->usl;          // X(N) = λN / (1 + σ(N−1) + κN(N−1)) by least squares, σ, κ >= 0
//
// Two knees because they answer different questions: (b) is where adding connections stops buying throughput, what
// the capacity formula's N* = X_max × R0 predicts; (a) is how far one can go past it before the tail breaks the SLO.
// Neither is interpolated beyond the ladder: (b) is also given interpolated between the two steps that bracket the
// 95% line (throughput is close to linear in N below the knee), since a doubling ladder alone resolves it only to a
// factor of two.
//
// Bad input (no steps, every step failed, NaN throughput) is an Error saying what was wrong, never a crash; a step
// whose numbers are not finite is left out with a problem naming it.
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"

namespace tern::sweep {

struct Step {
  int procs = 0;        // the server's processors
  int concurrency = 0;  // connections, each with one request in flight (closed loop)
  double elapsed_s = 0;
  uint64_t ok = 0;
  double throughput = 0;                          // ok replies per second
  double p50_s = NAN, p99_s = NAN, p999_s = NAN;  // of the ok replies; NaN when there were none
  std::map<std::string, uint64_t> errors;         // by kind, as the load generator names them
  double cpu_per_request_s = NAN;                 // the server's CPU over the step / requests it answered
  std::string cpu_source;                         // where that came from
  // Where the CPU went: the server's CPU time over the step's wall time (1.0: one CPU's worth), and how busy the
  // CPUs it was pinned to were with anything (itself, interrupts, other processes), 0..1 (NaN: not pinned). A server
  // well below its processors while its CPUs are busy shares them with something else.
  double server_cpu_util = NAN;
  double server_cpus_busy = NAN;
  double load_cpus_busy = NAN;  // the same for the load generator's CPUs: near 100%, the load itself may be the limit
  bool refined = false;         // added between ladder steps to locate the knee
  std::string note;             // what went wrong running it, if anything

  uint64_t error_count() const;
  double error_ratio() const;  // errors / (ok + errors); 0 when nothing was sent
};

struct Knee {
  bool found = false;
  int concurrency = 0;        // a ladder step
  double interpolated = NAN;  // (b) only: where the 95% line is crossed between the bracketing steps
  std::string how;            // why this step, or why none
};

struct UslFit {
  double lambda = NAN, sigma = NAN, kappa = NAN;  // X(1) ≈ λ; contention σ; coherency κ
  double r2 = NAN;
  double n_star = NAN;  // sqrt((1 − σ) / κ): the concurrency of peak throughput; NaN when κ = 0 or σ >= 1
  std::string n_star_note;
  int points = 0;
  double eval(double n) const { return lambda * n / (1 + sigma * (n - 1) + kappa * n * (n - 1)); }
};

// Least squares over (N, X) points with N >= 1 and X >= 0 finite: a grid over (σ, κ) with λ solved in closed form,
// then Levenberg–Marquardt from the best grid point, σ and κ projected onto >= 0. Needs 3 points with distinct N and
// some nonzero X.
Result<UslFit> fit_usl(const std::vector<std::pair<double, double>>& points);

struct Ladder {
  int procs = 0;
  std::vector<Step> steps;  // by concurrency, the ones with finite numbers
  double peak_throughput = 0;
  int peak_concurrency = 0;
  bool peak_at_end =
      false;      // the peak is the ladder's last step: throughput may still rise, the knees are lower bounds
  Knee knee_slo;  // (a)
  Knee knee_95;   // (b)
  Result<UslFit> usl = make_error("not fitted");
  std::vector<std::string> problems;  // steps left out, a peak at the ladder's end, ...
};

inline constexpr double kPeakFraction = 0.95;
// A peak at the ladder's last step is a lower bound (peak_at_end) only when that step rose more than this share over
// the one before it: within it, throughput has levelled off, and the last step is the peak by noise.
inline constexpr double kPlateau = 0.02;
// A step whose errors exceed this share of its requests does not count as meeting the SLO.
inline constexpr double kSloMaxErrorRatio = 0.01;

// One processor count's steps (any order). slo_s > 0.
Result<Ladder> analyze(std::vector<Step> steps, double slo_s);

// The knees alone, over steps sorted by concurrency with peak > 0 (analyze uses them).
Knee knee_slo(const std::vector<Step>& steps, double peak, double slo_s);
Knee knee_95(const std::vector<Step>& steps, double peak);

// Concurrencies strictly between the two steps that bracket the 95% line, evenly spaced, at most `extra`: where to
// measure more to locate knee (b). Empty when there is no bracket, no integer room in it, or the throughput was still
// rising at the ladder's last step (the knee lies beyond the ladder, not between its steps).
std::vector<int> refine_points(const Ladder& l, int extra);

// The asymptotic bounds of a closed system (Lazowska et al., Quantitative System Performance, ch. 5) from the inputs
// of the predicted knee: unloaded latency r0 and peak throughput x_max (one request's CPU D = 1 / x_max, the server
// seen as one queue; the report takes x_max from the CPU per request the sweep measured, report.h). Throughput at
// concurrency N lies between
//   pessimistic  N / (r0 + (N − 1) D)    every request queues behind all the others (they move as a convoy)
//   optimistic   min(N / r0, x_max)      none queues until the CPU is saturated: the knee N* = x_max × r0 is its corner
// position: where a measured throughput lies between them, 0 at the pessimistic bound, 1 at the optimistic one (NaN
// when they coincide). A measurement near 0 misses N* for a reason N* cannot see: the requests synchronise.
struct Bounds {
  double pessimistic = NAN, optimistic = NAN, position = NAN;
};
Bounds closed_bounds(double n, double r0_s, double x_max, double measured);

struct Recommendation {
  bool found = false;
  int procs = 0;
  std::string how;
};

// The processor count with the highest peak throughput per processor among those within 95% of the best peak.
Recommendation recommend(const std::vector<Ladder>& ladders);

}  // namespace tern::sweep
