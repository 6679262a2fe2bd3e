// scheduler/sched.h: the GMP scheduler.
//
// Sched is one class whose definition is split by concept:
//   sched.cc      construction, the M threads' main loop, shutdown and its leak check, statistics
//   switch.cc     entering and leaving fibers: first run, execute, park and its direct handoff, the park.h API
//   g_records.cc  G records and their pools, GList, starting a fiber
//   fibers.cc     the fiber dump's snapshot of every live fiber (fibers)
//   find_work.cc  find_runnable: run queues, runnext, the global queue, injection, stealing, rescuing a stalled P
//   idle.cc       the idle protocol: idle Ps and Ms, spinning, the poller role, wakep/startm (its two StoreLoad rules)
//   chaos.cc      the hooked paths: SchedOptions::on_point and the chaos schedule
//   resize.cc     set_procs, retiring and draining Ps
//   monitor.cc    the monitor thread
// with helpers they share in sched_internal.h.
//
// The model, after Go's runtime (src/runtime/proc.go):
//   G  a fiber (scheduler/g.h).
//   M  an OS thread. It runs the scheduler loop on its own thread stack ("g0") and switches into fibers with
//      Boost.Context. An M needs a P to run fibers.
//   P  a processor: the right to run fibers, with a local run queue (scheduler/run_queue.h), a runnext slot, a timer
//      heap, caches of G records and stacks, and counters. procs() Ps exist; set_procs() changes that while running.
//
// Finding work (Sched::find_runnable, run by an M holding a P), in order:
//   1. expired timers of this P; every kStallCheckInterval ticks, a look for a stalled P to rescue (rescue_stalled);
//      every kBusyPollInterval ticks, a non-blocking poll of the network even with work queued (its fibers run next,
//      in P::ioq, while the queue is short; past the knee they join the tail: find_work.cc); a fiber that yielded
//      goes back in line behind timers and the global queue;
//   2. every kGlobalQueueInterval scheduling ticks, one fiber from the global queue (fairness: without it two fibers
//      that ready each other through runnext could starve the global queue forever);
//   3. runnext, then the local queue;
//   4. the global queue (a batch, up to half the local queue's capacity);
//   5. a non-blocking poll of the network;
//   6. stealing: up to kStealPasses passes over the other Ps in a random order, taking half of a victim's queue (the
//      runnext slot only on the last pass), and running their expired timers; with a placement over several NUMA nodes,
//      the passes over the same node's Ps first, the other nodes' only when those found nothing (steal_order.h). At
//      most half as many Ms spin as there are busy Ps, so idle cores do not burn CPU looking at each other.
// With nothing found the M gives its P back (idle P list), re-checks every queue (the spinning-M dance that keeps
// wakeups from being lost: a producer that saw a spinning M did not wake anyone), and then blocks without a P: the
// first idle M takes the "poller" role and blocks in Poller::poll() until the earliest timer; the others park on a
// futex, or in the poller where it offers that (Poller::park: an io_uring M sleeps in its own ring, so completions of
// I/O it submitted wake it, and it leaves the idle list with an idle P to run their fibers). The poller role is held
// only while some P is idle: with every P busy, a blocked poller would wake on each event and find no P to run its
// fibers, so the busy Ps poll without blocking whenever their queues run dry and every kBusyPollInterval ticks
// instead (and the monitor does after 10 ms without a poll). New work calls wakep(), which hands an idle P to an idle
// (or new) M when no M is already spinning.
//
// Parking usually goes through the M's scheduler stack (g0), which runs the park commit and then find_runnable. When
// the fiber find_runnable would pick next is the P's runnext (the partner the parker just readied, as in a channel
// ping-pong), park() switches straight to it instead (take_handoff, after the same fairness checks: the runnext chain
// bound, the global-queue tick, due timers, retirement), and the arriving fiber runs the parker's commit: one context
// switch instead of two, and no pass through the scheduler loop. The commit still runs only after the parker has fully
// switched out.
//
// A fiber's stack is bound when it first runs, not when it is spawned: queued fibers cost only their G record, and a
// fiber that starts right after another finished takes its stack from the top of the P's LIFO cache, still hot.
//
// Invariants kept here (docs/architecture.md, where they are numbered): a fiber is in exactly one place; park() runs
// its commit only after the switch; an M blocks only without a P; resizing moves a retired P's queue, runnext and
// timers on before the P is retired, at the P's next scheduling point; counters are per P, owner-written, relaxed-read.
//
// Lock order (docs/architecture.md has the whole list): resize_mu_ -> sched_mu_ -> P::timers_mu (lower P id first) ->
// global queue lock; gfree_mu_ -> the stack pool's locks. No path holds sched_mu_ while taking the last two, which the
// order allows. ready() takes only the global queue lock and sched_mu_, so it must not be called with a timer lock held
// (timer `fire` returns the fiber instead).
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <source_location>
#include <thread>
#include <vector>

