// tests/runtime/controller_policy_test.cc: the controller's policies on boundary samples (a table: NaN, +-Inf, zero,
// no quota, fractional and oversized quotas, throttling) and on simulated loads (auto rounding, hill, latency).
#include "runtime/controller/policy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace tern::controller {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

std::unique_ptr<Policy> make(std::string_view name, PolicyConfig cfg = {}) {
  auto p = make_policy(name, cfg);
  EXPECT_TRUE(p) << p.error().message();
  return p ? std::move(*p) : nullptr;
}

// A plain sample: 2 Ps of 2 CPUs, no quota, half busy, nothing queued.
Sample sample() {
  Sample s;
  s.interval_s = 0.1;
  s.procs = 2;
  s.procs_min = 1;
  s.procs_max = 2;
  s.cpus = 2;
  s.utilization = 0.5;
  s.throughput = 1000;
  s.oldest_runnable_s = 0;
  return s;
}

TEST(QuotaProcs, RoundsAndBounds) {
  struct {
    double quota;
    int cpus;
    Rounding r;
    int want;
  } cases[] = {
      {1.5, 2, Rounding::kCeil, 2},        // Go's rule
      {1.5, 2, Rounding::kFloor, 1},       // golang/go#76835
      {1.5, 2, Rounding::kAuto, 2},        // auto starts at ceil
      {0.5, 2, Rounding::kFloor, 1},       // below one core: still one P
      {0.5, 2, Rounding::kCeil, 1},        //
      {64, 2, Rounding::kCeil, 2},         // above the machine
      {4, 2, Rounding::kFloor, 2},         // cpuset smaller than the quota
      {2.0, 8, Rounding::kCeil, 2},        // whole cores stay whole
      {2.2 - 0.2, 8, Rounding::kCeil, 2},  // 2.0000000000000004: a reserve must not add a P
      {2.999999999, 8, Rounding::kFloor, 3},
      {kNaN, 4, Rounding::kCeil, 4},  // no quota: the CPUs
      {kInf, 4, Rounding::kCeil, 4},  // non-finite: unknown, not a number
      {-kInf, 4, Rounding::kFloor, 4},
      {-1, 4, Rounding::kCeil, 4},           // cgroup v1's "unlimited"
      {0, 4, Rounding::kCeil, 4},            // garbage: unknown
      {kNaN, 0, Rounding::kCeil, 0},         // nothing known: 0, the caller decides
      {3.5, 0, Rounding::kCeil, 4},          // CPUs unknown: the quota alone
      {1e300, 0, Rounding::kCeil, 1 << 20},  // no overflow
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(testing::Message() << "quota " << c.quota << " cpus " << c.cpus << " " << to_string(c.r));
    EXPECT_EQ(quota_procs(c.quota, c.cpus, c.r), c.want);
  }
}

TEST(Rounding, Parses) {
  EXPECT_EQ(*parse_rounding("ceil"), Rounding::kCeil);
  EXPECT_EQ(*parse_rounding("floor"), Rounding::kFloor);
  EXPECT_EQ(*parse_rounding("auto"), Rounding::kAuto);
  for (const char* bad : {"", "Ceil", "round", "ceil "}) {
    auto r = parse_rounding(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error(), std::errc::invalid_argument);
    EXPECT_NE(r.error().message().find("ceil, floor or auto"), std::string::npos) << r.error().message();
  }
  for (Rounding r : {Rounding::kCeil, Rounding::kFloor, Rounding::kAuto}) EXPECT_EQ(*parse_rounding(to_string(r)), r);
}

