// runtime/metrics/runtime_metrics.cc: the tern_* families, read at scrape time. Nothing here runs on the hot path:
// every figure is a sum the scheduler, the controller or the kernel already keeps.
#include "runtime/metrics/runtime_metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string_view>
#include <unordered_map>

#include "alloc/arena.h"
#include "runtime/blocking.h"
#include "runtime/controller/controller.h"
#include "runtime/pool.h"
#include "scheduler/sched.h"

namespace tern::metrics {

namespace {

Family& family(Snapshot& out, std::string name, Type type, std::string help) {
  Family f;
  f.name = std::move(name);
  f.type = type;
  f.help = std::move(help);
  out.push_back(std::move(f));
  return out.back();
}

void one(Snapshot& out, std::string name, Type type, std::string help, double v) {
  Series s;
  s.value = v;
  family(out, std::move(name), type, std::move(help)).series.push_back(std::move(s));
}

void labeled(Family& f, Labels labels, double v) {
  Series s;
  s.labels = std::move(labels);
  s.value = v;
  f.series.push_back(std::move(s));
}

double seconds(uint64_t ns) {
  return static_cast<double>(ns) * 1e-9;
}

double process_cpu_s() {
  timespec ts{};
  if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) return NAN;
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Resident set size from /proc/self/statm (its second field, in pages); NaN when unreadable. What the kernel charges
// the process for: tern-capacity takes memory per connection from how this grows (tern_stack_bytes counts stacks' whole
// mappings, most of which are never touched).
double resident_bytes() {
  FILE* f = std::fopen("/proc/self/statm", "re");
  if (f == nullptr) return NAN;
  unsigned long size = 0, resident = 0;
  const bool ok = std::fscanf(f, "%lu %lu", &size, &resident) == 2;
  std::fclose(f);
  if (!ok) return NAN;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE));
}

double open_fds(const std::string& fs_root) {
  const std::string dir = (fs_root == "/" ? std::string() : fs_root) + "/proc/self/fd";
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return NAN;
  int n = 0;
  while (const dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') n++;
  }
  closedir(d);
  return n - 1;  // the descriptor opendir itself holds
}

// The runtimes whose metrics the process exposes, oldest first. Leaked on purpose: the collector that reads it is never
// removed, so it must outlive every scrape, one from a debug thread still running during static destruction included.
struct Exposed {
  std::mutex mu;  // taken inside the registry's collectors' lock (a scrape), never around a call into the registry
  std::vector<std::pair<std::string, RuntimeMetrics*>> live;  // (label, metrics)
};

Exposed& exposed() {
  static Exposed* e = [] {
    auto* ex = new Exposed;
    add_collector([ex](Snapshot& out) {
      std::lock_guard lk(ex->mu);
      if (ex->live.size() == 1) {
        ex->live[0].second->collect(out);  // one runtime: its families exactly as before runtimes had names
        return;
      }
      std::vector<std::pair<std::string, Snapshot>> per;
      for (auto& [label, m] : ex->live) {
        per.emplace_back(label, Snapshot{});
        m->collect(per.back().second);
      }
      for (Family& f : merged_runtimes(std::move(per))) out.push_back(std::move(f));
    });
    return ex;
  }();
  return *e;
}

}  // namespace

std::string expose_runtime(const std::string& name, uint64_t id, RuntimeMetrics* m) {
  Exposed& e = exposed();
  std::lock_guard lk(e.mu);
  std::string label = name;
  if (std::any_of(e.live.begin(), e.live.end(), [&](const auto& r) { return r.first == name; })) {
    label += "-" + std::to_string(id);
  }
  e.live.emplace_back(label, m);
  return label;
}

void hide_runtime(RuntimeMetrics* m) {
  Exposed& e = exposed();
  std::lock_guard lk(e.mu);  // a scrape reading m holds it: once we have it, none is
  std::erase_if(e.live, [m](const auto& r) { return r.second == m; });
}

