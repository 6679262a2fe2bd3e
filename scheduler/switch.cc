// scheduler/switch.cc: entering and leaving fibers: first run, the M's execute step, park with its direct handoff to
// the partner it readied (take_handoff/finish_park, invariant 2), and the park.h API (park, ready, yield, current).
#include <algorithm>
#include <atomic>

#include "scheduler/context.h"
#include "scheduler/global_queue.h"
#include "scheduler/m.h"
#include "scheduler/p.h"
#include "scheduler/park.h"
#include "scheduler/sched.h"
#include "scheduler/sched_internal.h"

namespace tern::sched {

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
  // The next two of what find_runnable takes first: the busy poll's fibers, then the queue's.
  G* next = p->ioq_filled ? p->ioq.peek(0) : nullptr;
  G* second = nullptr;
  if (next != nullptr) {
    second = p->ioq.peek(1);
    if (second == nullptr) second = p->runq.peek(0);
  } else {
    next = p->runq.peek(0);
    second = p->runq.peek(1);
  }
  if (second != nullptr) __builtin_prefetch(second);
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

// Counts a sampled runnable -> running wait (set_gstatus stamped g->ready_ticks) in p's histogram; p is the caller's.
inline void record_latency(P* p, G* g) {
  if (g->ready_ticks == 0) [[likely]] {
    g->last_wait_ns = 0;  // not timed this run
    return;
  }
  const uint64_t now = fast_ticks();
  // Stamped on one CPU and read on another: synchronized TSCs may still differ by a few ticks, so a "negative" wait
  // counts as the shortest one.
  const int64_t wait = now > g->ready_ticks ? ticks_to_ns(now - g->ready_ticks) : 0;
  g->ready_ticks = 0;
  g->last_wait_ns = wait;
  const uint64_t w = wait > 1 ? static_cast<uint64_t>(wait) : 1;
  const int bucket = std::min(63 - __builtin_clzll(w), kLatencyBuckets - 1);
  bump(p->counters.latency[bucket], g->ready_weight);
  bump(p->counters.latency_sum_ns, w * g->ready_weight);
}

// The trace's record of g leaving its P by `action` (execute, after the switch back).
[[gnu::noinline]] void trace_stop(P* p, G* g, MAction action) {
  const TraceStop why = action == MAction::kYield  ? TraceStop::kYield
                        : action == MAction::kExit ? TraceStop::kExit
                                                   : TraceStop::kPark;
  const auto reason =
      why == TraceStop::kPark ? static_cast<uint32_t>(g->wait_reason.load(std::memory_order_relaxed)) : 0;
  if (!p->trace->record(TraceKind::kStop, g->id, reason, 0, static_cast<uint8_t>(why))) p->trace = nullptr;
}

// Parks the running fiber g by switching straight to `next` (taken by Sched::take_handoff); next finishes g's park on
// arrival. Returns when some M resumes g.
void switch_direct(M* m, G* g, G* next) {
  P* p = m->p;
  if (next->ctx == nullptr) m->sched->prepare_first_run(p, next);
  trace_p(p, TraceKind::kStop, g->id, static_cast<uint32_t>(g->wait_reason.load(std::memory_order_relaxed)), 0,
          static_cast<uint8_t>(TraceStop::kPark));
  trace_p(p, TraceKind::kRun, next->id);
  m->curg = next;
  set_gstatus(next, GStatus::kRunning);
  next->last_p.store(p->id, std::memory_order_relaxed);
  record_latency(p, next);
  bump(p->counters.switches);
  p->running_g.store(next->id, std::memory_order_relaxed);
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
    if (!g->stack.valid()) [[unlikely]] {
      g->stack = get_stack_slow(p);
      if (!g->stack.valid()) stack_exhausted();
    }
  }
  g->ctx = ctx::bctx::make_fcontext(g->stack.top(), g->stack.size, fiber_entry);
}

bool Sched::bind_stack(G* g) {
  M* m = this_m();
  P* p = (m != nullptr && m->sched == this) ? m->p : nullptr;
  if (p != nullptr) g->stack = p->stacks.get();
  if (!g->stack.valid()) g->stack = get_stack_slow(p);
  if (!g->stack.valid()) return false;
  g->ctx = ctx::bctx::make_fcontext(g->stack.top(), g->stack.size, fiber_entry);
  return true;
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
  if (int64_t now; timer_due(p->timer0.load(std::memory_order_relaxed), now)) return nullptr;
  if (m->locked_g != nullptr) return nullptr;  // a locked M runs its fiber only: the parker's M stops (run_locked)
  G* g = p->runnext.load(std::memory_order_acquire);
  if (g == nullptr) return nullptr;
  if (M* lm = g->locked_m.load(std::memory_order_relaxed); lm != nullptr && lm != m) return nullptr;  // its own M's
  if (!p->runnext.compare_exchange_strong(g, nullptr, std::memory_order_acq_rel)) return nullptr;
  p->runnext_chain++;
  return g;
}