TEST(MakePolicy, NamesAndErrors) {
  for (const char* name : {"static", "quota", "threshold", "hill", "latency"}) {
    auto p = make_policy(name, {});
    ASSERT_TRUE(p) << name;
    EXPECT_EQ((*p)->name(), name);
    EXPECT_EQ((*p)->explain(), "");
  }
  auto bad = make_policy("magic", {});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error(), std::errc::invalid_argument);
  EXPECT_NE(bad.error().message().find("magic"), std::string::npos);
  EXPECT_NE(bad.error().message().find("static, quota, threshold, hill, latency"), std::string::npos);
  EXPECT_FALSE(make_policy("", {}));

  auto with = [](auto edit) {
    PolicyConfig c;
    edit(c);
    return bool(make_policy("quota", c));
  };
  EXPECT_FALSE(with([](PolicyConfig& c) { c.static_procs = -1; }));
  EXPECT_FALSE(with([](PolicyConfig& c) { c.threshold_low = 0.9; }));  // low above high
  EXPECT_FALSE(with([](PolicyConfig& c) { c.threshold_high = kNaN; }));
  EXPECT_FALSE(with([](PolicyConfig& c) { c.threshold_high = 1.5; }));
  EXPECT_FALSE(with([](PolicyConfig& c) { c.latency_target_s = 0; }));
  EXPECT_FALSE(with([](PolicyConfig& c) { c.latency_target_s = kInf; }));
  EXPECT_FALSE(with([](PolicyConfig& c) { c.throttled_ratio = 0; }));
  EXPECT_FALSE(with([](PolicyConfig& c) { c.hill_noise = kNaN; }));
  EXPECT_FALSE(with([](PolicyConfig& c) { c.hill_window = 0; }));
  EXPECT_TRUE(with([](PolicyConfig& c) { c.threshold_high = 1; }));
}

// --- One sample, every policy: the decision a fresh policy makes on its first tick. ---

struct Boundary {
  const char* what;
  std::function<void(Sample&)> edit;
  // Expected: static (static_procs 0, never reset: the sample's count), quota ceil / floor / auto, threshold, hill,
  // latency.
  int stat, ceil, floor, autor, threshold, hill, latency;
};

