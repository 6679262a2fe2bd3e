// runtime/controller/policy.cc: the policies' state machines (static, quota with auto rounding, threshold, hill,
// latency), quota rounding, make_policy.
#include "runtime/controller/policy.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

namespace tern::controller {
namespace {

// Counts computed from doubles are clamped here before the conversion to int, so a quota of 1e300 cores cannot
// overflow; the controller clamps to procs_max (at most sched::kMaxProcs, 1024) in any case.
constexpr double kCountCap = 1 << 20;

bool has_quota(double q) {
  return known(q) && q > 0;
}

int ceil_cores(double q) {
  return static_cast<int>(std::clamp(std::ceil(q - kQuotaEpsilon), 1.0, kCountCap));
}
int floor_cores(double q) {
  return static_cast<int>(std::clamp(std::floor(q + kQuotaEpsilon), 1.0, kCountCap));
}

// The count that ran over the interval; a sample without one (procs < 1) is read as `fallback`.
int current(const Sample& s, int fallback) {
  return s.procs >= 1 ? s.procs : std::max(1, fallback);
}

// The most a policy that respects the quota may ask: min(ceil(quota), procs_max), each where known; `cur` when
// neither is (never raise without a known bound).
int quota_ceiling(const Sample& s, int cur) {
  int cap = s.procs_max >= 1 ? s.procs_max : 0;
  if (has_quota(s.quota_cores)) cap = cap > 0 ? std::min(cap, ceil_cores(s.quota_cores)) : ceil_cores(s.quota_cores);
  return cap > 0 ? cap : cur;
}

bool throttled(const Sample& s, const PolicyConfig& cfg) {
  return known(s.throttled_ratio) && s.throttled_ratio >= cfg.throttled_ratio;
}

std::string fmt(const char* f, auto... args) {
  char buf[256];
  std::snprintf(buf, sizeof buf, f, args...);
  return buf;
}

// --- static ---

class StaticPolicy final : public Policy {
 public:
  explicit StaticPolicy(int procs) : procs_(procs) {}
  std::string_view name() const override { return "static"; }
  bool rollback_by_throughput() const override { return false; }
  void reset(int procs) override { reset_ = procs; }
  int decide(const Sample& s) override {
    const int t = procs_ >= 1 ? procs_ : reset_ >= 1 ? reset_ : current(s, 1);
    why_ = procs_ >= 1 ? fmt("static %d", t) : fmt("static: the count at start, %d", t);
    return t;
  }
  std::string explain() const override { return why_; }

 private:
  int procs_;
  int reset_ = 0;
  std::string why_;
};

// --- quota ---

class QuotaPolicy final : public Policy {
 public:
  explicit QuotaPolicy(const PolicyConfig& cfg) : cfg_(cfg) {}
  std::string_view name() const override { return "quota"; }
  bool rollback_by_throughput() const override { return false; }
  void reset(int procs) override {
    (void)procs;
    clear_window();
    clean_ = 0;
  }
  std::string explain() const override { return why_; }

  int decide(const Sample& s) override {
    const int cur = current(s, last_ > 0 ? last_ : 1);
    // The machine: the CPUs we may run on, else procs_max, else the count now.
    const int machine = s.cpus > 0 ? s.cpus : s.procs_max >= 1 ? s.procs_max : cur;
    if (!has_quota(s.quota_cores)) {
      quota_ = kUnknown;
      down_ = 0;
      why_ = fmt("no quota: %d %s", machine, s.cpus > 0 ? "cpus" : "(cpus unknown: procs_max)");
      return last_ = machine;
    }
    if (!known(quota_) || std::fabs(s.quota_cores - quota_) > kQuotaEpsilon) {  // a new quota: start over at ceil
      quota_ = s.quota_cores;
      down_ = 0;
      clean_ = 0;
      clean_needed_ = kAutoCleanTicks;
      since_up_ = -1;
      clear_window();
    }
    const int hi = std::min(machine, ceil_cores(quota_));
    const int lo = std::min(machine, floor_cores(quota_));
    if (cfg_.rounding == Rounding::kCeil) {
      why_ = fmt("quota %.2f, ceil: %d", quota_, hi);
      return last_ = hi;
    }
    if (cfg_.rounding == Rounding::kFloor) {
      why_ = fmt("quota %.2f, floor: %d", quota_, lo);
      return last_ = lo;
    }
    return last_ = auto_step(s, hi, lo);
  }

