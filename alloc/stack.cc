// alloc/stack.cc: fiber stacks: mapping with a guard, the pool and its trim, per-P caches, taking between them.
#include "alloc/stack.h"

#include <sched.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "alloc/fence.h"
#include "alloc/numa_bind.h"
#include "base/sanitizer.h"

// Guard regions (Linux 6.13): a page range that faults on access without being a separate mapping. Debian 12's headers
// predate it; the value is the kernel's ABI.
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
// Linux 5.14; glibc 2.36's headers have it, older ones may not.
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
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

// Waiting for the other side of a cache's exclusion, which holds it for a few instructions unless its thread is
// preempted: spin a little, then let it run.
void backoff(int& spins) {
  if (++spins < 64) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  } else {
    sched_yield();
  }
}
}  // namespace

StackPool::StackPool(StackPoolOptions opts)
    : opts_(opts), asym_(opts.asymmetric_fences && asymmetric_fences_available()) {
  // A stack smaller than 4 pages cannot hold the context switch frame plus any useful call depth.
  opts_.stack_size = round_up(std::clamp(opts_.stack_size, 4 * page_size(), kMaxStackBytes), page_size());
  opts_.guard_size = round_up(std::max(opts_.guard_size, page_size()), page_size());
  opts_.high_watermark = std::min(opts_.high_watermark, opts_.max_free);
  // A batch larger than max_free would be unmapped in part as soon as it was mapped.
  opts_.map_batch = std::clamp<size_t>(opts_.map_batch, 1, std::clamp<size_t>(opts_.max_free, 1, kMaxMapBatch));
  opts_.node = std::max(opts_.node, 0);
  guard_regions_.store(opts_.guard_regions, std::memory_order_relaxed);
}

StackPool::~StackPool() {
  std::lock_guard lk(mu_);
  unmap_coldest(free_.size());
}

Stack StackPool::at(char* first, size_t i) const {
  char* guard = first + i * stride();
  return Stack{guard + opts_.guard_size, static_cast<uint32_t>(opts_.stack_size), opts_.node, guard};
}