TEST(Policies, BoundarySamples) {
  const Boundary cases[] = {
      {"plain", [](Sample&) {}, 2, 2, 2, 2, 2, 2, 2},
      {"all zero",
       [](Sample& s) {
         s = Sample{};
         s.procs = s.procs_min = s.procs_max = s.cpus = 0;
         s.quota_cores = s.utilization = s.throughput = s.sched_latency_p99_s = s.throttled_ratio = s.cpu_cores = 0;
       },
       1, 1, 1, 1, 1, 1, 1},
      {"NaN everywhere",
       [](Sample& s) {
         s.interval_s = s.quota_cores = s.utilization = s.throughput = s.throttled_ratio = kNaN;
         s.sched_latency_p99_s = s.oldest_runnable_s = s.cpu_cores = s.busy_s = kNaN;
       },
       2, 2, 2, 2, 2, 2, 2},
      {"+Inf everywhere",
       [](Sample& s) {
         s.interval_s = s.quota_cores = s.utilization = s.throughput = s.throttled_ratio = kInf;
         s.sched_latency_p99_s = s.oldest_runnable_s = s.cpu_cores = kInf;
       },
       2, 2, 2, 2, 2, 2, 2},
      {"-Inf everywhere",
       [](Sample& s) {
         s.interval_s = s.quota_cores = s.utilization = s.throughput = s.throttled_ratio = -kInf;
         s.sched_latency_p99_s = s.oldest_runnable_s = s.cpu_cores = -kInf;
       },
       2, 2, 2, 2, 2, 2, 2},
      {"negative counts",
       [](Sample& s) {
         s.procs = -3;
         s.procs_max = -1;
         s.cpus = -1;
         s.idle_procs = -5;
         s.utilization = -0.5;  // below low: threshold would halve, but max is unknown, so it is the count (1)
       },
       1, 1, 1, 1, 1, 1, 1},
      {"no quota, 4 CPUs, busy",
       [](Sample& s) {
         s.procs_max = s.cpus = 4;
         s.utilization = 0.9;
       },
       2, 4, 4, 4, 4, 2, 2},
      {"quota below one core (0.5)",
       [](Sample& s) {
         s.quota_cores = 0.5;
         s.procs = s.procs_max = 1;
       },
       1, 1, 1, 1, 1, 1, 1},
      {"quota above the machine (64 on 2)", [](Sample& s) { s.quota_cores = 64; }, 2, 2, 2, 2, 2, 2, 2},
      {"quota 1.5 on 2", [](Sample& s) { s.quota_cores = 1.5; }, 2, 2, 1, 2, 2, 2, 2},
      {"period 0 (garbage quota: NaN)", [](Sample& s) { s.quota_cores = kNaN; }, 2, 2, 2, 2, 2, 2, 2},
      {"cgroup v1 unlimited (-1)", [](Sample& s) { s.quota_cores = -1; }, 2, 2, 2, 2, 2, 2, 2},
      {"quota 0", [](Sample& s) { s.quota_cores = 0; }, 2, 2, 2, 2, 2, 2, 2},
      {"cpuset smaller than quota (4 on 2)", [](Sample& s) { s.quota_cores = 4; }, 2, 2, 2, 2, 2, 2, 2},
      {"CPUs unknown, quota 3, procs_max 8",
       [](Sample& s) {
         s.cpus = 0;
         s.procs_max = 8;
         s.quota_cores = 3;
       },
       2, 3, 3, 3, 2, 2, 2},
      {"CPUs unknown, no quota, procs_max 6",
       [](Sample& s) {
         s.cpus = 0;
         s.procs_max = 6;
       },
       2, 6, 6, 6, 2, 2, 2},
      {"huge quota, nothing else known",
       [](Sample& s) {
         s.cpus = 0;
         s.procs_max = 0;
         s.quota_cores = 1e300;
       },
       2, 2, 2, 2, 2, 2, 2},
      {"throttling, quota 1.5: one tick is not a window",
       [](Sample& s) {
         s.quota_cores = 1.5;
         s.throttled_ratio = 0.9;
         s.periods = 1;
         s.throttled_periods = 1;
         s.utilization = 0.95;
       },
       2, 2, 1, 2, 2, 2, 2},
      {"busy, 1 of 4",
       [](Sample& s) {
         s.procs = 1;
         s.procs_max = s.cpus = 4;
         s.utilization = 0.9;
       },
       1, 4, 4, 4, 4, 1, 1},
      {"idle, 4 of 4",
       [](Sample& s) {
         s.procs = s.procs_max = s.cpus = 4;
         s.utilization = 0.1;
         s.idle_procs = 3;
       },
       4, 4, 4, 4, 2, 4, 4},
      {"p99 over target, quota left",
       [](Sample& s) {
         s.procs_max = s.cpus = 8;
         s.quota_cores = 4;
         s.sched_latency_p99_s = 0.005;
       },
       2, 4, 4, 4, 2, 2, 3},
      {"oldest runnable over target, p99 unknown",
       [](Sample& s) {
         s.procs = 4;
         s.procs_max = s.cpus = 16;
         s.oldest_runnable_s = 0.002;
       },
       4, 16, 16, 16, 4, 4, 6},
      {"p99 over target, no quota left",
       [](Sample& s) {
         s.procs = s.procs_max = 4;
         s.cpus = 8;
         s.quota_cores = 4;
         s.sched_latency_p99_s = 0.005;
       },
       4, 4, 4, 4, 4, 4, 4},
      {"above the quota ceiling (quota cut)",
       [](Sample& s) {
         s.procs = 8;
         s.procs_max = 2;
         s.cpus = 8;
         s.quota_cores = 2;
       },
       8, 2, 2, 2, 8, 2, 2},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    Sample s = sample();
    c.edit(s);
    PolicyConfig ceil, floor, autor;
    ceil.rounding = Rounding::kCeil;
    floor.rounding = Rounding::kFloor;
    autor.rounding = Rounding::kAuto;
    const struct {
      const char* name;
      PolicyConfig cfg;
      int want;
    } runs[] = {{"static", {}, c.stat},    {"quota", ceil, c.ceil},        {"quota", floor, c.floor},
                {"quota", autor, c.autor}, {"threshold", {}, c.threshold}, {"hill", {}, c.hill},
                {"latency", {}, c.latency}};
    for (const auto& r : runs) {
      auto p = make(r.name, r.cfg);
      const int got = p->decide(s);
      EXPECT_EQ(got, r.want) << r.name << " (" << to_string(r.cfg.rounding) << "): " << p->explain();
      EXPECT_GE(got, 1);
      EXPECT_EQ(p->decide(s), got) << r.name << ": a second identical sample changes nothing at once";
      EXPECT_FALSE(p->explain().empty()) << r.name;
    }
  }
}

