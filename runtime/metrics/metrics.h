// runtime/metrics/metrics.h: the metrics registry: counters, gauges and histograms that code increments on its hot
// path, the runtime's own figures (added by collectors), one snapshot() of all of them, and the Prometheus text
// exposition of a snapshot.
//
//   static tern::metrics::Counter& requests =
//       *tern::metrics::counter("myapp_requests_total", "requests served").value();
//   static tern::metrics::Histogram& latency =
//       *tern::metrics::histogram("myapp_request_seconds", "request latency").value();
//   requests.inc();                      // one relaxed load+store on this thread's own cell
//   latency.observe(0.0012);             // seconds
//   for (const auto& f : tern::metrics::snapshot()) ...   // every metric, runtime ones included
//
// Cost, after brpc's bvar: every thread that increments a metric owns a shard of cells, allocated on its first
// increment in blocks of kBlockCells, and an increment is a relaxed load and store of its own cell (no locked
// instruction, no cache line shared with another writer). Readers (snapshot) sum the cells of every live shard under
// the registry's lock, plus what exited threads left behind. A fiber may move between threads between two increments;
// each increment lands in the shard of the thread it ran on, and the sum is exact. The lookup of the calling thread's
// shard is an out-of-line call on purpose: a fiber resumed on another thread must not reuse a thread-local address the
// compiler computed before the switch (scheduler/m.h says the same of this_m()).
//
// Names follow Prometheus conventions ([a-zA-Z_:][a-zA-Z0-9_:]*; counters end in _total; base units: seconds, bytes);
// an invalid name, or a name registered before as another type, is an error and registers nothing. Metrics live
// until the process exits: a registered name returns the same object every time, so static references are safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"

namespace tern::metrics {

// Cells per block of a thread's shard, and blocks per shard: up to 64 Ki cells in all (a counter is one cell, a
// histogram its buckets + 2).
inline constexpr uint32_t kBlockCells = 512;
inline constexpr uint32_t kMaxBlocks = 128;
// Histogram buckets at most (plus the +Inf one).
inline constexpr int kMaxBuckets = 64;

namespace detail {
// The calling thread's cell `idx` (allocating its block on first use). Out of line: see the file comment.
[[gnu::noinline]] std::atomic<uint64_t>* cell(uint32_t idx);
inline void add(std::atomic<uint64_t>* c, uint64_t n) {
  c->store(c->load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}
}  // namespace detail

class Counter;
namespace detail {
// A counter that snapshot() does not list: the runtime's own, which a collector exposes in its own unit or with
// labels (tern_mutex_wait_seconds_total is counted in nanoseconds).
Result<Counter*> hidden_counter(const std::string& name);
}  // namespace detail

class Counter {
 public:
  void inc(uint64_t n = 1) { detail::add(detail::cell(cell_), n); }
  // The sum over every thread (takes the registry lock: not for hot paths).
  uint64_t value() const;
  const std::string& name() const { return name_; }

 private:
  friend class Registry;
  Counter(std::string name, uint32_t cell) : name_(std::move(name)), cell_(cell) {}
  std::string name_;
  uint32_t cell_;
};

// A gauge: add() for counts that go up and down from many threads (connections open: a sharded signed sum, as cheap
// as a counter), set() for a value one owner sets. The value is the last set() plus every add(); use one or the other.
class Gauge {
 public:
  void add(int64_t n) { detail::add(detail::cell(cell_), static_cast<uint64_t>(n)); }
  void set(double v) { set_.store(v, std::memory_order_relaxed); }
  double value() const;
  const std::string& name() const { return name_; }

 private:
  friend class Registry;
  Gauge(std::string name, uint32_t cell) : name_(std::move(name)), cell_(cell) {}
  std::string name_;
  uint32_t cell_;
  std::atomic<double> set_{0};
};

// A histogram with fixed log-spaced buckets: bucket i counts observations <= first_bound * 2^i (i < buckets), one
// more counts the rest (+Inf). observe() costs one bucket's increment and the sum's, on this thread's cells.
class Histogram {
 public:
  void observe(double v);
  int buckets() const { return nbuckets_; }
  double bound(int i) const;  // upper bound of bucket i (i < buckets())
  const std::string& name() const { return name_; }

 private:
  friend class Registry;
  Histogram(std::string name, uint32_t cell, double first, int n)
      : name_(std::move(name)), cell_(cell), first_(first), nbuckets_(n) {}
  std::string name_;
  uint32_t cell_;  // buckets() + 1 bucket cells, then the sum (a double's bits, written by the cell's owner only)
  double first_;
  int nbuckets_;
};

// Registers (or finds) a metric. Errors: an invalid name, a name already registered as another type, a histogram's
// bounds out of range (first_bound finite and > 0; 1 <= buckets <= kMaxBuckets), or the registry full.
Result<Counter*> counter(const std::string& name, const std::string& help = "");
Result<Gauge*> gauge(const std::string& name, const std::string& help = "");
// Default buckets: 1 us to about 67 s, doubling (seconds).
Result<Histogram*> histogram(const std::string& name, const std::string& help = "", double first_bound = 1e-6,
                             int buckets = 27);

// What snapshot() returns: metric families as Prometheus groups them.
enum class Type { kCounter, kGauge, kHistogram };
using Labels = std::vector<std::pair<std::string, std::string>>;
struct Series {
  Labels labels;
  double value = 0;  // counter, gauge
  // Histogram: (upper bound, observations <= it), cumulative, ascending; the last bound is +Inf and its count the
  // total.
  std::vector<std::pair<double, uint64_t>> buckets;
  double sum = 0;
  uint64_t count = 0;
};
struct Family {
  std::string name, help;
  Type type = Type::kGauge;
  std::vector<Series> series;
};
using Snapshot = std::vector<Family>;

// A source of figures computed when read (the runtime's: runtime/metrics/runtime_metrics.h). Called by snapshot()
// with the collectors' lock held, so remove_collector() returns only once no call is running.
using Collector = std::function<void(Snapshot&)>;
uint64_t add_collector(Collector c);
void remove_collector(uint64_t id);

// Every metric now: the collectors' families first, then the registered ones (sorted by name).
Snapshot snapshot();
// The Prometheus text exposition format 0.0.4 of a snapshot (Content-Type: text/plain; version=0.0.4).
std::string to_prometheus(const Snapshot& s);
// Whether a metric or label name is valid ([a-zA-Z_:][a-zA-Z0-9_:]*; label names without ':').
bool valid_name(const std::string& name, bool label = false);

}  // namespace tern::metrics
