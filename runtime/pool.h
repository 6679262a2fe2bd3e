// runtime/pool.h: tern::Pool<T>, a per-processor object pool (Go's sync.Pool).
//
//   tern::Pool<Buffer> buffers("echo_buffers");        // objects made on the P's node arena (alloc/arena.h) on a miss
//   Buffer* b = buffers.get();                          // the P's most recently put object, or a new one
//   ...                                                  // b is the caller's alone until it is put back
//   buffers.put(b);
//
// What it is for: objects that are expensive to make or that should stay hot in a core's cache (buffers, scratch
// space), reused by whatever fiber runs next on the same processor. A pool is a cache, not a free list: it may drop
// any object it holds (the drop function runs, on whatever thread drops it), and get() may make a new one whenever it
// holds none. Objects come back as they were put: get() does not reset them.
//
// How:
//   - Each P has a slot (scheduler/proc_local.h) with a primary stack of up to PoolOptions::per_proc objects and a
//     victim cache. get() pops the primary, then the victim, then makes one (a miss); put() pushes onto the primary
//     and drops the object when the primary is full. Only the fiber running on the P touches its slot, without locks
//     or atomic read-modify-writes; objects never move between Ps (a P that misses makes one rather than take another
//     P's: the brief cost of a miss, not cross-core traffic on every get).
//   - Cycles (Go's poolCleanup at each GC): about every sched::kProcCyclePeriodNs the monitor thread makes every slot's
//     primary its victim and drops the old victim. An object put and not taken again survives one cycle and is dropped
//     at the second, so an idle pool gives its memory back within two periods. (Cycles run while a runtime has a busy
//     P; all runtimes' monitors together run one cycle per period.)
//   - The cycle and the owner exclude each other per slot without costing the owner a fence: see pool.cc.
//   - Off a P (a plain thread, inside tern::blocking): get() makes an object and put() drops it.
//
// Safe against migration: get() and put() contain no switch point (make and drop run outside the slot), so the fiber
// stays on the P whose slot it read (scheduler/proc_local.h says why that holds).
//
// Metrics (process-wide, in every runtime's /metrics): tern_pool_hits_total, tern_pool_misses_total,
// tern_pool_drops_total and tern_pool_objects{state="primary|victim"}, each labelled pool="<name>".
//
// Costs: a get/put pair that hits is ~10 ns on one P (bench/pool_bench.cc); a cycle costs one membarrier(2) for all
// pools, and per slot a few loads and stores.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "alloc/arena.h"
#include "scheduler/proc_local.h"

namespace tern {

struct PoolOptions {
  // Objects a P's primary holds; a put beyond drops the object (the victim holds what the primary held at the last
  // cycle, so up to twice this per P in all).
  size_t per_proc = 64;
};

struct PoolStats {
  uint64_t hits = 0, misses = 0, drops = 0;
  uint64_t primary = 0, victim = 0;  // objects held now
};

// Runs a cycle of every pool now (what the monitor does about every second). For tests; programs need not call it.
void pool_cycle();

namespace detail {

// One P's slot of a pool. The owner (the fiber on the P) writes n/vn/the arrays and the counters; the cycle reads
// and writes them only inside the exclusion (pool.cc). Counters and sizes are atomics, written by their one writer
// with relaxed load+store, so that metrics may read them.
struct alignas(64) PoolSlot {
  std::atomic<bool> owner_busy{false};
  std::atomic<bool> cycling{false};
  std::atomic<uint32_t> n{0}, vn{0};  // objects in primary / victim
  void** primary = nullptr;           // [per_proc]
  void** victim = nullptr;            // [per_proc]; the cycle swaps the two
  void** arrays = nullptr;            // the one allocation both live in (whichever half each is now)
  std::atomic<uint64_t> hits{0}, misses{0}, drops{0};
};

inline void bump_by(std::atomic<uint64_t>& c, uint64_t n) {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}
inline void bump(std::atomic<uint64_t>& c) {
  bump_by(c, 1);
}

// The type-erased pool: slots, registration for cycles and metrics. Pool<T> is a typed face on it.
class PoolCore {
 public:
  // make(node): a new object for a P on `node`; drop(x): destroys one.
  PoolCore(std::string name, PoolOptions opts, std::function<void*(int node)> make, std::function<void(void*)> drop);
  ~PoolCore();  // drops every object held
  PoolCore(const PoolCore&) = delete;
  PoolCore& operator=(const PoolCore&) = delete;

  void* get() {
    const sched::ProcRef p = sched::current_proc();
    if (p.slot < 0) [[unlikely]]
      return miss_without_p();
    PoolSlot* s = slots_[p.slot].load(std::memory_order_acquire);
    if (s == nullptr) [[unlikely]]
      s = make_slot(p);
    enter(s);
    void* x = nullptr;
    if (const uint32_t n = s->n.load(std::memory_order_relaxed); n > 0) [[likely]] {
      x = s->primary[n - 1];
      s->n.store(n - 1, std::memory_order_relaxed);
    } else if (const uint32_t vn = s->vn.load(std::memory_order_relaxed); vn > 0) {
      x = s->victim[vn - 1];
      s->vn.store(vn - 1, std::memory_order_relaxed);
    }
    bump(x != nullptr ? s->hits : s->misses);
    leave(s);
    return x != nullptr ? x : make_(p.node);  // outside the slot: make may park
  }