size_t StackPool::map_run(size_t count, char** first) {
  const size_t guard = opts_.guard_size;
  void* p = mmap(nullptr, count * stride(), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (p == MAP_FAILED) {
    map_errno_.store(errno, std::memory_order_relaxed);
    map_failures_.fetch_add(1, std::memory_order_relaxed);
    return 0;
  }
  char* base = static_cast<char*>(p);
  // Before any page is touched: the policy applies to pages faulted in later.
  if (opts_.bind_node) bind_run(base, count * stride());
  // Prefer guard regions: the batch stays one read-write mapping that the kernel merges with its neighbours, so live
  // fibers are not capped by vm.max_map_count (an mprotect'ed guard splits every stack into two mappings: about 32k
  // stacks under the default limit of 65530). Older kernels refuse the advice; fall back once and stay.
  if (guard_regions_.load(std::memory_order_relaxed)) install_guards(base, count);
  size_t ok = count;
  if (!guard_regions_.load(std::memory_order_relaxed)) {
    for (size_t i = 0; i < count; i++) {
      if (mprotect(base + i * stride(), guard, PROT_NONE) != 0) {
        // ENOMEM: the split would pass vm.max_map_count. The stacks guarded so far are good; the rest goes back.
        map_errno_.store(errno, std::memory_order_relaxed);
        map_failures_.fetch_add(1, std::memory_order_relaxed);
        munmap(base + i * stride(), (count - i) * stride());
        ok = i;
        break;
      }
    }
  }
  if (ok == 0) return 0;
  if (opts_.prefault_pages > 0) prefault_tops(base, ok);
  batches_.fetch_add(1, std::memory_order_relaxed);
  mapped_.fetch_add(ok, std::memory_order_relaxed);
  *first = base;
  return ok;
}

void StackPool::install_guards(char* first, size_t count) {
  const size_t guard = opts_.guard_size;
  // One process_madvise for the whole batch where the kernel takes it (numa_bind.h).
  static BatchAdvice batched{MADV_GUARD_INSTALL};
  if (count > 1 && batched.usable()) {
    iovec iov[kMaxMapBatch];
    for (size_t i = 0; i < count; i++) iov[i] = {first + i * stride(), guard};
    // Short (stopped part way) or refused: per stack below; installing a guard twice is harmless.
    if (batched.advise(iov, count) == static_cast<long>(count * guard)) return;
  }
  for (size_t i = 0; i < count; i++) {
    if (madvise(first + i * stride(), guard, MADV_GUARD_INSTALL) != 0) {
      guard_regions_.store(false, std::memory_order_relaxed);
      return;  // map_run mprotects every guard instead
    }
  }
}

void StackPool::prefault_tops(char* first, size_t count) {
  // Only through one process_madvise for the batch (numa_bind.h): per stack, a madvise costs about what the fault it
  // saves does on bare metal.
  static BatchAdvice batched{MADV_POPULATE_WRITE};
  if (!batched.usable()) return;
  const size_t bytes = std::min(opts_.prefault_pages * page_size(), opts_.stack_size);
  iovec iov[kMaxMapBatch];
  for (size_t i = 0; i < count; i++) iov[i] = {static_cast<char*>(at(first, i).top()) - bytes, bytes};
  // Short of memory (ENOMEM, a memory cgroup at its limit), stopped part way, or refused: the rest faults in when
  // touched, as without prefaulting.
  const long done = batched.advise(iov, count);
  if (done > 0) prefaulted_.fetch_add(static_cast<uint64_t>(done) / bytes, std::memory_order_relaxed);
}

void StackPool::bind_run(void* addr, size_t len) {
  binds_.fetch_add(1, std::memory_order_relaxed);
  const int err = prefer_node(addr, len, opts_.node);
  if (err == 0) return;
  if (bind_failures_.fetch_add(1, std::memory_order_relaxed) == 0) {
    std::fprintf(stderr,
                 "tern: cannot bind fiber stacks to NUMA node %d (mbind: %s); they stay where the kernel puts them\n",
                 opts_.node, std::strerror(err));
  }
}

void StackPool::unmap_coldest(size_t n) {
  n = std::min(n, free_.size());
  if (n == 0) return;
  // Address order, so that neighbours (stacks of one batch, batches mapped side by side) leave in one call.
  std::sort(free_.begin(), free_.begin() + static_cast<ptrdiff_t>(n),
            [](const Stack& a, const Stack& b) { return a.guard < b.guard; });
  char* run = nullptr;
  char* run_end = nullptr;
  for (size_t i = 0; i <= n; i++) {
    char* g = i < n ? static_cast<char*>(free_[i].guard) : nullptr;
    if (i < n && g == run_end && run != nullptr) {
      run_end = static_cast<char*>(free_[i].top());
    } else {
      if (run != nullptr) munmap(run, static_cast<size_t>(run_end - run));
      if (i < n) {
        run = g;
        run_end = static_cast<char*>(free_[i].top());
      }
    }
#ifdef TERN_ASAN
    // A stack unmapped with frames ASan still marks would make the next mapping at this address look like stack
    // memory (GCC 12's ASan does not clear its shadow on munmap/mmap).
    if (i < n) __asan_unpoison_memory_region(free_[i].lo, free_[i].size);
#endif
  }
  free_.erase(free_.begin(), free_.begin() + static_cast<ptrdiff_t>(n));
  cold_ = cold_ > n ? cold_ - n : 0;
  low_ = low_ > n ? low_ - n : 0;
  mapped_.fetch_sub(n, std::memory_order_relaxed);
  unmapped_.fetch_add(n, std::memory_order_relaxed);
}

Stack StackPool::get() {
  Stack s;
  if (get_batch(&s, 1) == 0) take_from_caches(nullptr, &s, 1);
  return s;
}

size_t StackPool::take_from_caches(const StackCache* except, Stack* out, size_t n) {
  size_t got = 0;
  std::lock_guard lk(caches_mu_);
  // The victims: every other cache that looks non-empty (one that fills meanwhile is simply not taken from this time).
  std::vector<StackCache*>& victims = victims_;
  victims.clear();
  for (StackCache* c : caches_) {
    if (c != except && c->n_.load(std::memory_order_relaxed) > 0) victims.push_back(c);
  }
  if (asym_ && !victims.empty() && n > 0) {
    // Raise the flag on every victim, then one heavy fence for them all. Owners that see a flag step back until it
    // drops, so it must drop on every victim, taken from or not.
    for (StackCache* c : victims) c->taker_.store(true);
    if (!heavy_fence()) {
      // Registered, yet refused: no exclusion with the owners is possible, so take nothing (the caller reports
      // exhaustion, which is an error, not a crash).
      for (StackCache* c : victims) c->taker_leave();
      victims.clear();
    }
  }
  for (StackCache* c : victims) {
    if (got == n) {
      if (asym_) c->taker_leave();
      continue;
    }
    c->taker_wait();
    // Half of what the victim holds, rounded up: one thief cannot empty a P that still has stacks to share.
    size_t have = c->n_.load(std::memory_order_relaxed);
    const size_t take = std::min(n - got, (have + 1) / 2);
    for (size_t i = 0; i < take; i++) out[got++] = c->cache_[--have];
    c->n_.store(have, std::memory_order_relaxed);
    c->taker_leave();
  }
  if (got < n) out[got] = Stack{};
  taken_.fetch_add(got, std::memory_order_relaxed);
  return got;
}

std::string exhausted_message(const StackStats& st) {
  long max_maps = -1;
  if (FILE* f = std::fopen("/proc/sys/vm/max_map_count", "r")) {
    if (std::fscanf(f, "%ld", &max_maps) != 1) max_maps = -1;
    std::fclose(f);
  }
  const int err = st.map_errno;
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "cannot map a stack for a new fiber (%s) with %llu fiber stacks of %zu bytes mapped and none free in "
                "any cache. Each stack is %s and vm.max_map_count is %ld: raise it (sysctl -w vm.max_map_count=N), "
                "lower TERN_STACK_SIZE, or bound the number of live fibers",
                err != 0 ? std::strerror(err) : "no error recorded", static_cast<unsigned long long>(st.mapped),
                st.stack_size, st.guard_regions ? "one mapping" : "two mappings", max_maps);
  return buf;
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
  if (got < n) {
    // One batch; what the caller does not take goes to the free list. The system calls run outside mu_.
    char* first = nullptr;
    const size_t want = n - got;
    size_t mapped = map_run(std::max(want, opts_.map_batch), &first);
    size_t i = 0;
    for (; i < mapped && got < n; i++) out[got++] = at(first, i);
    if (i < mapped) {
      std::lock_guard lk(mu_);
      // Highest address at the bottom: the next gets walk up through the batch in address order.
      for (size_t j = mapped; j-- > i;) free_.push_back(at(first, j));
      if (free_.size() > opts_.max_free + std::min(kUnmapBatch, opts_.max_free)) {
        unmap_coldest(free_.size() - opts_.max_free);
      }
    }
    // The kernel refused the batch: map what is needed a stack at a time, the last resort before other caches.
    while (mapped == 0 && got < n) {
      if (map_run(1, &first) == 0) break;
      out[got++] = at(first, 0);
    }
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
    if (in[i].node != opts_.node) [[unlikely]]
      foreign_.fetch_add(1, std::memory_order_relaxed);
  }
  free_.insert(free_.end(), in, in + n);
  // Above max_free, wait for a batch's worth more, then unmap the coldest down to max_free in one sorted pass.
  if (free_.size() > opts_.max_free + std::min(kUnmapBatch, opts_.max_free))
    unmap_coldest(free_.size() - opts_.max_free);
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
  st.taken_from_caches = taken_.load(std::memory_order_relaxed);
  st.batches = batches_.load(std::memory_order_relaxed);
  st.binds = binds_.load(std::memory_order_relaxed);
  st.bind_failures = bind_failures_.load(std::memory_order_relaxed);
  st.foreign = foreign_.load(std::memory_order_relaxed);
  st.prefaulted = prefaulted_.load(std::memory_order_relaxed);
  st.map_errno = map_errno_.load(std::memory_order_relaxed);
  st.stack_size = opts_.stack_size;
  st.guard_regions = guard_regions();
  return st;
}