 private:
  int auto_step(const Sample& s, int hi, int lo) {
    down_ = std::clamp(down_, 0, hi - lo);
    const int target = hi - down_;
    if (hi == lo) {
      why_ = fmt("quota %.2f, auto: %d (ceil = floor)", quota_, target);
      return target;
    }
    // Measure only at the count asked for: a sample at another count says nothing about this one.
    if (s.procs != target || !known(s.throttled_ratio) || !known(s.utilization)) {
      why_ = fmt("quota %.2f, auto: %d (%s)", quota_, target,
                 s.procs != target ? "waiting for the count" : "throttling or utilization unknown: hold");
      return target;
    }
    if (since_up_ >= 0) since_up_++;
    const bool thr = s.throttled_ratio >= cfg_.throttled_ratio;
    if (down_ == 0) {
      ratio_sum_ += s.throttled_ratio;
      util_sum_ += s.utilization;
      if (++n_ >= kAutoWindow) {
        const double ratio = ratio_sum_ / n_, util = util_sum_ / n_;
        clear_window();
        if (ratio >= cfg_.throttled_ratio && util >= kAutoLoaded) {
          // A step up that met throttling again soon: wait twice as long before the next.
          if (since_up_ >= 0 && since_up_ <= 2 * kAutoWindow)
            clean_needed_ = std::min(2 * clean_needed_, kAutoCleanTicksMax);
          since_up_ = -1;
          down_ = 1;
          clean_ = 0;
          why_ = fmt("quota %.2f, auto: throttled %.0f%% at utilization %.2f over %d ticks: %d -> %d", quota_,
                     ratio * 100, util, kAutoWindow, hi, hi - 1);
          return hi - 1;
        }
        if (since_up_ > 2 * kAutoWindow) {  // the step up held: back to the short wait
          clean_needed_ = kAutoCleanTicks;
          since_up_ = -1;
        }
      }
      why_ = fmt("quota %.2f, auto: ceil %d (throttled %.0f%%)", quota_, hi, s.throttled_ratio * 100);
      return hi;
    }
    clean_ = thr ? 0 : clean_ + 1;
    if (clean_ >= clean_needed_) {
      down_ = 0;
      clean_ = 0;
      since_up_ = 0;
      clear_window();
      why_ = fmt("quota %.2f, auto: %d ticks without throttling: %d -> %d", quota_, clean_needed_, lo, hi);
      return hi;
    }
    why_ = fmt("quota %.2f, auto: floor %d (%d/%d clean ticks)", quota_, lo, clean_, clean_needed_);
    return target;
  }

  void clear_window() {
    ratio_sum_ = util_sum_ = 0;
    n_ = 0;
  }

  PolicyConfig cfg_;
  double quota_ = kUnknown;  // the quota the auto state belongs to
  int last_ = 0;
  int down_ = 0;   // auto: steps below ceil (0 or 1)
  int clean_ = 0;  // auto, down: consecutive ticks below the throttle ratio
  int clean_needed_ = kAutoCleanTicks;
  int since_up_ = -1;  // auto: ticks measured at ceil since the last step up; -1: not watching
  double ratio_sum_ = 0, util_sum_ = 0;
  int n_ = 0;
  std::string why_;
};

// --- threshold ---

class ThresholdPolicy final : public Policy {
 public:
  explicit ThresholdPolicy(const PolicyConfig& cfg) : cfg_(cfg) {}
  std::string_view name() const override { return "threshold"; }
  std::string explain() const override { return why_; }