  void put(void* x) {
    if (x == nullptr) return;
    const sched::ProcRef p = sched::current_proc();
    if (p.slot < 0) [[unlikely]]
      return drop_without_p(x);
    PoolSlot* s = slots_[p.slot].load(std::memory_order_acquire);
    if (s == nullptr) [[unlikely]]
      s = make_slot(p);
    enter(s);
    const uint32_t n = s->n.load(std::memory_order_relaxed);
    const bool kept = n < per_proc_;
    if (kept) [[likely]] {
      s->primary[n] = x;
      s->n.store(n + 1, std::memory_order_relaxed);
    } else {
      bump(s->drops);
    }
    leave(s);
    if (!kept) drop_(x);
  }

  const std::string& name() const { return name_; }
  PoolStats stats() const;
  // Makes every slot's primary its victim and appends the objects of the old victims to `dropped` (the caller drops
  // them, outside every slot). Called by pool_cycle() after its heavy fence (pool.cc).
  void cycle_slots(std::vector<void*>& dropped);
  // The cycle's first step: raises `cycling` on every slot made so far (seq_cst: before the heavy fence).
  void raise_flags();
  void lower_flags();
  void drop(void* x) { drop_(x); }

  // Whether the owner's side may skip the fence (alloc::asymmetric_fences_available(); never under TSan, which does not
  // model membarrier: pool.cc). Read once.
  static const bool kAsymmetric;

 private:
  // The owner's side of the per-slot exclusion (pool.cc explains it): two plain stores and a load where the kernel has
  // membarrier(2) (the cycle pays with a heavy fence), a seq_cst store elsewhere.
  static void enter(PoolSlot* s) {
    if (kAsymmetric) [[likely]] {
      s->owner_busy.store(true, std::memory_order_relaxed);
      std::atomic_signal_fence(std::memory_order_seq_cst);  // the cycle's membarrier makes this a full fence
    } else {
      s->owner_busy.store(true, std::memory_order_seq_cst);
    }
    if (s->cycling.load(std::memory_order_seq_cst)) [[unlikely]]
      wait_for_cycle(s);
  }
  static void leave(PoolSlot* s) { s->owner_busy.store(false, std::memory_order_release); }
  [[gnu::noinline]] static void wait_for_cycle(PoolSlot* s);
  [[gnu::noinline]] PoolSlot* make_slot(sched::ProcRef p);
  [[gnu::noinline]] void* miss_without_p();
  [[gnu::noinline]] void drop_without_p(void* x);
  [[gnu::noinline]] void* make_(int node) { return make_fn_(node); }
  [[gnu::noinline]] void drop_(void* x) { drop_fn_(x); }

  std::string name_;
  const uint32_t per_proc_;
  std::function<void*(int)> make_fn_;
  std::function<void(void*)> drop_fn_;
  std::unique_ptr<std::atomic<PoolSlot*>[]> slots_;  // [sched::kMaxProcSlots], each made by its owner on first use
  std::atomic<uint64_t> outside_misses_{0}, outside_drops_{0};
};

// Every live pool's name and statistics (runtime/metrics reads them at scrape time).
std::vector<std::pair<std::string, PoolStats>> all_pool_stats();

}  // namespace detail

// The typed pool. `name` labels its metrics: letters, digits, '_', '-' and '.' (std::invalid_argument otherwise).
// Must outlive every fiber that uses it; destroying it drops the objects it holds (not those handed out).
template <class T>
class Pool {
 public:
  // Objects made on the calling P's node arena (alloc::node_new; T must be default-constructible) and dropped there.
  explicit Pool(std::string name, PoolOptions opts = {})
      : core_(
            std::move(name), opts, [](int node) -> void* { return alloc::node_new<T>(node); },
            [](void* x) { alloc::node_delete(static_cast<T*>(x)); }) {}
  // Objects made by `make` and dropped by `drop` (which runs on whatever thread drops: a fiber's, or the monitor's).
  Pool(std::string name, std::function<T*()> make, std::function<void(T*)> drop, PoolOptions opts = {})
      : core_(
            std::move(name), opts, [m = std::move(make)](int) -> void* { return m(); },
            [d = std::move(drop)](void* x) { d(static_cast<T*>(x)); }) {}

  // An object of this P's (the most recently put first), or a new one. nullptr only if making one failed.
  T* get() { return static_cast<T*>(core_.get()); }
  // Gives x back to this P's pool (nullptr is ignored). x must not be used after.
  void put(T* x) { core_.put(x); }
  PoolStats stats() const { return core_.stats(); }
  const std::string& name() const { return core_.name(); }

 private:
  detail::PoolCore core_;
};

}  // namespace tern