StackCache::StackCache(StackPool& pool) : pool_(pool), asym_(pool.asym_), node_(pool.node()) {
  std::lock_guard lk(pool_.caches_mu_);
  pool_.caches_.push_back(this);
  pool_.victims_.reserve(pool_.caches_.size());  // take_from_caches runs when memory or mappings ran out
}

StackCache::~StackCache() {
  {
    std::lock_guard lk(pool_.caches_mu_);
    pool_.caches_.erase(std::find(pool_.caches_.begin(), pool_.caches_.end(), this));
  }
  flush();
}

size_t StackCache::size() const {
  return n_.load(std::memory_order_relaxed);
}

void StackCache::owner_yield_to_taker() {
  for (;;) {
    owner_busy_.store(false, std::memory_order_release);
    int spins = 0;
    while (taker_.load(std::memory_order_acquire)) backoff(spins);
    owner_busy_.store(true, std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    if (!taker_.load(std::memory_order_acquire)) return;
  }
}

void StackCache::taker_wait() const {
  if (!asym_) {
    lock();
    return;
  }
  int spins = 0;
  while (owner_busy_.load()) backoff(spins);  // seq_cst: after the heavy fence, never before the flag's store
}

Stack StackCache::get() {
  owner_enter();
  if (const size_t n = n_.load(std::memory_order_relaxed); n > 0) {
    Stack s = cache_[n - 1];
    n_.store(n - 1, std::memory_order_relaxed);
    owner_leave();
    return s;
  }
  owner_leave();
  return get_refilling();
}

// get() with the cache empty. Refills outside the exclusion: the pool's lock and the list of caches come before it.
Stack StackCache::get_refilling() {
  Stack batch[kCacheBatch];
  size_t got = pool_.get_batch(batch, kCacheBatch);
  if (got == 0) got = pool_.take_from_caches(this, batch, kCacheBatch);
  if (got == 0) return {};
  // Takers only ever remove, so the cache, empty a moment ago, has room for the batch.
  owner_enter();
  size_t n = n_.load(std::memory_order_relaxed);
  for (size_t i = 1; i < got; i++) cache_[n++] = batch[i];
  n_.store(n, std::memory_order_relaxed);
  owner_leave();
  return batch[0];
}

void StackCache::put(Stack s) {
  if (!s.valid()) return;
  owner_enter();
  if (const size_t n = n_.load(std::memory_order_relaxed); n < kCacheMax) {
    cache_[n] = s;
    n_.store(n + 1, std::memory_order_relaxed);
    owner_leave();
    return;
  }
  owner_leave();
  put_spilling(s);
}

// put() with the cache full: half of it goes back to the pool. Out of line so that put()'s frame holds no spill array
// (a Stack array is value-initialized: zeroing it cost every put() more than the rest of put() together).
void StackCache::put_spilling(Stack s) {
  Stack spill[kCacheBatch];
  size_t nspill = 0;
  owner_enter();
  // Takers may have taken some since put() looked; only this thread adds.
  size_t n = n_.load(std::memory_order_relaxed);
  if (n == kCacheMax) {
    n -= kCacheBatch;
    std::copy(cache_ + n, cache_ + n + kCacheBatch, spill);
    nspill = kCacheBatch;
  }
  cache_[n++] = s;
  n_.store(n, std::memory_order_relaxed);
  owner_leave();
  if (nspill > 0) pool_.put_batch(spill, nspill);
}

void StackCache::flush() {
  Stack all[kCacheMax];
  owner_enter();
  const size_t n = n_.load(std::memory_order_relaxed);
  std::copy(cache_, cache_ + n, all);
  n_.store(0, std::memory_order_relaxed);
  owner_leave();
  if (n > 0) pool_.put_batch(all, n);
}

}  // namespace tern::alloc