  int decide(const Sample& s) override {
    const int cur = current(s, 1);
    const int max = s.procs_max >= 1 ? s.procs_max : cur;
    const int half = std::max(1, max / 2);
    if (!known(s.utilization)) {
      why_ = fmt("utilization unknown: keep %d", cur);
      return cur;
    }
    if (s.utilization > cfg_.threshold_high && cur < max) {
      why_ = fmt("utilization %.2f > %.2f: max %d", s.utilization, cfg_.threshold_high, max);
      return max;
    }
    if (s.utilization < cfg_.threshold_low && cur > half) {
      why_ = fmt("utilization %.2f < %.2f: max/2 %d", s.utilization, cfg_.threshold_low, half);
      return half;
    }
    why_ = fmt("utilization %.2f: keep %d", s.utilization, cur);
    return cur;
  }

 private:
  PolicyConfig cfg_;
  std::string why_;
};

// --- hill ---

// Mean and spread of a few throughput samples.
struct Window {
  int n = 0;
  double sum = 0, sumsq = 0;
  void add(double x) { n++, sum += x, sumsq += x * x; }
  double mean() const { return n > 0 ? sum / n : 0; }
  // The variance of the mean (sample variance / n); 0 with fewer than two samples.
  double var_mean() const {
    if (n < 2) return 0;
    const double m = mean();
    return std::max(0.0, (sumsq - n * m * m) / (n - 1)) / n;
  }
};

class HillPolicy final : public Policy {
 public:
  explicit HillPolicy(const PolicyConfig& cfg) : cfg_(cfg) {}
  std::string_view name() const override { return "hill"; }
  bool paces_itself() const override { return true; }
  std::string explain() const override { return why_; }

  void reset(int procs) override {
    procs = std::max(1, procs);
    if (phase_ == Phase::kProbe && procs == base_ && target_ != base_) {  // the controller rolled our probe back
      fail();
      next(false, std::max(base_, target_));  // the limits are re-read on the next decide()
      why_ = fmt("probe rolled back to %d: it failed", base_);
      return;
    }
    restart(procs);
  }

  int decide(const Sample& s) override {
    const int cur = current(s, target_ > 0 ? target_ : 1);
    if (target_ == 0) restart(cur);
    const int ceiling = quota_ceiling(s, cur);
    const bool thr = throttled(s, cfg_);
    if (target_ > ceiling) {  // the quota or procs_max moved below us
      restart(ceiling);
      why_ = fmt("limit %d: start over there", ceiling);
      return target_;
    }
    if (s.procs != target_) {
      if (++stuck_ > kHillStuckTicks) {
        restart(std::min(cur, ceiling));
        why_ = fmt("count not applied for %d ticks: start over at %d", kHillStuckTicks, target_);
      } else {
        why_ = fmt("waiting for %d (running %d)", target_, s.procs);
      }
      return target_;
    }
    stuck_ = 0;
    if (phase_ == Phase::kProbe && dir_ > 0 && thr) {  // never raise while throttled: this probe failed
      fail();
      next(thr, ceiling);
      why_ = fmt("throttled %.0f%%: back toward %d", s.throttled_ratio * 100, base_);
      return target_;
    }
    if (!known(s.throughput) || s.throughput < 0) {  // a negative rate is garbage: unknown too
      why_ = fmt("throughput unknown: hold %d", target_);
      return target_;
    }
    if (phase_ == Phase::kSettled) wait_++;
    w_.add(s.throughput);
    if (w_.n < cfg_.hill_window) {
      why_ = fmt("measuring %d (%d/%d ticks)", target_, w_.n, cfg_.hill_window);
      return target_;
    }
    const Window w = w_;
    w_ = Window{};
    switch (phase_) {
      case Phase::kMeasure:
        base_w_ = best_w_ = w;
        search(ceiling, thr, initial_dir(s, ceiling, thr));
        break;
      case Phase::kProbe:
        judge(w, ceiling, thr);
        break;
      case Phase::kSettled:
        settled(w, s, ceiling, thr);
        break;
    }
    return target_;
  }

 private:
  enum class Phase { kMeasure, kProbe, kSettled };

