// alloc/arena.h: tern's own heap allocations that grow with load (G records, pooled objects, buffers), on one jemalloc
// arena per NUMA node.
//
//   void* p = alloc::node_alloc(4096, alignof(std::max_align_t), p->node);  // nullptr only when out of memory
//   ...
//   alloc::node_free(p, 4096, alignof(std::max_align_t));
//
// Which jemalloc (chosen once, at the first call, and fixed for the process's life: memory is always freed by the
// allocator that gave it):
//   - The process's own, when the program's malloc is jemalloc: the user linked tern::jemalloc_malloc (or built tern
//     with TERN_JEMALLOC_MALLOC=ON, or preloaded it). Then tern's arenas are arenas of that jemalloc.
//   - Otherwise a private copy linked into tern (cmake/TernJemalloc.cmake): Debian's libjemalloc_pic.a partially
//     linked into one object whose only global symbols are tern_je_mallocx, tern_je_sdallocx and tern_je_mallctl, so
//     its malloc, free and operator new are local to it and the program's malloc stays glibc's. (Loading
//     libjemalloc.so.2 with dlopen does not work: it uses initial-exec TLS, and glibc refuses it with "cannot allocate
//     memory in static TLS block".)
//   - malloc (aligned_alloc/free): in sanitizer builds (ASan and TSan must see every allocation, and TSan cannot see
//     jemalloc's internal synchronization), with TERN_ALLOCATOR=malloc, or where tern was built without the private
//     copy or jemalloc failed to create an arena. A warning on stderr says why, once, except where the user asked.
//
// Arenas: one per NUMA node (node ids 0 .. kMaxArenaNodes-1; higher ids share node id % kMaxArenaNodes), created with
// "arenas.create" when the node is first used. A thread that called bind_thread(node) (an M, when it takes a P:
// P::node) has that arena as its own ("thread.arena"; with the process's jemalloc, its malloc goes there too).
// node_alloc uses the node's arena either way (implicitly, through the thread's cache, on a thread bound to it).
// Binding (bind_arenas_to_nodes, which the scheduler calls when its placement spans more than one node): each extent
// a node arena maps from then on is mbind'ed to the node (MPOL_PREFERRED, as fiber stacks are) by jemalloc extent
// hooks, before any of its pages is touched, so a G block made for a P on node 1 is on node 1 whichever thread first
// writes it. Without it pages land where the first-touching thread runs. A failed mbind is one warning on stderr.
//
// Costs: a node_alloc/node_free pair on a bound thread is jemalloc's thread-cached path, 13-25 ns for 256 B-16 KiB
// (bench/pool_bench.cc); an unbound one takes the arena's bin lock. Over-aligned requests (above
// alignof(max_align_t)) skip the thread cache: ask for the type's natural alignment.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

namespace tern::alloc {

inline constexpr int kMaxArenaNodes = 64;

enum class HeapKind {
  kPrivateJemalloc,  // tern's private copy: tern's allocations only
  kProcessJemalloc,  // the program's malloc is jemalloc, and tern's arenas are arenas of it
  kMalloc,           // the program's malloc (see above for when)
};

// Which allocator node_alloc uses ("jemalloc-private", "jemalloc-process", "malloc").
HeapKind heap_kind();
const char* heap_name();
// Why it is malloc, when it is (empty otherwise): shown once on stderr and by --dry-run.
const char* heap_fallback_reason();

// n bytes aligned to `align` (a power of two) on node's arena; nullptr only when out of memory. n may be 0.
void* node_alloc(size_t n, size_t align, int node);
// Frees what node_alloc returned; n and align as passed to it.
void node_free(void* p, size_t n, size_t align);
// The calling thread allocates on node's arena from now on (its thread cache goes with it). Cheap when the thread is
// already bound there: one thread-local compare.
void bind_thread(int node);

// The allocator's statistics in bytes (jemalloc's stats.allocated, stats.active, stats.resident, stats.metadata; read
// after refreshing its epoch). For jemalloc-private they cover tern's own allocations; for jemalloc-process, the whole
// program's. With malloc: glibc's mallinfo2 (allocated = in use, active = allocated, resident = its arenas' and
// mmapped chunks' size; metadata unknown, NaN).
struct HeapStats {
  double allocated, active, resident, metadata;
};
HeapStats heap_stats();

// From now on every extent a node arena maps is bound to its node (see above): arenas made later get the hooks when
// they are made, those made already for their later extents. False with malloc, or when jemalloc did not take the
// hooks (a warning says so). Idempotent.
bool bind_arenas_to_nodes();
// Extents bound, and mbind calls that failed, since bind_arenas_to_nodes.
struct ArenaBindStats {
  uint64_t bound_extents, failures;
};
ArenaBindStats arena_bind_stats();

// The jemalloc arena of `node` (created if need be), and the arena a pointer from node_alloc lives in
// ("arenas.lookup"); -1 with malloc. For tests and the debug endpoint.
int node_arena(int node);
int arena_lookup(const void* p);

// Constructs a T on node's arena; nullptr when out of memory.
template <class T, class... Args>
T* node_new(int node, Args&&... args) {
  void* p = node_alloc(sizeof(T), alignof(T), node);
  if (p == nullptr) return nullptr;
  if constexpr (sizeof...(Args) == 0) {
    return ::new (p) T;  // default-initialized, as `new T`: a buffer's bytes are not zeroed
  } else {
    return ::new (p) T(std::forward<Args>(args)...);
  }
}
template <class T>
void node_delete(T* t) {
  if (t == nullptr) return;
  t->~T();
  node_free(t, sizeof(T), alignof(T));
}

}  // namespace tern::alloc
