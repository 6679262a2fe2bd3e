// runtime/controller/controller.h: the controller thread, which sets the processor count from the CPU limits and the
// load while the runtime runs.
//
//   tern::Config cfg = tern::Config::from_env().value();   // TERN_POLICY=quota (default), TERN_SCHEDTRACE=1000, ...
//   tern::Runtime rt(cfg);                                 // starts the controller with the runtime
//   auto cs = rt.controller_stats();                       // target, shadow target, quota, decisions, rollbacks
//
// Every ControllerConfig::interval the thread builds a Sample (runtime/controller/sample.h) from the cgroup files
// (runtime/cgroup.h), the scheduler's counters and the process's CPU time, asks the active policy for a target
// (runtime/controller/policy.h), clamps it to [procs_min, procs_max] and applies it with hysteresis:
//   - a change the limits force (the quota, cpuset or affinity moved; procs above procs_max) applies at once: a quota
//     cut must not wait for a confirmation while the cgroup throttles;
//   - a change the load asks for applies when the policy has asked for the same direction on two ticks in a row, and
//     a change back within kReversalHold of the last one is refused: a policy sitting between two counts cannot flap.
// A shadow policy (--shadow-policy) sees the same samples and records what it would have chosen; nothing applies it.
// Rollback: for kRollbackWindow ticks after a load-driven change the thread compares throughput (and scheduling-latency
// p99) with the same number of ticks before it; a drop past rollback_drop (or p99 above both kRollbackLatencyFloor and
// twice its earlier value) reverts the change and holds the policy for kRollbackHold ticks.
//
// Rejected: a controller inside the scheduler's monitor thread (the monitor runs every 10 ms on the hot side of
// the runtime and must never block on a file read, which a cgroup file on a loaded host can); one sample per
// decision without hysteresis (a threshold policy flaps between two counts on a load at its boundary).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/result.h"
#include "runtime/cgroup.h"
#include "runtime/controller/policy.h"
#include "runtime/controller/sample.h"

namespace tern::sched {
class Sched;
}

namespace tern::controller {

// Ticks compared before and after a load-driven change for rollback (5 x 100 ms: long enough that one tick's noise
// does not decide, short enough that a bad change costs half a second).
inline constexpr int kRollbackWindow = 5;
// Ticks the policy is held (its targets ignored) after a rollback.
inline constexpr int kRollbackHold = 20;
// A latency p99 below this never triggers a rollback (sampling noise of a few microseconds is not a regression).
inline constexpr double kRollbackLatencyFloor = 0.001;
// A load-driven change that reverses the previous one is refused for this long after it.
inline constexpr int64_t kReversalHoldNs = 1'000'000'000;
// Idle stretch: after kIdleTicks ticks in a row on which the runtime was idle (processors busy under 0.1% of the
// interval, nothing runnable), ticks come kIdleStretch intervals apart until one sees work. A wakeup alone costs about
// 60 us of a core on a virtual machine (measured: a thread that only sleeps 100 ms at a time), so an idle server's
// 100 ms ticks would cost 0.1% of a core for nothing; stretched, 0.03%. While idle a quota change is followed within
// kIdleStretch intervals (400 ms by default) instead of one.
inline constexpr int kIdleTicks = 10;
inline constexpr int kIdleStretch = 4;

struct ControllerConfig {
  std::string policy = "quota";  // static | quota | threshold | hill | latency
  std::string shadow_policy;     // empty: none
  PolicyConfig policy_config;    // static count, rounding, thresholds, latency target
  int procs_min = 1;
  int procs_max = 0;  // 0: min(cpus, quota ceiling), re-resolved every tick; explicit: honoured even above that
  int64_t interval_ns = 100'000'000;
  double quota_reserve = 0;     // cores kept out of the quota (sidecars): the policies see quota - reserve
  double rollback_drop = 0.10;  // a throughput drop past this fraction after a change reverts it
  int64_t schedtrace_ns = 0;    // TERN_SCHEDTRACE: a line on stderr every this often; 0 = off
  bool debug = false;           // TERN_DEBUG=controller: each decision with its sample on stderr
  std::string fs_root = "/";    // where /proc and the cgroup mounts are (tests point it at a fixture tree)
};

// What the controller has done, for code (Runtime::controller_stats) and the schedtrace line.
struct ControllerStats {
  bool running = false;  // the thread runs (false: static policy without shadow or schedtrace)
  std::string policy, shadow_policy;
  int procs = 0;
  int target = 0;         // the active policy's last target, clamped
  int shadow_target = 0;  // the shadow policy's last target, clamped (0: no shadow)
  int procs_min = 0, procs_max = 0;
  double quota_cores = kUnknown;  // NaN: no quota
  int cpus = 0;
  uint64_t ticks = 0;
  uint64_t decisions_up = 0, decisions_down = 0;
  // The same by the policy that made them (the active policy can change: Controller::set_policy).
  struct Decisions {
    uint64_t up = 0, down = 0;
  };
  std::map<std::string, Decisions> decisions_by_policy;
  uint64_t shadow_disagreements = 0;  // ticks where the shadow's target differed from the active one's
  int64_t shadow_distance_sum = 0;    // summed |shadow - target| over ticks
  uint64_t rollbacks = 0;
  std::map<std::string, uint64_t> errors;  // by reason (runtime/cgroup.h's reason names)
  double tick_cpu_s = 0;                   // the controller thread's own CPU time
  Sample last;                             // the last sample
};

class Controller {
 public:
  // Starts the thread (unless there is nothing for it to do). policy must be valid (make_policy succeeded).
  static Result<std::unique_ptr<Controller>> start(sched::Sched& sched, ControllerConfig cfg);
  ~Controller();  // stops and joins the thread
  Controller(const Controller&) = delete;
  Controller& operator=(const Controller&) = delete;