  // Start over at `procs`: measure it, then search.
  void restart(int procs) {
    base_ = target_ = std::max(1, procs);
    phase_ = Phase::kMeasure;
    w_ = Window{};
    stuck_ = 0;
    wait_ = 0;
    wait_len_ = kHillProbeWait;
    why_ = fmt("measuring %d", target_);
  }

  void settle() {
    phase_ = Phase::kSettled;
    target_ = base_;
    w_ = Window{};
    wait_ = 0;
  }

  int initial_dir(const Sample& s, int ceiling, bool thr) const {
    const bool low = known(s.utilization) && s.utilization < cfg_.threshold_low;
    if (!thr && !low && base_ < ceiling) return 1;
    return base_ > 1 ? -1 : 0;
  }

  // A new search from base_ in direction `dir` (0: nothing to try: settle).
  void search(int ceiling, bool thr, int dir) {
    dir_ = dir;
    step_ = 1;
    bisect_ = false;
    tried_other_ = false;
    moved_ = false;
    if (dir == 0) {
      settle();
      why_ = fmt("settled at %d: nowhere to go", base_);
      return;
    }
    next(thr, ceiling);
  }

  // A move down must also stay within the margin of the best window since the load last changed: otherwise
  // searches could each give up a little less than the margin, and ratchet down a curve.
  bool near_best(const Window& w) const { return w.mean() - best_w_.mean() >= -margin(best_w_, w); }
  void note_best(const Window& w) {
    if (w.mean() > best_w_.mean() || best_w_.n == 0) best_w_ = w;
  }

  // The margin a difference between two windows must pass to be more than noise.
  double margin(const Window& a, const Window& b) const {
    return std::max(cfg_.hill_noise * std::fabs(a.mean()), 2 * std::sqrt(a.var_mean() + b.var_mean()));
  }

  void judge(const Window& w, int ceiling, bool thr) {
    const double diff = w.mean() - base_w_.mean(), m = margin(base_w_, w);
    const bool pays = diff > m || (dir_ < 0 && diff >= -m && near_best(w));
    note_best(w);
    const int from = base_, at = target_;
    const double ref = base_w_.mean();
    if (pays) {
      base_ = target_;
      base_w_ = w;
      moved_ = true;
      step_ = bisect_ ? step_ / 2 : step_ * 2;
    } else {
      fail();
    }
    next(thr, ceiling);
    why_ = fmt("%d: %.0f/s against %.0f/s at %d (margin %.0f): %s; %s %d", at, w.mean(), ref, from, m,
               pays ? "kept" : "rejected", phase_ == Phase::kProbe ? "probe" : "settled at", target_);
  }

  void fail() {
    bisect_ = true;
    step_ /= 2;
  }

  // The next probe from base_: step_ in dir_; with that direction spent (step 0, a bound, or up while throttled),
  // step 1 the other way, once per search; else settle.
  void next(bool thr, int ceiling) {
    for (;;) {
      if (step_ >= 1 && !(dir_ > 0 && thr)) {
        // Down, a probe gives up at most a quarter of the count: a doubling step from 9 would try 1, which on a
        // load that needs its threads costs nine tenths of the throughput for a window (seen: 8,000 -> 890/s).
        if (dir_ < 0) step_ = std::min(step_, std::max(1, base_ / 4));
        const int to = std::clamp(base_ + dir_ * step_, 1, ceiling);
        if (to != base_) {
          phase_ = Phase::kProbe;
          target_ = to;
          w_ = Window{};
          return;
        }
      }
      if (tried_other_) break;
      tried_other_ = true;
      dir_ = -dir_;
      step_ = 1;
      bisect_ = false;
    }
    // A search that did not move backs the timed probes off; one that did resets them.
    wait_len_ = moved_ ? kHillProbeWait : std::min(2 * wait_len_, kHillProbeWaitMax);
    settle();
  }

