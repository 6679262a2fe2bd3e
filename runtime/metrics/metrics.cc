// runtime/metrics/metrics.cc: the registry (metric names, cell allocation, per-thread shards), snapshot() and the
// Prometheus text exposition.
#include "runtime/metrics/metrics.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <variant>

namespace tern::metrics {

// A thread's cells: blocks allocated by the thread on first use, read by snapshot() under the registry's lock.
struct Shard {
  std::atomic<std::atomic<uint64_t>*> blocks[kMaxBlocks] = {};
  ~Shard() {
    for (auto& b : blocks) delete[] b.load(std::memory_order_relaxed);
  }
};

// One per process, never destroyed: threads exit (and hand their shards back) until the very end, after static
// destructors may have run.
class Registry {
 public:
  static Registry& get() {
    static Registry* r = new Registry;
    return *r;
  }

  template <class M, class... A>
  Result<M*> add(const std::string& name, const std::string& help, Type type, uint32_t ncells, bool hidden,
                 A&&... args) {
    if (!valid_name(name)) return make_error("metric name '" + name + "': must match [a-zA-Z_:][a-zA-Z0-9_:]*");
    std::lock_guard lk(mu_);
    if (auto it = by_name_.find(name); it != by_name_.end()) {
      Entry& e = it->second;
      if (e.type != type || !std::holds_alternative<std::unique_ptr<M>>(e.metric))
        return make_error("metric '" + name + "' is already registered as another type");
      return std::get<std::unique_ptr<M>>(e.metric).get();
    }
    if (next_cell_ + ncells > kBlockCells * kMaxBlocks)
      return Error(std::make_error_code(std::errc::not_enough_memory), "metric '" + name + "': the registry is full");
    const uint32_t cell = next_cell_;
    next_cell_ += ncells;
    retired_.resize(next_cell_, 0);
    is_double_.resize(next_cell_, 0);
    Entry e;
    e.help = help;
    e.type = type;
    e.hidden = hidden;
    auto m = std::unique_ptr<M>(new M(name, cell, std::forward<A>(args)...));
    M* raw = m.get();
    e.metric = std::move(m);
    by_name_.emplace(name, std::move(e));
    return raw;
  }
  void mark_sum(const Histogram& h) {
    std::lock_guard lk(mu_);
    is_double_[h.cell_ + static_cast<uint32_t>(h.nbuckets_) + 1] = 1;
  }

  // The thread's shard, created on its first increment.
  Shard* shard();
  std::atomic<uint64_t>* grow(Shard* s, uint32_t idx);
  void retire(Shard* s);

  // Sums cells [cell, cell + n) over the live shards and the retired totals; mu_ held.
  void sum(uint32_t cell, uint32_t n, uint64_t* out) const;
  double sum_double(uint32_t cell) const;

  Snapshot registered() const;
  std::mutex& mu() { return mu_; }

  std::mutex collectors_mu;
  std::map<uint64_t, Collector> collectors;
  uint64_t next_collector = 1;

