// scheduler/sched.cc: the scheduler loop, Ps and Ms, stealing, parking and resizing. The model and the invariants are
// described at the top of scheduler/sched.h.
#include "scheduler/sched.h"

#include <signal.h>
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <system_error>
#include <thread>

#include "scheduler/context.h"
#include "scheduler/global_queue.h"
#include "scheduler/idle_poller.h"
#include "scheduler/m.h"
#include "scheduler/p.h"
#include "scheduler/park.h"
#include "scheduler/stack_guard.h"

namespace tern::sched {

namespace {

// Initial-exec TLS: one instruction to read, and safe to read from the stack-overflow signal handler.
__attribute__((tls_model("initial-exec"))) thread_local M* tls_m = nullptr;

// Fiber and runtime ids are unique within the process (they name fibers in crash messages); the counters are the only
// process-wide state and carry no runtime behaviour.
std::atomic<uint64_t> g_next_fiber_id{1};
std::atomic<uint64_t> g_next_sched_id{1};

// G records are allocated this many at a time and live until the runtime is destroyed.
constexpr size_t kGBlock = 64;

uint32_t xorshift(uint64_t& s) {
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return static_cast<uint32_t>(s >> 32);
}

// A well-mixed, nonzero xorshift state from a seed and a stream number (an M id): nearby seeds give unrelated streams.
uint64_t chaos_stream(uint64_t seed, uint64_t stream) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (stream + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return z != 0 ? z : 1;
}

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

void default_uncaught(uint64_t id, std::exception_ptr e) {
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

}  // namespace

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

// ----------------------------------------------------------------------------------------------------------------
// GList

void GList::push(G* g) {
  g->next = nullptr;
  if (tail != nullptr) {
    tail->next = g;
  } else {
    head = g;
  }
  tail = g;
  size++;
}

G* GList::pop() {
  G* g = head;
  if (g == nullptr) return nullptr;
  head = g->next;
  if (head == nullptr) tail = nullptr;
  g->next = nullptr;
  size--;
  return g;
}

// ----------------------------------------------------------------------------------------------------------------
// Fiber entry and switching

namespace {

// Runs in a fiber just switched to, with the transfer that brought it here and its own ASan fake stack (nullptr on
// first entry). It came either from the M's scheduler context (save that context) or straight from a fiber that
// parked (save that fiber's context and finish its park here, now that it has fully switched out).
void arrived(ctx::transfer_t t, void* fake_stack) {
  M* m = static_cast<M*>(t.data);
  G* from = m->parked_from;
  if (from == nullptr) {
    m->g0 = t.fctx;
    ctx::after_switch(fake_stack, &m->g0_bottom, &m->g0_size);
    return;
  }
  m->parked_from = nullptr;
  from->ctx = t.fctx;
  ctx::after_switch(fake_stack, nullptr, nullptr);
  m->sched->finish_park(m->p, from);
}

void fiber_entry(ctx::transfer_t t) {
  arrived(t, nullptr);
  M* m = static_cast<M*>(t.data);
  G* g = m->curg;
  try {
    g->task();
  } catch (...) {
    g->sched->on_uncaught(g->id, std::current_exception());
  }
  m = this_m();  // the fiber may have parked and resumed on another thread
  m->action = MAction::kExit;
  ctx::before_switch(nullptr, m->g0_bottom, m->g0_size, m->g0_tsan_fiber);
  ctx::bctx::jump_fcontext(m->g0, nullptr);
  __builtin_unreachable();
}

// Leaves the running fiber for the M's scheduler context; returns when some M resumes the fiber.
void switch_to_g0(M* m, MAction action) {
  G* g = m->curg;
  m->action = action;
  ctx::before_switch(&g->asan_fake_stack, m->g0_bottom, m->g0_size, m->g0_tsan_fiber);
  ctx::transfer_t t = ctx::bctx::jump_fcontext(m->g0, nullptr);
  arrived(t, g->asan_fake_stack);
}

// Bytes of a parked fiber's stack fetched ahead of its resumption: its saved registers and the frames above them, which
// is what resuming touches first. tern-echo's connection fibers park 1,056 bytes deep.
constexpr size_t kPrefetchStackBytes = 2048;

// Warms the caches for the fiber this P runs after the one about to start. With a thousand connections their fibers'
// stacks and G records are cold by the time each runs again: every resumption paid a dozen misses (jump_fcontext and
// the return path through the parked frames were a fifth of tern-echo's user time). The fiber about to run is too
// late to help; the one after it has a whole fiber's run for its lines to arrive. Two deep: the G record of the
// second next (its ctx is read here on the following switch), the stack of the next. The queue entries are hints (a
// thief may take them, and a taken fiber may run elsewhere meanwhile): only addresses are computed from them, and a
// prefetch never faults. ThreadSanitizer would report those racy reads, so its builds skip this.
inline void prefetch_next(P* p) {
#ifndef TERN_TSAN
  if (G* second = p->runq.peek(1)) __builtin_prefetch(second);
  G* next = p->runq.peek(0);
  if (next == nullptr) return;
  auto* sp = static_cast<const char*>(__atomic_load_n(&next->ctx, __ATOMIC_RELAXED));
  const auto* lo = static_cast<const char*>(next->stack.lo);
  const char* top = lo + next->stack.size;
  if (sp == nullptr || sp < lo || sp >= top) return;
  const size_t len = std::min<size_t>(static_cast<size_t>(top - sp), kPrefetchStackBytes);
  for (size_t off = 0; off < len; off += 64) __builtin_prefetch(sp + off);
  if (const void* r = next->prefetch_read.load(std::memory_order_relaxed)) __builtin_prefetch(r);
  if (void* w = next->prefetch_write.load(std::memory_order_relaxed)) __builtin_prefetch(w, 1);
#else
  (void)p;
#endif
}

// Parks the running fiber g by switching straight to `next` (taken by Sched::take_handoff); next finishes g's park on
// arrival. Returns when some M resumes g.
void switch_direct(M* m, G* g, G* next) {
  P* p = m->p;
  if (next->ctx == nullptr) m->sched->prepare_first_run(p, next);
  m->curg = next;
  set_gstatus(next, GStatus::kRunning);
  bump(p->counters.switches);
  m->parked_from = g;
  prefetch_next(p);
  ctx::before_switch(&g->asan_fake_stack, next->stack.lo, next->stack.size, next->tsan_fiber);
  ctx::transfer_t t = ctx::bctx::jump_fcontext(next->ctx, m);
  arrived(t, g->asan_fake_stack);
}

}  // namespace

void Sched::prepare_first_run(P* p, G* g) {
  // Bind a stack now, not at spawn. Fibers queued but not started hold none, and a fiber that starts right after
  // another finished reuses its stack while it is still hot in cache (the P's cache is LIFO).
  if (!g->stack.valid()) {
    g->stack = p->stacks.get();
    if (!g->stack.valid()) stack_exhausted();
  }
  g->ctx = ctx::bctx::make_fcontext(g->stack.top(), g->stack.size, fiber_entry);
}

void Sched::finish_park(P* p, G* g) {
  bump(p->counters.parks);
  set_gstatus(g, GStatus::kWaiting);
  ParkCommit commit = g->commit;
  g->commit = nullptr;
  if (commit != nullptr && !commit(g, g->commit_arg)) {
    // Abandoned park: the condition it waited for already holds; run it next.
    set_gstatus(g, GStatus::kRunnable);
    runq_put(p, g, true);
  }
}

G* Sched::take_handoff(M* m) {
  // park() calls this right before it switches out: the park point. The chaos schedule sends some parks the long way.
  if (hooks_) [[unlikely]] {
    point_slow(SchedPoint::kPark);
    if (chaos_ && chaos_rand() % 4 == 0) return nullptr;
  }
  // The checks find_runnable makes before it would pick runnext; any of them failing sends the fiber the long way.
  P* p = m->p;
  if (p->runnext.load(std::memory_order_relaxed) == nullptr || p->runnext_chain >= kRunnextChainMax) return nullptr;
  if (shutting_down_.load(std::memory_order_relaxed) || p->id >= nprocs_.load(std::memory_order_relaxed)) {
    return nullptr;
  }
  if (p->schedtick % kGlobalQueueInterval == 0 && !global_->empty()) return nullptr;
  if (int64_t t0 = p->timer0.load(std::memory_order_relaxed); t0 != 0 && t0 <= now_ns()) return nullptr;
  G* g = p->runnext.load(std::memory_order_acquire);
  if (g == nullptr || !p->runnext.compare_exchange_strong(g, nullptr, std::memory_order_acq_rel)) return nullptr;
  p->runnext_chain++;
  return g;
}

void Sched::execute(M* m, G* g) {
  P* p = m->p;
  if (g->ctx == nullptr) prepare_first_run(p, g);
  m->curg = g;
  set_gstatus(g, GStatus::kRunning);
  bump(p->counters.switches);
  prefetch_next(p);
  ctx::before_switch(&m->g0_fake_stack, g->stack.lo, g->stack.size, g->tsan_fiber);
  ctx::transfer_t t = ctx::bctx::jump_fcontext(g->ctx, m);
  ctx::after_switch(m->g0_fake_stack, nullptr, nullptr);
  // The fiber coming back may not be g: g may have parked straight into another fiber (switch_direct).
  g = m->curg;
  g->ctx = t.fctx;
  m->curg = nullptr;
  // The fiber has fully switched out: only now may it become visible to others (invariant 2).
  switch (m->action) {
    case MAction::kYield:
      bump(p->counters.yields);
      set_gstatus(g, GStatus::kRunnable);
      if (p->runq.empty() && p->runnext.load(std::memory_order_relaxed) == nullptr) {
        // Nothing else is queued here: keep it M-local and skip the queue round trip; find_runnable still checks
        // timers and the global queue before running it again.
        m->yielded = g;
      } else {
        runq_put(p, g, false);
      }
      break;
    case MAction::kPark:
      finish_park(p, g);
      break;
    case MAction::kExit:
      bump(p->counters.finished);
      set_gstatus(g, GStatus::kDead);
      gfput(p, g);
      break;
    case MAction::kNone:
      break;
  }
  m->action = MAction::kNone;
}

// ----------------------------------------------------------------------------------------------------------------
// Construction, M threads, shutdown

Sched::Sched(SchedOptions opts)
    : opts_(std::move(opts)),
      id_(g_next_sched_id.fetch_add(1, std::memory_order_relaxed)),
      stacks_(alloc::StackPoolOptions{.stack_size = opts_.stack_size, .high_watermark = opts_.stack_high_watermark}),
      allp_(new std::atomic<P*>[kMaxProcs]),
      global_(std::make_unique<GlobalQueue>()) {
  if (!opts_.on_uncaught) opts_.on_uncaught = default_uncaught;
  if (opts_.chaos_seed == 0) opts_.chaos_seed = env_number("TERN_CHAOS", 0);
  if (!opts_.leak_check) opts_.leak_check = env_number("TERN_LEAK_CHECK", 0) != 0;
  chaos_ = opts_.chaos_seed != 0;
  hooks_ = chaos_ || static_cast<bool>(opts_.on_point);
  if (chaos_) {
    // One line, so that a failing test's log says how to replay its schedule.
    std::fprintf(stderr, "tern: chaos schedule, seed %llu\n", static_cast<unsigned long long>(opts_.chaos_seed));
  }
  install_stack_guard_handler();
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
    P* p = new P(i, stacks_);
    p->rand_state = 0x9E3779B97F4A7C15ull * (i + 1) ^ id_;
    allp_[i].store(p, std::memory_order_release);
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
  StackGuardThread guard;
  m->g0_tsan_fiber = ctx::tsan_current();
  Sched* s = m->sched;
  // newm() hands the first P over before the thread starts.
  P* p = m->nextp;
  m->nextp = nullptr;
  s->acquirep(m, p);
  m->spinning = m->next_spinning;
  for (;;) {
    G* g = s->find_runnable(m);
    if (g == nullptr) break;
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

void Sched::startm(P* p, bool spinning) {
  M* m = nullptr;
  {
    std::lock_guard lk(sched_mu_);
    if (shutting_down_.load(std::memory_order_relaxed)) {
      pidleput(p);
      if (spinning) drop_spinning();
      return;
    }
    if (midle_ != nullptr) {
      m = midle_;
      midle_ = m->link;
      m->link = nullptr;
    }
  }
  wake_monitor();
  if (m != nullptr) {
    m->nextp = p;
    m->next_spinning = spinning;
    m->note.wakeup();
    return;
  }
  m = newm();
  m->nextp = p;
  m->next_spinning = spinning;
  try {
    m->thread = std::thread(m_main, m);
  } catch (const std::system_error& e) {
    // Out of threads (RLIMIT_NPROC, a cgroup's pids.max, memory, vm.max_map_count): keep running on the Ms there are.
    // The P goes back to the idle list; its work stays queued. With no M running at all (the first one failed), that
    // work would wait for an unrelated wakep() that may never come: the monitor retries with back-off.
    thread_start_failures_.fetch_add(1, std::memory_order_relaxed);
    {
      std::lock_guard lk(sched_mu_);
      // By identity: other startm calls (the spinning token serializes only some of them) may have appended since.
      allm_.erase(std::find(allm_.begin(), allm_.end(), m));
      pidleput(p);
      const int64_t delay = thread_retry_delay_.load(std::memory_order_relaxed);
      thread_retry_at_.store(now_ns() + delay);
      thread_retry_delay_.store(std::min(delay * 2, kThreadRetryMaxNs), std::memory_order_relaxed);
    }
    if (spinning) drop_spinning();
    delete m;
    monitor_note_.wakeup();  // whether it sleeps or not: its next sleep must end at the retry time
    if (!thread_failure_reported_.exchange(true)) {
      std::fprintf(stderr,
                   "tern: cannot start another scheduler thread (%s); continuing with the threads running, retrying "
                   "with back-off\n",
                   e.what());
    }
    return;
  }
  if (thread_retry_delay_.load(std::memory_order_relaxed) != kThreadRetryMinNs) {
    thread_retry_delay_.store(kThreadRetryMinNs, std::memory_order_relaxed);
  }
}

// Monitor thread: a thread start failed earlier and its retry time has come. wakep() starts an M if a P is idle and no
// M looks for work; a failure there schedules the next retry.
void Sched::retry_thread_start() {
  const int64_t at = thread_retry_at_.load();
  if (at == 0 || now_ns() < at) return;
  thread_retry_at_.store(0);
  wakep();
}

// Store buffering: the waker's RMW on npidle_ (pidleget) then its load of monitor_sleeping_, against the monitor's
// store of monitor_sleeping_ then its load of npidle_. All four are sequentially consistent, so in their single total
// order either the monitor's store comes first (the waker sees it and wakes it) or the waker's RMW does (the monitor
// sees the P busy and does not sleep). A relaxed load here could miss both.
void Sched::wake_monitor() {
  if (monitor_sleeping_.load() && monitor_sleeping_.exchange(false)) monitor_note_.wakeup();
}

void Sched::stack_exhausted() {
  // Reached only once the pool could not map and no other P's cache had a stack to spare (StackCache::get).
  std::fprintf(stderr, "tern: fatal: %s. Start fibers with tern::try_go or Runtime::try_go to get this as an error.\n",
               stacks_.exhausted_message().c_str());
  std::fflush(stderr);
  std::abort();
}

void Sched::shutdown() {
  if (shutting_down_.exchange(true)) return;
  // Wake everything that sleeps; an M running a fiber stops at its next scheduling point.
  std::vector<M*> ms;
  {
    std::lock_guard lk(sched_mu_);
    while (midle_ != nullptr) {
      M* m = midle_;
      midle_ = m->link;
      m->link = nullptr;
      m->note.wakeup();
    }
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
      while (midle_ != nullptr) {
        M* im = midle_;
        midle_ = im->link;
        im->link = nullptr;
        im->note.wakeup();
      }
    }
    poller_->wake();
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
  for (auto& block : gblocks_) {
    for (size_t i = 0; i < kGBlock; i++) {
      G& g = block[i];
      if (opts_.leak_check) leaks.count(g);
      g.task.reset();
      if (g.stack.valid()) stacks_.put(g.stack);
      g.stack = {};
      ctx::tsan_destroy(g.tsan_fiber);
      g.tsan_fiber = nullptr;
    }
  }
  gblocks_.clear();
  for (int i = 0; i < kMaxProcs; i++) {
    delete allp_[i].exchange(nullptr);
  }
  if (opts_.leak_check) {
    // Every G record gave its stack back and every P's cache was flushed (deleting the P): none may be in use now.
    leaks.stacks_in_use = stacks_.stats().in_use;
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

// ----------------------------------------------------------------------------------------------------------------
// G records

G* Sched::new_g() {
  M* m = this_m();
  P* p = (m != nullptr && m->sched == this) ? m->p : nullptr;
  G* g = nullptr;
  if (p != nullptr) {
    if (p->gfree == nullptr) {
      // Refill half the per-P list from the runtime's list in one lock acquisition.
      std::lock_guard lk(gfree_mu_);
      while (gfree_ != nullptr && p->ngfree < kGFreeMax / 2) {
        G* f = gfree_;
        gfree_ = f->next;
        f->next = p->gfree;
        p->gfree = f;
        p->ngfree++;
      }
    }
    if (p->gfree != nullptr) {
      g = p->gfree;
      p->gfree = g->next;
      p->ngfree--;
    }
  } else {
    std::lock_guard lk(gfree_mu_);
    if (gfree_ != nullptr) {
      g = gfree_;
      gfree_ = g->next;
    }
  }
  if (g == nullptr) {
    std::unique_ptr<G[]> block(new G[kGBlock]);
    for (size_t i = 0; i < kGBlock; i++) {
      block[i].sched = this;
      block[i].tsan_fiber = ctx::tsan_create();
    }
    g = &block[0];
    std::lock_guard lk(gfree_mu_);
    for (size_t i = 1; i < kGBlock; i++) {
      block[i].next = gfree_;
      gfree_ = &block[i];
    }
    gblocks_.push_back(std::move(block));
  }
  g->next = nullptr;
  g->id = g_next_fiber_id.fetch_add(1, std::memory_order_relaxed);
  g->ctx = nullptr;  // the stack is bound when the fiber first runs (execute)
  g->user = nullptr;
  if (p != nullptr) {
    bump(p->counters.spawned);
  } else {
    outside_spawned_.fetch_add(1, std::memory_order_relaxed);
  }
  return g;
}

bool Sched::bind_stack(G* g) {
  M* m = this_m();
  P* p = (m != nullptr && m->sched == this) ? m->p : nullptr;
  g->stack = p != nullptr ? p->stacks.get() : stacks_.get();
  if (!g->stack.valid()) return false;
  g->ctx = ctx::bctx::make_fcontext(g->stack.top(), g->stack.size, fiber_entry);
  return true;
}

void Sched::free_g(G* g) {
  // new_g() counted it spawned; it never will be, so it must not stay in stats().live forever.
  unstarted_.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lk(gfree_mu_);
  set_gstatus(g, GStatus::kIdle);
  g->next = gfree_;
  gfree_ = g;
}

void Sched::gfput(P* p, G* g) {
  set_gstatus(g, GStatus::kIdle);
  // The stack goes to the top of the P's LIFO cache, where the next fiber to start here picks it up still hot.
  p->stacks.put(g->stack);
  g->stack = {};
  g->next = p->gfree;
  p->gfree = g;
  p->ngfree++;
  if (p->ngfree < kGFreeMax) return;
  std::lock_guard lk(gfree_mu_);
  while (p->ngfree > kGFreeMax / 2) {
    G* f = p->gfree;
    p->gfree = f->next;
    p->ngfree--;
    f->next = gfree_;
    gfree_ = f;
  }
}

void Sched::start(G* g) {
  // ready() marks it runnable. Like Go's newproc: a fiber started by a fiber runs next on the same P (depth-first trees
  // keep their data hot).
  ready(g, true);
}

// ----------------------------------------------------------------------------------------------------------------
// Run queues

void Sched::runq_put(P* p, G* g, bool next) {
  if (next) {
    // Thieves only ever take runnext (non-null -> null), so an empty slot stays empty until its owner (us) fills
    // it: a plain store suffices, and the common case costs no atomic read-modify-write.
    G* old = p->runnext.load(std::memory_order_relaxed);
    if (old == nullptr) {
      p->runnext.store(g, std::memory_order_release);
      return;
    }
    old = p->runnext.exchange(g, std::memory_order_acq_rel);
    if (old == nullptr) return;
    g = old;  // the previous runnext goes to the tail of the queue
  }
  while (!p->runq.push(g)) {
    G* batch[RunQueue::kCapacity / 2 + 1];
    uint32_t n = p->runq.pop_half(batch);
    if (n == 0) continue;  // a thief made room
    batch[n++] = g;
    global_->push_batch(batch, n);
    bump(p->counters.overflows);
    return;
  }
}

G* Sched::runq_get(P* p, bool& inherit) {
  G* g = p->runnext.load(std::memory_order_acquire);
  if (g != nullptr) {
    if (p->runnext_chain < kRunnextChainMax) {
      if (p->runnext.compare_exchange_strong(g, nullptr, std::memory_order_acq_rel)) {
        p->runnext_chain++;
        inherit = true;
        return g;
      }
    } else if (p->runnext.compare_exchange_strong(g, nullptr, std::memory_order_acq_rel)) {
      // The chain used up its slice: the runnext fiber waits its turn at the tail.
      runq_put(p, g, false);
    }
  }
  p->runnext_chain = 0;
  inherit = false;
  return p->runq.pop();
}

bool Sched::any_local_work() const {
  int n = scan_bound();
  for (int i = 0; i < n; i++) {
    P* p = allp_[i].load(std::memory_order_acquire);
    if (!p->runq.empty() || p->runnext.load(std::memory_order_acquire) != nullptr) return true;
  }
  return false;
}

// How many fibers a batch (inject, rescue_stalled) may add to pp's local queue: up to half its capacity, leaving the
// rest for fibers readied one at a time.
static uint32_t batch_room(P* pp) {
  const uint32_t size = pp->runq.size();
  return size < RunQueue::kCapacity / 2 ? RunQueue::kCapacity / 2 - size : 0;
}

void Sched::inject(GList& list, P* pp) {
  if (list.empty()) return;
  // Up to half the local queue's capacity goes there, the rest (the newest) to the global queue in one batch. runq_put
  // alone would, on overflow, move the local queue's oldest half to the global queue, where it waits behind all the
  // newer local work a P runs before looking there: a poller's batch on top of a busy queue (at -c1000 the io_uring
  // backend's reaps overflowed 44 times a second) was the tail of the latency distribution. Half, not all, leaves room
  // for the fibers this P readies one at a time meanwhile (yields, wakeups), which still take runq_put's path.
  uint32_t room = batch_room(pp);
  while (room > 0 && !list.empty()) {
    G* g = list.pop();
    set_gstatus(g, GStatus::kRunnable);
    runq_put(pp, g, false);
    room--;
  }
  if (!list.empty()) {
    global_put_list(list);
    bump(pp->counters.overflows);
  }
  wakep();
}

// Queues fibers readied by an M that holds no P and found none idle (Go's injectglist without a P): globally, then
// wakep(). The wakep is what keeps them from being lost: between this M's look at the idle list and its push, the last
// busy M may have run dry, given its P back, seen an empty global queue and blocked in the poller with no deadline.
// Its P is idle now, so wakep() hands it to that poller M (or starts one); when every P is still busy it is one load.
void Sched::inject_global(GList& list) {
  if (list.empty()) return;
  point(SchedPoint::kGlobalPush);
  global_put_list(list);
  point(SchedPoint::kGlobalPushed);
  wakep();
}

// Marks the fibers runnable and queues them globally, in order, under one lock. Wakes nobody.
void Sched::global_put_list(GList& list) {
  for (G* g = list.head; g != nullptr; g = g->next) set_gstatus(g, GStatus::kRunnable);
  global_->push_list(list);
}

// ----------------------------------------------------------------------------------------------------------------
// Ready and wakeups

void Sched::ready(G* g, bool next) {
  set_gstatus(g, GStatus::kRunnable);
  if (hooks_) [[unlikely]] {
    ready_hooked(g, next);
    return;
  }
  M* m = this_m();
  if (m != nullptr && m->sched == this && m->p != nullptr) {
    runq_put(m->p, g, next);
  } else {
    global_->push(g);
  }
  wakep();
}

// ready() with a hook set: the chaos schedule picks among the places a readied fiber may legally go (runnext, the
// local queue's tail, the global queue), with delays at the points around them.
void Sched::ready_hooked(G* g, bool next) {
  point_slow(SchedPoint::kReady);
  M* m = this_m();
  P* p = (m != nullptr && m->sched == this) ? m->p : nullptr;
  bool global = p == nullptr;
  if (!global && chaos_) {
    const uint32_t r = chaos_rand();
    if (next) {
      if (r % 4 == 2) next = false;
      if (r % 4 == 3) global = true;
    } else if (r % 8 == 0) {
      global = true;
    }
  }
  if (global) {
    point_slow(SchedPoint::kGlobalPush);
    global_->push(g);
    point_slow(SchedPoint::kGlobalPushed);
  } else {
    runq_put(p, g, next);
  }
  wakep();
}

void Sched::ready_list(GList& list) {
  if (list.empty()) return;
  M* m = this_m();
  if (m != nullptr && m->sched == this && m->p != nullptr) {
    inject(list, m->p);
    return;
  }
  point(SchedPoint::kGlobalPush);
  global_put_list(list);
  point(SchedPoint::kGlobalPushed);
  wakep();
}

void Sched::point_slow(SchedPoint pt) {
  if (opts_.on_point) opts_.on_point(pt);
  if (chaos_) chaos_delay();
}

uint32_t Sched::chaos_rand() {
  M* m = this_m();
  if (m != nullptr && m->sched == this) return xorshift(m->chaos_state);
  // A plain thread (a test's, the monitor): its own stream, reseeded when it meets another seed.
  static std::atomic<uint64_t> next_stream{1u << 20};
  thread_local uint64_t seed = 0, state = 0;
  if (seed != opts_.chaos_seed || state == 0) {
    seed = opts_.chaos_seed;
    state = chaos_stream(seed, next_stream.fetch_add(1, std::memory_order_relaxed));
  }
  return xorshift(state);
}

void Sched::chaos_delay() {
  const uint32_t r = chaos_rand();
  switch (r % 8) {
    case 0:
      std::this_thread::yield();
      break;
    case 1:
    case 2: {
      // A few hundred ns: long enough for another M to act on what it saw, too short to look like a stall.
      const int64_t until = now_ns() + static_cast<int64_t>((r >> 8) % 500);
      while (now_ns() < until) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
      }
      break;
    }
    default:
      break;
  }
}

// Hands an idle P to an M if work may be waiting and no M is already looking for it (Go's wakep). Cheap when every P
// is busy (one load) or an M already spins (two loads).
void Sched::wakep() {
  point(SchedPoint::kWakep);
  if (npidle_.load() == 0) return;
  if (nmspinning_.load() != 0) return;
  int expected = 0;
  if (!nmspinning_.compare_exchange_strong(expected, 1)) return;
  if (wake_poller_for_p()) return;
  P* p = take_idle_p();
  if (p == nullptr) {
    drop_spinning();
    return;
  }
  startm(p, true);
}

// The M holding the poller role is idle and holds no P: wakep() wakes it to take the idle P and spin, rather than
// start another M. Otherwise the poller, back with its events and finding no P left, parks, and every M in that
// rotation keeps the receives it armed: io_uring runs a receive's completion work on the thread that armed it, so each
// arrival on one of them wakes a parked M just for that (at -c1000, three Ms rotating over two Ps slept 6,800 times in
// 3 s against 1,000 for epoll). Returns false where no M holds the role; the caller then starts an M.
// The claim is handed over through poller_claim_: the poller exchanges it after clearing polling_, so whichever of the
// two sees it set owns the spinning count wakep() took.
bool Sched::wake_poller_for_p() {
  if (!polling_.load()) return false;
  poller_claim_.store(true);
  if (polling_.load()) {
    // Blocked, or about to block: wake() makes the next poll return at once too.
    poller_claims_.fetch_add(1, std::memory_order_relaxed);
    wake_monitor();
    poller_->wake();
    return true;
  }
  return !poller_claim_.exchange(false);  // the role was released meanwhile: its holder took the claim, or it is ours
}

// An M leaving the poller role takes an idle P, if there is one. `claimed`: wakep() counted it as spinning (it spins
// with the P, or gives that count back without one).
bool Sched::acquire_idle_p(M* m, bool claimed) {
  P* p = take_idle_p();
  if (p == nullptr) {
    if (claimed) drop_spinning();
    return false;
  }
  acquirep(m, p);
  m->spinning = claimed;
  return true;
}

// Every release of the poller role goes through here: the claim wakep() may have left is the releasing M's to honour.
bool Sched::release_poller_role() {
  polling_.store(false);
  return poller_claim_.exchange(false);
}

void Sched::reset_spinning(M* m) {
  if (!m->spinning) return;
  m->spinning = false;
  // The last spinning M found work: there may be more, so make sure another M looks (Go's resetspinning).
  if (drop_spinning() == 1) wakep();
}

// Lowers the count of spinning Ms and returns what it was: never below zero, or a wakeup was counted twice.
int Sched::drop_spinning() {
  const int before = nmspinning_.fetch_sub(1);
  TERN_DCHECK(before > 0);
  return before;
}

// An M that stops looking for work without having found any (its P given back, or retired): no wakep.
void Sched::stop_spinning(M* m) {
  if (!m->spinning) return;
  m->spinning = false;
  drop_spinning();
}

P* Sched::pidleget() {
  sched_mu_.assert_held();
  P* p = pidle_;
  if (p == nullptr) return nullptr;
  pidle_ = p->link;
  p->link = nullptr;
  p->status.store(PStatus::kRunning, std::memory_order_relaxed);
  npidle_.fetch_sub(1);
  return p;
}

P* Sched::take_idle_p() {
  P* p;
  {
    std::lock_guard lk(sched_mu_);
    p = pidleget();
  }
  // Every way a P goes busy wakes the monitor if it sleeps (it sleeps only while all Ps are idle): otherwise a P taken
  // by a poller M or by an M's re-check runs with nobody to notice a fiber that holds it, or to poll for its M.
  if (p != nullptr) wake_monitor();
  return p;
}

void Sched::pidleput(P* p) {
  sched_mu_.assert_held();
  p->status.store(PStatus::kIdle, std::memory_order_relaxed);
  p->link = pidle_;
  pidle_ = p;
  npidle_.fetch_add(1);
}

void Sched::acquirep(M* m, P* p) {
  p->m = m;
  m->p = p;
  p->status.store(PStatus::kRunning, std::memory_order_relaxed);
}

P* Sched::releasep(M* m) {
  P* p = m->p;
  p->m = nullptr;
  m->p = nullptr;
  return p;
}

uint32_t Sched::random(M* m) {
  return xorshift(m->rand_state);
}

// ----------------------------------------------------------------------------------------------------------------
// Finding work

G* Sched::find_runnable(M* m) {
top:
  if (shutting_down_.load(std::memory_order_acquire)) return nullptr;
  if (m->p->id >= nprocs_.load(std::memory_order_acquire) && retire_if_needed(m)) {
    idle_without_p(m);
    goto top;
  }
  P* pp = m->p;
  int64_t t0 = pp->timer0.load(std::memory_order_relaxed);
  if (t0 != 0) {
    int64_t now = now_ns();
    if (t0 <= now) run_timers(pp, now, pp);
  }
  if (pp->schedtick % kStallCheckInterval == 0) rescue_stalled(pp);
  if (G* g = m->yielded) {
    m->yielded = nullptr;
    if (pp->runq.empty() && (pp->schedtick % kGlobalQueueInterval != 0 || global_->empty())) {
      pp->schedtick++;
      return g;
    }
    runq_put(pp, g, false);  // timers or the global queue have work: the yielder waits its turn
  }
  // The chaos schedule looks at the global queue first now and then, as if at a fairness tick.
  if ((pp->schedtick % kGlobalQueueInterval == 0 || (chaos_ && chaos_rand() % 8 == 0)) && !global_->empty()) {
    if (G* g = global_->pop()) {
      bump(pp->counters.global_taken);
      pp->schedtick++;
      pp->runnext_chain = 0;
      reset_spinning(m);
      return g;
    }
  }
  bool inherit = false;
  if (G* g = runq_get(pp, inherit)) {
    if (!inherit) pp->schedtick++;
    reset_spinning(m);
    return g;
  }
  if (!global_->empty()) {
    // A fair share of the global queue, at most half a local queue.
    int n = nprocs_.load(std::memory_order_relaxed);
    uint32_t want = static_cast<uint32_t>(std::min<uint64_t>(global_->size() / n + 1, RunQueue::kCapacity / 2));
    G* batch[RunQueue::kCapacity / 2];
    uint32_t got = global_->pop_batch(batch, want);
    if (got > 0) {
      bump(pp->counters.global_taken, got);
      for (uint32_t i = 1; i < got; i++) runq_put(pp, batch[i], false);
      pp->schedtick++;
      reset_spinning(m);
      return batch[0];
    }
  }
  if (poller_->has_waiters() && !polling_.load(std::memory_order_relaxed)) {
    GList list;
    if (poller_->poll(0, list) > 0) {
      last_poll_.store(now_ns(), std::memory_order_relaxed);
      bump(pp->counters.polls);
      G* g = list.pop();
      inject(list, pp);
      set_gstatus(g, GStatus::kRunnable);
      pp->schedtick++;
      reset_spinning(m);
      return g;
    }
  }
  // Steal, unless enough Ms already spin: at most half as many as there are busy Ps.
  {
    int busy = nprocs_.load(std::memory_order_relaxed) - npidle_.load(std::memory_order_relaxed);
    if (m->spinning || 2 * nmspinning_.load(std::memory_order_relaxed) < busy) {
      if (!m->spinning) {
        m->spinning = true;
        nmspinning_.fetch_add(1);
      }
      if (G* g = steal_work(m, pp)) {
        pp->schedtick++;
        reset_spinning(m);
        return g;
      }
    }
  }
  // Nothing. Give the P back.
  {
    std::unique_lock lk(sched_mu_);
    if (!global_->empty() || pp->id >= nprocs_.load(std::memory_order_relaxed) ||
        shutting_down_.load(std::memory_order_relaxed)) {
      lk.unlock();
      goto top;
    }
    pidleput(releasep(m));
  }
  point(SchedPoint::kReleasedP);
  bool was_spinning = m->spinning;
  stop_spinning(m);
  // A producer that saw a spinning M did not wake anyone; with the spinning count lowered (a full fence), look again
  // before sleeping, so its fiber cannot be stranded.
  if (any_local_work() || !global_->empty() || timers_due()) {
    P* p = take_idle_p();
    if (p != nullptr) {
      acquirep(m, p);
      if (was_spinning) {
        m->spinning = true;
        nmspinning_.fetch_add(1);
      }
      goto top;
    }
  }
  idle_without_p(m);
  goto top;
}

G* Sched::steal_work(M* m, P* pp) {
  // Retiring Ps beyond procs() whose M still runs a fiber are victims too: until that fiber reaches a scheduling point
  // they hold queued fibers and timers that nobody else would run (and earliest_timer() counts their timers, so an idle
  // M would wake for them, find nothing to steal, and spin).
  const int n = scan_bound();
  if (n <= 1) return nullptr;
  for (int pass = 0; pass < kStealPasses; pass++) {
    const bool last = pass == kStealPasses - 1;
    const uint32_t start = random(m) % static_cast<uint32_t>(n);
    for (int i = 0; i < n; i++) {
      P* v = allp_[(start + i) % n].load(std::memory_order_acquire);
      if (v == pp || v->status.load(std::memory_order_relaxed) == PStatus::kDead) continue;
      // Timers of a P whose M is busy (or that is idle) would otherwise wait; run them here.
      int64_t t0 = v->timer0.load(std::memory_order_relaxed);
      if (t0 != 0) {
        int64_t now = now_ns();
        if (t0 <= now) {
          run_timers(v, now, pp);
          bool inherit;
          if (G* g = runq_get(pp, inherit)) return g;
        }
      }
      uint32_t got = v->runq.steal_into(pp->runq);
      if (got > 0) {
        bump(pp->counters.steals, got);
        bool inherit;
        if (G* g = runq_get(pp, inherit)) return g;
      }
      // The runnext slot of a running P is about to run there; take it only on the last pass.
      if (last && v->status.load(std::memory_order_relaxed) == PStatus::kRunning) {
        G* g = v->runnext.load(std::memory_order_acquire);
        if (g != nullptr && v->runnext.compare_exchange_strong(g, nullptr, std::memory_order_acq_rel)) {
          bump(pp->counters.steals);
          return g;
        }
      }
    }
  }
  return nullptr;
}

// Fibers queued on a P whose M has stopped running them (descheduled by the OS: on a machine shared with other
// processes a runnable thread waits out another's time slice, 4 ms at HZ=250; or one fiber holding the P) wait until
// it resumes, while the other Ms only steal once their own queues run dry, which under load is never. At -c1000 that
// was a second mode in the time from a fiber's readying to its run: 12% of requests waited 2-8 ms. So a busy M keeps
// a watch on one other P at a time, every kStallCheckInterval fibers: once the watched P has had fibers queued and
// started none for kStallNs, the watcher takes half its queue (up to its own batch_room, like inject). The watch reads
// only the P's switch counter, so running fibers pay nothing for it.
void Sched::rescue_stalled(P* pp) {
  const int n = scan_bound();  // a retiring P whose M runs one long fiber is the stalled P this is for
  if (n <= 1) return;
  const auto np = static_cast<uint32_t>(n);
  auto other = [&](uint32_t i) { return static_cast<int>(i % np) == pp->id ? (i + 1) % np : i % np; };
  uint32_t vi = other(pp->watch);
  P* v = allp_[vi].load(std::memory_order_acquire);
  uint64_t switches = v->counters.switches.load(std::memory_order_relaxed);
  const int64_t now = now_ns();
  if (vi == pp->watch && switches == pp->watch_switches && !v->runq.empty()) {
    if (now - pp->watch_since < kStallNs) return;
    pp->watch_since = now;
    const uint32_t room = batch_room(pp);
    if (room == 0) return;
    G* batch[RunQueue::kCapacity / 2];
    const uint32_t got = v->runq.steal_batch(batch, room);
    if (got == 0) return;
    bump(pp->counters.steals, got);
    bump(pp->counters.rescued, got);
    for (uint32_t i = 0; i < got; i++) runq_put(pp, batch[i], false);
    return;
  }
  // A new watch, or the watched P has nothing queued (time it afresh) or moved on (watch the next P in turn).
  if (vi == pp->watch && switches != pp->watch_switches) {
    vi = other(vi + 1);
    switches = allp_[vi].load(std::memory_order_acquire)->counters.switches.load(std::memory_order_relaxed);
  }
  pp->watch = vi;
  pp->watch_switches = switches;
  pp->watch_since = now;
}

// Blocks an M that holds no P until it gets one (returns with m->p set) or the runtime shuts down. The first idle M
// takes the poller role and waits in the poller until the earliest timer; the others sleep on their note.
void Sched::idle_without_p(M* m) {
  for (;;) {
    if (shutting_down_.load(std::memory_order_acquire)) return;
    bool expected = false;
    if (polling_.compare_exchange_strong(expected, true)) {
      // Work this M could run if it had a P: take the P rather than poll. (Queued work on busy Ps is theirs; polling
      // with a zero timeout because of it would spin this M while every P is busy.)
      if (npidle_.load() > 0 && (!global_->empty() || any_local_work() || timers_due())) {
        if (acquire_idle_p(m, release_poller_role())) {
          handoff_poller_role();
          return;
        }
        continue;
      }
      if (npidle_.load() == 0) {
        // Every P is busy: they poll without blocking whenever their queues run dry (and the monitor does if none has
        // for 10 ms), and each checks its timers. A blocked poller here would only wake on every event, find no P,
        // and hand the fibers to the global queue: two context switches per event for nothing. Sleep instead; the M
        // whose P goes idle next takes the poller role.
        if (release_poller_role()) {
          // wakep() claimed this M for an idle P, and there is none now: whoever took it runs the work.
          drop_spinning();
          continue;
        }
        if (npidle_.load() > 0) continue;  // a P went idle meanwhile; its M may have seen polling_ set
        park_idle_m(m);
        if (m->p != nullptr || shutting_down_.load(std::memory_order_acquire)) return;
        continue;
      }
      int64_t until = earliest_timer();
      int64_t timeout = -1;
      if (until != 0) timeout = std::max<int64_t>(0, until - now_ns());
      poll_until_.store(until == 0 ? INT64_MAX : until);
      GList list;
      poller_->poll(timeout, list);
      poll_until_.store(0);
      const bool claimed = release_poller_role();
      last_poll_.store(now_ns(), std::memory_order_relaxed);
      if (claimed || !list.empty() || (npidle_.load() > 0 && (!global_->empty() || any_local_work() || timers_due()))) {
        if (acquire_idle_p(m, claimed)) {
          if (!list.empty()) bump(m->p->counters.polls);
          inject(list, m->p);
          handoff_poller_role();
          return;
        }
        // Every P was busy a moment ago: their Ms find the harvest in the global queue, unless one ran dry meanwhile.
        point(SchedPoint::kReadiedWithoutP);
        inject_global(list);
      }
      continue;
    }
    park_idle_m(m);
    if (m->p != nullptr) return;
    // Woken without a P: for shutdown.
  }
}

// Sleeps on the M's note in the idle list until startm() hands it a P (then m->p is set) or it is woken without one
// (for shutdown). Where the poller can (Poller::park), the M sleeps in it instead, so that the completions of I/O it
// submitted wake it with their fibers: it then takes an idle P and runs them itself, rather than run their completion
// work in the kernel, sleep again, and leave them to the poller M (a second wakeup) and to whichever M that one starts
// for them (a third).
void Sched::park_idle_m(M* m) {
  {
    std::lock_guard lk(sched_mu_);
    if (shutting_down_.load(std::memory_order_relaxed)) return;
    m->link = midle_;
    midle_ = m;
  }
  poller_->thread_parked(true);
  GList ready;
  for (;;) {
    if (!poller_->park(m->note.word(), ready)) {
      m->note.sleep();
      break;
    }
    if (m->note.try_consume()) break;
    if (ready.empty()) continue;
    park_io_wakes_.fetch_add(1, std::memory_order_relaxed);
    if (leave_idle_list(m)) {
      park_io_takes_.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    // Every P is busy (their Ms find these in the global queue), or startm() is handing this M one right now.
    point(SchedPoint::kReadiedWithoutP);
    inject_global(ready);
  }
  poller_->thread_parked(false);
  if (m->nextp != nullptr) {
    P* p = m->nextp;
    m->nextp = nullptr;
    acquirep(m, p);
    m->spinning = m->next_spinning;
  }
  if (ready.empty()) return;
  if (m->p != nullptr) {
    bump(m->p->counters.polls);
    inject(ready, m->p);
    return;
  }
  ready_list(ready);  // woken without a P (shutdown)
}

// A parked M woken by its own completions takes itself out of the idle list with an idle P (not spinning: it has
// work). False if no P is idle, or if startm() already took it from the list (its P and wakeup are on the way).
bool Sched::leave_idle_list(M* m) {
  std::unique_lock lk(sched_mu_);
  if (shutting_down_.load(std::memory_order_relaxed) || pidle_ == nullptr) return false;
  M** link = &midle_;
  while (*link != nullptr && *link != m) link = &(*link)->link;
  if (*link == nullptr) return false;
  *link = m->link;
  m->link = nullptr;
  acquirep(m, pidleget());
  m->spinning = false;
  lk.unlock();
  wake_monitor();
  return true;
}

// The poller M got a P and leaves the role. If a P is still idle and timers or I/O waiters remain, start an M with
// that P (wakep): spinning, it runs what the poller just readied, or gives the P back and takes the poller role. Waking
// an M without a P for the role instead (the earlier way) made the ready() that follows start a third M for the idle
// P, and Ms rotating through parks: an M parked with receives armed is woken for each of their completions.
void Sched::handoff_poller_role() {
  if (npidle_.load() == 0) return;  // all busy: nobody needs to block in the poller (see idle_without_p)
  if (earliest_timer() == 0 && !poller_->has_waiters()) return;
  wakep();
}

// ----------------------------------------------------------------------------------------------------------------
// Resizing

void Sched::set_procs(int n) {
  n = std::clamp(n, 1, kMaxProcs);
  std::lock_guard rl(resize_mu_);
  int old = nprocs_.load(std::memory_order_acquire);
  if (n == old) return;
  if (n > old) {
    for (int i = old; i < n; i++) {
      if (allp_[i].load(std::memory_order_acquire) == nullptr) {
        P* p = new P(i, stacks_);
        p->rand_state = 0x9E3779B97F4A7C15ull * (i + 1) ^ id_;
        p->status.store(PStatus::kDead, std::memory_order_relaxed);
        allp_[i].store(p, std::memory_order_release);
      }
    }
    {
      std::lock_guard lk(sched_mu_);
      nprocs_.store(n, std::memory_order_release);
      update_scan_bound();
      for (int i = old; i < n; i++) {
        P* p = allp_[i].load(std::memory_order_relaxed);
        // A P still held by its M (it had not reached a scheduling point since the shrink) simply stays.
        if (p->status.load(std::memory_order_relaxed) == PStatus::kDead) pidleput(p);
      }
    }
    for (int i = old; i < n; i++) wakep();
    return;
  }
  // Shrink: idle Ps beyond n are retired here; running ones retire themselves at their next scheduling point.
  std::vector<P*> idle;
  {
    std::lock_guard lk(sched_mu_);
    nprocs_.store(n, std::memory_order_release);
    P** link = &pidle_;
    while (*link != nullptr) {
      P* p = *link;
      if (p->id >= n) {
        *link = p->link;
        p->link = nullptr;
        p->status.store(PStatus::kRetiring, std::memory_order_relaxed);
        npidle_.fetch_sub(1);
        idle.push_back(p);
      } else {
        link = &p->link;
      }
    }
  }
  for (P* p : idle) drain_p(p);
  {
    std::lock_guard lk(sched_mu_);
    for (P* p : idle) p->status.store(PStatus::kDead, std::memory_order_relaxed);
    update_scan_bound();
  }
  wakep();
}

// Ps beyond procs() stay in the scan (stealing, the monitor, rescue) until they are dead: a retiring P whose M runs a
// long fiber still holds work. Shrinks the bound past dead Ps at the top; grows it to procs().
void Sched::update_scan_bound() {
  sched_mu_.assert_held();
  const int n = nprocs_.load(std::memory_order_relaxed);
  int b = std::max(n, nscan_.load(std::memory_order_relaxed));
  while (b > n) {
    P* p = allp_[b - 1].load(std::memory_order_relaxed);
    if (p != nullptr && p->status.load(std::memory_order_relaxed) != PStatus::kDead) break;
    b--;
  }
  nscan_.store(b, std::memory_order_release);
}

bool Sched::retire_if_needed(M* m) {
  P* p = m->p;
  if (p->id < nprocs_.load(std::memory_order_acquire)) return false;
  if (G* g = m->yielded) {
    m->yielded = nullptr;
    runq_put(p, g, false);
  }
  p->status.store(PStatus::kRetiring, std::memory_order_relaxed);
  drain_p(p);
  {
    std::lock_guard lk(sched_mu_);
    if (p->id < nprocs_.load(std::memory_order_relaxed)) {
      // Grown back meanwhile: keep the (now drained) P.
      p->status.store(PStatus::kRunning, std::memory_order_relaxed);
      return false;
    }
    releasep(m);
    p->status.store(PStatus::kDead, std::memory_order_relaxed);
    update_scan_bound();
  }
  stop_spinning(m);
  wakep();
  return true;
}

// Moves everything a P holds to places that outlive it (invariant 4): fibers to the global queue, timers to P 0,
// cached G records and stacks to the runtime's lists. The caller owns p (its M, or set_procs for an idle P).
void Sched::drain_p(P* p) {
  GList moved;
  if (G* g = p->runnext.exchange(nullptr, std::memory_order_acq_rel)) moved.push(g);
  while (G* g = p->runq.pop()) moved.push(g);
  if (!moved.empty()) global_->push_list(moved);

  P* dst = allp_[0].load(std::memory_order_acquire);
  if (dst != p) {
    // Lock order: lower P id first.
    std::scoped_lock lk(dst->timers_mu, p->timers_mu);
    for (Timer* t : p->timers) {
      t->index = -1;
      timer_heap_push(dst, t);
    }
    p->timers.clear();
    p->timer0.store(0);
  }
  wake_poller_for(dst->timer0.load());

  std::lock_guard lk(gfree_mu_);
  while (p->gfree != nullptr) {
    G* f = p->gfree;
    p->gfree = f->next;
    f->next = gfree_;
    gfree_ = f;
  }
  p->ngfree = 0;
  p->stacks.flush();
}

// ----------------------------------------------------------------------------------------------------------------
// Monitor (Go's sysmon duties that tern has so far: notice fibers that hold a P too long while others wait, poll the
// network if nobody has for 10 ms, retry a failed thread start, trim the stack pool).

void Sched::monitor_main() {
  for (;;) {
    if (shutting_down_.load(std::memory_order_acquire)) return;
    int n = nprocs_.load(std::memory_order_acquire);
    if (int64_t at = thread_retry_at_.load(); at != 0) {
      // A thread failed to start: with all Ps idle because of it, queued work has nobody else to start an M.
      const int64_t left = at - now_ns();
      if (left > 0) monitor_note_.sleep(std::min(left, kMonitorPeriodNs));
      if (shutting_down_.load(std::memory_order_acquire)) return;
      retry_thread_start();
      if (npidle_.load() >= n && !poller_->has_waiters()) continue;
    } else if (npidle_.load() >= n && !poller_->has_waiters()) {
      // All idle: sleep until a P goes busy (take_idle_p wakes us), so an idle runtime costs nothing here.
      monitor_sleeping_.store(true);
      if (npidle_.load() >= n && thread_retry_at_.load() == 0) monitor_note_.sleep();
      monitor_sleeping_.store(false);
      continue;
    }
    monitor_note_.sleep(kMonitorPeriodNs);
    if (shutting_down_.load(std::memory_order_acquire)) return;
    retry_thread_start();
    n = scan_bound();  // a retiring P still held by a long fiber counts: its queue is stuck behind it
    bool stuck_work = false;
    for (int i = 0; i < n; i++) {
      P* p = allp_[i].load(std::memory_order_acquire);
      if (p->status.load(std::memory_order_relaxed) != PStatus::kRunning) continue;
      uint64_t tick = p->counters.switches.load(std::memory_order_relaxed);
      if (tick == p->monitor_tick) {
        // One fiber held this P for a whole period. Work queued behind it (fibers or due timers) needs another M.
        int64_t t0 = p->timer0.load(std::memory_order_relaxed);
        if (!p->runq.empty() || p->runnext.load(std::memory_order_relaxed) != nullptr || (t0 != 0 && t0 <= now_ns())) {
          long_running_.fetch_add(1, std::memory_order_relaxed);
          stuck_work = true;
        }
      }
      p->monitor_tick = tick;
    }
    if (stuck_work) wakep();
    if (poller_->has_waiters() && !polling_.load() &&
        now_ns() - last_poll_.load(std::memory_order_relaxed) > kMonitorPeriodNs) {
      GList list;
      if (poller_->poll(0, list) > 0) {
        last_poll_.store(now_ns(), std::memory_order_relaxed);
        ready_list(list);
      }
    }
    if (int64_t now = now_ns(); now - last_trim_ >= kStackTrimPeriodNs) {
      last_trim_ = now;
      stacks_.trim();
    }
  }
}

// ----------------------------------------------------------------------------------------------------------------
// Statistics

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
  }
  st.spawned = outside_spawned_.load(std::memory_order_relaxed);
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
    st.rescued += c.rescued.load(std::memory_order_relaxed);
    st.global_taken += c.global_taken.load(std::memory_order_relaxed);
    st.overflows += c.overflows.load(std::memory_order_relaxed);
    st.timers_fired += c.timers_fired.load(std::memory_order_relaxed);
    st.polls += c.polls.load(std::memory_order_relaxed);
    if (i < scan_bound()) st.runnable += p->runq.size() + (p->runnext.load(std::memory_order_relaxed) != nullptr);
  }
  st.runnable += global_->size();
  st.spawned -= std::min(st.spawned, unstarted_.load(std::memory_order_relaxed));
  st.live = st.spawned >= st.finished ? st.spawned - st.finished : 0;
  st.long_running = long_running_.load(std::memory_order_relaxed);
  st.thread_start_failures = thread_start_failures_.load(std::memory_order_relaxed);
  st.stacks = stacks_.stats();
  return st;
}

// ----------------------------------------------------------------------------------------------------------------
// park.h

G* current() {
  M* m = this_m();
  return m != nullptr ? m->curg : nullptr;
}

uint64_t current_id() {
  G* g = current();
  return g != nullptr ? g->id : 0;
}

int current_p() {
  M* m = this_m();
  return (m != nullptr && m->p != nullptr) ? m->p->id : -1;
}

Sched* Sched::current() {
  M* m = this_m();
  return (m != nullptr && m->curg != nullptr) ? m->sched : nullptr;
}

void park(ParkCommit commit, void* arg) {
  M* m = this_m();
  G* g = m->curg;
  g->commit = commit;
  g->commit_arg = arg;
  if (G* next = m->sched->take_handoff(m)) {
    switch_direct(m, g, next);
    return;
  }
  switch_to_g0(m, MAction::kPark);
}

void ready(G* g) {
  g->sched->ready(g, true);
}
void ready_tail(G* g) {
  g->sched->ready(g, false);
}

void ready_list(GList& list) {
  // A batch may mix runtimes only in contrived cases; split by runtime so each goes to its own queues.
  while (!list.empty()) {
    Sched* s = list.head->sched;
    GList mine, rest;
    while (G* g = list.pop()) (g->sched == s ? mine : rest).push(g);
    s->ready_list(mine);
    list = rest;
  }
}

void yield() {
  M* m = this_m();
  if (m == nullptr || m->curg == nullptr) return;  // a plain thread: nothing to yield to
  switch_to_g0(m, MAction::kYield);
}

}  // namespace tern::sched
