// runtime/controller/policy.h: the controller's policies, which turn a Sample into a processor count: static, quota
// (the default), threshold, hill and latency; the quota's rounding (ceil, floor, auto).
//
//   PolicyConfig pc;                              // defaults below; Config fills rounding, latency target, ...
//   auto p = make_policy("hill", pc);             // Result: an unknown name is an error listing the valid ones
//   if (!p) return p.error().wrap("policy");
//   (*p)->reset(sched.procs());                   // at start, and after the controller changed procs itself
//   int target = (*p)->decide(sample);            // each tick; the controller clamps and applies with hysteresis
//   log("%s", (*p)->explain().c_str());           // one line: why that target
//
//   int procs_max = quota_procs(quota_cores, cpus, Rounding::kCeil);  // min(cpus, ceil(quota)), the quota ceiling
//
// Every policy is a pure function of the Samples it has been given and its own state: no clock, no I/O, no global.
// That is what lets a table of Samples test it completely, and a shadow policy run on the very samples the active
// one saw. Rejected: policies that read the cgroup files or the scheduler themselves (each would sample at its own
// moment, a shadow would see other numbers than the policy it shadows, and a test would need a machine).
//
// What every policy promises, whatever the Sample holds:
//   - decide() returns at least 1, and never crashes on NaN, +-Inf, zero or negative inputs. A non-finite double is
//     "unknown" (sample.h), never a number: each policy says below what it does without it (mostly: keep the count).
//     A count that cannot be one (procs < 1, cpus < 0, procs_max < 1) is unknown too.
//   - quota_cores is the effective quota: the controller subtracts --quota-reserve (automaxprocs' Reserved option,
//     cores kept for sidecars) before the Sample reaches a policy, so no policy knows about the reserve. Rejected:
//     subtracting it here (every policy would have to remember to, and a shadow policy could disagree with the
//     active one on the quota itself). A quota of 0 or below (cgroup v1's -1 means unlimited) is "no quota".
//   - Policies respect the quota where this file says so; the controller still clamps their target to
//     [procs_min, procs_max], and procs_max already holds min(cpus, quota ceiling) unless the user raised it.
//   - Counts of ticks assume the controller's default tick, 100 ms (ControllerConfig::interval_ns): a policy cannot
//     read a clock, and interval_s is one more input that may be garbage. At a longer interval every wait below is
//     proportionally longer in seconds.
//   - A policy asks for the same target on consecutive ticks until the count moves, and attributes what it measures
//     to Sample::procs (the count that ran), never to its own last target: the controller applies a load-driven change
//     only when asked twice in a row, refuses a quick reversal, and rolls back, so asked and applied often differ.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"
#include "runtime/controller/sample.h"

