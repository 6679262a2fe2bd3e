// runtime/pool.cc: tern::Pool's slots, the cycle and the registry (see pool.h).
//
// The exclusion between a slot's owner and the cycle (Dekker's, as alloc/stack.h's caches do it):
//   owner:  owner_busy = true; [compiler barrier]; if (cycling) wait_for_cycle(); ...slot...; owner_busy = false
//   cycle:  cycling = true (every slot of every pool); heavy_fence() (once); per slot: wait while owner_busy;
//           rotate the slot; cycling = false
// The heavy fence (membarrier(2)) runs a full barrier on every running thread, so either the cycle sees the owner
// busy and waits for its release store, or the owner's load of `cycling`, ordered after its own store, sees the flag
// and steps back (wait_for_cycle) until the slot is done. The owner pays two plain stores and a load per get/put; one
// cycle a second pays one system call. Without membarrier (or under TSan, which does not model it) both sides use
// seq_cst stores and loads, the textbook Dekker: the owner then pays for a locked store.
#include "runtime/pool.h"

#include <sched.h>

#include <algorithm>
#include <mutex>

#include "alloc/fence.h"
#include "base/sanitizer.h"

namespace tern {
namespace detail {
namespace {

struct Registry {
  // Held by a whole cycle, including its drops, and by pool creation and destruction: a pool is never destroyed while
  // a cycle uses it. Drop functions must therefore not create or destroy pools.
  std::mutex mu;
  std::vector<PoolCore*> pools;
};
Registry& registry() {
  static auto* r = new Registry;  // leaked: pools with static storage duration unregister during static destruction
  return *r;
}

void backoff(int& spins) {
  if (++spins < 64) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  } else {
    sched_yield();
  }
}

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
}

// The metrics label: characters outside [A-Za-z0-9_.-] become '_', and a name already taken gets "-2", "-3", ...
std::string unique_name(std::string name, const std::vector<PoolCore*>& pools) {
  if (name.empty()) name = "pool";
  for (char& c : name) {
    if (!name_char(c)) c = '_';
  }
  auto taken = [&](const std::string& n) {
    return std::any_of(pools.begin(), pools.end(), [&](const PoolCore* p) { return p->name() == n; });
  };
  if (!taken(name)) return name;
  for (int i = 2;; i++) {
    std::string n = name + "-" + std::to_string(i);
    if (!taken(n)) return n;
  }
}

}  // namespace

#ifdef TERN_TSAN
const bool PoolCore::kAsymmetric = false;
#else
const bool PoolCore::kAsymmetric = alloc::asymmetric_fences_available();
#endif

PoolCore::PoolCore(std::string name, PoolOptions opts, std::function<void*(int)> make, std::function<void(void*)> drop)
    : per_proc_(static_cast<uint32_t>(std::clamp<size_t>(opts.per_proc, 1, 1u << 20))),
      make_fn_(std::move(make)),
      drop_fn_(std::move(drop)),
      slots_(new std::atomic<PoolSlot*>[sched::kMaxProcSlots]) {
  for (int i = 0; i < sched::kMaxProcSlots; i++) slots_[i].store(nullptr, std::memory_order_relaxed);
  Registry& r = registry();
  std::lock_guard lk(r.mu);
  name_ = unique_name(std::move(name), r.pools);
  r.pools.push_back(this);
  sched::set_proc_cycle_hook(&pool_cycle);
}

PoolCore::~PoolCore() {
  {
    Registry& r = registry();
    std::lock_guard lk(r.mu);
    std::erase(r.pools, this);
  }
  // No cycle can reach this pool now, and by contract no fiber uses it.
  for (int i = 0; i < sched::kMaxProcSlots; i++) {
    PoolSlot* s = slots_[i].load(std::memory_order_acquire);
    if (s == nullptr) continue;
    for (uint32_t k = 0; k < s->n.load(std::memory_order_relaxed); k++) drop_(s->primary[k]);
    for (uint32_t k = 0; k < s->vn.load(std::memory_order_relaxed); k++) drop_(s->victim[k]);
    alloc::node_free(s->arrays, sizeof(void*) * 2 * per_proc_, alignof(void*));
    alloc::node_delete(s);
  }
}

void PoolCore::wait_for_cycle(PoolSlot* s) {
  for (;;) {
    s->owner_busy.store(false, std::memory_order_release);
    int spins = 0;
    while (s->cycling.load(std::memory_order_acquire)) backoff(spins);
    if (kAsymmetric) {
      s->owner_busy.store(true, std::memory_order_relaxed);
      std::atomic_signal_fence(std::memory_order_seq_cst);
    } else {
      s->owner_busy.store(true, std::memory_order_seq_cst);
    }
    // The flag goes up again only at the next cycle, whose own heavy fence orders it against our store.
    if (!s->cycling.load(std::memory_order_seq_cst)) return;
  }
}