TEST(StaticPolicy, FixedOrCountAtStart) {
  PolicyConfig c;
  c.static_procs = 3;
  auto p = make("static", c);
  Sample s = sample();
  EXPECT_EQ(p->decide(s), 3);
  s.procs = 7;
  EXPECT_EQ(p->decide(s), 3);
  auto z = make("static");
  z->reset(5);
  EXPECT_EQ(z->decide(s), 5);  // 0: the count given at start, whatever runs now
}

TEST(ThresholdPolicy, PublishedRule) {
  struct {
    int procs, max;
    double util;
    int want;
  } cases[] = {
      {2, 8, 0.86, 8}, {2, 8, 0.85, 2},  // strictly above 85%
      {8, 8, 0.95, 8},                   // already at max
      {8, 8, 0.29, 4}, {8, 8, 0.30, 8},  // strictly below 30%
      {4, 8, 0.10, 4},                   // not above max/2: keep
      {3, 3, 0.10, 1},                   // max/2 rounds down, at least 1
      {1, 1, 0.10, 1}, {5, 8, 0.5, 5},  {2, 8, kNaN, 2}, {2, 8, kInf, 2},
  };
  for (const auto& c : cases) {
    auto p = make("threshold");
    Sample s = sample();
    s.procs = c.procs;
    s.procs_max = s.cpus = c.max;
    s.utilization = c.util;
    EXPECT_EQ(p->decide(s), c.want) << c.procs << "/" << c.max << " at " << c.util << ": " << p->explain();
  }
}

// --- Sequences: a simulated machine around a policy. The policy is a pure function of the samples, so a model of
// throughput, utilization, throttling and latency as functions of the count is a complete test bench. ---

struct Model {
  std::function<double(int)> throughput = [](int) { return 1000.0; };
  std::function<double(int)> utilization = [](int) { return 0.95; };
  std::function<double(int)> throttled = [](int) { return 0.0; };
  std::function<double(int)> p99 = [](int) { return kNaN; };
  std::function<int(int)> idle = [](int) { return 0; };
  double noise = 0.02;  // +- this fraction, uniformly, deterministic
  double quota = kNaN;
  int cpus = 16, procs_max = 16;
};

// Runs `p` for `ticks` from `procs`. Like the controller (runtime/controller/controller.cc), it clamps the target to
// [1, procs_max]; with `confirm`, it also applies a change only when asked in the same direction twice in a row and
// refuses to reverse the last change within 10 ticks (kReversalHoldNs at 100 ms). Returns the count at each tick.
class Bench {
 public:
  explicit Bench(Model m, bool confirm = false) : m_(std::move(m)), confirm_(confirm) {}
  Model& model() { return m_; }
  int procs = 1;

  std::vector<int> run(Policy& p, int ticks) {
    std::vector<int> counts;
    for (int i = 0; i < ticks; i++, now_++) {
      Sample s;
      s.interval_s = 0.1;
      s.procs = procs;
      s.procs_max = m_.procs_max;
      s.cpus = m_.cpus;
      s.quota_cores = m_.quota;
      s.utilization = m_.utilization(procs);
      s.throttled_ratio = m_.throttled(procs);
      s.periods = 1;
      s.throttled_periods = s.throttled_ratio >= 0.5 ? 1 : 0;
      s.sched_latency_p99_s = m_.p99(procs);
      s.idle_procs = m_.idle(procs);
      rng_ = rng_ * 6364136223846793005ULL + 1442695040888963407ULL;
      const double u = static_cast<double>(rng_ >> 11) / static_cast<double>(1ULL << 53) * 2 - 1;
      s.throughput = m_.throughput(procs) * (1 + m_.noise * u);
      counts.push_back(procs);
      apply(std::clamp(p.decide(s), 1, m_.procs_max));
    }
    return counts;
  }