bool process_wide(const std::string& family) {
  static constexpr std::string_view kProcessWide[] = {
      "process_cpu_seconds_total",
      "process_resident_memory_bytes",
      "tern_mutex_wait_seconds_total",
      "tern_cgroup_cpu_quota_cores",
      "tern_cgroup_throttled_periods_total",
      "tern_cgroup_throttled_seconds_total",
      "tern_heap_bytes",
      "tern_allocator_info",
      "tern_pool_hits_total",
      "tern_pool_misses_total",
      "tern_pool_drops_total",
      "tern_pool_objects",
      "tern_fds_open",
      "tern_fds_limit",
      "tern_blocking_pool_threads",  // spawn_blocking's pool is the process's
      "tern_blocking_pool_max_threads",
      "tern_blocking_pool_queued",
  };
  return std::find(std::begin(kProcessWide), std::end(kProcessWide), family) != std::end(kProcessWide);
}

Snapshot merged_runtimes(std::vector<std::pair<std::string, Snapshot>> per_runtime) {
  if (per_runtime.empty()) return {};
  if (per_runtime.size() == 1) return std::move(per_runtime[0].second);
  Snapshot out;
  std::unordered_map<std::string, size_t> at;  // family name -> its index in out
  for (size_t r = 0; r < per_runtime.size(); r++) {
    auto& [label, snap] = per_runtime[r];
    for (Family& f : snap) {
      const bool shared = process_wide(f.name);
      if (shared && r > 0) continue;
      auto [it, fresh] = at.try_emplace(f.name, out.size());
      if (fresh) {
        Family g;
        g.name = f.name;
        g.help = std::move(f.help);
        g.type = f.type;
        out.push_back(std::move(g));
      }
      Family& into = out[it->second];
      for (Series& s : f.series) {
        if (!shared) s.labels.insert(s.labels.begin(), {"runtime", label});
        into.series.push_back(std::move(s));
      }
    }
  }
  return out;
}

Counter& mutex_wait_ns() {
  static Counter& c = *detail::hidden_counter("tern_mutex_wait_ns").value();
  return c;
}

Gauge& connections_open() {
  static Gauge& g = *gauge("tern_connections_open", "tern::net streams (connections) open now").value();
  return g;
}

RuntimeMetrics::RuntimeMetrics(sched::Sched& sched, controller::Controller& controller, const std::string& fs_root)
    : sched_(sched), controller_(controller), discovery_(fs_root) {
  mutex_wait_ns();
  connections_open();
}

