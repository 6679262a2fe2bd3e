// alloc/stack.h: fiber stacks.
//
// A stack is one anonymous mapping: a guard page at the bottom and `size` usable bytes above it. The mapping is
// MAP_NORESERVE, so pages become resident only when a fiber touches them (a 256 KiB stack that never goes deeper
// than 8 KiB costs two or three pages of RSS). The guard is a guard region (madvise MADV_GUARD_INSTALL, Linux 6.13+)
// where the kernel has them, so neighbouring stacks merge into few mappings; elsewhere a PROT_NONE page, which makes
// each stack two mappings and caps live fibers at about vm.max_map_count / 2.
//
// Stacks are pooled in two levels, like Go's stackcache over stackpool:
//   StackCache: per processor (P), owner-only, no locks; holds up to kCacheMax stacks and moves kCacheBatch at a time
//               to and from the global pool.
//   StackPool:  one per runtime, mutex-protected, LIFO (the most recently freed stack, still hot in cache and
//               resident, is reused first). trim(), which the runtime's monitor calls about once a second, gives back
//               the memory of free stacks above `high_watermark` that stayed unused for the whole period
//               (madvise(MADV_DONTNEED): the address range stays reserved, the pages go back to the kernel). Releasing
//               lazily keeps bursts cheap: a server whose live fibers swing between 1k and 10k does not fault 9k
//               stacks back in on every swing. Free stacks above `max_free` are unmapped at once.
//
// Usage:
//   alloc::StackPool pool({.stack_size = 256 << 10});
//   alloc::StackCache cache(pool);
//   alloc::Stack s = cache.get();   // s.valid() is false if mmap failed
//   ...
//   cache.put(s);
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

namespace tern::alloc {

struct Stack {
  void* lo = nullptr;     // lowest usable byte (just above the guard page)
  size_t size = 0;        // usable bytes; the stack grows down from lo + size
  void* guard = nullptr;  // start of the mapping: the guard page

  bool valid() const { return lo != nullptr; }
  void* top() const { return static_cast<char*>(lo) + size; }
  // True if `addr` lies in this stack's guard page.
  bool in_guard(const void* addr) const {
    auto a = reinterpret_cast<uintptr_t>(addr), g = reinterpret_cast<uintptr_t>(guard);
    return guard != nullptr && a >= g && a < reinterpret_cast<uintptr_t>(lo);
  }
};

struct StackPoolOptions {
  size_t stack_size = 256 << 10;  // usable bytes, rounded up to whole pages
  size_t high_watermark = 1024;   // free stacks kept resident; the rest are madvise'd cold
  size_t max_free = 16384;        // free stacks kept mapped at all; the rest are unmapped
};

struct StackStats {
  uint64_t mapped = 0;       // stacks currently mapped (in use + free)
  uint64_t in_use = 0;       // stacks handed out and not returned
  uint64_t free_global = 0;  // free stacks in the global pool
  uint64_t released = 0;     // total madvise(DONTNEED) releases
  uint64_t unmapped = 0;     // total munmaps
  uint64_t map_failures = 0;
};

class StackPool {
 public:
  explicit StackPool(StackPoolOptions opts = {});
  ~StackPool();  // unmaps every stack it mapped, in use or not
  StackPool(const StackPool&) = delete;
  StackPool& operator=(const StackPool&) = delete;

  // A stack from the pool or a new mapping; !valid() if the kernel refused the mapping.
  Stack get();
  void put(Stack s);
  // Moves up to n stacks into out; returns how many (maps new ones if the pool runs dry).
  size_t get_batch(Stack* out, size_t n);
  void put_batch(const Stack* in, size_t n);

  // Whether guards are guard regions (true) or mprotect'ed pages (false, kernels before 6.13).
  bool guard_regions() const { return guard_regions_.load(std::memory_order_relaxed); }

  // Releases the pages of free stacks above the high watermark that were not used since the previous trim().
  // Returns how many stacks it released.
  size_t trim();

  size_t stack_size() const { return opts_.stack_size; }
  StackStats stats() const;

 private:
  Stack map_one();
  void unmap_one(Stack s);

  StackPoolOptions opts_;
  mutable std::mutex mu_;
  std::vector<Stack> free_;  // LIFO; free_[0, cold_) have been released, the rest may be resident
  size_t cold_ = 0;
  size_t low_ = 0;  // the fewest free stacks seen since the last trim: free_[0, low_) went unused all period
  std::atomic<uint64_t> mapped_{0}, in_use_{0}, released_{0}, unmapped_{0}, map_failures_{0};
  std::atomic<bool> guard_regions_{true};
};

// Per-P cache in front of a StackPool. Not thread-safe: only the P's owner touches it.
class StackCache {
 public:
  static constexpr size_t kCacheMax = 32;    // a burst of 32 spawns and exits on one P never touches the pool's lock
  static constexpr size_t kCacheBatch = 16;  // refill/drain half the cache per trip to the pool

  explicit StackCache(StackPool& pool) : pool_(pool) {}
  ~StackCache() { flush(); }
  StackCache(const StackCache&) = delete;
  StackCache& operator=(const StackCache&) = delete;

  Stack get();
  void put(Stack s);
  void flush();  // returns every cached stack to the pool
  size_t size() const { return n_; }

 private:
  StackPool& pool_;
  Stack cache_[kCacheMax];
  size_t n_ = 0;
};

}  // namespace tern::alloc
