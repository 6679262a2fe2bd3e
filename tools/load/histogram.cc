// tools/load/histogram.cc: the log-linear latency histogram (see histogram.h).
#include "tools/load/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace tern::load {

// Values below kSubBuckets are exact (bucket = value); above, the top kSubBits+1 bits choose it: the power of two
// (bit width) picks the row and the kSubBits bits under the leading one the step within it.
int LatencyHistogram::index(int64_t ns) {
  if (ns < kSubBuckets) return static_cast<int>(std::max<int64_t>(ns, 0));
  const auto v = static_cast<uint64_t>(ns);
  const int width = std::bit_width(v);  // v in [2^(width-1), 2^width)
  const int shift = width - 1 - kSubBits;
  const int row = shift + 1;
  if (row > kExponents) return (kExponents + 1) * kSubBuckets - 1;
  const int sub = static_cast<int>((v >> shift) & (kSubBuckets - 1));
  return row * kSubBuckets + sub;
}

int64_t LatencyHistogram::upper(int i) {
  const int row = i / kSubBuckets, sub = i % kSubBuckets;
  if (row == 0) return sub;
  const int shift = row - 1;
  return ((static_cast<int64_t>(kSubBuckets + sub + 1)) << shift) - 1;
}

void LatencyHistogram::record(int64_t ns) {
  ns = std::max<int64_t>(ns, 0);
  counts_[static_cast<size_t>(index(ns))]++;
  min_ = count_ == 0 ? ns : std::min(min_, ns);
  max_ = std::max(max_, ns);
  sum_ += ns;
  count_++;
}

void LatencyHistogram::merge(const LatencyHistogram& o) {
  if (o.count_ == 0) return;
  for (size_t i = 0; i < counts_.size(); i++) counts_[i] += o.counts_[i];
  min_ = count_ == 0 ? o.min_ : std::min(min_, o.min_);
  max_ = std::max(max_, o.max_);
  sum_ += o.sum_;
  count_ += o.count_;
}

int64_t LatencyHistogram::quantile(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  const auto rank = std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_))));
  uint64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); i++) {
    seen += counts_[i];
    if (seen >= rank) return std::min(upper(static_cast<int>(i)), max_);
  }
  return max_;
}

}  // namespace tern::load
