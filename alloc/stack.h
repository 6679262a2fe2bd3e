// alloc/stack.h: fiber stacks.
//
// A stack is `size` usable bytes with a guard region (kDefaultGuardBytes unless configured) below it. Stacks are
// mapped in batches: one anonymous MAP_NORESERVE mapping holds map_batch stacks side by side, guard, stack, guard,
// stack, ..., so that the system calls of mapping are paid once per batch and not once per fiber. Pages become
// resident only when a fiber touches them (a 256 KiB stack that never goes deeper than 8 KiB costs two or three pages
// of RSS). The guards are guard regions (MADV_GUARD_INSTALL, Linux 6.13+: a page-table marker that faults on access
// without splitting the mapping), installed for a whole batch by one process_madvise(2) call where the kernel takes
// PIDFD_SELF (6.15+), else one madvise per stack; the batch stays one mapping and neighbouring batches merge with it.
// On kernels without guard regions each guard is an mprotect'ed PROT_NONE range, which splits the batch into two
// mappings per stack and caps live fibers at about vm.max_map_count / 2.
//
// Stacks are pooled in two levels, like Go's stackcache over stackpool, and the pools are per NUMA node:
//   StackCache: per processor (P); holds up to kCacheMax stacks and moves kCacheBatch at a time to and from its
//               node's pool. Only its P's owner adds to it. Another cache may take from it when stacks run out; the
//               owner's side of that exclusion costs two plain stores and a load per get/put (an asymmetric fence,
//               membarrier(2), puts the whole price on the rare taker), or one lock where membarrier is unavailable.
//   StackPool:  one per NUMA node of the runtime (StackPoolOptions::node; the scheduler keeps one per node and puts
//               each P's cache in front of its node's pool), mutex-protected, LIFO (the most recently freed stack,
//               still hot in cache and resident, is reused first). With bind_node, each batch is mbind(2)'ed
//               (MPOL_PREFERRED) to the node before any page is touched, so a fiber's stack is local to the P it first
//               ran on; a failed mbind is one warning on stderr and the stacks stay where the kernel puts them. Every
//               Stack records its pool's node, and the scheduler returns it there. trim(), which the runtime's
//               monitor calls about once a second, gives back the memory of free stacks above `high_watermark` that
//               stayed unused for the whole period (madvise(MADV_DONTNEED): the address range stays reserved, the
//               pages go back to the kernel). Releasing lazily keeps bursts cheap: a server whose live fibers swing
//               between 1k and 10k does not fault 9k stacks back in on every swing. Free stacks above `max_free` are
//               unmapped, the coldest first, kUnmapBatch at a time and address-sorted so that neighbours go in one
//               munmap (one munmap per stack splits the merged mapping each time: it was a third of a 200k-fiber
//               program's CPU).
//
// Usage:
//   alloc::StackPool pool({.stack_size = 256 << 10});
//   alloc::StackCache cache(pool);
//   alloc::Stack s = cache.get();   // s.valid() is false if mmap failed
//   ...
//   cache.put(s);
//
// Running out: when the kernel refuses a new batch, the pool maps what it needs one stack at a time; when it refuses
// those too (vm.max_map_count, or memory), StackCache::get() and StackPool::get() take from the other caches of the
// pool (up to half of each) before reporting an invalid stack, so that a P whose cache is empty does not fail while
// other Ps hold up to kCacheMax free stacks each; the scheduler then tries the other nodes' pools. What then remains
// is real exhaustion; Sched::try_go and tern::try_go return it as an error (exhausted_message() says which limit).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace tern::alloc {

struct Stack {
  void* lo = nullptr;  // lowest usable byte (just above the guard region)
  // Usable bytes (at most kMaxStackBytes); the stack grows down from lo + size. 32 bits, so that the node fits beside
  // it and a Stack stays three words (it lives in every G record).
  uint32_t size = 0;
  int32_t node = 0;       // the NUMA node of the pool it came from (StackPoolOptions::node), where it goes back
  void* guard = nullptr;  // start of the guard region, up to lo

