// tools/load/histogram.h: a log-linear latency histogram (HdrHistogram's layout, two significant digits): values in
// nanoseconds, each power of two split into kSubBuckets linear steps, so every quantile it reports is within 1/64
// (1.6%) of the true value, from 1 ns to 2^(kExponents + 6) ns (19 hours), in a fixed 21 KiB.
//
//   LatencyHistogram h;
//   h.record(1'234'567);                 // 1.23 ms
//   h.merge(other);                      // one per connection, merged at the end
//   int64_t p99 = h.quantile(0.99);      // ns; the upper edge of the bucket holding the 99th percentile
#pragma once

#include <array>
#include <cstdint>

namespace tern::load {

class LatencyHistogram {
 public:
  static constexpr int kSubBits = 6;
  static constexpr int kSubBuckets = 1 << kSubBits;  // 64 steps per power of two
  static constexpr int kExponents = 40;

  // A value <= 0 counts as 0; a value beyond the range counts in the last bucket (and as max).
  void record(int64_t ns);
  void merge(const LatencyHistogram& o);

  uint64_t count() const { return count_; }
  int64_t min() const { return count_ ? min_ : 0; }
  int64_t max() const { return max_; }
  double mean() const { return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0; }
  // The smallest bucket upper edge below which at least q (0..1) of the values lie, capped at max(); 0 when empty.
  int64_t quantile(double q) const;

  // The bucket holding `ns`, and the largest value bucket i holds (exposed for the tests).
  static int index(int64_t ns);
  static int64_t upper(int i);

 private:
  std::array<uint64_t, (kExponents + 1) * kSubBuckets> counts_{};
  uint64_t count_ = 0;
  int64_t min_ = 0, max_ = 0;
  __int128 sum_ = 0;
};

}  // namespace tern::load