#include "alloc/stack.h"
#include "base/checked_mutex.h"
#include "scheduler/affinity.h"
#include "scheduler/fiber_info.h"
#include "scheduler/futex.h"
#include "scheduler/g.h"
#include "scheduler/limits.h"  // kMaxProcs
#include "scheduler/poller.h"
#include "scheduler/steal_order.h"
#include "scheduler/timer.h"
#include "scheduler/trace.h"

namespace tern::sched {

struct P;
struct M;
class GlobalQueue;

// Fairness interval for the global queue (Go's value: a prime, so it does not beat with program periodicities).
inline constexpr uint32_t kGlobalQueueInterval = 61;
// How often (scheduling ticks) a P with queued work also polls the network, non-blocking (find_runnable).
inline constexpr uint32_t kBusyPollInterval = 4;
// Fibers readied into runnext inherit the running time slice; after this many in a row, the next one goes through the
// local queue instead so a ping-pong pair cannot starve the rest of the queue. Tokio bounds its LIFO slot too, far
// tighter (MAX_LIFO_POLLS_PER_TICK = 3); Go bounds it by time instead (runnext inherits the slice, which sysmon
// preempts).
inline constexpr uint32_t kRunnextChainMax = 32;
// A P that has not started a fiber for this long while fibers wait in its queue is stalled: its M was descheduled by
// the OS, or one fiber holds it. A busy M that notices takes half the queue (Sched::rescue_stalled).
inline constexpr int64_t kStallNs = 500'000;
// How often (in fibers started) a busy M looks at another P for a stall: the look reads the clock.
inline constexpr uint32_t kStallCheckInterval = 4;
// The most NUMA nodes SchedOptions::numa_nodes names (the largest kernel configuration's MAX_NUMNODES).
inline constexpr int kMaxNumaNodes = 1024;
// The monitor's period while any P is busy (Go's sysmon settles at 10 ms); it sleeps until woken while all are idle.
inline constexpr int64_t kMonitorPeriodNs = 10'000'000;
// How often the monitor gives back the memory of fiber stacks that stayed unused above the pool's watermark.
inline constexpr int64_t kStackTrimPeriodNs = 1'000'000'000;
// After an M's thread fails to start (RLIMIT_NPROC, a cgroup's pids.max, memory), the monitor tries again after this
// long, doubling per failure up to kThreadRetryMaxNs: work queued meanwhile must not wait for an unrelated wakep(),
// and a limit that stays does not cost a failed clone() per scheduling event.
// A tern::blocking call that has lasted this long (and at least one look of the monitor) loses its P to another M
// (Go's sysmon retakes a P in a syscall after 20 us). While calls are in progress the monitor looks every
// kRetakePeriodNs instead of every kMonitorPeriodNs.
inline constexpr int64_t kRetakeNs = 20'000;
inline constexpr int64_t kRetakePeriodNs = 20'000;
// The default bound on an Sched's threads (Ms), blocked ones included (SchedOptions::max_threads; Go's default).
inline constexpr int kDefaultMaxThreads = 10'000;
inline constexpr int64_t kThreadRetryMinNs = 1'000'000;
inline constexpr int64_t kThreadRetryMaxNs = 1'000'000'000;

// Points in the wakeup protocol where SchedOptions::on_point is called: the places where an M acts on what it saw a
// moment ago, so the interleavings a lost wakeup needs happen there. A test holds one M at a point while another runs.
// The chaos schedule (SchedOptions::chaos_seed) injects its delays at every point. The points after kReadiedWithoutP
// are the park and wake points; they may be reached on a fiber's stack or a plain thread, with the caller's own locks
// held, so a hook must not block there.
enum class SchedPoint : uint8_t {
  // An M back from a blocking poll (or woken in its own ring, Poller::park) with fibers found no idle P; next it
  // queues them globally. Another M may run dry and block in the poller meanwhile.
  kReadiedWithoutP,
  // park(): the fiber is about to switch out; its commit has not run.
  kPark,
  // ready(): a fiber is about to be queued.
  kReady,
  // wakep(): about to look at the idle Ps and the spinning Ms.
  kWakep,
  // find_runnable() found nothing and gave its P back; next it re-checks every queue before it blocks (a producer
  // that saw it spinning woke nobody).
  kReleasedP,
  // Fibers are about to be pushed onto the global queue (kGlobalPush), or were just pushed (kGlobalPushed).
  kGlobalPush,
  kGlobalPushed,
};

// The default SchedOptions::on_uncaught, and what a JoinHandle's unobserved exception ends in: prints the fiber id and
// the exception's what() to stderr, then std::abort().
[[noreturn]] void terminate_uncaught(uint64_t fiber_id, std::exception_ptr e);

// What the stall detector saw (SchedOptions::on_stall): a fiber that has run stall_ns without a switch, and where.
struct StallReport {
  uint64_t fiber = 0;
  int p = -1, m = -1;  // the processor and the thread (M id) it runs on
  int64_t ran_ns = 0;  // at least this long without a switch
  int64_t threshold_ns = 0;
  const void* const* frames = nullptr;  // return addresses, innermost first (none when the thread did not answer)
  int nframes = 0;
};

// Where a P runs (SchedOptions::placement): the processing unit (the OS's CPU number, as taskset and
// sched_setaffinity count them) the M holding it is bound to, and that PU's NUMA node.
struct PlacementSlot {
  int pu = 0;
  int node = 0;
};

// The most idle Ms startm() looks through for one last bound on the P's node (a placement over several nodes only):
// the scan runs under sched_mu_, and any M serves.
inline constexpr int kIdleMScan = 8;

struct SchedOptions {
  int procs = 1;
  size_t stack_size = 256 << 10;
  size_t stack_high_watermark = 1024;
  // NUMA nodes the Ps are placed on (at least: a placement's slots name nodes too, and the larger count wins): one
  // stack pool per node, each P's stack
  // cache in front of its node's pool, each new batch of stacks mbind'ed to its node when there is more than one (a
  // failed mbind is one warning; the stacks are used anyway). 1 (or less): one pool, no mbind.
  int numa_nodes = 1;
  // Without a placement, the node of P slot i, in [0, numa_nodes) (with one, the slot's node); fixed for the
  // runtime's life (P i is always placement slot i). Unset:
  // every P on node 0. Out-of-range answers are clamped.
  std::function<int(int)> p_node;
  // The network poller (not owned; must outlive the Sched). nullptr: a built-in one that only waits for timers.
  Poller* poller = nullptr;
  // Called when a fiber lets an exception escape. Default: print the fiber id and message, then std::abort().
  std::function<void(uint64_t fiber_id, std::exception_ptr)> on_uncaught;
  // Called by the M that reaches a SchedPoint, on its own stack, holding no lock (kReadiedWithoutP; see SchedPoint for
  // the others). For tests: unset in production (then each point costs one predictable branch).
  std::function<void(SchedPoint)> on_point;
  // Chaos schedule, for tests (Go's race mode shuffles run order likewise): nonzero seeds a randomized choice among the
  // legal ones wherever the scheduler picks (runnext, local tail or global queue for a readied fiber; the global queue
  // before the local one; parking through the scheduler loop instead of a handoff) and random yields and short spins at
  // the SchedPoints. Each M draws from its own xorshift stream seeded from the seed and its id. 0: the TERN_CHAOS
  // environment variable's value (read once, here; unset or 0 = off). Off, it costs one predictable branch per point.
  uint64_t chaos_seed = 0;
  // Leak check at shutdown: an M not joined or a fiber stack still in use after every G record gave its stack back
  // is a runtime bug and aborts with a message; fibers still alive (parked or queued: a user-level leak, like Go's
  // goleak) are reported on stderr with their count. false: on if TERN_LEAK_CHECK=1 (read once, here).
  bool leak_check = false;
  // The event trace (TERN_TRACE; scheduler/trace.h) to record into, or nullptr (then each event site costs one
  // predictable branch). Not owned; must outlive the Sched.
  Tracer* tracer = nullptr;
  // The most Ms (OS threads running fibers) this Sched starts, those blocked in tern::blocking included. At the bound
  // a P handed on from a blocking call waits for one to return; the first time, a line on stderr says so, and
  // SchedStats::thread_limit_hits counts every time.
  int max_threads = kDefaultMaxThreads;
  // The stall detector (Seastar's reactor stall reports): a fiber that runs this long without a switch is reported
  // once, with a backtrace of where it is (the monitor signals its thread, SIGURG, whose handler records the frames),
  // to on_stall; 0 = off. The monitor looks every kMonitorPeriodNs, so a report comes up to that much later. Off by
  // default: the signal interrupts whatever system call the fiber is in (it sees EINTR, as Go's SIGURG preemption
  // makes programs expect).
  int64_t stall_ns = 0;
  std::function<void(const StallReport&)> on_stall;
  // NUMA placement (runtime/topology.h computes it): P i takes slot i (slot i modulo the size when there are more Ps
  // than slots), for the runtime's life, so a P revived by a grow lands where it was. The M holding a P is bound to
  // its slot's PU (an M is bound only while it holds a P: a tern::blocking call, which hands the P over, unbinds it,
  // and so does retiring the P), and the slot's node is the P's (P::node), which steal_work and wakep prefer. Empty:
  // nothing is bound and every P is on node 0. A bind the kernel refuses (a PU outside the process's cpuset, a
  // synthetic topology) prints one warning for the Sched and leaves that M unbound.
  std::vector<PlacementSlot> placement;
  // G records come from the jemalloc arena of the node of the P that spawns (alloc/arena.h), and each M is bound to its
  // P's node's arena. false: operator new, and Ms stay unbound (benchmarks compare the two in one process).
  bool node_arenas = true;
};

// Totals over all Ps (sums of per-P counters) and scheduler-wide figures.
struct SchedStats {
  int procs = 0;
  int idle_procs = 0;
  int threads = 0;  // Ms started
  int spinning = 0;
  bool polling = false;        // an M without a P holds the poller role
  uint64_t poller_claims = 0;  // times wakep() handed an idle P to that M instead of starting another
  uint64_t park_io_wakes = 0;  // a parked M woken by its own I/O completions (Poller::park)
  uint64_t park_io_takes = 0;  // ... that then took an idle P and ran the fibers itself
  uint64_t spawned = 0;        // fibers started
  uint64_t finished = 0;
  uint64_t switches = 0;  // fiber resumptions
  uint64_t yields = 0;
  uint64_t parks = 0;
  uint64_t steals = 0;         // fibers taken from other Ps
  uint64_t steals_remote = 0;  // of those, taken from a P on another NUMA node (placement)
  uint64_t rescued = 0;        // of those, taken from a P that had not switched fibers for kStallNs (rescue_stalled)
  uint64_t global_taken = 0;
  uint64_t overflows = 0;  // local queue overflows to the global queue
  uint64_t timers_fired = 0;
  uint64_t polls = 0;                  // poller calls that returned fibers
  uint64_t poll_calls = 0;             // poller calls, found fibers or not
  uint64_t io_first = 0;               // fibers a busy poll readied, started ahead of the local queue (P::ioq)
  uint64_t long_running = 0;           // times the monitor saw one fiber hold a P for a whole period
  uint64_t thread_start_failures = 0;  // an M's thread could not be started (retried with back-off by the monitor)
  uint64_t thread_limit_hits = 0;      // an M was wanted at SchedOptions::max_threads (not started)
  int blocked_threads = 0;             // Ms inside tern::blocking now
  uint64_t blocking_calls = 0;         // tern::blocking calls made
  uint64_t retakes = 0;                // ... whose P the monitor handed to another M
  uint64_t preempted = 0;              // preempt_point() yields on a monitor's mark
  uint64_t stalls = 0;                 // fibers the stall detector reported
  uint64_t runnable = 0;               // fibers queued now (local + global)
  uint64_t global_runnable = 0;        // of those, in the global queue
  uint64_t live = 0;                   // fibers spawned and not finished
  uint64_t busy_ns = 0;                // summed over Ps: time held by an M (running, polling, spinning)
  uint64_t work = 0;                   // the application's work counter (count_work)
  // Runnable -> running waits, estimated from samples (g.h, kLatencySampleEvery): latency[i] counts waits in
  // [2^i, 2^(i+1)) ns.
  uint64_t latency[kLatencyBuckets] = {};
  uint64_t latency_sum_ns = 0;  // their sum
  int idle_threads = 0;         // Ms parked without a P (the idle list), besides the one holding the poller role
  // Each live P (ids 0 .. procs-1), as the controller and the schedtrace line show them.
  struct Proc {
    int id = 0;
    bool idle = false;
    uint64_t runq = 0;      // queued in its local queue and runnext
    uint64_t switches = 0;  // fibers resumed on it
    uint64_t busy_ns = 0;
    const char* status = "idle";  // idle | running | retiring | dead (PStatus)
    int m = -1;                   // the holding M's id; -1: none
    uint64_t fiber = 0;           // the fiber running on it; 0: none (between fibers, spinning, polling)
    // How long that fiber has run, at least, to the monitor's period (it notes when a P's switch count last moved);
    // -1 when the monitor has not looked since the fiber started.
    int64_t running_ns = -1;
    int pu = -1;  // the processing unit its M is bound to (SchedOptions::placement); -1: none
    int node = 0;
  };
  std::vector<Proc> per_p;
  alloc::StackStats stacks;
};

class Sched {
 public:
  explicit Sched(SchedOptions opts);
  // Shuts down: stops every M (fibers still running finish their current run to a scheduling point), then frees every
  // G record and stack, including those of fibers still parked or queued (their destructors do not run).
  ~Sched();
  Sched(const Sched&) = delete;
  Sched& operator=(const Sched&) = delete;

