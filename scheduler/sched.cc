// scheduler/sched.cc: the Sched object: construction, the M threads' main loop, shutdown with its leak check, and
// statistics. The model is described at the top of scheduler/sched.h; the rest of Sched lives in the files named there.
#include "scheduler/sched.h"

#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <system_error>
#include <thread>

#include "alloc/arena.h"
#include "scheduler/context.h"
#include "scheduler/global_queue.h"
#include "scheduler/idle_poller.h"
#include "scheduler/m.h"
#include "scheduler/p.h"
#include "scheduler/park.h"
#include "scheduler/sched_internal.h"
#include "scheduler/stack_guard.h"

namespace tern::sched {

namespace {

// Initial-exec TLS: one instruction to read, and safe to read from the stack-overflow signal handler.
__attribute__((tls_model("initial-exec"))) thread_local M* tls_m = nullptr;

// Runtime ids are unique within the process (they name runtimes in leak reports); the counter carries no behaviour.
std::atomic<uint64_t> g_next_sched_id{1};

// An environment variable that is a number (0x.. allowed); `fallback` if it is unset, and with a warning if garbled.
uint64_t env_number(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  errno = 0;
  const unsigned long long n = std::strtoull(v, &end, 0);
  if (errno != 0 || end == v || *end != '\0') {
    std::fprintf(stderr, "tern: %s=%s is not a number; ignored\n", name, v);
    return fallback;
  }
  return n;
}

}  // namespace

void terminate_uncaught(uint64_t id, std::exception_ptr e) {
  const char* what = "(not a std::exception)";
  std::string msg;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    msg = ex.what();
    what = msg.c_str();
  } catch (...) {
  }
  std::fprintf(stderr, "tern: fiber %llu terminated by an uncaught exception: %s\n",
               static_cast<unsigned long long>(id), what);
  std::fflush(stderr);
  std::abort();
}

__attribute__((noinline)) M* this_m() {
  asm volatile("" ::: "memory");  // a fresh read after every switch: the fiber may have moved threads
  return tls_m;
}
__attribute__((noinline)) void set_this_m(M* m) {
  tls_m = m;
}
M* this_m_for_signal() {
  return tls_m;
}

Sched::Sched(SchedOptions opts)
    : opts_(std::move(opts)),
      id_(g_next_sched_id.fetch_add(1, std::memory_order_relaxed)),
      allp_(new std::atomic<P*>[kMaxProcs]),
      global_(std::make_unique<GlobalQueue>()) {
  if (!opts_.on_uncaught) opts_.on_uncaught = terminate_uncaught;
  // One stack pool per node: as many as the placement names (its slots' nodes), or SchedOptions::numa_nodes.
  int wanted_nodes = opts_.numa_nodes;
  for (const PlacementSlot& sl : opts_.placement) wanted_nodes = std::max(wanted_nodes, sl.node + 1);
  const int nodes = std::clamp(wanted_nodes, 1, kMaxNumaNodes);
  for (int node = 0; node < nodes; node++) {
    stacks_.push_back(
        std::make_unique<alloc::StackPool>(alloc::StackPoolOptions{.stack_size = opts_.stack_size,
                                                                   .high_watermark = opts_.stack_high_watermark,
                                                                   .node = node,
                                                                   .bind_node = nodes > 1}));
  }
  // And the node arenas' pages bound to their nodes, as the stacks are (alloc/arena.h).
  if (nodes > 1 && opts_.node_arenas) alloc::bind_arenas_to_nodes();
  if (opts_.chaos_seed == 0) opts_.chaos_seed = env_number("TERN_CHAOS", 0);
  if (!opts_.leak_check) opts_.leak_check = env_number("TERN_LEAK_CHECK", 0) != 0;
  chaos_ = opts_.chaos_seed != 0;
  tracer_ = opts_.tracer;
  hooks_ = chaos_ || static_cast<bool>(opts_.on_point);
  pin_ = !opts_.placement.empty();
  for (const PlacementSlot& sl : opts_.placement) multi_node_ |= sl.node != opts_.placement[0].node;
  if (pin_) process_mask_ = CpuMask::of_process();
  if (chaos_) {
    // One line, so that a failing test's log says how to replay its schedule.
    std::fprintf(stderr, "tern: chaos schedule, seed %llu\n", static_cast<unsigned long long>(opts_.chaos_seed));
  }
  install_stack_guard_handler();
  ticks_init();
  refresh_coarse_clock(now_ns());
  // The poller is fixed before any thread of this runtime (monitor, Ms) starts: they read poller_ without a lock.
  if (opts_.poller != nullptr) {
    poller_ = opts_.poller;
  } else {
    idle_poller_ = std::make_unique<IdlePoller>();
    poller_ = idle_poller_.get();
  }
  for (int i = 0; i < kMaxProcs; i++) allp_[i].store(nullptr, std::memory_order_relaxed);
  int n = std::clamp(opts_.procs, 1, kMaxProcs);
  std::lock_guard lk(sched_mu_);
  for (int i = 0; i < n; i++) {
    allp_[i].store(make_p(i), std::memory_order_release);
  }
  nprocs_.store(n, std::memory_order_release);
  nscan_.store(n, std::memory_order_release);
  for (int i = n - 1; i >= 0; i--) pidleput(allp_[i].load(std::memory_order_relaxed));
  monitor_ = std::thread([this] { monitor_main(); });
}