  bool valid() const { return lo != nullptr; }
  void* top() const { return static_cast<char*>(lo) + size; }
  // True if `addr` lies in this stack's guard region.
  bool in_guard(const void* addr) const {
    auto a = reinterpret_cast<uintptr_t>(addr), g = reinterpret_cast<uintptr_t>(guard);
    return guard != nullptr && a >= g && a < reinterpret_cast<uintptr_t>(lo);
  }
};
static_assert(sizeof(Stack) == 3 * sizeof(void*), "a Stack is three words: it lives in every G record");

// The largest stack a pool hands out (StackPoolOptions::stack_size is clamped to it; TERN_STACK_SIZE stops at 1g).
inline constexpr size_t kMaxStackBytes = size_t{1} << 30;

// The guard below each stack. Stacks are mapped next to each other, so a frame that skips the guard lands in the stack
// below; the guard must outsize any frame that does not touch each of its pages as it grows (code built without
// -fstack-clash-protection, which tern::tern passes to its users: e.g. a 32 KiB buffer filled from its top). 64 KiB
// covers such buffers (glibc's BUFSIZ-sized ones, a 16 KiB TLS record, a 64 KiB read buffer minus its header) and
// costs only address space: a guard region is a page-table marker and an mprotect'ed guard is one mapping whatever
// its size, never resident memory.
inline constexpr size_t kDefaultGuardBytes = 64 << 10;

// Stacks per mapping. 64 default stacks are 20 MiB of address space and no resident memory until touched. One mmap,
// one guard install and (on several nodes) one mbind per 64 fibers: a 200k-fiber program makes 3k of each instead of
// 200k (docs/performance.md, 2026-12-07); what stays per stack is the kernel's page-table walk for its guard.
inline constexpr size_t kDefaultMapBatch = 64;
// The most stacks one mapping holds (map_batch is clamped to it): the guard install's iovec lives on the caller's
// stack, which may be a fiber's.
inline constexpr size_t kMaxMapBatch = 64;
// Free stacks above max_free wait until this many more (or max_free more, if fewer) have gathered, then go in one
// address-sorted pass, so that neighbours in memory share one munmap.
inline constexpr size_t kUnmapBatch = 256;

struct StackPoolOptions {
  size_t stack_size = 256 << 10;           // usable bytes, rounded up to whole pages
  size_t guard_size = kDefaultGuardBytes;  // rounded up to whole pages, at least one
  size_t high_watermark = 1024;            // free stacks kept resident; the rest are madvise'd cold
  size_t max_free = 16384;                 // free stacks kept mapped at all; the rest are unmapped
  // The caches' owner/taker exclusion (StackCache): asymmetric fences when the kernel has membarrier(2)'s private
  // expedited command, else (or when false) a lock taken by every get/put.
  bool asymmetric_fences = true;
  size_t map_batch = kDefaultMapBatch;  // stacks per new mapping, 1..kMaxMapBatch
  int node = 0;                         // the NUMA node this pool serves; recorded in every Stack it hands out
  // mbind(2) each new mapping to `node` (MPOL_PREFERRED). The scheduler sets it when it has more than one node.
  bool bind_node = false;
  // false: mprotect'ed guards even where the kernel has guard regions (the older kernels' path, for its tests).
  bool guard_regions = true;
  // Pages at the top of each new stack made resident when its batch is mapped, by one process_madvise(2)
  // MADV_POPULATE_WRITE for the whole batch (a kernel that takes it for the calling process: 6.15+); 0, or an older
  // kernel: every page faults in when first touched. A fiber's first run writes its context and first frames there,
  // and a page fault costs far more than its share of one batched call (12 us against 0.8 us per page on a
  // virtualized machine: docs/performance.md, 2026-12-07).
  size_t prefault_pages = 1;
};