  // The runtime of the calling fiber, or nullptr outside fibers.
  static Sched* current();

  Poller* poller() const { return poller_; }

  // Starts a fiber running f. Callable from any thread. If no stack can be mapped (memory, or vm.max_map_count: a stack
  // is one mapping with guard regions, two with an mprotect'ed guard page), the process stops with a message saying
  // which limit and how to raise it: a fiber is never dropped silently. `site` is where the fiber dump says it was
  // spawned: the public entry points (runtime/go.h, Runtime) pass their caller's, so it names the user's line.
  template <class F>
  void go(F&& f, std::source_location site = std::source_location::current()) {
    G* g = new_g();
    if (g == nullptr) stack_exhausted();
    g->task.emplace(std::forward<F>(f));
    g->spawn_site.store(site, std::memory_order_relaxed);
    start(g);
  }
  // Like go(), but returns false instead of stopping when no stack can be mapped (f is then not run).
  template <class F>
  bool try_go(F&& f, std::source_location site = std::source_location::current()) {
    G* g = new_g();
    if (g == nullptr) return false;
    if (!bind_stack(g)) {
      free_g(g);
      return false;
    }
    g->task.emplace(std::forward<F>(f));
    g->spawn_site.store(site, std::memory_order_relaxed);
    start(g);
    return true;
  }