Sched::~Sched() {
  shutdown();
}

void Sched::on_uncaught(uint64_t id, std::exception_ptr e) {
  opts_.on_uncaught(id, std::move(e));
}

void m_main(M* m) {
  set_this_m(m);
  m->pthread.store(pthread_self(), std::memory_order_release);
  StackGuardThread guard;
  m->g0_tsan_fiber = ctx::tsan_current();
  Sched* s = m->sched;
  // newm() hands the first P over before the thread starts.
  P* p = m->nextp;
  m->nextp = nullptr;
  s->acquirep(m, p);
  m->spinning = m->next_spinning;
  for (;;) {
    if (m->locked_g != nullptr) {  // lock_to_thread: this M runs that fiber only
      if (!s->run_locked(m)) break;
      continue;
    }
    G* g = s->find_runnable(m);
    if (g == nullptr) break;
    if (M* lm = g->locked_m.load(std::memory_order_relaxed); lm != nullptr && lm != m) [[unlikely]] {
      s->hand_to_locked(m, g);
      continue;
    }
    // The M allocates on the arena of its P's node (alloc/arena.h): checked here, where the M has the P it runs g on,
    // and not on each switch (a handoff keeps the M and the P).
    if (s->opts_.node_arenas && m->p->node != m->arena_node) [[unlikely]] {
      alloc::bind_thread(m->p->node);
      m->arena_node = m->p->node;
    }
    s->execute(m, g);
  }
  s->stop_spinning(m);
  if (m->p != nullptr) {
    std::lock_guard lk(s->sched_mu_);
    s->pidleput(s->releasep(m));
  }
  set_this_m(nullptr);
  m->exited.store(true, std::memory_order_release);
}

M* Sched::newm() {
  auto* m = new M;
  m->sched = this;
  {
    std::lock_guard lk(sched_mu_);
    m->id = next_m_id_++;
    allm_.push_back(m);
  }
  m->rand_state = 0xD1B54A32D192ED03ull * (m->id + 1) ^ id_;
  m->chaos_state = chaos_stream(opts_.chaos_seed, static_cast<uint64_t>(m->id));
  return m;
}

P* Sched::make_p(int i) {
  const int last = static_cast<int>(stacks_.size()) - 1;
  // The placement's slot decides the node (and the PU: place() below); without one, SchedOptions::p_node.
  const PlacementSlot* sl = slot(i);
  const int node = std::clamp(sl != nullptr ? sl->node : opts_.p_node ? opts_.p_node(i) : 0, 0, last);
  P* p = new P(i, *stacks_[static_cast<size_t>(node)]);
  place(p);
  p->node = node;
  p->rand_state = p_rand_seed(i, id_);
  if (tracer_ != nullptr) p->trace = tracer_->buffer_for_p(i);
  return p;
}