 private:
  void apply(int target) {
    const int dir = target > procs ? 1 : target < procs ? -1 : 0;
    if (dir == 0) {
      pending_ = 0;
      return;
    }
    if (confirm_) {
      const bool confirmed = pending_ == dir;
      pending_ = dir;
      if (!confirmed) return;
      if (last_dir_ == -dir && now_ - last_change_ < 10) return;
    }
    pending_ = 0;
    last_dir_ = dir;
    last_change_ = now_;
    procs = target;
  }

  Model m_;
  bool confirm_;
  uint64_t rng_ = 42;
  int pending_ = 0, last_dir_ = 0;
  int64_t now_ = 0, last_change_ = -100;
};

// The lengths of the runs of equal counts: {2,2,1,1,1,2} -> {{2,2},{1,3},{2,1}}.
std::vector<std::pair<int, int>> runs(const std::vector<int>& counts) {
  std::vector<std::pair<int, int>> r;
  for (int c : counts) {
    if (r.empty() || r.back().first != c) r.push_back({c, 0});
    r.back().second++;
  }
  return r;
}

TEST(QuotaPolicy, AutoRoundingStepsDownUnderThrottlingAndBackUp) {
  Model m;
  m.quota = 1.5;
  m.cpus = m.procs_max = 2;
  bool throttles = true;  // whether 2 Ps throttle (the load is there)
  m.throttled = [&](int p) { return p >= 2 && throttles ? 0.6 : 0.0; };
  m.utilization = [](int) { return 0.95; };
  PolicyConfig c;
  c.rounding = Rounding::kAuto;
  auto p = make("quota", c);
  Bench b(m);
  b.procs = 2;
  // Starts at ceil; one window of throttling under load: floor; at floor nothing throttles (the load is capped), and
  // after kAutoCleanTicks it tries ceil again; that still throttles: back to floor within a window, and the next try
  // waits twice as long.
  auto r = runs(b.run(*p, kAutoWindow + kAutoCleanTicks + kAutoWindow + 2 * kAutoCleanTicks + 1));
  const std::vector<std::pair<int, int>> want = {
      {2, kAutoWindow}, {1, kAutoCleanTicks}, {2, kAutoWindow}, {1, 2 * kAutoCleanTicks}, {2, 1}};
  EXPECT_EQ(r, want) << p->explain();

  // The load stopped throttling at 2: it stays at ceil, and a step up that held resets the wait.
  throttles = false;
  auto counts = b.run(*p, 100);
  EXPECT_TRUE(std::all_of(counts.begin(), counts.end(), [](int n) { return n == 2; })) << p->explain();
  throttles = true;
  r = runs(b.run(*p, kAutoWindow + kAutoCleanTicks + 1));
  ASSERT_GE(r.size(), 2u);
  EXPECT_EQ(r[0].first, 2);
  EXPECT_LE(r[0].second, kAutoWindow);  // the window in progress completes
  EXPECT_EQ(r[1], (std::pair<int, int>{1, kAutoCleanTicks})) << p->explain();
}