  // Grows or shrinks the set of Ps while fibers run; n is clamped to [1, kMaxProcs].
  void set_procs(int n);
  int procs() const { return nprocs_.load(std::memory_order_relaxed); }

  SchedStats stats() const;
  // Every live fiber (runnable, running, waiting) with what it waits on, for how long, and where it was spawned
  // (scheduler/fiber_info.h). Callable from any thread while the runtime runs; stops nothing (scheduler/fibers.cc).
  std::vector<FiberInfo> fibers() const;
  // Adds n to the application's work counter (requests served, say), which the controller's throughput-driven
  // policies read: per P from a fiber, one shared atomic from other threads.
  void count_work(uint64_t n);
  size_t stack_size() const { return stacks_[0]->stack_size(); }
  // The stack pools' statistics, summed over nodes (SchedStats::stacks), and one node's alone.
  alloc::StackStats stack_stats() const;
  alloc::StackStats stack_stats(int node) const { return stacks_.at(static_cast<size_t>(node))->stats(); }
  int numa_nodes() const { return static_cast<int>(stacks_.size()); }
  uint64_t id() const { return id_; }
  // Records an event of the layers above (a controller decision) in the trace, if there is one: into the caller's P's
  // buffer on a fiber of this runtime, else the no-P buffer.
  void trace(TraceKind kind, uint64_t g, uint32_t a = 0, uint16_t b = 0, uint8_t sub = 0) {
    if (tracer_ != nullptr) [[unlikely]]
      trace_slow(kind, g, a, b, sub);
  }

