// alloc/arena.cc: see arena.h.
#include "alloc/arena.h"

#include <dlfcn.h>
#include <malloc.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "alloc/numa_bind.h"
#include "base/sanitizer.h"
#if defined(TERN_ASAN) || defined(TERN_TSAN)
// The sanitizer runtimes' allocator statistics (compiler-rt's sanitizer/allocator_interface.h, which GCC 12 does not
// install).
extern "C" size_t __sanitizer_get_current_allocated_bytes();
extern "C" size_t __sanitizer_get_heap_size();
#endif

// The private copy's entry points (cmake/TernJemalloc.cmake renames jemalloc's mallocx, sdallocx and mallctl to these
// and makes every other symbol of it local).
#if TERN_PRIVATE_JEMALLOC
extern "C" {
// The private copy's options (its malloc_conf, renamed; jemalloc's own definition is weak). One automatic arena: on a
// thread's first call jemalloc 5.3 picks it an automatic arena, creating one lazily (4 per CPU by default), and when
// the kernel refuses the mapping that needs (every mapping taken: vm.max_map_count) it dereferences the null arena in
// tcache_arena_associate instead of failing. A new M started then crashed the process where
// TryGo.StackExhaustionIsAnErrorNotAnAbort expects an error. With arena 0 the only automatic one (made at jemalloc's
// start) no thread needs one made; tern's own arenas are the per-node ones, made by arenas.create.
extern const char* tern_je_malloc_conf;
const char* tern_je_malloc_conf = "narenas:1";
void* tern_je_mallocx(size_t size, int flags);
void tern_je_sdallocx(void* ptr, size_t size, int flags);
int tern_je_mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen);
}
#endif