struct StackStats {
  uint64_t mapped = 0;       // stacks currently mapped (in use + free)
  uint64_t in_use = 0;       // stacks handed out and not returned
  uint64_t free_global = 0;  // free stacks in the global pool
  uint64_t released = 0;     // total madvise(DONTNEED) releases
  uint64_t unmapped = 0;     // total munmaps
  uint64_t map_failures = 0;
  uint64_t taken_from_caches = 0;  // stacks moved between caches because no new one could be mapped
  uint64_t batches = 0;            // mmap calls that mapped stacks (each holds up to map_batch)
  uint64_t binds = 0;              // mbind calls (bind_node)
  uint64_t bind_failures = 0;      // of which failed (warned about once; the stacks are used anyway)
  uint64_t prefaulted = 0;         // stacks whose top pages were made resident when mapped (prefault_pages)
  // Stacks given back here that another node's pool handed out: a caller's routing bug (the scheduler returns each
  // stack to Stack::node's pool). Kept and used all the same.
  uint64_t foreign = 0;
  int map_errno = 0;  // errno of the last failed mapping
  size_t stack_size = 0;
  bool guard_regions = true;  // see StackPool::guard_regions()
};

// Why stacks ran out, for a fatal message or an error value: the errno, the stacks mapped, and the limit to raise
// (vm.max_map_count, with how many mappings each stack costs).
std::string exhausted_message(const StackStats& st);

class StackCache;

class StackPool {
 public:
  explicit StackPool(StackPoolOptions opts = {});
  // Unmaps the free stacks. Stacks still handed out (in a StackCache or a fiber) stay mapped: their holders must give
  // them back first, which Sched::shutdown does for every fiber and P before the pool goes.
  ~StackPool();
  StackPool(const StackPool&) = delete;
  StackPool& operator=(const StackPool&) = delete;

  // A stack from the pool, a new mapping, or (when the kernel refuses the mapping) another cache; !valid() if none.
  Stack get();
  void put(Stack s);
  // Moves up to n stacks into out; returns how many (maps new ones if the pool runs dry).
  size_t get_batch(Stack* out, size_t n);
  void put_batch(const Stack* in, size_t n);

  // Whether guards are guard regions (true) or mprotect'ed pages (false, kernels before 6.13).
  bool guard_regions() const { return guard_regions_.load(std::memory_order_relaxed); }

  int node() const { return opts_.node; }

  // Releases the pages of free stacks above the high watermark that were not used since the previous trim().
  // Returns how many stacks it released.
  size_t trim();

  size_t stack_size() const { return opts_.stack_size; }
  size_t guard_size() const { return opts_.guard_size; }
  StackStats stats() const;
  std::string exhausted_message() const { return alloc::exhausted_message(stats()); }
  // Whether the caches use asymmetric fences (see StackPoolOptions::asymmetric_fences) rather than a lock.
  bool asymmetric_fences() const { return asym_; }

  // Moves up to n free stacks from the caches other than `except` into out (up to half of each, so that no P is left
  // empty by one thief); returns how many. get() and StackCache::get() call it after a mapping failed; any thread may.
  size_t take_from_caches(const StackCache* except, Stack* out, size_t n);

 private:
  friend class StackCache;
  // Maps a run of up to `count` stacks in one mapping (fewer when a guard cannot be placed); returns how many, the
  // first at *first, the others every stride() bytes above it.
  size_t map_run(size_t count, char** first);
  size_t stride() const { return opts_.guard_size + opts_.stack_size; }
  Stack at(char* first, size_t i) const;
  void bind_run(void* addr, size_t len);
  void install_guards(char* first, size_t count);
  // Makes the top prefault_pages of each stack of a new run resident, in one call; nothing where the kernel refuses.
  void prefault_tops(char* first, size_t count);
  // Unmaps free_[0, n) (the coldest), coalescing address-adjacent stacks into one munmap; under mu_.
  void unmap_coldest(size_t n);