void RuntimeMetrics::collect(Snapshot& out) {
  const sched::SchedStats st = sched_.stats();
  const controller::ControllerStats cs = controller_.stats();

  one(out, "tern_procs", Type::kGauge, "processors (Ps) now", st.procs);
  CpuLimits lim;
  Result<CpuThrottle> thr = CpuThrottle{};
  {
    std::lock_guard lk(mu_);
    lim = discovery_.cpu_limits();
    thr = discovery_.throttle();
  }
  {
    Family& f = family(out, "tern_procs_limit", Type::kGauge,
                       "processor limits by source: CPU affinity, cgroup cpuset, CPU quota (cores, rounded up), and "
                       "the controller's max; NaN where unknown or absent");
    labeled(f, {{"source", "affinity"}}, lim.affinity_cpus > 0 ? lim.affinity_cpus : NAN);
    labeled(f, {{"source", "cpuset"}}, lim.cpuset_cpus > 0 ? lim.cpuset_cpus : NAN);
    labeled(f, {{"source", "quota"}}, lim.has_quota() ? std::ceil(lim.quota_cores) : NAN);
    // The controller's bound; before its first tick (or with the static policy, which never ticks) the automatic one:
    // the CPUs, and the quota's ceiling.
    int max = cs.procs_max;
    if (max <= 0 && lim.cpus > 0) {
      max = lim.cpus;
      if (lim.has_quota()) max = std::min(max, std::max(1, static_cast<int>(std::ceil(lim.quota_cores))));
    }
    labeled(f, {{"source", "max"}}, max > 0 ? max : NAN);
  }
  {
    // Ms holding a P run fibers or spin looking for them; Ms without one sleep in the idle list or hold the poller
    // role (idle), or are on their way between the two (blocked).
    const int held = std::max(0, st.procs - st.idle_procs);
    const int spinning = std::min(st.spinning, held);
    // A P reserved by an M inside tern::blocking is not idle, but its M runs no fibers: that M counts as blocked.
    int reserved = 0;
    for (const auto& p : st.per_p) reserved += std::string_view(p.status) == "blocking";
    const int running = std::max(0, held - spinning - reserved);
    const int idle = st.idle_threads + (st.polling ? 1 : 0);
    const int blocked = std::max(0, st.threads - running - spinning - idle);
    Family& f = family(out, "tern_threads", Type::kGauge,
                       "OS threads (Ms) by state: running fibers (holding a P), spinning (holding a P, looking for "
                       "work), idle (parked without a P, or holding the poller role), blocked (in tern::blocking, or "
                       "on their way between states; a fiber blocking its thread outside tern::blocking counts as "
                       "running)");
    labeled(f, {{"state", "running"}}, running);
    labeled(f, {{"state", "idle"}}, idle);
    labeled(f, {{"state", "spinning"}}, spinning);
    labeled(f, {{"state", "blocked"}}, blocked);
  }
  {
    uint64_t running = 0;
    for (const auto& p : st.per_p) running += p.fiber != 0;
    const uint64_t waiting = st.live > st.runnable + running ? st.live - st.runnable - running : 0;
    Family& f = family(out, "tern_fibers", Type::kGauge, "fibers by state (waiting: parked)");
    labeled(f, {{"state", "runnable"}}, static_cast<double>(st.runnable));
    labeled(f, {{"state", "running"}}, static_cast<double>(running));
    labeled(f, {{"state", "waiting"}}, static_cast<double>(waiting));
  }
  one(out, "tern_fibers_spawned_total", Type::kCounter, "fibers started", static_cast<double>(st.spawned));
  one(out, "tern_work_total", Type::kCounter,
      "the application's work counter (tern::count_work: requests served, say), which throughput policies read",
      static_cast<double>(st.work));
  {
    Family& q = family(out, "tern_runq_length", Type::kGauge, "fibers in each P's local queue and runnext");
    for (const auto& p : st.per_p) labeled(q, {{"p", std::to_string(p.id)}}, static_cast<double>(p.runq));
  }
  one(out, "tern_global_runq_length", Type::kGauge, "fibers in the global queue",
      static_cast<double>(st.global_runnable));
  {
    Family& b = family(out, "tern_proc_busy_seconds_total", Type::kCounter,
                       "time each P was held by an M (running fibers, polling, spinning)");
    for (const auto& p : st.per_p) labeled(b, {{"p", std::to_string(p.id)}}, seconds(p.busy_ns));
  }
  one(out, "process_cpu_seconds_total", Type::kCounter, "user and system CPU time of the process", process_cpu_s());
  one(out, "process_resident_memory_bytes", Type::kGauge, "resident set size of the process", resident_bytes());
  {
    // scope: from a P on the thief's own NUMA node, or another node's (runtime/topology.h; all "node" without one).
    Family& f = family(out, "tern_steals_total", Type::kCounter, "fibers taken from other Ps' queues");
    labeled(f, {{"scope", "node"}}, static_cast<double>(st.steals - st.steals_remote));
    labeled(f, {{"scope", "remote"}}, static_cast<double>(st.steals_remote));
  }
  {
    // Log2 buckets of nanoseconds: bucket i counts [2^i, 2^(i+1)) ns, so its upper bound is 2^(i+1) ns.
    Family& f = family(out, "tern_sched_latency_seconds", Type::kHistogram,
                       "time from runnable to running, estimated from sampled readies");
    Series s;
    uint64_t cum = 0;
    for (int i = 0; i < sched::kLatencyBuckets; i++) {
      cum += st.latency[i];
      s.buckets.emplace_back(i + 1 < sched::kLatencyBuckets ? std::ldexp(1e-9, i + 1) : INFINITY, cum);
    }
    s.count = cum;
    s.sum = seconds(st.latency_sum_ns);
    f.series.push_back(std::move(s));
  }
  {
    // A P with fibers queued whose switch count has not moved since the monitor saw it has made them wait at least
    // as long as its current fiber has run; the controller's last sample adds the longest sampled wait (it does not
    // tick with the static policy, hence both).
    double oldest = cs.running && std::isfinite(cs.last.oldest_runnable_s) ? cs.last.oldest_runnable_s : 0;
    for (const auto& p : st.per_p) {
      if (p.runq > 0 && p.running_ns > 0) oldest = std::max(oldest, seconds(static_cast<uint64_t>(p.running_ns)));
    }
    one(out, "tern_oldest_runnable_seconds", Type::kGauge,
        "how long the longest-waiting runnable fiber has waited, as far as is seen cheaply (a lower bound)", oldest);
  }
  one(out, "tern_netpoll_ready_total", Type::kCounter, "polls of the network that returned fibers",
      static_cast<double>(st.polls));
  one(out, "tern_netpoll_polls_total", Type::kCounter, "polls of the network, found fibers or not",
      static_cast<double>(st.poll_calls));
  one(out, "tern_netpoll_first_total", Type::kCounter,
      "fibers a poll of the network readied while work was queued, started ahead of that work",
      static_cast<double>(st.io_first));
  one(out, "tern_context_switches_total", Type::kCounter, "fiber resumptions", static_cast<double>(st.switches));
  one(out, "tern_mutex_wait_seconds_total", Type::kCounter, "time fibers spent blocked on a contended tern::Mutex",
      seconds(mutex_wait_ns().value()));
  one(out, "tern_preemptions_total", Type::kCounter,
      "yields at a preempt point (a channel or socket operation, tern::preempt_point) by a fiber the monitor saw run "
      "a whole 10 ms period",
      static_cast<double>(st.preempted));
  one(out, "tern_stalls_total", Type::kCounter,
      "fibers the stall detector (TERN_STALL_MS) reported: each ran that long without a switch",
      static_cast<double>(st.stalls));
  one(out, "tern_blocking_calls_total", Type::kCounter, "tern::blocking calls", static_cast<double>(st.blocking_calls));
  one(out, "tern_blocking_retakes_total", Type::kCounter,
      "tern::blocking calls that outlasted 20 us, whose processor the monitor handed to another thread",
      static_cast<double>(st.retakes));
  one(out, "tern_thread_limit_hits_total", Type::kCounter,
      "times a thread was wanted at the runtime's bound (max_threads) and not started",
      static_cast<double>(st.thread_limit_hits));
  {
    const BlockingPool::Stats b = BlockingPool::instance().stats();
    Family& f = family(out, "tern_blocking_pool_threads", Type::kGauge,
                       "threads of tern::spawn_blocking's pool (one per process) by state");
    labeled(f, {{"state", "busy"}}, b.threads - b.idle);
    labeled(f, {{"state", "idle"}}, b.idle);
    one(out, "tern_blocking_pool_max_threads", Type::kGauge, "the pool's bound", b.max_threads);
    one(out, "tern_blocking_pool_queued", Type::kGauge, "spawn_blocking calls waiting for a pool thread",
        static_cast<double>(b.queued));
  }
  one(out, "tern_long_running_total", Type::kCounter,
      "times the monitor saw one fiber hold a P for a whole 10 ms period with work queued behind it",
      static_cast<double>(st.long_running));

  one(out, "tern_controller_target_procs", Type::kGauge, "the active policy's last target, clamped", cs.target);
  one(out, "tern_controller_shadow_procs", Type::kGauge, "the shadow policy's last target (0: no shadow policy)",
      cs.shadow_target);
  {
    Family& f = family(out, "tern_controller_decisions_total", Type::kCounter,
                       "processor-count changes the controller applied");
    labeled(f, {{"policy", cs.policy}, {"direction", "up"}}, 0);
    labeled(f, {{"policy", cs.policy}, {"direction", "down"}}, 0);
    for (const auto& [policy, d] : cs.decisions_by_policy) {
      for (int dir = 0; dir < 2; dir++) {
        const char* name = dir == 0 ? "up" : "down";
        const double v = static_cast<double>(dir == 0 ? d.up : d.down);
        auto it = std::find_if(f.series.begin(), f.series.end(), [&](const Series& s) {
          return s.labels[0].second == policy && s.labels[1].second == name;
        });
        if (it != f.series.end()) {
          it->value = v;
        } else {
          labeled(f, {{"policy", policy}, {"direction", name}}, v);
        }
      }
    }
  }
  one(out, "tern_controller_rollbacks_total", Type::kCounter, "changes reverted for a throughput or latency drop",
      static_cast<double>(cs.rollbacks));
  {
    Family& f = family(out, "tern_controller_errors_total", Type::kCounter, "failed readings by reason");
    for (const auto& [reason, n] : cs.errors) labeled(f, {{"reason", reason}}, static_cast<double>(n));
  }

  one(out, "tern_cgroup_cpu_quota_cores", Type::kGauge, "the tightest CPU quota along the cgroup, in cores (NaN: none)",
      lim.quota_ok && lim.has_quota() ? lim.quota_cores : NAN);
  one(out, "tern_cgroup_throttled_periods_total", Type::kCounter,
      "CFS periods in which the cgroup was throttled (cpu.stat; NaN where it cannot be read)",
      thr ? static_cast<double>(thr->throttled_periods) : NAN);
  one(out, "tern_cgroup_throttled_seconds_total", Type::kCounter, "time the cgroup was throttled (cpu.stat)",
      thr ? thr->throttled_s : NAN);

  {
    const double size = static_cast<double>(st.stacks.stack_size);
    const double in_use = static_cast<double>(st.stacks.in_use);
    const double mapped = static_cast<double>(st.stacks.mapped);
    Family& f = family(out, "tern_stack_bytes", Type::kGauge,
                       "usable bytes of fiber stacks mapped: in use by fibers, or cached for reuse (virtual; pages "
                       "commit on first touch)");
    labeled(f, {{"state", "in_use"}}, in_use * size);
    labeled(f, {{"state", "cached"}}, std::max(0.0, mapped - in_use) * size);
  }
  {
    const alloc::HeapStats hs = alloc::heap_stats();
    Family& f = family(out, "tern_heap_bytes", Type::kGauge,
                       "the heap of tern's own allocations (alloc/arena.h; tern_allocator_info says which): jemalloc's "
                       "stats.allocated, active, resident, metadata; glibc's mallinfo2 with malloc");
    labeled(f, {{"kind", "allocated"}}, hs.allocated);
    labeled(f, {{"kind", "active"}}, hs.active);
    labeled(f, {{"kind", "resident"}}, hs.resident);
    labeled(f, {{"kind", "metadata"}}, hs.metadata);
    Family& a = family(out, "tern_allocator_info", Type::kGauge,
                       "1, labelled with the allocator of tern's own allocations: jemalloc-private (tern's copy; the "
                       "program's malloc untouched), jemalloc-process (the program's malloc is jemalloc) or malloc");
    labeled(a, {{"allocator", alloc::heap_name()}}, 1);
  }
  if (const auto pools = tern::detail::all_pool_stats(); !pools.empty()) {
    // tern::Pool (runtime/pool.h): process-wide, like the heap.
    Family& hits = family(out, "tern_pool_hits_total", Type::kCounter, "tern::Pool gets answered from a P's cache");
    Family& misses = family(out, "tern_pool_misses_total", Type::kCounter, "tern::Pool gets that made a new object");
    Family& drops = family(out, "tern_pool_drops_total", Type::kCounter,
                           "tern::Pool objects dropped: put into a full cache, or aged out by two cycles");
    Family& objects = family(out, "tern_pool_objects", Type::kGauge,
                             "objects tern::Pool holds: in the P caches (primary) and from the last cycle (victim)");
    for (const auto& [name, st] : pools) {
      labeled(hits, {{"pool", name}}, static_cast<double>(st.hits));
      labeled(misses, {{"pool", name}}, static_cast<double>(st.misses));
      labeled(drops, {{"pool", name}}, static_cast<double>(st.drops));
      labeled(objects, {{"pool", name}, {"state", "primary"}}, static_cast<double>(st.primary));
      labeled(objects, {{"pool", name}, {"state", "victim"}}, static_cast<double>(st.victim));
    }
  }
  one(out, "tern_fds_open", Type::kGauge, "file descriptors open in the process", open_fds("/"));
  rlimit rl{};
  one(out, "tern_fds_limit", Type::kGauge, "RLIMIT_NOFILE's soft limit",
      getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? static_cast<double>(rl.rlim_cur) : NAN);
}

}  // namespace tern::metrics