namespace tern::controller {

// --- Rounding a fractional quota to processors ---

// ceil: Go's rule since 1.25: 1.5 cores -> 2 Ps, which can use 2 cores' worth of CPU per period and so throttles
//   under load (the issue measured p99 39-40 ms with 2 Ps on a
//   1-core quota against 6.5-8.4 ms with 1).
// floor: what golang/go#76835 asks for, and uber-go/automaxprocs' rounding: 1.5 -> 1, never throttled by the Ps alone,
// but half
//   a core of quota unused; at least 1 (a quota of 0.5 still gets one P).
// auto (the default): starts at ceil and steps down to floor while the cgroup throttles under load, back up when it
//   has stopped throttling for a while (QuotaPolicy below). The two counts it chooses between are ceil and floor;
//   it never goes below floor: there the Ps cannot use the quota even in full, so throttling comes from threads
//   without a P (system calls, the poller, this controller), which fewer Ps do not cure.
enum class Rounding { kCeil, kFloor, kAuto };

// "ceil", "floor" or "auto"; anything else is an error naming the three.
Result<Rounding> parse_rounding(std::string_view s);
std::string_view to_string(Rounding r);

// Two quotas closer than this are the same quota (cores): cpu.max counts quota in microseconds per period and a period
// is at most 1 s (the kernel's max_cfs_quota_period), so 1e-6 cores is below its resolution. Without it, a 2.2-core
// quota less a 0.2 reserve is 2.0000000000000004 cores, and ceil makes that 3.
inline constexpr double kQuotaEpsilon = 1e-6;

// Processors for a quota of `quota_cores` on `cpus` CPUs: min(cpus, rounded quota), at least 1. kAuto rounds up (it
// starts at ceil). No quota (non-finite, or <= 0) gives cpus; cpus <= 0 (unknown) leaves the rounded quota alone.
// With neither known it returns 0, "unknown": the caller picks (the quota policy takes procs_max). The startup
// default (Config::default_procs) and the controller's procs_max are quota_procs(quota, cpus, Rounding::kCeil).
int quota_procs(double quota_cores, int cpus, Rounding r);

// --- Configuration ---

struct PolicyConfig {
  // static: the fixed count; 0 = the count at start (the last reset()).
  int static_procs = 0;
  // quota: how a fractional quota becomes processors (--quota-rounding, TERN_QUOTA_ROUNDING).
  Rounding rounding = Rounding::kAuto;
  // threshold: the published dynamic rule's bounds (../shared/CAPACITY.md): above high -> procs_max, below low ->
  // procs_max / 2. hill and latency also read low as "the load has dropped" and high as "the Ps are saturated".
  double threshold_high = 0.85;
  double threshold_low = 0.30;
  // latency: the target for scheduling-latency p99 and the oldest runnable fiber's wait (--latency-target).
  double latency_target_s = 0.001;
  // auto rounding and hill: "the cgroup throttles" is throttled_ratio at or above this (periods throttled / periods).
  // 0.25: the kubernetes-mixin CPUThrottlingHigh alert fires at 25% of periods throttled, and it separates the issue's
  // measurements on a 1-core quota (1 P: 9 of 50 periods, 18%, the good choice; 2 Ps: 47-49 of 50, 96%). Rejected:
  // 10%, which the 1-P configuration, the right one, already exceeds (threads without a P use quota too).
  double throttled_ratio = 0.25;
  // hill: the smallest relative throughput gain that counts as real. A move up must gain more than
  // max(hill_noise, twice the standard error of the difference of the two windows' means: ~95% confidence); a move
  // down is kept unless it loses more. 0.05: a processor more than 20 must be worth a whole processor's share to be
  // kept; the standard-error term takes over on a noisier load (.NET scales its wave the same way, to a target
  // signal-to-noise ratio, TargetSignalToNoiseRatio 3.0).
  double hill_noise = 0.05;
  // hill: ticks averaged per measurement window (3: at 100 ms ticks one window is 0.3 s, so a probe costs about
  // 0.4 s with the controller's two-tick confirmation, and the ten or so probes of a search fit the 5 s: on
  // the tests' curve it is within 95% of the best after 9-15 ticks alone, 12-26 under the controller's hysteresis;
  // fewer than 3 samples give no usable estimate of their spread).
  int hill_window = 3;
};

// --- Policies ---

class Policy {
 public:
  virtual ~Policy();
  // "static", "quota", "threshold", "hill", "latency": a literal (NUL-terminated, lives forever).
  virtual std::string_view name() const = 0;
  // The processor count this policy wants after seeing `s`: at least 1.
  virtual int decide(const Sample& s) = 0;
  // The controller set the count to `procs` for its own reasons (start, rollback, a pin): forget what was pending.
  // The default does nothing.
  virtual void reset(int procs);
  // One line: why the last decision (TERN_DEBUG=controller logs it beside the sample). Empty before any decision.
  virtual std::string explain() const;
  // Whether the controller's rollback may judge this policy's load-driven changes by throughput. quota and static say
  // no: their counts answer the limits (auto rounding steps down because the cgroup throttles, trading throughput
  // for latency on purpose), so a throughput drop after such a step is the point, not a regression.
  virtual bool rollback_by_throughput() const { return true; }
  // Whether the policy paces its own changes, so that the controller applies them at once: hill measures every count
  // it tries over a window and returns from a failed probe on purpose, which the controller's two-tick confirmation
  // and one-second reversal hold (meant for threshold rules that flap) would only delay.
  virtual bool paces_itself() const { return false; }
};

// name: static | quota | threshold | hill | latency. An unknown name, or a PolicyConfig out of range (thresholds not
// 0 < low < high <= 1, a latency target that is not a positive finite number, ...), is an error saying which.
Result<std::unique_ptr<Policy>> make_policy(std::string_view name, const PolicyConfig& cfg);

// The valid names, for help text and errors: "static, quota, threshold, hill, latency".
std::string_view policy_names();

// What the policies are, and why, in one place; their state lives in policy.cc.
//
// static: PolicyConfig::static_procs, always (0: the count given to reset(), else the sample's). An explicit
//   --procs N / TERN_PROCS=N means static, as an explicit GOMAXPROCS does in Go.
//
// quota (the default): min(cpus, rounded quota), followed live. No quota -> cpus; cpus unknown -> procs_max (and the
//   rounded quota below it); nothing known -> the current count. Auto rounding (QuotaPolicy in policy.cc):
//   - steps down from ceil to floor when, over kAutoWindow ticks at the count it asked for, the mean throttled_ratio
//     is at or above PolicyConfig::throttled_ratio and the mean utilization at or above kAutoLoaded;
//   - steps back up after kAutoCleanTicks consecutive ticks below the throttle ratio, doubling that wait after each
//     step up that met throttling again in its first two windows, up to kAutoCleanTicksMax: at floor the load itself
//     is capped, so "stopped throttling" can only be learnt by trying ceil, and each failed try costs at least the
//     controller's one-second reversal hold of throttling. The back-off bounds that cost in a steady state to
//     ~1 s per minute; a quota change starts over at ceil with the short wait.
//   - unknown throttled_ratio or utilization (no periods, no cpu.stat): neither step, nor a clean tick.
//   Rejected: comparing p99 at the two counts (the goal) directly: the policy sees scheduling latency, not
//   the application's, and throttling is what makes the higher count's p99 worse in the first place.
inline constexpr int kAutoWindow = 5;           // 0.5 s: 5 CFS periods of 100 ms, so one throttled period moves it 20%
inline constexpr double kAutoLoaded = 0.5;      // P utilization: the Ps alone can then exhaust 2/3 of a 1.5-core quota
inline constexpr int kAutoCleanTicks = 30;      // 3 s: three times the controller's reversal hold (kReversalHoldNs)
inline constexpr int kAutoCleanTicksMax = 600;  // 60 s: a failed probe (~1 s throttled) costs under 2% of the time
//
// threshold: the published dynamic rule (../shared/CAPACITY.md), with max = procs_max (the article's CPU count):
//   utilization > threshold_high and procs < max -> max; utilization < threshold_low and procs > max/2 -> max/2
//   (integer division, at least 1); else keep. Unknown utilization -> keep. The article re-evaluates every >= 10 s;
//   here the controller's interval and its two-tick confirmation set the pace (--controller-interval).
//
// hill: hill climbing on Sample::throughput (the application's work counter, else fibers finished), after .NET's
//   thread pool (HillClimbing.cs) without its faults. .NET moves the thread count along a sine wave of small
//   amplitude and reads the gain from the throughput's Fourier component at the wave's frequency; it changes by at
//   most MaxChangePerSecond (4) and its starvation rule adds one thread per 500 ms, so reaching 16 from 1 takes
//   seconds to tens of seconds, noise walks it upward, and it never gives threads back while they keep finding
//   work. Here instead (HillPolicy in policy.cc):
//   - a line search with expanding steps: measure the mean throughput over hill_window ticks at the current count,
//     probe step k away, keep the move if it pays, and double k while moves keep paying (1, 2, 4, 8: from 1 to 16
//     in four probes); after a move that does not pay, halve k and try again from the last good count, down to
//     k = 1; then try the other direction once. The halving probes go straight from the failed count toward the
//     last good one (16 -> 12 -> 10 -> 9 after 8 -> 16 failed), not back to it first: each needless turn would
//     cost a window. Down, one probe gives up at most a quarter of the count (9 -> 7, not 9 -> 1). Each probe costs
//     hill_window ticks: the controller applies a change at the end of a tick, so the first sample at the new count
//     ran entirely at it. hill paces itself (Policy::paces_itself): the controller applies its changes at once,
//     without the two-tick confirmation and reversal hold it puts on the other policies.
//   - leans to fewer: a move up must gain more than max(hill_noise, 2 standard errors of the difference of the two
//     windows); a move down is kept unless it loses more than that, to the count it left and to the best window
//     since the load last changed (so successive searches cannot each give up a little and ratchet down a curve).
//     A flat curve therefore drifts down to 1.
//   - never raises while throttled_ratio >= PolicyConfig::throttled_ratio, and probes down then; never passes
//     min(ceil(quota), procs_max) (nor the current count when both are unknown).
//   - once settled, it keeps measuring windows at its count against the window the search ended on (not the
//     previous window: one that straddles a step in load is too spread to differ from anything). A difference past
//     twice the margin is a step in load (or a drift that added up to one): a new search at once, in its direction.
//     Otherwise, after a wait (kHillProbeWait ticks, doubling after each search that did not move, up to
//     kHillProbeWaitMax; only kHillProbeWait while utilization >= threshold_high with fibers queued and room to
//     grow: a load that rose at a count whose processors were already saturated shows in no throughput window) it
//     probes: downward when the cgroup throttles or utilization < threshold_low (the load
//     dropped: the best-window reference is dropped too), upward when utilization >= threshold_high and there is
//     room, else downward (lean to fewer).
//   - unknown (or negative) throughput: that tick is skipped (not measured) and the last decision holds.
//   - reset(procs) to the count it was probing from is read as "that probe failed" (the controller rolled it back),
//     and the search goes on from there; any other count starts over there.
//   Rejected: .NET's wave (it needs many samples per decision to read a phase out of noise: seconds at a 100 ms
//   tick), and steps of one (16 probes of ~0.4 s from 1 to 16 miss the 5 s goal).
inline constexpr int kHillProbeWait = 10;     // 1 s settled before a timed re-probe
inline constexpr int kHillProbeWaitMax = 40;  // 4 s: a step in load that moves only the optimum is found within 5 s
// Asked for a count the controller has not applied for this long: start over from the count that runs. 3 s: longer
// than the controller's reversal hold (1 s) and its hold after a rollback (kRollbackHold, 20 ticks), so those are
// waited out rather than taken for a refusal; a clamp to procs_max is seen at once (the ceiling).
inline constexpr int kHillStuckTicks = 30;
//
// latency: queueing delay, after Caladan (Fried et al., OSDI 2020), whose IOKernel grants a core to a runtime as
//   soon as a queued packet or thread has waited across two of its polls, and takes it back when the core's kthread
//   finds no work and parks. Here, at the controller's 100 ms tick:
//   - grow while sched_latency_p99_s or oldest_runnable_s exceeds latency_target_s and procs < min(ceil(quota),
//     procs_max): by half the current count, at least one (1, 2, 3, 4, 6, 9, 13, 16: seven steps, about 1.4 s with
//     the controller's two-tick confirmation);
//   - shrink by one after kLatencyIdleTicks consecutive ticks with a P idle (idle_procs >= 1) or utilization below
//     threshold_low, while both latencies are under half the target;
//   - otherwise keep (between target/2 and target is the dead band that keeps it from flapping).
//   Grow faster than shrink: a latency above target is a miss now, while a surplus P costs little (an idle M parks;
//   at most half the busy Ps spin), so errors are corrected fast one way and cautiously the other, as Caladan
//   grants a core at once but reclaims it only from a kthread that found nothing to do. Unknown p99 (no samples)
//   or oldest age: that signal neither grows nor blocks a shrink. Rejected: doubling (overshoots by up to twice the
//   count needed; latency says "more", not "how many more").
// 0.5 s of idleness: one quiet tick between bursts does not shed a P, and coming down from 16 to 1 takes about 8 s
// (the issue asks only that it come down).
inline constexpr int kLatencyIdleTicks = 5;

}  // namespace tern::controller