alloc::Stack Sched::get_stack_slow(P* p) {
  alloc::Stack s = p != nullptr ? alloc::Stack{} : stacks_[0]->get();
  if (s.valid()) return s;
  // Exhausted on this node (the map table, or memory): another node's free stacks are better than failing.
  const int home = p != nullptr ? p->stacks.node() : 0;
  for (auto& pool : stacks_) {
    if (pool->node() == home) continue;
    if (s = pool->get(); s.valid()) break;
  }
  return s;
}

alloc::StackStats Sched::stack_stats() const {
  alloc::StackStats st = stacks_[0]->stats();
  for (size_t i = 1; i < stacks_.size(); i++) {
    const alloc::StackStats n = stacks_[i]->stats();
    st.mapped += n.mapped;
    st.in_use += n.in_use;
    st.free_global += n.free_global;
    st.released += n.released;
    st.unmapped += n.unmapped;
    st.map_failures += n.map_failures;
    st.taken_from_caches += n.taken_from_caches;
    st.batches += n.batches;
    st.binds += n.binds;
    st.bind_failures += n.bind_failures;
    st.prefaulted += n.prefaulted;
    st.foreign += n.foreign;
    if (n.map_errno != 0) st.map_errno = n.map_errno;
    st.guard_regions = st.guard_regions && n.guard_regions;
  }
  return st;
}

void Sched::stack_exhausted() {
  // Reached only once the pool could not map and no other P's cache had a stack to spare (StackCache::get).
  std::fprintf(stderr, "tern: fatal: %s. Start fibers with tern::try_go or Runtime::try_go to get this as an error.\n",
               alloc::exhausted_message(stack_stats()).c_str());
  std::fflush(stderr);
  std::abort();
}

// Shutdown: empties the idle M list, waking each M on it (they see shutting_down_ and exit).
void Sched::wake_idle_ms() {
  sched_mu_.assert_held();
  while (midle_ != nullptr) {
    M* m = midle_;
    midle_ = m->link;
    m->link = nullptr;
    m->in_idle_list = false;
    m->note.wakeup();
  }
}

void Sched::shutdown() {
  if (shutting_down_.exchange(true)) return;
  // A thread outside the runtime that readied the fiber whose end led here may still be inside ready() (idle.cc).
  while (foreign_readies_.load(std::memory_order_acquire) != 0) std::this_thread::yield();
  // Wake everything that sleeps; an M running a fiber stops at its next scheduling point.
  std::vector<M*> ms;
  {
    std::lock_guard lk(sched_mu_);
    wake_idle_ms();
  }
  poller_->wake();
  monitor_note_.wakeup();
  if (monitor_.joinable()) monitor_.join();
  // Ms may still be created by a startm racing with the flag; allm_ only grows, so loop until every M is joined.
  for (size_t joined = 0;;) {
    M* m = nullptr;
    {
      std::lock_guard lk(sched_mu_);
      if (joined == allm_.size()) break;
      m = allm_[joined];
      wake_idle_ms();
    }
    poller_->wake();
    if (m->locked_wait.load()) m->note.wakeup();  // an M locked to a fiber sleeps apart from the idle list
    if (m->thread.joinable()) m->thread.join();
    joined++;
  }
  LeakReport leaks;
  if (opts_.leak_check) {
    for (M* m : allm_) {
      if (m->thread.joinable() || !m->exited.load(std::memory_order_acquire)) leaks.ms_running++;
    }
    for (int i = 0; i < kMaxProcs; i++) {
      P* p = allp_[i].load(std::memory_order_acquire);
      if (p != nullptr && p->m != nullptr) leaks.ps_held++;
    }
  }
  for (M* m : allm_) delete m;
  allm_.clear();
  // Every fiber, whatever its state, goes: closures never run are destroyed, stacks return to the pool.
  for (G* block : gblocks_) {
    for (size_t i = 0; i < kGBlock; i++) {
      G& g = block[i];
      if (opts_.leak_check) leaks.count(g);
      g.task.reset();
      if (g.stack.valid()) put_stack_home(g.stack);
      g.stack = {};
      ctx::tsan_destroy(g.tsan_fiber);
      g.tsan_fiber = nullptr;
    }
  }
  for (G* block : gblocks_) free_g_block(block, opts_.node_arenas);
  gblocks_.clear();
  for (int i = 0; i < kMaxProcs; i++) {
    P* p = allp_[i].exchange(nullptr);
    if (p != nullptr) {
      clear_preempt(p);  // the process-wide count of marks must not keep this runtime's
      // Timers still in the heap belong to objects that may outlive the runtime (a poller's wait slots keep theirs in
      // the heap between waits): they are let go, so a later cancel_timer() finds them in no heap.
      std::lock_guard lk(p->timers_mu);
      for (Timer* t : p->timers) {
        t->index = -1;
        t->p.store(nullptr, std::memory_order_release);
      }
      p->timers.clear();
    }
    delete p;
  }
  if (opts_.leak_check) {
    // Every G record gave its stack back and every P's cache was flushed (deleting the P): none may be in use now.
    leaks.stacks_in_use = stack_stats().in_use;
    leaks.report(id_);
  }
}