  // Internal interface, used by park.h/timer.h and the M loop.
  G* new_g();
  bool bind_stack(G* g);  // maps the stack now instead of at first run
  void free_g(G* g);      // a G never started
  void start(G* g);
  void ready(G* g, bool next);
  void ready_list(GList& list);
  void add_timer(P* p, Timer* t);
  void wake_poller_for(int64_t when);
  void wakep();
  void on_uncaught(uint64_t id, std::exception_ptr e);
  // Parking without the scheduler loop: when the fiber find_runnable would pick next is the P's runnext (a partner the
  // parking fiber just readied), take_handoff returns it and the parking fiber switches straight to it; the arriving
  // fiber then finishes the park (finish_park runs the commit). nullptr: go through the scheduler loop.
  G* take_handoff(M* m);
  void finish_park(P* p, G* g);
  void prepare_first_run(P* p, G* g);  // binds the stack and makes the context of a fiber that never ran
  [[noreturn]] void stack_exhausted();
  // The placement's slot for P `id` (SchedOptions::placement), or nullptr without one.
  const PlacementSlot* slot(int id) const {
    return opts_.placement.empty() ? nullptr : &opts_.placement[static_cast<size_t>(id) % opts_.placement.size()];
  }
  // Bind warnings printed (SchedOptions::placement: one per Sched at most).
  bool bind_failed() const { return bind_warned_.load(std::memory_order_relaxed); }
  P* make_p(int i);  // P slot i, on its node (SchedOptions::p_node), its stack cache on that node's pool
  // A stack for a fiber starting on p (nullptr: a thread without a P, node 0). The fast path, p's cache, is inline at
  // the two call sites; this is the rest: node 0's pool without a P, then the other nodes' pools when the home node
  // can map nothing and its caches have none. !valid(): exhausted everywhere.
  alloc::Stack get_stack_slow(P* p);
  // Gives a stack back to the pool of the node it came from (Stack::node): a fiber that ran on another node's P
  // (gfput gives its P's cache only stacks of the P's node), and shutdown.
  void put_stack_home(alloc::Stack s) { stacks_[static_cast<size_t>(s.node)]->put(s); }
  // tern::blocking (scheduler/blocking.cc): the M gives up its P for the call's span (the P stays reserved for it until
  // the monitor hands it on) and takes it, or another, back after. The M must run a fiber of this Sched with a P.
  void enter_blocking(M* m);
  void exit_blocking(M* m);

