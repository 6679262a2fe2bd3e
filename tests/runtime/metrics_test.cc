// Tests of runtime/metrics/metrics.h: the registry's sums are exact under concurrent increments from threads (some of
// which exit before the read) and from fibers that move between threads; histogram buckets; names; the exposition's
// escaping; and the runtime's figures fed from outside the scheduler (mutex wait, connections open).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "runtime/metrics/metrics.h"
#include "runtime/metrics/runtime_metrics.h"
#include "runtime/tern.h"

namespace {

using namespace std::chrono_literals;
namespace m = tern::metrics;

const m::Family* find(const m::Snapshot& s, const std::string& name) {
  for (const auto& f : s)
    if (f.name == name) return &f;
  return nullptr;
}

TEST(Metrics, CounterSumsExactlyOverThreadsThatComeAndGo) {
  m::Counter& c = *m::counter("test_thread_increments_total", "increments from threads").value();
  constexpr int kThreads = 8;
  constexpr uint64_t kEach = 200'000;
  std::vector<std::thread> ts;
  for (int i = 0; i < kThreads; i++) {
    ts.emplace_back([&c] {
      for (uint64_t j = 0; j < kEach; j++) c.inc();
    });
  }
  // Read while they run: never more than the total, and the final read after they exited (their shards retired)
  // is exact.
  EXPECT_LE(c.value(), kThreads * kEach);
  for (auto& t : ts) t.join();
  EXPECT_EQ(c.value(), kThreads * kEach);
  c.inc(5);
  EXPECT_EQ(c.value(), kThreads * kEach + 5);
}

TEST(Metrics, CounterSumsExactlyFromFibersThatMigrate) {
  m::Counter& c = *m::counter("test_fiber_increments_total").value();
  const uint64_t before = c.value();
  tern::Config cfg;
  cfg.procs = 4;
  tern::Runtime rt(cfg);
  constexpr int kFibers = 200;
  constexpr int kRounds = 500;
  rt.run([&] {
    tern::WaitGroup wg;
    for (int i = 0; i < kFibers; i++) {
      wg.add(1);
      tern::go([&] {
        for (int r = 0; r < kRounds; r++) {
          c.inc();
          tern::yield();  // resumes on whichever M runs it next: the next increment may land in another shard
        }
        wg.done();
      });
    }
    wg.wait();
  });
  EXPECT_EQ(c.value() - before, static_cast<uint64_t>(kFibers) * kRounds);
}

TEST(Metrics, GaugeAddsFromManyThreadsAndSets) {
  m::Gauge& g = *m::gauge("test_gauge_items").value();
  std::vector<std::thread> ts;
  for (int i = 0; i < 4; i++) {
    ts.emplace_back([&g] {
      for (int j = 0; j < 10'000; j++) g.add(1);
      for (int j = 0; j < 9'000; j++) g.add(-1);
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(g.value(), 4'000);
  g.set(0.5);
  EXPECT_EQ(g.value(), 4'000.5);
}

TEST(Metrics, HistogramBucketsAreCumulativeWithInclusiveUpperBounds) {
  m::Histogram& h = *m::histogram("test_hist_seconds", "a histogram", 1.0, 4).value();  // bounds 1, 2, 4, 8
  EXPECT_EQ(h.bound(0), 1.0);
  EXPECT_EQ(h.bound(3), 8.0);
  for (double v : {0.0, 1.0, 1.5, 2.0, 3.0, 8.0, 9.0, HUGE_VAL}) h.observe(v);
  h.observe(NAN);  // ignored
  const m::Snapshot s = m::snapshot();
  const m::Family* f = find(s, "test_hist_seconds");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(f->type, m::Type::kHistogram);
  const m::Series& se = f->series.at(0);
  ASSERT_EQ(se.buckets.size(), 5u);
  EXPECT_EQ(se.buckets[0], (std::pair<double, uint64_t>{1.0, 2}));  // 0, 1
  EXPECT_EQ(se.buckets[1], (std::pair<double, uint64_t>{2.0, 4}));  // 1.5, 2
  EXPECT_EQ(se.buckets[2], (std::pair<double, uint64_t>{4.0, 5}));  // 3
  EXPECT_EQ(se.buckets[3], (std::pair<double, uint64_t>{8.0, 6}));  // 8
  EXPECT_TRUE(std::isinf(se.buckets[4].first));
  EXPECT_EQ(se.buckets[4].second, 8u);  // 9, inf
  EXPECT_EQ(se.count, 8u);
  EXPECT_TRUE(std::isinf(se.sum));
  const std::string text = m::to_prometheus(s);
  EXPECT_NE(text.find("test_hist_seconds_bucket{le=\"2\"} 4\n"), std::string::npos) << text;
  EXPECT_NE(text.find("test_hist_seconds_bucket{le=\"+Inf\"} 8\n"), std::string::npos);
  EXPECT_NE(text.find("test_hist_seconds_count 8\n"), std::string::npos);
}

TEST(Metrics, HistogramSumIsExactAcrossThreads) {
  m::Histogram& h = *m::histogram("test_hist_sum_seconds").value();
  std::vector<std::thread> ts;
  for (int i = 0; i < 4; i++) {
    ts.emplace_back([&h] {
      for (int j = 0; j < 1000; j++) h.observe(0.25);  // exact in binary: the sum has no rounding
    });
  }
  for (auto& t : ts) t.join();
  const m::Snapshot snap = m::snapshot();
  const m::Family* f = find(snap, "test_hist_sum_seconds");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->series[0].count, 4000u);
  EXPECT_EQ(f->series[0].sum, 1000.0);
}

TEST(Metrics, NamesAreValidatedAndTypesKept) {
  EXPECT_FALSE(m::counter("bad name_total"));
  EXPECT_FALSE(m::counter("9starts_with_digit"));
  EXPECT_FALSE(m::counter(""));
  EXPECT_FALSE(m::histogram("test_bad_bounds", "", 0.0));
  EXPECT_FALSE(m::histogram("test_bad_bounds", "", 1.0, 0));
  EXPECT_FALSE(m::histogram("test_bad_bounds", "", 1.0, m::kMaxBuckets + 1));
  EXPECT_EQ(find(m::snapshot(), "test_bad_bounds"), nullptr);  // a refused registration registers nothing
  auto a = m::counter("test_same_total");
  auto b = m::counter("test_same_total");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(*a, *b);
  auto clash = m::gauge("test_same_total");
  ASSERT_FALSE(clash);
  EXPECT_NE(clash.error().message().find("another type"), std::string::npos);
}

TEST(Metrics, ExpositionEscapesHelpAndLabelValues) {
  m::Snapshot s;
  m::Family f;
  f.name = "test_escape";
  f.help = "a \\ backslash\nand a newline";
  f.type = m::Type::kGauge;
  m::Series se;
  se.labels = {{"v", "quote \" backslash \\ newline \n"}};
  se.value = 1.5;
  f.series.push_back(se);
  s.push_back(f);
  EXPECT_EQ(m::to_prometheus(s),
            "# HELP test_escape a \\\\ backslash\\nand a newline\n# TYPE test_escape gauge\n"
            "test_escape{v=\"quote \\\" backslash \\\\ newline \\n\"} 1.5\n");
}

TEST(Metrics, RuntimeFamiliesComeAndGoWithTheRuntime) {
  {
    tern::Runtime rt;
    EXPECT_NE(find(m::snapshot(), "tern_procs"), nullptr);
  }
  EXPECT_EQ(find(m::snapshot(), "tern_procs"), nullptr);  // the collector left with its runtime
}

tern::Config named(const std::string& name, int procs) {
  tern::Config cfg;
  cfg.name = name;
  cfg.procs = procs;
  return cfg;
}

// The series of a family whose first label is runtime=`runtime` and whose other labels are `rest`; null if none.
const m::Series* series_of(const m::Family* f, const std::string& runtime, const m::Labels& rest = {}) {
  if (f == nullptr) return nullptr;
  m::Labels want = rest;
  want.insert(want.begin(), {"runtime", runtime});
  for (const auto& s : f->series)
    if (s.labels == want) return &s;
  return nullptr;
}

TEST(Metrics, SeveralRuntimesAreLabelledByName) {
  tern::Runtime io(named("io", 1));
  {
    tern::Runtime cpu(named("cpu", 2));
    EXPECT_EQ(cpu.metrics_label(), "cpu");
    const m::Snapshot s = m::snapshot();
    const m::Family* procs = find(s, "tern_procs");
    ASSERT_NE(procs, nullptr);
    ASSERT_EQ(procs->series.size(), 2u);
    ASSERT_NE(series_of(procs, "io"), nullptr);
    ASSERT_NE(series_of(procs, "cpu"), nullptr);
    EXPECT_EQ(series_of(procs, "io")->value, 1);
    EXPECT_EQ(series_of(procs, "cpu")->value, 2);
    // Per-P families keep their own labels after the runtime's; each runtime has its own P 0.
    const m::Family* runq = find(s, "tern_runq_length");
    EXPECT_NE(series_of(runq, "io", {{"p", "0"}}), nullptr);
    EXPECT_NE(series_of(runq, "cpu", {{"p", "1"}}), nullptr);
    EXPECT_EQ(series_of(runq, "io", {{"p", "1"}}), nullptr);
    // Figures of the process appear once, unlabelled.
    for (const char* name : {"process_cpu_seconds_total", "tern_fds_open", "tern_mutex_wait_seconds_total"}) {
      const m::Family* f = find(s, name);
      ASSERT_NE(f, nullptr) << name;
      ASSERT_EQ(f->series.size(), 1u) << name;
      EXPECT_TRUE(f->series[0].labels.empty()) << name;
    }
    // Every family name appears once (the exposition format requires a family's series together).
    for (size_t i = 0; i < s.size(); i++) {
      for (size_t j = i + 1; j < s.size(); j++) EXPECT_NE(s[i].name, s[j].name);
    }
    const std::string text = m::to_prometheus(s);
    EXPECT_NE(text.find("tern_procs{runtime=\"cpu\"} 2\n"), std::string::npos) << text;
    EXPECT_NE(text.find("tern_proc_busy_seconds_total{runtime=\"io\",p=\"0\"}"), std::string::npos);
  }
  // Alone again: the figures are unlabelled, as in a process with one runtime.
  const m::Snapshot s = m::snapshot();
  const m::Family* procs = find(s, "tern_procs");
  ASSERT_NE(procs, nullptr);
  ASSERT_EQ(procs->series.size(), 1u);
  EXPECT_TRUE(procs->series[0].labels.empty());
  EXPECT_EQ(procs->series[0].value, 1);
}

TEST(Metrics, RuntimesOfOneNameGetDistinctLabels) {
  tern::Runtime a(named("pool", 1)), b(named("pool", 1));
  EXPECT_EQ(a.metrics_label(), "pool");
  EXPECT_NE(b.metrics_label(), "pool");
  EXPECT_EQ(b.metrics_label().rfind("pool-", 0), 0u) << b.metrics_label();
  const m::Snapshot s = m::snapshot();
  const m::Family* procs = find(s, "tern_procs");
  EXPECT_NE(series_of(procs, a.metrics_label()), nullptr);
  EXPECT_NE(series_of(procs, b.metrics_label()), nullptr);
}

TEST(Metrics, MergingOneRuntimeChangesNothing) {
  m::Snapshot one;
  m::Family f;
  f.name = "tern_procs";
  f.series.push_back({});
  one.push_back(f);
  const m::Snapshot merged = m::merged_runtimes({{"main", one}});
  ASSERT_EQ(merged.size(), 1u);
  EXPECT_TRUE(merged[0].series[0].labels.empty());
}

double value_of(const std::string& name) {
  const m::Snapshot s = m::snapshot();
  const m::Family* f = find(s, name);
  return f == nullptr || f->series.empty() ? NAN : f->series[0].value;
}

TEST(Metrics, MutexWaitCountsOnlyContendedTime) {
  tern::Config cfg;
  cfg.procs = 2;
  tern::Runtime rt(cfg);
  const double before = value_of("tern_mutex_wait_seconds_total");
  rt.run([] {
    tern::Mutex mu;
    for (int i = 0; i < 100; i++) {  // uncontended: nothing to count
      mu.lock();
      mu.unlock();
    }
  });
  EXPECT_EQ(value_of("tern_mutex_wait_seconds_total"), before);
  rt.run([] {
    tern::Mutex mu;
    mu.lock();
    tern::WaitGroup wg;
    wg.add(1);
    tern::go([&] {
      mu.lock();  // waits about 50 ms
      mu.unlock();
      wg.done();
    });
    tern::sleep_for(50ms);
    mu.unlock();
    wg.wait();
  });
  const double waited = value_of("tern_mutex_wait_seconds_total") - before;
  EXPECT_GE(waited, 0.03);
  EXPECT_LT(waited, 10.0);
}

TEST(Metrics, ConnectionsOpenFollowStreams) {
  tern::Runtime rt;
  const double before = value_of("tern_connections_open");
  rt.run([&] {
    auto l = tern::net::listen("127.0.0.1:0");
    ASSERT_TRUE(l);
    auto c = tern::net::dial(l->local_addr());
    ASSERT_TRUE(c);
    auto s = l->accept();
    ASSERT_TRUE(s);
    EXPECT_EQ(value_of("tern_connections_open") - before, 2);
    c->close();
    s->close();
    EXPECT_EQ(value_of("tern_connections_open") - before, 0);
  });
}

}  // namespace