// The shutdown leak check's findings (SchedOptions::leak_check).
void Sched::LeakReport::count(const G& g) {
  switch (g.status.load(std::memory_order_relaxed)) {
    case GStatus::kWaiting:
      parked++;
      break;
    case GStatus::kRunnable:
      queued++;
      break;
    case GStatus::kRunning:
      running++;
      break;
    default:
      return;
  }
  if (nids < kMaxIds) ids[nids++] = g.id;
}

void Sched::LeakReport::report(uint64_t sched_id) const {
  if (const uint64_t live = parked + queued + running; live > 0) {
    // A user-level leak (like Go's goleak): fibers that never finished. Informational: a test may end so on purpose.
    std::string list;
    for (size_t i = 0; i < nids; i++) list += (i > 0 ? " " : "") + std::to_string(ids[i]);
    std::fprintf(stderr,
                 "tern: leak check: %llu fibers still alive at shutdown of runtime %llu (%llu parked, %llu queued, "
                 "%llu running); fiber ids: %s%s\n",
                 static_cast<unsigned long long>(live), static_cast<unsigned long long>(sched_id),
                 static_cast<unsigned long long>(parked), static_cast<unsigned long long>(queued),
                 static_cast<unsigned long long>(running), list.c_str(), live > nids ? " ..." : "");
  }
  if (stacks_in_use == 0 && ms_running == 0 && ps_held == 0) return;
  std::fprintf(stderr,
               "tern: leak check: runtime leak at shutdown of runtime %llu: %llu fiber stacks still in use after every "
               "fiber gave its stack back, %llu threads (Ms) not joined, %llu Ps still held by an M\n",
               static_cast<unsigned long long>(sched_id), static_cast<unsigned long long>(stacks_in_use),
               static_cast<unsigned long long>(ms_running), static_cast<unsigned long long>(ps_held));
  std::fflush(stderr);
  std::abort();
}

void Sched::count_work(uint64_t n) {
  M* m = this_m();
  if (m != nullptr && m->sched == this && m->p != nullptr) {
    bump(m->p->counters.work, n);
  } else {
    outside_work_.fetch_add(n, std::memory_order_relaxed);
  }
}

