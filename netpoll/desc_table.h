// netpoll/desc_table.h: type-stable storage for a backend's descriptors, addressed by index and generation.
//
// A poller can hold an event for a descriptor that is being closed on another thread (epoll_wait returned it just
// before EPOLL_CTL_DEL). Go keeps poll descriptors in memory that is never freed and checks a sequence number; so does
// this table: records live in chunks that stay allocated until the table dies, and release() bumps the record's
// generation, so an event tagged (index, old generation) is recognised as stale and dropped. Allocation and release
// take one mutex (once per connection, not per operation); lookup is lock-free.
//
//   DescTable<PollDesc> table;
//   PollDesc* d = table.acquire();              // nullptr when the table is full or memory is short
//   uint64_t tag = DescTable<PollDesc>::tag(d);
//   PollDesc* same = table.lookup(tag);         // nullptr once d has been released
//   table.release(d);
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

namespace tern::netpoll {

template <class T>  // T derives from netpoll::Desc
class DescTable {
 public:
  // 256 records per chunk keeps a chunk near 32 KiB for the largest records; 16384 chunks cover 4M descriptors, far
  // above any RLIMIT_NOFILE a server runs with, for 128 KiB of chunk pointers.
  static constexpr uint32_t kChunkSize = 256;
  static constexpr uint32_t kMaxChunks = 16384;

  DescTable() : chunks_(new std::atomic<T*>[kMaxChunks]) {
    for (uint32_t i = 0; i < kMaxChunks; i++) chunks_[i].store(nullptr, std::memory_order_relaxed);
  }
  ~DescTable() {
    for (uint32_t i = 0; i < kMaxChunks; i++) delete[] chunks_[i].load(std::memory_order_relaxed);
  }
  DescTable(const DescTable&) = delete;
  DescTable& operator=(const DescTable&) = delete;

  T* acquire() {
    std::lock_guard lk(mu_);
    uint32_t index;
    if (!free_.empty()) {
      index = free_.back();
      free_.pop_back();
    } else {
      if (next_ == kChunkSize * kMaxChunks) return nullptr;
      index = next_;
      uint32_t c = index / kChunkSize;
      if (chunks_[c].load(std::memory_order_relaxed) == nullptr) {
        T* chunk = new (std::nothrow) T[kChunkSize];
        if (chunk == nullptr) return nullptr;
        for (uint32_t i = 0; i < kChunkSize; i++) chunk[i].index = c * kChunkSize + i;
        chunks_[c].store(chunk, std::memory_order_release);
      }
      if (free_.capacity() <= next_) free_.reserve(next_ + kChunkSize);  // so that release() never allocates
      next_++;
    }
    T* d = slot(index);
    d->live = true;
    return d;
  }

  void release(T* d) {
    d->gen.fetch_add(1, std::memory_order_acq_rel);
    d->fd = -1;
    std::lock_guard lk(mu_);
    d->live = false;
    free_.push_back(d->index);
  }

  static uint64_t tag(const T* d) {
    return static_cast<uint64_t>(d->gen.load(std::memory_order_relaxed)) << 32 | d->index;
  }
  // The record `tag` names, or nullptr if it was released since the tag was made.
  T* lookup(uint64_t tag) const {
    auto index = static_cast<uint32_t>(tag);
    uint32_t c = index / kChunkSize;
    if (c >= kMaxChunks) return nullptr;
    T* chunk = chunks_[c].load(std::memory_order_acquire);
    if (chunk == nullptr) return nullptr;
    T* d = &chunk[index % kChunkSize];
    if (d->gen.load(std::memory_order_acquire) != static_cast<uint32_t>(tag >> 32)) return nullptr;
    return d;
  }

  // Calls f(d) for every acquired record. For teardown, when no other thread uses the table.
  template <class F>
  void for_each_live(F&& f) {
    std::lock_guard lk(mu_);
    for (uint32_t i = 0; i < next_; i++) {
      T* d = slot(i);
      if (d->live) f(d);
    }
  }

 private:
  T* slot(uint32_t index) const {
    return &chunks_[index / kChunkSize].load(std::memory_order_relaxed)[index % kChunkSize];
  }

  std::unique_ptr<std::atomic<T*>[]> chunks_;
  std::mutex mu_;
  std::vector<uint32_t> free_;
  uint32_t next_ = 0;
};

}  // namespace tern::netpoll