TEST(QuotaPolicy, AutoRoundingHoldsWithoutLoadOrMeasurement) {
  Model m;
  m.quota = 1.5;
  m.cpus = m.procs_max = 2;
  m.throttled = [](int) { return 0.6; };
  PolicyConfig c;
  c.rounding = Rounding::kAuto;
  {  // Throttling without load (utilization low: threads without a P use the quota): no step.
    auto p = make("quota", c);
    Bench b(m);
    b.procs = 2;
    b.model().utilization = [](int) { return 0.2; };
    auto counts = b.run(*p, 50);
    EXPECT_TRUE(std::all_of(counts.begin(), counts.end(), [](int n) { return n == 2; })) << p->explain();
  }
  for (double ratio : {kNaN, kInf, -kInf}) {  // unknown throttling: hold, whichever count it holds
    auto p = make("quota", c);
    Bench b(m);
    b.procs = 2;
    b.model().throttled = [=](int) { return ratio; };
    auto counts = b.run(*p, 50);
    EXPECT_TRUE(std::all_of(counts.begin(), counts.end(), [](int n) { return n == 2; })) << p->explain();
  }
  {  // A new quota starts over at its ceil: 3.0 cores is 3 whatever the throttling; 2.5 steps down to 2, no lower.
    auto p = make("quota", c);
    Bench b(m);
    b.procs = 2;
    b.run(*p, kAutoWindow + 1);
    EXPECT_EQ(b.procs, 1);
    b.model().quota = 3.0;
    b.model().cpus = b.model().procs_max = 4;
    b.run(*p, 50);
    EXPECT_EQ(b.procs, 3) << p->explain();
    b.model().quota = 2.5;
    auto counts = b.run(*p, 50);
    EXPECT_EQ(runs(counts).front(), (std::pair<int, int>{3, kAutoWindow}));
    EXPECT_EQ(b.procs, 2) << p->explain();
  }
}

TEST(QuotaPolicy, CeilAndFloorFollowTheQuotaLive) {
  for (Rounding r : {Rounding::kCeil, Rounding::kFloor}) {
    PolicyConfig c;
    c.rounding = r;
    auto p = make("quota", c);
    Sample s = sample();
    s.cpus = s.procs_max = 8;
    const struct {
      double quota;
      int ceil, floor;
    } steps[] = {{0.5, 1, 1}, {2, 2, 2}, {1, 1, 1}, {2.5, 3, 2}, {kNaN, 8, 8}, {100, 8, 8}};
    for (const auto& st : steps) {
      s.quota_cores = st.quota;
      EXPECT_EQ(p->decide(s), r == Rounding::kCeil ? st.ceil : st.floor) << st.quota << " " << to_string(r);
    }
  }
}

// Hill: f(p) = p * e^(-p/peak) peaks at `peak` (flat near it: f(peak +- 1) is within 2% of the best).
std::function<double(int)> curve(double peak, double scale = 1000) {
  return [=](int p) { return scale * p * std::exp(-p / peak); };
}

double best_of(const std::function<double(int)>& f, int max) {
  double best = 0;
  for (int p = 1; p <= max; p++) best = std::max(best, f(p));
  return best;
}

// The first tick at which the count's true throughput is within 95% of the best; -1 if never.
int reached(const std::vector<int>& counts, const std::function<double(int)>& f, int max) {
  const double best = best_of(f, max);
  for (size_t i = 0; i < counts.size(); i++)
    if (f(counts[i]) >= 0.95 * best) return static_cast<int>(i);
  return -1;
}

// The mean true throughput over counts[from..], relative to the best.
double efficiency(const std::vector<int>& counts, const std::function<double(int)>& f, int max, size_t from) {
  double sum = 0;
  for (size_t i = from; i < counts.size(); i++) sum += f(counts[i]);
  return sum / static_cast<double>(counts.size() - from) / best_of(f, max);
}

TEST(HillPolicy, ReachesThePeakFromBelowAndAbove) {
  for (bool confirm : {false, true}) {
    for (int start : {1, 16}) {
      SCOPED_TRACE(testing::Message() << "from " << start << (confirm ? ", with the controller's hysteresis" : ""));
      Model m;
      m.throughput = curve(6);
      Bench b(m, confirm);
      b.procs = start;
      auto p = make("hill");
      auto counts = b.run(*p, 200);
      const int at = reached(counts, m.throughput, 16);
      std::string path;
      for (size_t i = 0; i < 60; i++) path += std::to_string(counts[i]) + " ";
      EXPECT_GE(at, 0) << path;
      EXPECT_LT(at, 50) << path;  // 5 s at 100 ms ticks
      EXPECT_GE(efficiency(counts, m.throughput, 16, 50), 0.95) << path << "... " << p->explain();
    }
  }
}