SchedStats Sched::stats() const {
  SchedStats st;
  st.procs = nprocs_.load(std::memory_order_relaxed);
  st.idle_procs = npidle_.load(std::memory_order_relaxed);
  st.spinning = nmspinning_.load(std::memory_order_relaxed);
  st.polling = polling_.load(std::memory_order_relaxed);
  st.poller_claims = poller_claims_.load(std::memory_order_relaxed);
  st.park_io_wakes = park_io_wakes_.load(std::memory_order_relaxed);
  st.park_io_takes = park_io_takes_.load(std::memory_order_relaxed);
  {
    std::lock_guard lk(sched_mu_);
    st.threads = static_cast<int>(allm_.size());
    for (const M* m = midle_; m != nullptr; m = m->link) st.idle_threads++;
    for (const M* m : allm_) st.blocked_threads += m->blocking_p.load(std::memory_order_relaxed) != nullptr;
  }
  st.spawned = outside_spawned_.load(std::memory_order_relaxed);
  st.work = outside_work_.load(std::memory_order_relaxed);
  const int nprocs = st.procs;
  const int64_t now = now_ns();
  for (int i = 0; i < kMaxProcs; i++) {
    P* p = allp_[i].load(std::memory_order_acquire);
    if (p == nullptr) break;
    const PCounters& c = p->counters;
    st.spawned += c.spawned.load(std::memory_order_relaxed);
    st.finished += c.finished.load(std::memory_order_relaxed);
    st.switches += c.switches.load(std::memory_order_relaxed);
    st.yields += c.yields.load(std::memory_order_relaxed);
    st.parks += c.parks.load(std::memory_order_relaxed);
    st.steals += c.steals.load(std::memory_order_relaxed);
    st.steals_remote += c.steals_remote.load(std::memory_order_relaxed);
    st.rescued += c.rescued.load(std::memory_order_relaxed);
    st.global_taken += c.global_taken.load(std::memory_order_relaxed);
    st.overflows += c.overflows.load(std::memory_order_relaxed);
    st.timers_fired += c.timers_fired.load(std::memory_order_relaxed);
    st.polls += c.polls.load(std::memory_order_relaxed);
    st.poll_calls += c.poll_calls.load(std::memory_order_relaxed);
    st.io_first += c.io_first.load(std::memory_order_relaxed);
    st.blocking_calls += c.blocking.load(std::memory_order_relaxed);
    st.preempted += c.preempted.load(std::memory_order_relaxed);
    st.work += c.work.load(std::memory_order_relaxed);
    for (int b = 0; b < kLatencyBuckets; b++) st.latency[b] += c.latency[b].load(std::memory_order_relaxed);
    st.latency_sum_ns += c.latency_sum_ns.load(std::memory_order_relaxed);
    // Busy time up to now: the closed spans, plus the open one if an M holds the P (read in this order, a release
    // racing with the read can count its span twice for one reading; later readings are right again).
    const int64_t since = p->busy_since.load(std::memory_order_relaxed);
    uint64_t busy = c.busy_ns.load(std::memory_order_relaxed);
    if (since != 0 && now > since) busy += static_cast<uint64_t>(now - since);
    st.busy_ns += busy;
    uint64_t queued = 0;
    if (i < scan_bound())
      queued = p->runq.size() + p->ioq.size() + (p->runnext.load(std::memory_order_relaxed) != nullptr);
    st.runnable += queued;
    if (i < nprocs) {
      const PStatus ps = p->status.load(std::memory_order_relaxed);
      SchedStats::Proc pr{p->id, ps == PStatus::kIdle, queued, c.switches.load(std::memory_order_relaxed), busy};
      pr.status = ps == PStatus::kIdle       ? "idle"
                  : ps == PStatus::kRunning  ? "running"
                  : ps == PStatus::kRetiring ? "retiring"
                  : ps == PStatus::kBlocking ? "blocking"
                                             : "dead";
      pr.m = p->m_id.load(std::memory_order_relaxed);
      pr.fiber = p->running_g.load(std::memory_order_relaxed);
      if (pr.fiber != 0 && pr.switches == p->monitor_tick.load(std::memory_order_relaxed)) {
        const int64_t seen = p->monitor_since.load(std::memory_order_relaxed);
        if (seen != 0) pr.running_ns = std::max<int64_t>(0, now - seen);
      }
      pr.pu = p->pu;
      pr.node = p->node;
      st.per_p.push_back(pr);
    }
  }
  st.global_runnable = global_->size();
  st.runnable += st.global_runnable;
  st.spawned -= std::min(st.spawned, unstarted_.load(std::memory_order_relaxed));
  st.live = st.spawned >= st.finished ? st.spawned - st.finished : 0;
  st.poll_calls += poll_calls_.load(std::memory_order_relaxed);
  st.long_running = long_running_.load(std::memory_order_relaxed);
  st.thread_start_failures = thread_start_failures_.load(std::memory_order_relaxed);
  st.thread_limit_hits = thread_limit_hits_.load(std::memory_order_relaxed);
  st.retakes = retakes_.load(std::memory_order_relaxed);
  st.stalls = stalls_.load(std::memory_order_relaxed);
  st.stacks = stack_stats();
  return st;
}

}  // namespace tern::sched