  void settled(const Window& w, const Sample& s, int ceiling, bool thr) {
    // The reference stays the window the last search ended on: a window straddling a step in load is too spread
    // to differ significantly from anything, so a reference that followed each window would lose the step in it.
    // A slow drift past twice the margin counts as a step too.
    const double diff = w.mean() - base_w_.mean(), m = margin(base_w_, w);
    if (std::fabs(diff) > 2 * m) {  // a step in load: search in its direction at once
      wait_len_ = kHillProbeWait;
      base_w_ = best_w_ = w;
      int dir = diff > 0 && !thr && base_ < ceiling ? 1 : base_ > 1 ? -1 : 0;
      search(ceiling, thr, dir);
      if (phase_ == Phase::kProbe)
        why_ = fmt("throughput %+.0f%% at %d: probe %d", 100 * diff / std::max(1e-9, w.mean() - diff), base_, target_);
      return;
    }
    const bool low = known(s.utilization) && s.utilization < cfg_.threshold_low;
    const bool busy = known(s.utilization) && s.utilization >= cfg_.threshold_high;
    // Busy with fibers waiting and room to grow: the load may have risen at a count where throughput cannot show it
    // (each processor already saturated), so the backed-off wait does not apply, only the first one.
    const bool backlog = busy && !thr && s.runnable > 0 && base_ < ceiling;
    if (wait_ < (backlog ? std::min(wait_len_, kHillProbeWait) : wait_len_)) {
      why_ = fmt("settled at %d: %.0f/s", base_, w.mean());
      return;
    }
    int dir = 0;
    const char* reason = "";
    if ((thr || low) && base_ > 1) {
      dir = -1;
      base_w_ = best_w_ = w;  // the load dropped, or the quota binds: what paid before is no reference
      reason = thr ? "throttled" : "utilization low";
    } else if (busy && !thr && base_ < ceiling) {
      dir = 1;
      reason = "utilization high";
    } else if (base_ > 1) {
      dir = -1;
      reason = "lean to fewer";
    }
    search(ceiling, thr, dir);
    wait_ = 0;
    if (phase_ == Phase::kProbe) why_ = fmt("settled at %d, %s: probe %d", base_, reason, target_);
  }

  PolicyConfig cfg_;
  Phase phase_ = Phase::kMeasure;
  int base_ = 0;    // the last count that paid (or where we started)
  int target_ = 0;  // what we ask for; 0: not started
  Window base_w_;   // throughput measured at base_
  Window best_w_;   // the best window since the load last changed
  Window w_;        // the window being filled, at target_
  int dir_ = 0, step_ = 1;
  bool bisect_ = false, tried_other_ = false, moved_ = false;
  int stuck_ = 0;
  int wait_ = 0, wait_len_ = kHillProbeWait;
  std::string why_;
};

// --- latency ---

class LatencyPolicy final : public Policy {
 public:
  explicit LatencyPolicy(const PolicyConfig& cfg) : cfg_(cfg) {}
  std::string_view name() const override { return "latency"; }
  std::string explain() const override { return why_; }
  void reset(int procs) override {
    (void)procs;
    idle_ = 0;
  }

  int decide(const Sample& s) override {
    const int cur = current(s, 1);
    const int ceiling = quota_ceiling(s, cur);
    if (cur != last_) idle_ = 0;  // evidence for a shrink counts at one count only
    last_ = cur;
    const double target = cfg_.latency_target_s;
    const double p99 = known(s.sched_latency_p99_s) ? s.sched_latency_p99_s : kUnknown;
    const double oldest = known(s.oldest_runnable_s) ? s.oldest_runnable_s : kUnknown;
    const bool over = (known(p99) && p99 > target) || (known(oldest) && oldest > target);
    const bool calm = (!known(p99) || p99 < target / 2) && (!known(oldest) || oldest < target / 2);
    const bool idle = s.idle_procs >= 1 || (known(s.utilization) && s.utilization < cfg_.threshold_low);
    if (cur > ceiling) {
      idle_ = 0;
      why_ = fmt("above the quota ceiling %d", ceiling);
      return ceiling;
    }
    if (over) {
      idle_ = 0;
      if (cur >= ceiling) {
        why_ = fmt("p99 %.3f ms, oldest %.3f ms over %.3f ms, but no quota left: %d", p99 * 1e3, oldest * 1e3,
                   target * 1e3, cur);
        return cur;
      }
      const int t = std::min(ceiling, cur + std::max(1, cur / 2));
      why_ =
          fmt("p99 %.3f ms, oldest %.3f ms over %.3f ms: grow %d -> %d", p99 * 1e3, oldest * 1e3, target * 1e3, cur, t);
      return t;
    }
    if (calm && idle && cur > 1) {
      if (++idle_ >= kLatencyIdleTicks) {
        why_ = fmt("idle %d ticks (idle procs %d, utilization %.2f), latency under target/2: %d -> %d", idle_,
                   s.idle_procs, known(s.utilization) ? s.utilization : -1.0, cur, cur - 1);
        return cur - 1;
      }
      why_ = fmt("idle %d/%d ticks: keep %d", idle_, kLatencyIdleTicks, cur);
      return cur;
    }
    idle_ = 0;
    why_ = fmt("latency within target: keep %d", cur);
    return cur;
  }