 private:
  friend void m_main(M* m);
  P* pidleget();        // sched_mu_ held (asserted)
  void pidleput(P* p);  // sched_mu_ held (asserted)
  P* take_idle_p();     // pidleget under sched_mu_, then wakes the monitor for the P that went busy
  // How many entries of allp_ may hold work: procs(), or more while a P beyond it still runs a fiber (retiring).
  int scan_bound() const { return nscan_.load(std::memory_order_acquire); }
  void update_scan_bound();  // sched_mu_ held (asserted)
  // One predictable branch unless a hook (on_point or the chaos schedule) is set.
  void point(SchedPoint pt) {
    if (hooks_) [[unlikely]]
      point_slow(pt);
  }
  void point_slow(SchedPoint pt);
  void trace_slow(TraceKind kind, uint64_t g, uint32_t a, uint16_t b, uint8_t sub);
  uint32_t chaos_rand();  // the calling M's chaos stream (or this thread's, off an M)
  void chaos_delay();     // nothing, a spin of up to ~500 ns, or sched_yield(), at random
  void ready_hooked(G* g, bool next);
  void queue_ready(G* g, bool next);  // ready() without its trace event
  // queue_ready's body, inlined into ready() (idle.cc): called out of line it cost a channel ping-pong a few percent.
  [[gnu::always_inline]] inline void queue_ready_inline(G* g, bool next);
  struct LeakReport {
    static constexpr size_t kMaxIds = 8;
    uint64_t parked = 0, queued = 0, running = 0;  // live fibers, by state
    uint64_t ids[kMaxIds] = {};                    // the first few of them
    size_t nids = 0;
    uint64_t stacks_in_use = 0, ms_running = 0, ps_held = 0;  // runtime-internal leaks
    void count(const G& g);
    void report(uint64_t sched_id) const;  // prints; aborts on a runtime-internal leak
  };
  void retry_thread_start();       // monitor thread
  bool retake_blocked();           // monitor thread: hands on the Ps of long blocking calls; true while any call is on
  void check_stalls(int64_t now);  // monitor thread: the stall detector (scheduler/stall.cc)
  void handoffp(P* p);             // a P nobody holds: to a new M if work may wait for it, else to the idle list
  void exit_blocking_slow(M* m, P* old);
  bool run_locked(M* m);            // an M locked to a fiber: gives up its P, sleeps until handed it, runs it
  void hand_to_locked(M* m, G* g);  // g is locked to another M: hands it this M's P, and this M goes idle
  P* take_idle_p_prefer(P* want);
  void startm(P* p, bool spinning);
  bool wake_poller_for_p();
  bool release_poller_role();  // returns whether wakep() had claimed the poller
  bool acquire_idle_p(M* m, bool claimed);
  void wake_monitor();
  M* newm();
  G* find_runnable(M* m);
  bool poll_network(P* pp, GList& list);
  G* steal_work(M* m, P* pp);
  void rescue_stalled(P* pp);
  G* runq_get(P* p, bool& inherit);
  void runq_put(P* p, G* g, bool next);
  void run_timers(P* p, int64_t now, P* into);
  bool timers_due() const;
  int64_t earliest_timer() const;
  void timer_heap_push(P* p, Timer* t);  // p->timers_mu held (asserted)
  bool retire_if_needed(M* m);
  void drain_p(P* p);
  bool any_local_work() const;
  void reset_spinning(M* m);
  void stop_spinning(M* m);
  void wake_idle_ms();  // sched_mu_ held (asserted)
  int drop_spinning();
  void acquirep(M* m, P* p);
  P* releasep(M* m);
  // Placement (SchedOptions::placement), on m's own thread: bind m to p's PU unless it is already; unbind it.
  void bind_m(M* m, P* p);
  void unbind_m(M* m);
  P* take_idle_p_on(int node);  // wakep() with several nodes: an idle P on the waker's node if there is one
  void place(P* p);             // sets p's PU and node from its slot
  void idle_without_p(M* m);
  void park_idle_m(M* m);
  [[noreturn]] static void idle_list_corrupt(const M* m);
  bool leave_idle_list(M* m);
  void handoff_poller_role();
  void inject(GList& list, P* pp);
  void inject_global(GList& list);
  void global_put_list(GList& list);
  void gfput(P* p, G* g);
  void execute(M* m, G* g);
  void monitor_main();
  void shutdown();
  uint32_t random(M* m);

