// scheduler/g_records.cc: G records (allocated in blocks, pooled per P and globally, never freed before shutdown),
// GList, and starting a fiber.
#include "scheduler/sched.h"

#include <algorithm>
#include <cstdio>
#include <new>

#include "alloc/arena.h"
#include "scheduler/global_queue.h"
#include "scheduler/m.h"
#include "scheduler/p.h"
#include "scheduler/sched_internal.h"

namespace tern::sched {

namespace {

// Fiber ids are unique within the process (they name fibers in crash messages); the counter carries no behaviour.
std::atomic<uint64_t> g_next_fiber_id{1};

}  // namespace

G* alloc_g_block(bool arenas, int node) {
  if (!arenas) return new G[kGBlock];
  void* mem = alloc::node_alloc(sizeof(G) * kGBlock, alignof(G), node);
  if (mem == nullptr) return nullptr;
  G* block = static_cast<G*>(mem);
  for (size_t i = 0; i < kGBlock; i++) ::new (static_cast<void*>(&block[i])) G();  // G() does not throw
  return block;
}

void free_g_block(G* block, bool arenas) {
  if (!arenas) {
    delete[] block;
    return;
  }
  for (size_t i = 0; i < kGBlock; i++) block[i].~G();
  alloc::node_free(block, sizeof(G) * kGBlock, alignof(G));
}

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
    G* block = alloc_g_block(opts_.node_arenas, p != nullptr ? p->node : 0);
    // The arena could not map memory (every mapping taken, as when stacks run out): the caller reports exhaustion, as
    // for a stack (try_go's error, go()'s message).
    if (block == nullptr) return nullptr;
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
    gblocks_.push_back(block);
  }
  g->next = nullptr;
  // An atomic store: the fiber dump (fibers.cc) reads ids of records in use from other threads.
  __atomic_store_n(&g->id, g_next_fiber_id.fetch_add(1, std::memory_order_relaxed), __ATOMIC_RELAXED);
  g->spawn_site.store(std::source_location{}, std::memory_order_relaxed);
  g->ctx = nullptr;  // the stack is bound when the fiber first runs (execute)
  g->user = nullptr;
  if (p != nullptr) {
    bump(p->counters.spawned);
  } else {
    outside_spawned_.fetch_add(1, std::memory_order_relaxed);
  }
  return g;
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
  // A fiber that migrated gives its stack back to the node it came from: the P's cache holds only its own node's.
  if (g->stack.node == p->stacks.node()) [[likely]] {
    p->stacks.put(g->stack);
  } else {
    put_stack_home(g->stack);
  }
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
  // The spawn event stands for the fiber's first ready too: one event, not two, per spawn while tracing.
  trace(TraceKind::kSpawn, g->id);
  // queue_ready() marks it runnable. Like Go's newproc: a fiber started by a fiber runs next on the same P (depth-first
  // trees keep their data hot).
  queue_ready(g, true);
}

}  // namespace tern::sched