 private:
  PolicyConfig cfg_;
  int idle_ = 0;  // consecutive calm, idle ticks at last_
  int last_ = 0;
  std::string why_;
};

}  // namespace

Policy::~Policy() = default;
void Policy::reset(int) {}
std::string Policy::explain() const {
  return {};
}

Result<Rounding> parse_rounding(std::string_view s) {
  if (s == "ceil") return Rounding::kCeil;
  if (s == "floor") return Rounding::kFloor;
  if (s == "auto") return Rounding::kAuto;
  return make_error("quota rounding \"" + std::string(s) + "\": expected ceil, floor or auto");
}

std::string_view to_string(Rounding r) {
  switch (r) {
    case Rounding::kCeil:
      return "ceil";
    case Rounding::kFloor:
      return "floor";
    case Rounding::kAuto:
      return "auto";
  }
  return "?";
}

int quota_procs(double quota_cores, int cpus, Rounding r) {
  if (!has_quota(quota_cores)) return std::max(0, cpus);
  const int n = r == Rounding::kFloor ? floor_cores(quota_cores) : ceil_cores(quota_cores);
  return cpus > 0 ? std::min(n, cpus) : n;
}

std::string_view policy_names() {
  return "static, quota, threshold, hill, latency";
}

Result<std::unique_ptr<Policy>> make_policy(std::string_view name, const PolicyConfig& cfg) {
  auto fraction = [](double x) { return std::isfinite(x) && x > 0 && x <= 1; };
  if (cfg.static_procs < 0) return make_error("static procs must be >= 0 (0: the count at start)");
  if (!fraction(cfg.threshold_low) || !fraction(cfg.threshold_high) || cfg.threshold_low >= cfg.threshold_high)
    return make_error("thresholds must satisfy 0 < low < high <= 1");
  if (!std::isfinite(cfg.latency_target_s) || cfg.latency_target_s <= 0)
    return make_error("latency target must be a positive duration");
  if (!fraction(cfg.throttled_ratio)) return make_error("throttled ratio must be a fraction in (0, 1]");
  if (!std::isfinite(cfg.hill_noise) || cfg.hill_noise < 0 || cfg.hill_noise >= 1)
    return make_error("hill noise must be a fraction in [0, 1)");
  if (cfg.hill_window < 1) return make_error("hill window must be at least 1 tick");
  std::unique_ptr<Policy> p;
  if (name == "static")
    p = std::make_unique<StaticPolicy>(cfg.static_procs);
  else if (name == "quota")
    p = std::make_unique<QuotaPolicy>(cfg);
  else if (name == "threshold")
    p = std::make_unique<ThresholdPolicy>(cfg);
  else if (name == "hill")
    p = std::make_unique<HillPolicy>(cfg);
  else if (name == "latency")
    p = std::make_unique<LatencyPolicy>(cfg);
  else
    return make_error("unknown policy \"" + std::string(name) + "\" (valid: " + std::string(policy_names()) + ")");
  return p;
}

}  // namespace tern::controller