  SchedOptions opts_;
  uint64_t id_;
  // One stack pool per NUMA node (SchedOptions::numa_nodes), never empty; fixed at construction.
  std::vector<std::unique_ptr<alloc::StackPool>> stacks_;
  Poller* poller_ = nullptr;
  std::unique_ptr<Poller> idle_poller_;  // a poller that only waits, for runtimes without netpoll
  // opts_.on_point is set or the chaos schedule is on: the one flag the hot paths test (next to poller_ and allp_,
  // which they read anyway).
  bool hooks_ = false;
  bool chaos_ = false;  // opts_.chaos_seed != 0
  // The placement spans several nodes: steal_work and wakep look at nodes (one branch on the hot paths otherwise).
  bool multi_node_ = false;
  bool pin_ = false;      // the placement is not empty: acquirep binds
  CpuMask process_mask_;  // what an unbound M runs on (the process's affinity when the Sched was made)
  std::atomic<bool> bind_warned_{false};
  Tracer* tracer_ = nullptr;  // opts_.tracer

  // Ps: allp_[0, nprocs_) are live; retired ones stay allocated (a later grow reuses them).
  std::unique_ptr<std::atomic<P*>[]> allp_;
  std::atomic<int> nprocs_{0};
  // scan_bound(): Ps in [nprocs_, nscan_) are retiring but still held by an M that runs one fiber; their queues,
  // runnext and timers stay stealable until it reaches a scheduling point and retires them. Written under sched_mu_.
  std::atomic<int> nscan_{0};
  std::atomic<int> npidle_{0};
  std::atomic<int> nmspinning_{0};
  std::atomic<bool> polling_{false};    // an idle M holds the poller role
  std::atomic<int64_t> poll_until_{0};  // deadline of the blocked poll, 0 = none
  // wakep() claimed the M holding the poller role for an idle P: the spinning M it counted in nmspinning_ is that M's.
  std::atomic<bool> poller_claim_{false};
  std::atomic<uint64_t> poller_claims_{0};
  std::atomic<uint64_t> park_io_wakes_{0};
  std::atomic<uint64_t> park_io_takes_{0};
  std::atomic<int64_t> last_poll_{0};    // when someone last polled the network
  std::atomic<uint64_t> poll_calls_{0};  // blocking polls (an idle M's) and the monitor's: not on a busy P's path
  std::atomic<bool> shutting_down_{false};