  StackPoolOptions opts_;
  mutable std::mutex mu_;
  std::vector<Stack> free_;  // LIFO; free_[0, cold_) have been released, the rest may be resident
  size_t cold_ = 0;
  size_t low_ = 0;  // the fewest free stacks seen since the last trim: free_[0, low_) went unused all period
  std::atomic<uint64_t> mapped_{0}, in_use_{0}, released_{0}, unmapped_{0}, map_failures_{0}, taken_{0};
  std::atomic<uint64_t> batches_{0}, binds_{0}, bind_failures_{0}, foreign_{0}, prefaulted_{0};
  std::atomic<int> map_errno_{0};
  std::atomic<bool> guard_regions_{true};
  bool asym_ = false;
  // The caches in front of this pool, for take_from_caches(). Lock order: caches_mu_, then a cache's lock; neither
  // is held while calling into the pool's mu_ from a cache.
  std::mutex caches_mu_;
  std::vector<StackCache*> caches_;
  std::vector<StackCache*> victims_;  // take_from_caches' scratch, under caches_mu_: no allocation once it has grown
};

// Per-P cache in front of a StackPool. get/put/flush are for the P's owner only (one thread at a time); another thread
// takes stacks from it only through StackPool::take_from_caches, when no new one can be mapped.
//
// Owner and taker exclude each other Dekker-style. The owner stores owner_busy_, then loads taker_ (a compiler barrier
// between: no fence instruction); the taker stores taker_, runs membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED), which
// puts a full barrier on every running thread of the process, then loads owner_busy_. Either the taker sees the owner
// busy and waits for it, or the owner sees the taker and steps back until it is done. An uncontended exchange, which is
// what a lock costs the owner, was most of a spawn's regression (docs/performance.md, 2026-12-06). Without membarrier
// every side takes locked_.
class StackCache {
 public:
  static constexpr size_t kCacheMax = 32;    // a burst of 32 spawns and exits on one P never touches the pool's lock
  static constexpr size_t kCacheBatch = 16;  // refill/drain half the cache per trip to the pool

  explicit StackCache(StackPool& pool);
  ~StackCache();  // flushes, and leaves the pool's list of caches
  StackCache(const StackCache&) = delete;
  StackCache& operator=(const StackCache&) = delete;

  Stack get();  // !valid() only when the pool cannot map and no other cache has a stack to spare
  void put(Stack s);
  void flush();  // returns every cached stack to the pool
  size_t size() const;
  // The node of the pool behind this cache (StackPoolOptions::node).
  int node() const { return node_; }

 private:
  friend class StackPool;
  // The slow paths, out of line: their Stack arrays (value-initialized, so zeroed) stay off the fast paths' frames.
  [[gnu::noinline]] Stack get_refilling();
  [[gnu::noinline]] void put_spilling(Stack s);
  // The owner's side: around every access to cache_ and n_.
  void owner_enter() {
    if (!asym_) {
      lock();
      return;
    }
    owner_busy_.store(true, std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst);  // the taker's membarrier makes this a full fence
    if (taker_.load(std::memory_order_acquire)) [[unlikely]]
      owner_yield_to_taker();
  }
  void owner_leave() {
    if (!asym_) {
      unlock();
      return;
    }
    owner_busy_.store(false, std::memory_order_release);
  }
  [[gnu::noinline]] void owner_yield_to_taker();
  // The taker's side (StackPool::take_from_caches, under caches_mu_). With asymmetric fences: taker_ is raised on
  // every victim, then one membarrier, then taker_wait() on each before touching it and taker_leave() after.
  void taker_wait() const;
  void taker_leave() { asym_ ? taker_.store(false, std::memory_order_release) : unlock(); }
  void lock() const {
    while (locked_.exchange(true, std::memory_order_acquire)) {
      while (locked_.load(std::memory_order_relaxed)) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
      }
    }
  }
  void unlock() const {
    locked_.store(false, std::memory_order_release);
  }

  StackPool& pool_;
  const bool asym_;
  const int node_;
  mutable std::atomic<bool> locked_{false};  // without asymmetric fences; held for an array copy, never a syscall
  std::atomic<bool> owner_busy_{false};      // the owner is in get/put/flush
  std::atomic<bool> taker_{false};           // a taker wants or holds this cache
  Stack cache_[kCacheMax];
  std::atomic<size_t> n_{0};  // written only inside the exclusion; atomic so that size() may read it from anywhere
};

}  // namespace tern::alloc
