// runtime/controller/controller.cc: the controller thread: sampling, clamping, hysteresis, shadow, rollback,
// schedtrace.
#include "runtime/controller/controller.h"

#include <pthread.h>
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <tuple>
#include <utility>

#include "scheduler/sched.h"

namespace tern::controller {
namespace {

// The scheduler's clock (CLOCK_MONOTONIC), which every deadline in tern uses.
int64_t mono_ns() {
  return sched::now_ns();
}

double cpu_seconds(clockid_t clock) {
  timespec ts;
  if (clock_gettime(clock, &ts) != 0) return kUnknown;
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// The q-quantile (0..1) of a log2 histogram of nanoseconds (bucket i: [2^i, 2^(i+1))), in seconds, interpolating
// linearly inside the bucket; NaN when empty.
double quantile_s(const uint64_t* buckets, int n, double q) {
  uint64_t total = 0;
  for (int i = 0; i < n; i++) total += buckets[i];
  if (total == 0) return kUnknown;
  const double rank = q * static_cast<double>(total);
  uint64_t seen = 0;
  for (int i = 0; i < n; i++) {
    if (buckets[i] == 0) continue;
    if (static_cast<double>(seen + buckets[i]) >= rank) {
      const double lo = i == 0 ? 0 : std::ldexp(1.0, i), hi = std::ldexp(1.0, i + 1);
      const double frac = (rank - static_cast<double>(seen)) / static_cast<double>(buckets[i]);
      return (lo + (hi - lo) * std::clamp(frac, 0.0, 1.0)) * 1e-9;
    }
    seen += buckets[i];
  }
  return std::ldexp(1.0, n) * 1e-9;
}

// The upper edge of the highest non-empty bucket, in seconds (0 when empty).
double max_s(const uint64_t* buckets, int n) {
  for (int i = n - 1; i >= 0; i--)
    if (buckets[i] != 0) return std::ldexp(1.0, i + 1) * 1e-9;
  return 0;
}

std::string fmt_double(double x, int prec = 2) {
  if (!known(x)) return "none";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", prec, x);
  return buf;
}

// The calling thread's CPU time: the controller thread runs only ticks and schedtrace lines, so its total is their
// cost, read with one clock call per tick.
double thread_cpu_s() {
  const double t = cpu_seconds(CLOCK_THREAD_CPUTIME_ID);
  return known(t) ? t : 0;
}

}  // namespace

Result<std::unique_ptr<Controller>> Controller::start(sched::Sched& sched, ControllerConfig cfg) {
  auto policy = make_policy(cfg.policy, cfg.policy_config);
  if (!policy) return policy.error().wrap("policy");
  std::unique_ptr<Policy> shadow;
  if (!cfg.shadow_policy.empty()) {
    auto s = make_policy(cfg.shadow_policy, cfg.policy_config);
    if (!s) return s.error().wrap("shadow policy");
    shadow = std::move(*s);
  }
  if (cfg.procs_min < 1) return make_error("procs-min must be at least 1");
  if (cfg.procs_max != 0 && cfg.procs_max < cfg.procs_min) return make_error("procs-max must not be below procs-min");
  if (cfg.interval_ns < 1'000'000) return make_error("controller interval must be at least 1 ms");
  if (!std::isfinite(cfg.quota_reserve) || cfg.quota_reserve < 0)
    return make_error("quota reserve must be a finite number of cores >= 0");
  if (!std::isfinite(cfg.rollback_drop) || cfg.rollback_drop <= 0 || cfg.rollback_drop > 1)
    return make_error("rollback drop must be a fraction in (0, 1]");
  std::unique_ptr<Controller> c(new Controller(sched, std::move(cfg), std::move(*policy), std::move(shadow)));
  return c;
}

Controller::Controller(sched::Sched& sched, ControllerConfig cfg, std::unique_ptr<Policy> policy,
                       std::unique_ptr<Policy> shadow)
    : sched_(sched),
      cfg_(std::move(cfg)),
      policy_(std::move(policy)),
      shadow_(std::move(shadow)),
      discovery_(cfg_.fs_root) {
  st_.policy = std::string(policy_->name());
  if (shadow_) st_.shadow_policy = std::string(shadow_->name());
  start_ns_ = last_ns_ = mono_ns();
  next_trace_ns_ = start_ns_ + cfg_.schedtrace_ns;
  st_.procs = st_.target = sched_.procs();
  policy_->reset(st_.procs);
  if (shadow_) shadow_->reset(st_.procs);
  prev_cpu_s_ = cpu_seconds(CLOCK_PROCESS_CPUTIME_ID);
  const sched::SchedStats s = sched_.stats();
  prev_busy_ns_ = s.busy_ns;
  prev_finished_ = s.finished;
  prev_work_ = s.work;
  std::copy(std::begin(s.latency), std::end(s.latency), prev_latency_);
  const bool idle = policy_->name() == "static" && !shadow_ && cfg_.schedtrace_ns == 0;
  if (!idle) {
    st_.running = true;
    thread_ = std::thread([this] { main(); });
    pthread_setname_np(thread_.native_handle(), "tern-ctl");  // how ps, top and bench/controller.sh find it
  }
}

Controller::~Controller() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Controller::main() {
  std::unique_lock lk(mu_);
  int64_t next_tick = mono_ns() + cfg_.interval_ns;
  while (!stop_) {
    const int64_t now = mono_ns();
    int64_t wake = next_tick;
    if (cfg_.schedtrace_ns > 0) wake = std::min(wake, next_trace_ns_);
    if (now < wake) {
      cv_.wait_for(lk, std::chrono::nanoseconds(wake - now));
      continue;
    }
    if (now >= next_tick) {
      tick();
      const Sample& last = st_.last;
      const bool idle = last.busy_s < 1e-3 * last.interval_s && last.runnable == 0 && last.work == 0;
      idle_ticks_ = idle ? idle_ticks_ + 1 : 0;
      // Ticks keep their phase; a tick that ran late (a descheduled thread) is not followed by a burst of catch-ups.
      next_tick += idle_ticks_ >= kIdleTicks ? kIdleStretch * cfg_.interval_ns : cfg_.interval_ns;
      if (next_tick <= now) next_tick = now + cfg_.interval_ns;
    }
    if (cfg_.schedtrace_ns > 0 && mono_ns() >= next_trace_ns_) {
      schedtrace(mono_ns());
      next_trace_ns_ += cfg_.schedtrace_ns;
      if (next_trace_ns_ <= now) next_trace_ns_ = now + cfg_.schedtrace_ns;
    }
    st_.tick_cpu_s = thread_cpu_s();
  }
}

void Controller::tick_now() {
  std::lock_guard lk(mu_);
  tick();
}

ControllerStats Controller::stats() const {
  std::lock_guard lk(mu_);
  ControllerStats s = st_;
  s.procs = sched_.procs();
  return s;
}

void Controller::pin(int procs) {
  std::lock_guard lk(mu_);
  pinned_ = true;
  rollback_from_ = 0;
  st_.target = procs;
}

Result<void> Controller::set_policy(const std::string& name) {
  // static keeps the count in force now, not the one at start.
  PolicyConfig pc = cfg_.policy_config;
  pc.static_procs = sched_.procs();
  auto policy = make_policy(name, pc);
  if (!policy) return policy.error();
  {
    std::lock_guard lk(mu_);
    policy_ = std::move(*policy);
    policy_->reset(sched_.procs());
    st_.policy = std::string(policy_->name());
    cfg_.policy = st_.policy;
    pinned_ = false;
    pending_dir_ = 0;
    rollback_from_ = 0;
    hold_ticks_ = 0;
    if (thread_.joinable()) return {};
    st_.running = true;
    thread_ = std::thread([this] { main(); });
    pthread_setname_np(thread_.native_handle(), "tern-ctl");
  }
  return {};
}

void Controller::note_error(const std::string& reason, const std::string& message) {
  st_.errors[reason]++;
  if (!logged_[reason]) {
    logged_[reason] = true;
    std::fprintf(stderr, "tern: controller: %s (keeping the last good value; logged once per reason)\n",
                 message.c_str());
  }
}

Sample Controller::sample(int64_t now) {
  Sample s;
  s.now_ns = now;
  s.interval_s = static_cast<double>(now - last_ns_) * 1e-9;
  last_ns_ = now;

  // Limits: a reading that fails keeps the last good value.
  const CpuLimits lim = discovery_.cpu_limits();
  for (const auto& e : lim.errors) note_error(e.reason, e.message);
  if (lim.quota_ok) {
    quota_ = lim.quota_cores;  // NaN: no quota
    quota_source_ = lim.quota_source;
  }
  if (lim.cpus > 0) cpus_ = lim.cpus;
  s.quota_cores = known(quota_) ? std::max(0.0, quota_ - cfg_.quota_reserve) : kUnknown;
  s.cpus = cpus_;

  // Throttling needs a quota: without one (or before the first good reading) cpu.stat is not read.
  if (!known(quota_)) {
    have_prev_throttle_ = false;
  } else if (const auto thr = discovery_.throttle(); !thr) {
    note_error(cgroup_reason_name(thr.error().code()), thr.error().message());
  } else {
    if (have_prev_throttle_ && thr->periods >= prev_throttle_.periods &&
        thr->throttled_periods >= prev_throttle_.throttled_periods) {
      s.periods = thr->periods - prev_throttle_.periods;
      s.throttled_periods = thr->throttled_periods - prev_throttle_.throttled_periods;
      s.throttled_s = std::max(0.0, thr->throttled_s - prev_throttle_.throttled_s);
      if (s.periods > 0) s.throttled_ratio = static_cast<double>(s.throttled_periods) / static_cast<double>(s.periods);
    }
    prev_throttle_ = *thr;
    have_prev_throttle_ = true;
  }

  const sched::SchedStats st = sched_.stats();
  s.procs = st.procs;
  s.idle_procs = st.idle_procs;
  s.runnable = st.runnable;
  const double span = s.interval_s > 0 ? s.interval_s : kUnknown;
  s.busy_s = st.busy_ns >= prev_busy_ns_ ? static_cast<double>(st.busy_ns - prev_busy_ns_) * 1e-9 : 0;
  prev_busy_ns_ = st.busy_ns;
  s.utilization = known(span) ? std::clamp(s.busy_s / (span * std::max(1, st.procs)), 0.0, 1.0) : kUnknown;
  const double cpu = cpu_seconds(CLOCK_PROCESS_CPUTIME_ID);
  s.cpu_s = known(cpu) && known(prev_cpu_s_) ? std::max(0.0, cpu - prev_cpu_s_) : 0;
  prev_cpu_s_ = cpu;
  s.cpu_cores = known(span) ? s.cpu_s / span : kUnknown;

  uint64_t lat[sched::kLatencyBuckets];
  for (int i = 0; i < sched::kLatencyBuckets; i++) {
    lat[i] = st.latency[i] >= prev_latency_[i] ? st.latency[i] - prev_latency_[i] : 0;
    prev_latency_[i] = st.latency[i];
  }
  s.sched_latency_p99_s = quantile_s(lat, sched::kLatencyBuckets, 0.99);
  double oldest = max_s(lat, sched::kLatencyBuckets);
  // A P whose queue holds fibers but which has started none since the last tick: its oldest fiber has waited at least
  // since the P last made progress (a fiber hogging it, or its thread descheduled).
  prev_switches_.resize(st.per_p.size(), 0);
  progress_ns_.resize(st.per_p.size(), now);
  for (size_t i = 0; i < st.per_p.size(); i++) {
    const auto& p = st.per_p[i];
    if (p.runq == 0 || p.switches != prev_switches_[i]) progress_ns_[i] = now;
    prev_switches_[i] = p.switches;
    oldest = std::max(oldest, static_cast<double>(now - progress_ns_[i]) * 1e-9);
  }
  s.oldest_runnable_s = oldest;

  s.fibers_finished = st.finished >= prev_finished_ ? st.finished - prev_finished_ : 0;
  prev_finished_ = st.finished;
  s.work = st.work >= prev_work_ ? st.work - prev_work_ : 0;
  prev_work_ = st.work;
  s.work_counted = st.work > 0;
  if (known(span)) s.throughput = static_cast<double>(s.work_counted ? s.work : s.fibers_finished) / span;

  // procs_max: the machine's CPUs and the quota's ceiling, unless set explicitly.
  int cap = cfg_.procs_max;
  if (cap == 0) {
    cap = cpus_ > 0 ? cpus_ : std::max(1, st.procs);
    if (known(s.quota_cores)) cap = std::min(cap, quota_procs(s.quota_cores, cap, Rounding::kCeil));
  }
  s.procs_min = std::min(cfg_.procs_min, std::min(cap, sched::kMaxProcs));
  s.procs_max = std::max(s.procs_min, std::min(cap, sched::kMaxProcs));
  return s;
}

void Controller::tick() {
  decide(sample(mono_ns()));
}

void Controller::step(const Sample& s) {
  std::lock_guard lk(mu_);
  decide(s);
}

void Controller::decide(const Sample& s) {
  const int64_t now = s.now_ns;
  const double prev_quota = st_.quota_cores;
  const int prev_cpus = st_.cpus, prev_max = st_.procs_max;
  st_.ticks++;
  st_.last = s;
  st_.quota_cores = s.quota_cores;
  st_.cpus = s.cpus;
  st_.procs_min = s.procs_min;
  st_.procs_max = s.procs_max;
  const bool limits_moved =
      st_.ticks > 1 && (s.cpus != prev_cpus || s.procs_max != prev_max || (known(prev_quota) != known(s.quota_cores)) ||
                        (known(prev_quota) && prev_quota != s.quota_cores));
  throughput_hist_.push_back(s.throughput);
  latency_hist_.push_back(s.sched_latency_p99_s);
  if (throughput_hist_.size() > 2 * kRollbackWindow) {
    throughput_hist_.erase(throughput_hist_.begin());
    latency_hist_.erase(latency_hist_.begin());
  }

  const int procs = s.procs;
  int target = std::clamp(policy_->decide(s), s.procs_min, s.procs_max);
  if (shadow_) {
    const int sh = std::clamp(shadow_->decide(s), s.procs_min, s.procs_max);
    st_.shadow_target = sh;
    if (sh != target) st_.shadow_disagreements++;
    st_.shadow_distance_sum += std::abs(sh - target);
  }
  if (pinned_) {
    st_.target = procs;
  } else {
    if (hold_ticks_ > 0) {
      hold_ticks_--;
      target = std::clamp(procs, s.procs_min, s.procs_max);
    }
    st_.target = target;
    // Rollback watch of the last load-driven change.
    if (rollback_from_ != 0 && ++rollback_ticks_ >= kRollbackWindow) {
      const auto [after_t, after_lat] = last_window();
      const double after_l = known(after_lat) ? after_lat : 0;
      const int nl = known(after_lat) ? 1 : 0;
      const bool dropped = known(before_throughput_) && known(after_t) && before_throughput_ > 0 &&
                           after_t < before_throughput_ * (1 - cfg_.rollback_drop);
      const bool slower =
          nl > 0 && known(before_latency_) && after_l > kRollbackLatencyFloor && after_l > 2 * before_latency_;
      if ((dropped || slower) && !limits_moved) {
        const int back = std::clamp(rollback_from_, s.procs_min, s.procs_max);
        st_.rollbacks++;
        if (cfg_.debug)
          std::fprintf(stderr, "tern: controller: rollback %d -> %d: throughput %s -> %s/s, sched p99 %s -> %s ms\n",
                       procs, back, fmt_double(before_throughput_, 0).c_str(), fmt_double(after_t, 0).c_str(),
                       fmt_double(before_latency_ * 1e3, 3).c_str(), fmt_double(after_l * 1e3, 3).c_str());
        rollback_from_ = 0;
        hold_ticks_ = kRollbackHold;
        policy_->reset(back);
        st_.target = back;
        if (back != procs) {
          sched_.trace(sched::TraceKind::kDecision, 0, static_cast<uint32_t>(procs), static_cast<uint16_t>(back), 2);
          sched_.set_procs(back);
        }
        last_change_dir_ = back > procs ? 1 : -1;
        last_change_ns_ = now;
        return;
      }
      rollback_from_ = 0;
    }
    const bool forced = procs > s.procs_max || procs < s.procs_min || limits_moved;
    apply(target, forced, now);
  }
  if (cfg_.debug && (st_.target != procs || st_.ticks == 1)) {
    std::fprintf(stderr,
                 "tern: controller: tick %llu: %s procs=%d target=%d [%s] quota=%s cpus=%d util=%.2f cpu=%s "
                 "throttled=%llu/%llu runnable=%llu p99=%sms oldest=%sms throughput=%s/s\n",
                 static_cast<unsigned long long>(st_.ticks), policy_->name().data(), procs, st_.target,
                 policy_->explain().c_str(), fmt_double(s.quota_cores).c_str(), s.cpus,
                 known(s.utilization) ? s.utilization : 0.0, fmt_double(s.cpu_cores).c_str(),
                 static_cast<unsigned long long>(s.throttled_periods), static_cast<unsigned long long>(s.periods),
                 static_cast<unsigned long long>(s.runnable), fmt_double(s.sched_latency_p99_s * 1e3, 3).c_str(),
                 fmt_double(s.oldest_runnable_s * 1e3, 3).c_str(), fmt_double(s.throughput, 0).c_str());
  }
}

std::pair<double, double> Controller::last_window() const {
  double sum = 0, lat = kUnknown;
  int n = 0;
  for (size_t i = throughput_hist_.size() - std::min<size_t>(kRollbackWindow, throughput_hist_.size());
       i < throughput_hist_.size(); i++) {
    if (known(throughput_hist_[i])) sum += throughput_hist_[i], n++;
    if (known(latency_hist_[i])) lat = known(lat) ? std::max(lat, latency_hist_[i]) : latency_hist_[i];
  }
  return {n > 0 ? sum / n : kUnknown, lat};
}

void Controller::apply(int target, bool forced, int64_t now) {
  const int procs = sched_.procs();
  const int dir = target > procs ? 1 : target < procs ? -1 : 0;
  if (dir == 0) {
    pending_dir_ = 0;
    return;
  }
  if (!forced && !policy_->paces_itself()) {
    // Load-driven: the same direction twice in a row, and no quick reversal of the last change.
    const bool confirmed = pending_dir_ == dir;
    pending_dir_ = dir;
    if (!confirmed) return;
    if (last_change_dir_ == -dir && now - last_change_ns_ < kReversalHoldNs) return;
  }
  pending_dir_ = 0;
  // Rollback watch: load-driven changes of a policy that searches for throughput, and only with a figure before.
  if (!forced && policy_->rollback_by_throughput() && throughput_hist_.size() > kRollbackWindow) {
    std::tie(before_throughput_, before_latency_) = last_window();
    rollback_from_ = procs;
    rollback_ticks_ = 0;
  } else {
    rollback_from_ = 0;
  }
  (dir > 0 ? st_.decisions_up : st_.decisions_down)++;
  auto& by = st_.decisions_by_policy[st_.policy];
  (dir > 0 ? by.up : by.down)++;
  last_change_dir_ = dir;
  last_change_ns_ = now;
  sched_.trace(sched::TraceKind::kDecision, 0, static_cast<uint32_t>(procs), static_cast<uint16_t>(target),
               forced ? 1 : 0);
  sched_.set_procs(target);
  if (cfg_.debug) {
    // The wall-clock time lets a script that wrote a cgroup file measure how long the change took to follow.
    timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    std::fprintf(stderr, "tern: controller: set procs %d -> %d (%s) at=%lld.%06ld\n", procs, target,
                 forced ? "limits" : "load", static_cast<long long>(wall.tv_sec), wall.tv_nsec / 1000);
  }
}

void Controller::schedtrace(int64_t now) {
  const sched::SchedStats s = sched_.stats();
  std::string line = "SCHED " + std::to_string((now - start_ns_) / 1'000'000) + "ms: procs=" + std::to_string(s.procs) +
                     " idleprocs=" + std::to_string(s.idle_procs) + " threads=" + std::to_string(s.threads) +
                     " spinning=" + std::to_string(s.spinning) + " runqueue=" + std::to_string(s.global_runnable) +
                     " [";
  for (size_t i = 0; i < s.per_p.size(); i++) {
    if (i > 0) line += ' ';
    line += std::to_string(s.per_p[i].runq);
  }
  line += "] target=" + std::to_string(st_.target);
  if (shadow_) line += " shadow=" + std::to_string(st_.shadow_target);
  line += " quota=" + fmt_double(st_.quota_cores, 1) + "\n";
  std::fputs(line.c_str(), stderr);
}

}  // namespace tern::controller