  mutable CheckedMutex sched_mu_;  // pidle_, midle_, allm_, P status transitions
  P* pidle_ = nullptr;
  M* midle_ = nullptr;
  std::vector<M*> allm_;
  int next_m_id_ = 0;
  std::mutex resize_mu_;

  std::unique_ptr<GlobalQueue> global_;

  // G records: allocated in blocks and never freed before shutdown; the free list is per P with a global overflow.
  mutable std::mutex gfree_mu_;
  G* gfree_ = nullptr;
  // Each block is kGBlock records, on the node arena of the P that needed it (alloc/arena.h) unless node_arenas is off.
  std::vector<G*> gblocks_;
  std::atomic<uint64_t> outside_spawned_{0};  // fibers started from threads without a P
  std::atomic<uint64_t> unstarted_{0};        // fibers new_g() counted as spawned that try_go() then gave up
  std::atomic<int> foreign_readies_{0};       // ready() calls in flight from threads without a P here (shutdown)
  std::atomic<uint64_t> outside_work_{0};     // count_work() from threads without a P of this runtime

  // Monitor thread.
  std::thread monitor_;
  Note monitor_note_;
  std::atomic<bool> monitor_sleeping_{false};
  std::atomic<uint64_t> long_running_{0};
  int64_t last_trim_ = 0;  // monitor thread only
  std::atomic<bool> thread_failure_reported_{false};
  std::atomic<uint64_t> thread_start_failures_{0};
  // A thread start failed: the monitor calls wakep() again at thread_retry_at_ (monotonic ns; 0 = nothing pending).
  std::atomic<int64_t> thread_retry_at_{0};
  std::atomic<int64_t> thread_retry_delay_{kThreadRetryMinNs};  // the next back-off; reset by a start that succeeds
  // tern::blocking: whether the monitor looks every kRetakePeriodNs (a call was in progress at its last look); calls
  // entered with work queued behind them wake it when it does not (enter_blocking).
  std::atomic<bool> monitor_fast_{false};
  std::atomic<uint64_t> retakes_{0};
  std::atomic<uint64_t> stalls_{0};
  std::atomic<uint64_t> thread_limit_hits_{0};
  std::atomic<bool> thread_limit_reported_{false};
};

}  // namespace tern::sched