 private:
  struct Entry {
    std::string help;
    Type type = Type::kCounter;
    bool hidden = false;  // runtime-internal: read by a collector, not listed by itself
    std::variant<std::unique_ptr<Counter>, std::unique_ptr<Gauge>, std::unique_ptr<Histogram>> metric;
  };
  mutable std::mutex mu_;  // everything below; taken by increments only when a thread's block is first allocated
  std::map<std::string, Entry> by_name_;
  uint32_t next_cell_ = 0;
  std::vector<Shard*> shards_;
  std::vector<uint64_t> retired_;   // what exited threads' cells held
  std::vector<uint8_t> is_double_;  // cells holding a double's bits (histogram sums), summed as doubles
};

namespace {

// Hands the shard back to the registry when the thread exits.
struct ShardOwner {
  Shard* s = nullptr;
  ~ShardOwner() {
    if (s != nullptr) Registry::get().retire(s);
  }
};

thread_local Shard* tls_shard = nullptr;
thread_local ShardOwner tls_owner;

double bits_to_double(uint64_t b) {
  return std::bit_cast<double>(b);
}

}  // namespace

Shard* Registry::shard() {
  auto* s = new Shard;
  {
    std::lock_guard lk(mu_);
    shards_.push_back(s);
  }
  tls_owner.s = s;
  tls_shard = s;
  return s;
}

std::atomic<uint64_t>* Registry::grow(Shard* s, uint32_t idx) {
  const uint32_t b = idx / kBlockCells;
  auto* block = new std::atomic<uint64_t>[kBlockCells];
  for (uint32_t i = 0; i < kBlockCells; i++) block[i].store(0, std::memory_order_relaxed);
  // Published under mu_ so that a reader summing under mu_ sees the block whole (the release pairs with its acquire).
  std::lock_guard lk(mu_);
  s->blocks[b].store(block, std::memory_order_release);
  return &block[idx % kBlockCells];
}

void Registry::retire(Shard* s) {
  {
    std::lock_guard lk(mu_);
    for (uint32_t b = 0; b < kMaxBlocks; b++) {
      const auto* block = s->blocks[b].load(std::memory_order_relaxed);
      if (block == nullptr) continue;
      for (uint32_t i = 0; i < kBlockCells; i++) {
        const uint32_t c = b * kBlockCells + i;
        if (c >= retired_.size()) break;
        const uint64_t v = block[i].load(std::memory_order_relaxed);
        if (is_double_[c]) {
          retired_[c] = std::bit_cast<uint64_t>(bits_to_double(retired_[c]) + bits_to_double(v));
        } else {
          retired_[c] += v;
        }
      }
    }
    shards_.erase(std::find(shards_.begin(), shards_.end(), s));
  }
  tls_shard = nullptr;
  delete s;
}

void Registry::sum(uint32_t cell, uint32_t n, uint64_t* out) const {
  for (uint32_t i = 0; i < n; i++) out[i] = retired_[cell + i];
  for (const Shard* s : shards_) {
    for (uint32_t i = 0; i < n; i++) {
      const uint32_t c = cell + i;
      const auto* block = s->blocks[c / kBlockCells].load(std::memory_order_acquire);
      if (block != nullptr) out[i] += block[c % kBlockCells].load(std::memory_order_relaxed);
    }
  }
}

double Registry::sum_double(uint32_t cell) const {
  double v = bits_to_double(retired_[cell]);
  for (const Shard* s : shards_) {
    const auto* block = s->blocks[cell / kBlockCells].load(std::memory_order_acquire);
    if (block != nullptr) v += bits_to_double(block[cell % kBlockCells].load(std::memory_order_relaxed));
  }
  return v;
}

namespace detail {

std::atomic<uint64_t>* cell(uint32_t idx) {
  Shard* s = tls_shard;
  if (s == nullptr) [[unlikely]]
    s = Registry::get().shard();
  std::atomic<uint64_t>* block = s->blocks[idx / kBlockCells].load(std::memory_order_relaxed);
  if (block == nullptr) [[unlikely]]
    return Registry::get().grow(s, idx);
  return &block[idx % kBlockCells];
}

}  // namespace detail

uint64_t Counter::value() const {
  Registry& r = Registry::get();
  std::lock_guard lk(r.mu());
  uint64_t v = 0;
  r.sum(cell_, 1, &v);
  return v;
}

double Gauge::value() const {
  Registry& r = Registry::get();
  uint64_t v = 0;
  {
    std::lock_guard lk(r.mu());
    r.sum(cell_, 1, &v);
  }
  return set_.load(std::memory_order_relaxed) + static_cast<double>(static_cast<int64_t>(v));
}

double Histogram::bound(int i) const {
  return std::ldexp(first_, i);
}

void Histogram::observe(double v) {
  if (std::isnan(v)) return;
  int i = 0;
  if (v > first_) {
    // v / first = m * 2^e with m in [0.5, 1): the least i with v <= first * 2^i is e, or e - 1 when m is exactly 0.5.
    int e = 0;
    const double m = std::frexp(v / first_, &e);
    i = m == 0.5 ? e - 1 : e;
    if (i > nbuckets_ || std::isinf(v)) i = nbuckets_;
  }
  detail::add(detail::cell(cell_ + static_cast<uint32_t>(i)), 1);
  std::atomic<uint64_t>* s = detail::cell(cell_ + static_cast<uint32_t>(nbuckets_) + 1);
  s->store(std::bit_cast<uint64_t>(bits_to_double(s->load(std::memory_order_relaxed)) + v), std::memory_order_relaxed);
}

bool valid_name(const std::string& name, bool label) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); i++) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (!label && c == ':');
    if (!alpha && (i == 0 || c < '0' || c > '9')) return false;
  }
  return true;
}

Result<Counter*> counter(const std::string& name, const std::string& help) {
  return Registry::get().add<Counter>(name, help, Type::kCounter, 1, false);
}

Result<Gauge*> gauge(const std::string& name, const std::string& help) {
  return Registry::get().add<Gauge>(name, help, Type::kGauge, 1, false);
}

Result<Histogram*> histogram(const std::string& name, const std::string& help, double first_bound, int buckets) {
  if (!std::isfinite(first_bound) || first_bound <= 0)
    return make_error("histogram '" + name + "': the first bound must be finite and > 0");
  if (buckets < 1 || buckets > kMaxBuckets)
    return make_error("histogram '" + name + "': buckets must be in [1, " + std::to_string(kMaxBuckets) + "]");
  Registry& r = Registry::get();
  auto h =
      r.add<Histogram>(name, help, Type::kHistogram, static_cast<uint32_t>(buckets) + 2, false, first_bound, buckets);
  if (h) r.mark_sum(**h);
  return h;
}