std::string path(const std::vector<int>& counts, size_t n = 80) {
  std::string s;
  for (size_t i = 0; i < std::min(n, counts.size()); i++) s += std::to_string(counts[i]) + " ";
  return s;
}

TEST(HillPolicy, FlatCurveDriftsDown) {
  for (bool confirm : {false, true}) {
    Model m;  // throughput 1000/s whatever the count: the extra processors buy nothing
    Bench b(m, confirm);
    b.procs = 16;
    auto p = make("hill");
    auto counts = b.run(*p, 100);
    EXPECT_LE(b.procs, 2) << path(counts) << p->explain();
    EXPECT_LT(std::find(counts.begin(), counts.end(), 1) - counts.begin(), 50) << path(counts);
  }
}

TEST(HillPolicy, ReconvergesAfterAStepInLoad) {
  for (bool confirm : {false, true}) {
    SCOPED_TRACE(confirm ? "with the controller's hysteresis" : "policy alone");
    bool stepped = false;
    Model m;
    m.throughput = [&](int p) { return stepped ? curve(12, 1500)(p) : curve(4)(p); };
    Bench b(m, confirm);
    b.procs = 1;
    auto p = make("hill");
    auto before = b.run(*p, 100);
    EXPECT_GE(curve(4)(b.procs), 0.95 * best_of(curve(4), 16)) << path(before);
    stepped = true;  // more load, where more processors pay: the peak moves from 4 to 12
    auto after = b.run(*p, 150);
    const int at = reached(after, curve(12, 1500), 16);
    EXPECT_GE(at, 0) << path(after);
    EXPECT_LT(at, 50) << path(after);
    EXPECT_GE(efficiency(after, curve(12, 1500), 16, 50), 0.93) << path(after) << p->explain();
    stepped = false;  // and back: it comes down again
    auto down = b.run(*p, 150);
    const int back = reached(down, curve(4), 16);
    EXPECT_GE(back, 0) << path(down);
    EXPECT_LT(back, 50) << path(down);
    EXPECT_LE(b.procs, 6) << path(down);
  }
}

TEST(HillPolicy, ComesDownWhenTheLoadDrops) {
  // Demand-limited: 300/s of work whatever the count once 2 processors carry it; the Ps sit mostly idle.
  Model m;
  m.throughput = [](int p) { return std::min(300.0, 200.0 * p); };
  m.utilization = [](int p) { return std::min(1.0, 1.5 / p); };
  Bench b(m, true);
  b.procs = 12;
  auto p = make("hill");
  auto counts = b.run(*p, 60);
  EXPECT_EQ(b.procs, 2) << path(counts) << p->explain();
}

TEST(HillPolicy, RespectsThrottlingAndTheQuota) {
  {  // Throttled: it never asks for more than it has, whatever the curve promises.
    Model m;
    m.throughput = [](int p) { return 100.0 * p; };
    m.throttled = [](int) { return 0.5; };
    Bench b(m);
    b.procs = 3;
    auto p = make("hill");
    auto counts = b.run(*p, 200);
    EXPECT_LE(*std::max_element(counts.begin(), counts.end()), 3) << path(counts);
  }
  {  // A quota of 3.5 cores: at most 4 (its ceiling), with procs_max 16 and a curve rising to 16.
    Model m;
    m.throughput = [](int p) { return 100.0 * p; };
    m.quota = 3.5;
    Bench b(m);
    b.procs = 1;
    auto p = make("hill");
    auto counts = b.run(*p, 200);
    EXPECT_LE(*std::max_element(counts.begin(), counts.end()), 4) << path(counts);
    EXPECT_EQ(b.procs, 4) << path(counts);
    b.model().quota = 2;  // cut: it follows at once
    counts = b.run(*p, 2);
    EXPECT_EQ(b.procs, 2) << p->explain();
  }
  {  // procs_max 5 likewise.
    Model m;
    m.throughput = [](int p) { return 100.0 * p; };
    m.procs_max = 5;
    Bench b(m);
    b.procs = 1;
    auto p = make("hill");
    auto counts = b.run(*p, 200);
    EXPECT_EQ(b.procs, 5) << path(counts);
  }
}

