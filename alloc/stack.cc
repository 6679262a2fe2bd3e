#include "alloc/stack.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

// Guard regions (Linux 6.13): a page range that faults on access without being a separate mapping. Debian 12's headers
// predate it; the value is the kernel's ABI.
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

namespace tern::alloc {
namespace {
size_t page_size() {
  static const size_t ps = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return ps;
}
size_t round_up(size_t n, size_t to) {
  return (n + to - 1) / to * to;
}
}  // namespace

StackPool::StackPool(StackPoolOptions opts) : opts_(opts) {
  // A stack smaller than 4 pages cannot hold the context switch frame plus any useful call depth.
  opts_.stack_size = round_up(std::max(opts_.stack_size, 4 * page_size()), page_size());
  opts_.high_watermark = std::min(opts_.high_watermark, opts_.max_free);
}

StackPool::~StackPool() {
  std::lock_guard lk(mu_);
  for (Stack s : free_) unmap_one(s);
  free_.clear();
}

Stack StackPool::map_one() {
  const size_t guard = page_size();
  const size_t len = opts_.stack_size + guard;
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (p == MAP_FAILED) {
    map_failures_.fetch_add(1, std::memory_order_relaxed);
    return {};
  }
  // Prefer a guard region: the stack stays one read-write mapping that the kernel merges with its neighbours, so
  // live fibers are not capped by vm.max_map_count (an mprotect'ed guard splits every stack into two mappings:
  // about 32k stacks under the default limit of 65530). Older kernels refuse the advice; fall back once and stay.
  bool guarded = false;
  if (guard_regions_.load(std::memory_order_relaxed)) {
    if (madvise(p, guard, MADV_GUARD_INSTALL) == 0) {
      guarded = true;
    } else {
      guard_regions_.store(false, std::memory_order_relaxed);
    }
  }
  if (!guarded && mprotect(p, guard, PROT_NONE) != 0) {
    munmap(p, len);
    map_failures_.fetch_add(1, std::memory_order_relaxed);
    return {};
  }
  mapped_.fetch_add(1, std::memory_order_relaxed);
  return Stack{static_cast<char*>(p) + guard, opts_.stack_size, p};
}

void StackPool::unmap_one(Stack s) {
#if defined(__SANITIZE_ADDRESS__)
  // A stack unmapped with frames ASan still marks would make the next mapping at this address look like stack
  // memory (GCC 12's ASan does not clear its shadow on munmap/mmap).
  __asan_unpoison_memory_region(s.lo, s.size);
#endif
  munmap(s.guard, s.size + page_size());
  mapped_.fetch_sub(1, std::memory_order_relaxed);
  unmapped_.fetch_add(1, std::memory_order_relaxed);
}

Stack StackPool::get() {
  Stack s;
  get_batch(&s, 1);
  return s;
}

size_t StackPool::get_batch(Stack* out, size_t n) {
  size_t got = 0;
  {
    std::lock_guard lk(mu_);
    while (got < n && !free_.empty()) {
      out[got++] = free_.back();
      free_.pop_back();
    }
    cold_ = std::min(cold_, free_.size());
    low_ = std::min(low_, free_.size());
  }
  while (got < n) {
    Stack s = map_one();
    if (!s.valid()) break;
    out[got++] = s;
  }
  in_use_.fetch_add(got, std::memory_order_relaxed);
  if (got < n) out[got] = Stack{};
  return got;
}

void StackPool::put(Stack s) {
  put_batch(&s, 1);
}

void StackPool::put_batch(const Stack* in, size_t n) {
  in_use_.fetch_sub(n, std::memory_order_relaxed);
  std::lock_guard lk(mu_);
  for (size_t i = 0; i < n; i++) {
    if (free_.size() >= opts_.max_free) {
      unmap_one(in[i]);
    } else {
      free_.push_back(in[i]);
    }
  }
}

size_t StackPool::trim() {
  std::lock_guard lk(mu_);
  // Stacks below low_ were not touched all period; of those, keep high_watermark resident counting from the top.
  size_t keep_from = free_.size() > opts_.high_watermark ? free_.size() - opts_.high_watermark : 0;
  size_t end = std::min(low_, keep_from);
  size_t released = 0;
  for (size_t i = cold_; i < end; i++) {
    madvise(free_[i].lo, free_[i].size, MADV_DONTNEED);
    released++;
  }
  cold_ = std::max(cold_, end);
  low_ = free_.size();
  released_.fetch_add(released, std::memory_order_relaxed);
  return released;
}

StackStats StackPool::stats() const {
  StackStats st;
  st.mapped = mapped_.load(std::memory_order_relaxed);
  st.in_use = in_use_.load(std::memory_order_relaxed);
  {
    std::lock_guard lk(mu_);
    st.free_global = free_.size();
  }
  st.released = released_.load(std::memory_order_relaxed);
  st.unmapped = unmapped_.load(std::memory_order_relaxed);
  st.map_failures = map_failures_.load(std::memory_order_relaxed);
  return st;
}

Stack StackCache::get() {
  if (n_ == 0) n_ = pool_.get_batch(cache_, kCacheBatch);
  if (n_ == 0) return {};
  return cache_[--n_];
}

void StackCache::put(Stack s) {
  if (!s.valid()) return;
  if (n_ == kCacheMax) {
    n_ -= kCacheBatch;
    pool_.put_batch(cache_ + n_, kCacheBatch);
  }
  cache_[n_++] = s;
}

void StackCache::flush() {
  if (n_ > 0) pool_.put_batch(cache_, n_);
  n_ = 0;
}

}  // namespace tern::alloc