namespace detail {

Result<Counter*> hidden_counter(const std::string& name) {
  return Registry::get().add<Counter>(name, "", Type::kCounter, 1, true);
}

}  // namespace detail

Snapshot Registry::registered() const {
  Snapshot out;
  std::lock_guard lk(mu_);
  for (const auto& [name, e] : by_name_) {
    if (e.hidden) continue;
    Family f;
    f.name = name;
    f.help = e.help;
    f.type = e.type;
    Series s;
    if (const auto* c = std::get_if<std::unique_ptr<Counter>>(&e.metric)) {
      uint64_t v = 0;
      sum((*c)->cell_, 1, &v);
      s.value = static_cast<double>(v);
    } else if (const auto* g = std::get_if<std::unique_ptr<Gauge>>(&e.metric)) {
      uint64_t v = 0;
      sum((*g)->cell_, 1, &v);
      s.value = (*g)->set_.load(std::memory_order_relaxed) + static_cast<double>(static_cast<int64_t>(v));
    } else {
      const Histogram& h = *std::get<std::unique_ptr<Histogram>>(e.metric);
      uint64_t counts[kMaxBuckets + 1];
      sum(h.cell_, static_cast<uint32_t>(h.nbuckets_) + 1, counts);
      uint64_t cum = 0;
      for (int i = 0; i <= h.nbuckets_; i++) {
        cum += counts[i];
        s.buckets.emplace_back(i < h.nbuckets_ ? h.bound(i) : INFINITY, cum);
      }
      s.count = cum;
      s.sum = sum_double(h.cell_ + static_cast<uint32_t>(h.nbuckets_) + 1);
    }
    f.series.push_back(std::move(s));
    out.push_back(std::move(f));
  }
  return out;
}

uint64_t add_collector(Collector c) {
  Registry& r = Registry::get();
  std::lock_guard lk(r.collectors_mu);
  const uint64_t id = r.next_collector++;
  r.collectors.emplace(id, std::move(c));
  return id;
}

void remove_collector(uint64_t id) {
  Registry& r = Registry::get();
  std::lock_guard lk(r.collectors_mu);
  r.collectors.erase(id);
}

Snapshot snapshot() {
  Registry& r = Registry::get();
  Snapshot out;
  {
    std::lock_guard lk(r.collectors_mu);
    for (auto& [id, c] : r.collectors) c(out);
  }
  Snapshot reg = r.registered();
  out.insert(out.end(), std::make_move_iterator(reg.begin()), std::make_move_iterator(reg.end()));
  return out;
}

namespace {

void append_value(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else if (v == std::trunc(v) && std::fabs(v) < 1e15) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v));
    out += buf;
  } else {
    // The shortest text that reads back as the same double (2e-09, not 2.0000000000000001e-09).
    char buf[32];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
  }
}

// Label values escape backslash, double quote and newline; HELP text backslash and newline (format 0.0.4).
void append_escaped(std::string& out, const std::string& s, bool quote) {
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (quote && c == '"') {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

void append_labels(std::string& out, const Labels& labels, const char* extra_name = nullptr, double extra = 0) {
  if (labels.empty() && extra_name == nullptr) return;
  out += '{';
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out += ',';
    first = false;
    out += k;
    out += "=\"";
    append_escaped(out, v, true);
    out += '"';
  }
  if (extra_name != nullptr) {
    if (!first) out += ',';
    out += extra_name;
    out += "=\"";
    append_value(out, extra);
    out += '"';
  }
  out += '}';
}

}  // namespace

std::string to_prometheus(const Snapshot& snap) {
  std::string out;
  out.reserve(snap.size() * 160);
  for (const Family& f : snap) {
    if (!f.help.empty()) {
      out += "# HELP " + f.name + ' ';
      append_escaped(out, f.help, false);
      out += '\n';
    }
    out += "# TYPE " + f.name + ' ';
    out += f.type == Type::kCounter ? "counter" : f.type == Type::kGauge ? "gauge" : "histogram";
    out += '\n';
    for (const Series& s : f.series) {
      if (f.type != Type::kHistogram) {
        out += f.name;
        append_labels(out, s.labels);
        out += ' ';
        append_value(out, s.value);
        out += '\n';
        continue;
      }
      for (const auto& [le, n] : s.buckets) {
        out += f.name + "_bucket";
        append_labels(out, s.labels, "le", le);
        out += ' ';
        append_value(out, static_cast<double>(n));
        out += '\n';
      }
      out += f.name + "_sum";
      append_labels(out, s.labels);
      out += ' ';
      append_value(out, s.sum);
      out += '\n';
      out += f.name + "_count";
      append_labels(out, s.labels);
      out += ' ';
      append_value(out, static_cast<double>(s.count));
      out += '\n';
    }
  }
  return out;
}

}  // namespace tern::metrics