PoolSlot* PoolCore::make_slot(sched::ProcRef p) {
  // Only the slot's owner makes it (one live P per slot index), so there is no race to publish it. The slot and its
  // arrays live on the P's node.
  auto* s = alloc::node_new<PoolSlot>(p.node);
  void** arrays = static_cast<void**>(alloc::node_alloc(sizeof(void*) * 2 * per_proc_, alignof(void*), p.node));
  if (s == nullptr || arrays == nullptr) throw std::bad_alloc();
  s->arrays = arrays;
  s->primary = arrays;
  s->victim = arrays + per_proc_;
  slots_[p.slot].store(s, std::memory_order_release);
  return s;
}

void* PoolCore::miss_without_p() {
  outside_misses_.fetch_add(1, std::memory_order_relaxed);
  return make_(0);
}

void PoolCore::drop_without_p(void* x) {
  outside_drops_.fetch_add(1, std::memory_order_relaxed);
  drop_(x);
}

PoolStats PoolCore::stats() const {
  PoolStats st;
  st.misses = outside_misses_.load(std::memory_order_relaxed);
  st.drops = outside_drops_.load(std::memory_order_relaxed);
  for (int i = 0; i < sched::kMaxProcSlots; i++) {
    const PoolSlot* s = slots_[i].load(std::memory_order_acquire);
    if (s == nullptr) continue;
    st.hits += s->hits.load(std::memory_order_relaxed);
    st.misses += s->misses.load(std::memory_order_relaxed);
    st.drops += s->drops.load(std::memory_order_relaxed);
    st.primary += s->n.load(std::memory_order_relaxed);
    st.victim += s->vn.load(std::memory_order_relaxed);
  }
  return st;
}

void PoolCore::raise_flags() {
  for (int i = 0; i < sched::kMaxProcSlots; i++) {
    if (PoolSlot* s = slots_[i].load(std::memory_order_acquire); s != nullptr) s->cycling.store(true);
  }
}

void PoolCore::lower_flags() {
  for (int i = 0; i < sched::kMaxProcSlots; i++) {
    if (PoolSlot* s = slots_[i].load(std::memory_order_acquire); s != nullptr) {
      s->cycling.store(false, std::memory_order_release);
    }
  }
}

void PoolCore::cycle_slots(std::vector<void*>& dropped) {
  // Every slot's flag went up, and the fence ran, in pool_cycle(); here each slot waits for its owner to leave.
  for (int i = 0; i < sched::kMaxProcSlots; i++) {
    PoolSlot* s = slots_[i].load(std::memory_order_acquire);
    if (s == nullptr || !s->cycling.load(std::memory_order_relaxed)) continue;  // made after the flags went up
    int spins = 0;
    while (s->owner_busy.load(std::memory_order_seq_cst)) backoff(spins);
    const uint32_t vn = s->vn.load(std::memory_order_relaxed);
    dropped.insert(dropped.end(), s->victim, s->victim + vn);
    std::swap(s->primary, s->victim);
    s->vn.store(s->n.load(std::memory_order_relaxed), std::memory_order_relaxed);
    s->n.store(0, std::memory_order_relaxed);
    bump_by(s->drops, vn);
    s->cycling.store(false, std::memory_order_release);
  }
}

}  // namespace detail

void pool_cycle() {
  detail::Registry& r = detail::registry();
  std::lock_guard lk(r.mu);
  // Raise every slot's flag, then one heavy fence for all of them.
  for (detail::PoolCore* p : r.pools) p->raise_flags();
  if (detail::PoolCore::kAsymmetric && !alloc::heavy_fence()) {
    // Registered, yet refused: no exclusion with the owners is possible, so this cycle ages nothing.
    for (detail::PoolCore* p : r.pools) p->lower_flags();
    return;
  }
  std::vector<void*> dropped;
  for (detail::PoolCore* p : r.pools) {
    dropped.clear();
    p->cycle_slots(dropped);
    for (void* x : dropped) p->drop(x);
  }
}

std::vector<std::pair<std::string, PoolStats>> detail::all_pool_stats() {
  Registry& r = registry();
  std::lock_guard lk(r.mu);
  std::vector<std::pair<std::string, PoolStats>> out;
  out.reserve(r.pools.size());
  for (const PoolCore* p : r.pools) out.emplace_back(p->name(), p->stats());
  return out;
}

}  // namespace tern