TEST(HillPolicy, UnknownThroughputHolds) {
  for (double t : {kNaN, kInf, -kInf, -1.0}) {
    Model m;
    m.throughput = [=](int) { return t; };
    Bench b(m);
    b.procs = 4;
    auto p = make("hill");
    auto counts = b.run(*p, 100);
    EXPECT_TRUE(std::all_of(counts.begin(), counts.end(), [](int n) { return n == 4; })) << path(counts);
  }
}

TEST(HillPolicy, RollbackOfAProbeCountsAsItsFailure) {
  auto p = make("hill");
  Sample s = sample();
  s.procs = 4;
  s.procs_max = s.cpus = 16;
  s.utilization = 0.95;
  int t = 0;
  for (int i = 0; i < 3; i++) t = p->decide(s);  // one window at 4: probe up
  ASSERT_EQ(t, 5) << p->explain();
  p->reset(4);  // the controller rolled the probe back
  EXPECT_NE(p->decide(s), 5) << p->explain();
  p->reset(9);  // a count of its own: start over there, measuring
  s.procs = 9;
  EXPECT_EQ(p->decide(s), 9) << p->explain();
}

TEST(LatencyPolicy, GrowsToTheQuotaAndShrinksWhenIdle) {
  bool loaded = true;
  Model m;
  m.quota = 6;
  m.p99 = [&](int p) { return loaded ? 0.008 / p : 0.0001; };  // 8 ms of queueing at 1 P, under 1 ms only past 8
  m.idle = [&](int p) { return loaded ? 0 : p - 1; };
  for (bool confirm : {false, true}) {
    SCOPED_TRACE(confirm ? "with the controller's hysteresis" : "policy alone");
    loaded = true;
    Bench b(m, confirm);
    b.procs = 1;
    auto p = make("latency");
    auto up = b.run(*p, 30);
    EXPECT_EQ(b.procs, 6) << path(up) << p->explain();  // the quota's ceiling, though p99 is still over target
    const int grow = static_cast<int>(std::find(up.begin(), up.end(), 6) - up.begin());
    EXPECT_LE(grow, confirm ? 10 : 5) << path(up);
    loaded = false;
    auto down = b.run(*p, 100);
    EXPECT_EQ(b.procs, 1) << path(down) << p->explain();
    const int shrink = static_cast<int>(std::find(down.begin(), down.end(), 1) - down.begin());
    EXPECT_GE(shrink, 5 * kLatencyIdleTicks) << path(down);  // one at a time: slower down than up
  }
}

TEST(LatencyPolicy, DeadBandHolds) {
  auto p = make("latency");
  Sample s = sample();
  s.procs = 4;
  s.procs_max = s.cpus = 8;
  s.idle_procs = 2;
  s.sched_latency_p99_s = 0.0007;  // under target, over target/2: neither grow nor shrink
  for (int i = 0; i < 50; i++) ASSERT_EQ(p->decide(s), 4) << p->explain();
  s.sched_latency_p99_s = 0.0002;
  int t = 4;
  for (int i = 0; i < kLatencyIdleTicks; i++) t = p->decide(s);
  EXPECT_EQ(t, 3) << p->explain();
  s.sched_latency_p99_s = kNaN;  // no samples: no latency to speak of; idleness decides
  s.oldest_runnable_s = 0.0009;  // but the oldest waiter is in the band: hold
  EXPECT_EQ(p->decide(s), 4) << p->explain();
}

}  // namespace
}  // namespace tern::controller