namespace tern::alloc {
namespace {

// jemalloc's flag encodings (jemalloc.h, stable since 4.0; the header is not included: it declares the unprefixed
// names, which tern must not call).
constexpr int mallocx_arena(unsigned a) {
  return static_cast<int>((a + 1) << 20);
}
constexpr int kMallocxTcacheNone = (-1 + 2) << 8;  // MALLOCX_TCACHE_NONE
int mallocx_align(size_t align) {
  // MALLOCX_LG_ALIGN; alignments up to the size class's natural one need no flag.
  return align <= alignof(std::max_align_t) ? 0 : __builtin_ctzl(align);
}

// jemalloc's extent_hooks_t (jemalloc_typedefs.h, stable since 5.0): the functions an arena maps, unmaps, commits,
// purges, splits and merges its extents with. tern replaces only `alloc`, to bind what it maps; the others stay
// jemalloc's own, copied from the default hooks.
struct ExtentHooks {
  void* (*alloc)(ExtentHooks* hooks, void* new_addr, size_t size, size_t alignment, bool* zero, bool* commit,
                 unsigned arena_ind);
  void (*others[8])();  // dalloc, destroy, commit, decommit, purge_lazy, purge_forced, split, merge
};
// A node arena's hooks: jemalloc passes them back to every call, which is how the hook knows its node.
struct NodeHooks {
  ExtentHooks hooks;
  int node;
};

using MallocxFn = void* (*)(size_t, int);
using SdallocxFn = void (*)(void*, size_t, int);
using MallctlFn = int (*)(const char*, void*, size_t*, void*, size_t);

struct Heap {
  HeapKind kind = HeapKind::kMalloc;
  const char* reason = "";
  MallocxFn mallocx = nullptr;
  SdallocxFn sdallocx = nullptr;
  MallctlFn mallctl = nullptr;
  std::mutex create_mu;                              // arena creation
  std::atomic<unsigned> arena[kMaxArenaNodes] = {};  // node -> arena index + 1 (0: not created yet)
  std::atomic<bool> arena_failed{false};             // arenas.create failed once: every node uses arena 0's
  // Binding (bind_arenas_to_nodes): set under create_mu. Every node arena made after it gets hooks[node].
  bool bind = false;
  ExtentHooks* defaults = nullptr;  // jemalloc's default hooks, which the node hooks call to map
  NodeHooks hooks[kMaxArenaNodes] = {};
  std::atomic<uint64_t> bound_extents{0}, bind_failures{0};
};

// The program's malloc is jemalloc's: mallocx is visible and lives in the same object as malloc.
[[maybe_unused]] bool process_is_jemalloc(Heap& h) {
  void* mx = dlsym(RTLD_DEFAULT, "mallocx");
  void* m = dlsym(RTLD_DEFAULT, "malloc");
  if (mx == nullptr || m == nullptr) return false;
  Dl_info a{}, b{};
  if (dladdr(mx, &a) == 0 || dladdr(m, &b) == 0 || a.dli_fbase != b.dli_fbase) return false;
  h.mallocx = reinterpret_cast<MallocxFn>(mx);
  h.sdallocx = reinterpret_cast<SdallocxFn>(dlsym(RTLD_DEFAULT, "sdallocx"));
  h.mallctl = reinterpret_cast<MallctlFn>(dlsym(RTLD_DEFAULT, "mallctl"));
  return h.sdallocx != nullptr && h.mallctl != nullptr;
}

void choose(Heap& h) {
#if defined(TERN_ASAN) || defined(TERN_TSAN)
  h.reason = "sanitizer build: tern's allocations use malloc, which the sanitizer sees";
  return;
#else
  if (const char* v = std::getenv("TERN_ALLOCATOR"); v != nullptr && *v != '\0') {
    if (std::strcmp(v, "malloc") == 0) {
      h.reason = "TERN_ALLOCATOR=malloc";
      return;
    }
    if (std::strcmp(v, "jemalloc") != 0) {
      std::fprintf(stderr, "tern: TERN_ALLOCATOR must be jemalloc or malloc, not '%s'; using jemalloc\n", v);
    }
  }
  if (process_is_jemalloc(h)) {
    h.kind = HeapKind::kProcessJemalloc;
    return;
  }
#if TERN_PRIVATE_JEMALLOC
  h.mallocx = tern_je_mallocx;
  h.sdallocx = tern_je_sdallocx;
  h.mallctl = tern_je_mallctl;
  h.kind = HeapKind::kPrivateJemalloc;
#else
  h.reason = "tern was built without its private jemalloc (libjemalloc_pic.a was not found): malloc";
  std::fprintf(stderr, "tern: %s\n", h.reason);
#endif
#endif
}

Heap& heap() {
  static Heap* h = [] {
    auto* p = new Heap;  // leaked: allocations may be freed during static destruction
    choose(*p);
    return p;
  }();
  return *h;
}

// The node hooks' alloc: jemalloc's default mapping, then the mapping bound to the node before any page of it is
// touched. Runs inside jemalloc (with its reentrancy guard raised): no allocation here.
void* bound_extent_alloc(ExtentHooks* hooks, void* new_addr, size_t size, size_t alignment, bool* zero, bool* commit,
                         unsigned arena_ind) {
  Heap& h = heap();
  void* p = h.defaults->alloc(h.defaults, new_addr, size, alignment, zero, commit, arena_ind);
  if (p == nullptr) return nullptr;
  const int node = reinterpret_cast<NodeHooks*>(hooks)->node;
  if (const int err = prefer_node(p, size, node); err == 0) {
    h.bound_extents.fetch_add(1, std::memory_order_relaxed);
  } else if (h.bind_failures.fetch_add(1, std::memory_order_relaxed) == 0) {
    std::fprintf(stderr,
                 "tern: cannot bind the heap's pages to NUMA node %d (mbind: %s); they stay where first touched\n",
                 node, std::strerror(err));
  }
  return p;
}

// Installs node hooks on arena `idx` of `slot` (create_mu held). False when jemalloc refused them.
bool install_hooks(Heap& h, int slot, unsigned idx) {
  ExtentHooks* hooks = &h.hooks[slot].hooks;
  char name[64];
  std::snprintf(name, sizeof name, "arena.%u.extent_hooks", idx);
  return h.mallctl(name, nullptr, nullptr, &hooks, sizeof hooks) == 0;
}

// The arena index of `node` (created on first use), or -1 when arenas cannot be created (then the default arenas).
int arena_of(Heap& h, int node) {
  const int slot = (node < 0 ? 0 : node) % kMaxArenaNodes;
  if (unsigned a = h.arena[slot].load(std::memory_order_acquire); a != 0) return static_cast<int>(a - 1);
  if (h.arena_failed.load(std::memory_order_relaxed)) return -1;
  std::lock_guard lk(h.create_mu);
  if (unsigned a = h.arena[slot].load(std::memory_order_relaxed); a != 0) return static_cast<int>(a - 1);
  unsigned idx = 0;
  size_t len = sizeof idx;
  // With binding on, the arena is made with its node's hooks, so that its first extent is bound too.
  ExtentHooks* hooks = h.bind ? &h.hooks[slot].hooks : nullptr;
  if (h.mallctl("arenas.create", &idx, &len, h.bind ? &hooks : nullptr, h.bind ? sizeof hooks : 0) != 0) {
    h.arena_failed.store(true, std::memory_order_relaxed);
    std::fprintf(stderr, "tern: jemalloc could not create an arena for node %d; using its default arenas\n", node);
    return -1;
  }
  h.arena[slot].store(idx + 1, std::memory_order_release);
  return static_cast<int>(idx);
}

// The node the calling thread is bound to (bind_thread), -1 if none.
thread_local int t_node = -1;

double mallctl_size(Heap& h, const char* name) {
  size_t v = 0, len = sizeof v;
  if (h.mallctl(name, &v, &len, nullptr, 0) != 0) return NAN;
  return static_cast<double>(v);
}

}  // namespace

HeapKind heap_kind() {
  return heap().kind;
}

const char* heap_name() {
  switch (heap().kind) {
    case HeapKind::kPrivateJemalloc:
      return "jemalloc-private";
    case HeapKind::kProcessJemalloc:
      return "jemalloc-process";
    case HeapKind::kMalloc:
      break;
  }
  return "malloc";
}

const char* heap_fallback_reason() {
  return heap().reason;
}

void* node_alloc(size_t n, size_t align, int node) {
  Heap& h = heap();
  if (n == 0) n = 1;
  if (h.kind == HeapKind::kMalloc) {
    if (align <= alignof(std::max_align_t)) return std::malloc(n);
    void* p = nullptr;
    return posix_memalign(&p, align, n) == 0 ? p : nullptr;
  }
  int flags = mallocx_align(align);
  if (t_node != node) {
    if (const int a = arena_of(h, node); a >= 0) flags |= mallocx_arena(static_cast<unsigned>(a)) | kMallocxTcacheNone;
  }
  return h.mallocx(n, flags);
}

void node_free(void* p, size_t n, size_t align) {
  if (p == nullptr) return;
  Heap& h = heap();
  if (h.kind == HeapKind::kMalloc) {
    std::free(p);
    return;
  }
  if (n == 0) n = 1;
  // jemalloc finds the arena from the pointer; only the thread cache is a choice. A bound thread caches the region
  // for its next node_alloc; an unbound one returns it to its arena at once.
  h.sdallocx(p, n, mallocx_align(align) | (t_node >= 0 ? 0 : kMallocxTcacheNone));
}

void bind_thread(int node) {
  if (t_node == node) return;
  Heap& h = heap();
  if (h.kind == HeapKind::kMalloc) {
    t_node = node;
    return;
  }
  const int a = arena_of(h, node);
  if (a < 0) return;  // no arenas: unbound, every allocation goes to the default arenas
  unsigned idx = static_cast<unsigned>(a);
  if (h.mallctl("thread.arena", nullptr, nullptr, &idx, sizeof idx) == 0) t_node = node;
}

bool bind_arenas_to_nodes() {
  Heap& h = heap();
  if (h.kind == HeapKind::kMalloc) return false;
  std::lock_guard lk(h.create_mu);
  if (h.bind) return true;
  ExtentHooks* defaults = nullptr;
  size_t len = sizeof defaults;
  if (h.mallctl("arena.0.extent_hooks", &defaults, &len, nullptr, 0) != 0 || defaults == nullptr ||
      defaults->alloc == nullptr) {
    std::fprintf(stderr, "tern: jemalloc did not give its extent hooks; the heap's pages are not bound to nodes\n");
    return false;
  }
  h.defaults = defaults;
  for (int slot = 0; slot < kMaxArenaNodes; slot++) {
    NodeHooks& nh = h.hooks[slot];
    nh.hooks = *defaults;
    nh.hooks.alloc = bound_extent_alloc;
    nh.node = slot;
  }
  // Arenas made before: their later extents are bound (what they mapped already stays where it was touched).
  for (int slot = 0; slot < kMaxArenaNodes; slot++) {
    if (const unsigned a = h.arena[slot].load(std::memory_order_relaxed); a != 0 && !install_hooks(h, slot, a - 1)) {
      std::fprintf(stderr, "tern: jemalloc refused extent hooks for node %d's arena; its pages are not bound\n", slot);
    }
  }
  h.bind = true;
  return true;
}

ArenaBindStats arena_bind_stats() {
  Heap& h = heap();
  return {h.bound_extents.load(std::memory_order_relaxed), h.bind_failures.load(std::memory_order_relaxed)};
}

int node_arena(int node) {
  Heap& h = heap();
  return h.kind == HeapKind::kMalloc ? -1 : arena_of(h, node);
}

int arena_lookup(const void* p) {
  Heap& h = heap();
  if (h.kind == HeapKind::kMalloc) return -1;
  unsigned idx = 0;
  size_t len = sizeof idx;
  const void* ptr = p;
  if (h.mallctl("arenas.lookup", &idx, &len, const_cast<void**>(&ptr), sizeof ptr) != 0) return -1;
  return static_cast<int>(idx);
}

HeapStats heap_stats() {
  Heap& h = heap();
#if defined(TERN_ASAN) || defined(TERN_TSAN)
  // The sanitizer's allocator keeps no mallinfo; it counts for itself.
  const auto used = static_cast<double>(__sanitizer_get_current_allocated_bytes());
  return {used, used, static_cast<double>(__sanitizer_get_heap_size()), NAN};
#endif
  if (h.kind == HeapKind::kMalloc) {
    const struct mallinfo2 mi = mallinfo2();
    const auto used = static_cast<double>(mi.uordblks + mi.hblkhd);
    return {used, used, static_cast<double>(mi.arena + mi.hblkhd), NAN};
  }
  uint64_t epoch = 1;
  size_t len = sizeof epoch;
  h.mallctl("epoch", &epoch, &len, &epoch, len);  // refreshes the stats.* snapshot
  return {mallctl_size(h, "stats.allocated"), mallctl_size(h, "stats.active"), mallctl_size(h, "stats.resident"),
          mallctl_size(h, "stats.metadata")};
}

}  // namespace tern::alloc