  ControllerStats stats() const;
  // An explicit processor count from the program (Runtime::set_procs): the controller stops changing it, as an
  // explicit GOMAXPROCS call stops Go's updates. The shadow policy and schedtrace go on.
  void pin(int procs);
  // Makes `name` the active policy (validated by make_policy with the running configuration) and unpins: the debug
  // endpoint's POST /debug/policy. Starts the thread if it was not running. An unknown name changes nothing.
  Result<void> set_policy(const std::string& name);
  // Runs one tick now, on the calling thread (tests; the thread's ticks continue).
  void tick_now();
  // The decision half of a tick on a given sample instead of one read from the cgroup and the scheduler: the policy,
  // clamping, hysteresis, shadow and rollback, applied to the real scheduler (s.procs should be its count). For tests
  // that need exact load figures, and for replaying recorded samples.
  void step(const Sample& s);

 private:
  Controller(sched::Sched& sched, ControllerConfig cfg, std::unique_ptr<Policy> policy, std::unique_ptr<Policy> shadow);
  void main();
  void tick();                   // mu_ held: sample(), then decide()
  void decide(const Sample& s);  // mu_ held
  Sample sample(int64_t now);
  void schedtrace(int64_t now);
  void note_error(const std::string& reason, const std::string& message);
  void apply(int target, bool forced, int64_t now);
  // The last kRollbackWindow ticks: mean throughput and the highest scheduling-latency p99 (NaN where unknown).
  std::pair<double, double> last_window() const;

  sched::Sched& sched_;
  ControllerConfig cfg_;
  std::unique_ptr<Policy> policy_, shadow_;
  CgroupDiscovery discovery_;

  mutable std::mutex mu_;  // everything below; the thread holds it for a tick (microseconds)
  std::condition_variable cv_;
  bool stop_ = false;
  bool pinned_ = false;
  std::thread thread_;
  ControllerStats st_;
  int64_t start_ns_ = 0, last_ns_ = 0, next_trace_ns_ = 0;
  // Previous readings, for deltas.
  uint64_t prev_busy_ns_ = 0, prev_finished_ = 0, prev_work_ = 0;
  uint64_t prev_latency_[40] = {};
  double prev_cpu_s_ = 0;
  CpuThrottle prev_throttle_;
  bool have_prev_throttle_ = false;
  std::vector<uint64_t> prev_switches_;
  std::vector<int64_t> progress_ns_;  // per P: when its switch count last moved (or its queue was empty)
  // Limits: the last good reading (kept when a reading fails).
  double quota_ = kUnknown;
  int cpus_ = 0;
  std::string quota_source_;
  int idle_ticks_ = 0;  // ticks in a row that found the runtime idle
  // Hysteresis and rollback.
  int pending_dir_ = 0;  // direction the policy asked for on the previous tick (-1, 0, 1)
  int last_change_dir_ = 0;
  int64_t last_change_ns_ = 0;
  int rollback_from_ = 0;  // procs before the change being watched; 0 = not watching
  int rollback_ticks_ = 0;
  int hold_ticks_ = 0;
  std::vector<double> throughput_hist_, latency_hist_;  // the last ticks, newest at the back
  double before_throughput_ = kUnknown, before_latency_ = kUnknown;
  std::map<std::string, bool> logged_;  // error reasons already logged
};

}  // namespace tern::controller