void clear_preempt(P* p) {
  if (p->preempt.exchange(false, std::memory_order_relaxed)) g_preempt_marks.fetch_sub(1);
}

bool preempt_marked() {
  M* m = this_m();
  return m != nullptr && m->p != nullptr && m->p->preempt.load(std::memory_order_relaxed);
}

void preempt_yield() {
  M* m = this_m();
  if (m == nullptr || m->p == nullptr || m->curg == nullptr) return;
  clear_preempt(m->p);
  bump(m->p->counters.preempted);
  switch_to_g0(m, MAction::kYield);
}

// The fiber's switch out to g0, for the scheduler's other files (tern::blocking's way back without a P).
void leave_to_g0(M* m, MAction action) {
  switch_to_g0(m, action);
}

void Sched::execute(M* m, G* g) {
  P* p = m->p;
  if (g->ctx == nullptr) prepare_first_run(p, g);
  trace_p(p, TraceKind::kRun, g->id);
  m->curg = g;
  set_gstatus(g, GStatus::kRunning);
  g->last_p.store(p->id, std::memory_order_relaxed);
  record_latency(p, g);
  bump(p->counters.switches);
  p->running_g.store(g->id, std::memory_order_relaxed);
  if (p->preempt.load(std::memory_order_relaxed)) [[unlikely]]
    clear_preempt(p);  // the marked fiber switched out on its own
  prefetch_next(p);
  ctx::before_switch(&m->g0_fake_stack, g->stack.lo, g->stack.size, g->tsan_fiber);
  ctx::transfer_t t = ctx::bctx::jump_fcontext(g->ctx, m);
  ctx::after_switch(m->g0_fake_stack, nullptr, nullptr);
  // The fiber coming back may not be g: g may have parked straight into another fiber (switch_direct).
  g = m->curg;
  g->ctx = t.fctx;
  m->curg = nullptr;
  if (m->action == MAction::kBlockedNoP) [[unlikely]] {
    // Back from tern::blocking with its P handed on and no idle one (exit_blocking_slow): the fiber waits in the
    // global queue, and this M, without a P, joins the idle ones until it is given one.
    m->action = MAction::kNone;
    GList list;  // inject_global marks it runnable
    list.push(g);
    inject_global(list);
    if (m->locked_g != g) idle_without_p(m);  // a locked M waits for its fiber instead (m_main, run_locked)
    return;
  }
  // A fiber that ran tern::blocking may have come back to another P than the one it left (exit_blocking_slow).
  p = m->p;
  p->running_g.store(0, std::memory_order_relaxed);
  if (p->trace != nullptr) [[unlikely]]
    trace_stop(p, g, m->action);
  // The fiber has fully switched out: only now may it become visible to others (invariant 2).
  switch (m->action) {
    case MAction::kYield:
      bump(p->counters.yields);
      set_gstatus(g, GStatus::kRunnable);
      if (p->runq.empty() && !p->ioq_filled && p->runnext.load(std::memory_order_relaxed) == nullptr &&
          m->locked_g == nullptr) {
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
      if (m->locked_g == g) {  // a fiber that ends locked frees its thread (Go ends the thread instead)
        m->locked_g = nullptr;
        g->locked_m.store(nullptr, std::memory_order_relaxed);
        g->lock_count = 0;
      }
      bump(p->counters.finished);
      set_gstatus(g, GStatus::kDead);
      gfput(p, g);
      break;
    case MAction::kNone:
    case MAction::kBlockedNoP:  // handled above
      break;
  }
  m->action = MAction::kNone;
}

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

int64_t last_sched_wait_ns() {
  M* m = this_m();
  return (m != nullptr && m->curg != nullptr) ? m->curg->last_wait_ns : 0;
}

Sched* Sched::current() {
  M* m = this_m();
  return (m != nullptr && m->curg != nullptr) ? m->sched : nullptr;
}

void park(ParkCommit commit, void* arg, WaitReason why) {
  M* m = this_m();
  if (m->blocking_p.load(std::memory_order_relaxed) != nullptr) [[unlikely]]
    blocking_misuse("waited on a tern primitive (a channel, a mutex, a sleep, a socket)");
  G* g = m->curg;
  g->wait_reason.store(why, std::memory_order_relaxed);
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
  if (m == nullptr || m->curg == nullptr) return;                        // a plain thread: nothing to yield to
  if (m->blocking_p.load(std::memory_order_relaxed) != nullptr) return;  // inside tern::blocking: the P is not ours
  switch_to_g0(m, MAction::kYield);
}

}  // namespace tern::sched
