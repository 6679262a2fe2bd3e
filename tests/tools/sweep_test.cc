// tests/tools/sweep_test.cc: tern-sweep: the USL fit recovers the parameters of synthetic data (exact and noisy), the
// knees of synthetic ladders (with refinement narrowing the 95% knee), degenerate input as errors, the parsers of the
// programs it runs, and the program end to end: a two-step sweep of a real tern-echo writes its report, JSON and plots,
// a running server can be swept, and bad flags are named with exit status 2.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "tests/support/process.h"
#include "tools/sweep/analysis.h"
#include "tools/sweep/report.h"
#include "tools/sweep/run.h"

namespace tern::sweep {
namespace {

namespace fs = std::filesystem;

double usl(double l, double s, double k, double n) {
  return l * n / (1 + s * (n - 1) + k * n * (n - 1));
}

std::vector<std::pair<double, double>> usl_points(double l, double s, double k, double noise, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> g(0, noise);
  std::vector<std::pair<double, double>> pts;
  for (double n = 1; n <= 1024; n *= 2) pts.emplace_back(n, usl(l, s, k, n) * (1 + (noise > 0 ? g(rng) : 0)));
  return pts;
}

TEST(SweepUsl, RecoversExactParameters) {
  auto f = fit_usl(usl_points(1000, 0.05, 1e-4, 0, 1));
  ASSERT_TRUE(f) << f.error().message();
  EXPECT_NEAR(f->lambda, 1000, 1e-3);
  EXPECT_NEAR(f->sigma, 0.05, 1e-6);
  EXPECT_NEAR(f->kappa, 1e-4, 1e-9);
  EXPECT_GT(f->r2, 0.999999);
  EXPECT_NEAR(f->n_star, std::sqrt(0.95 / 1e-4), 0.01);
  EXPECT_EQ(f->points, 11);
}

TEST(SweepUsl, RecoversParametersThroughNoise) {
  for (unsigned seed : {1u, 2u, 3u, 4u, 5u}) {
    auto f = fit_usl(usl_points(2000, 0.02, 2e-5, 0.02, seed));  // 2% noise on each point
    ASSERT_TRUE(f) << f.error().message();
    EXPECT_NEAR(f->lambda, 2000, 2000 * 0.1) << seed;
    EXPECT_NEAR(f->sigma, 0.02, 0.01) << seed;
    EXPECT_NEAR(f->kappa, 2e-5, 1e-5) << seed;
    EXPECT_NEAR(f->n_star, std::sqrt(0.98 / 2e-5), 0.25 * std::sqrt(0.98 / 2e-5)) << seed;
    EXPECT_GT(f->r2, 0.95) << seed;
  }
}

TEST(SweepUsl, NoCoherencyMeansNoPeak) {
  auto f = fit_usl(usl_points(500, 0.1, 0, 0, 1));  // Amdahl: rises toward λ/σ
  ASSERT_TRUE(f) << f.error().message();
  EXPECT_NEAR(f->lambda, 500, 0.01);
  EXPECT_NEAR(f->sigma, 0.1, 1e-6);
  EXPECT_EQ(f->kappa, 0);
  EXPECT_TRUE(std::isnan(f->n_star));
  EXPECT_NE(f->n_star_note.find("κ = 0"), std::string::npos) << f->n_star_note;

  auto lin = fit_usl({{1, 100}, {2, 200}, {4, 400}, {8, 800}});  // linear: no contention at all
  ASSERT_TRUE(lin) << lin.error().message();
  EXPECT_NEAR(lin->lambda, 100, 1e-6);
  EXPECT_NEAR(lin->sigma, 0, 1e-9);
  EXPECT_EQ(lin->kappa, 0);
}

TEST(SweepUsl, DegenerateInputIsAnError) {
  EXPECT_FALSE(fit_usl({}));
  auto two = fit_usl({{1, 10}, {2, 20}});
  ASSERT_FALSE(two);
  EXPECT_NE(two.error().message().find("at least 3"), std::string::npos) << two.error().message();
  EXPECT_FALSE(fit_usl({{1, 10}, {1, 11}, {1, 12}}));  // one distinct N
  auto nan = fit_usl({{1, 10}, {2, NAN}, {4, 30}});
  ASSERT_FALSE(nan);
  EXPECT_NE(nan.error().message().find("not finite"), std::string::npos) << nan.error().message();
  EXPECT_FALSE(fit_usl({{1, 0}, {2, 0}, {4, 0}}));
  EXPECT_FALSE(fit_usl({{0, 1}, {2, 2}, {4, 3}}));
  EXPECT_FALSE(fit_usl({{1, -1}, {2, 2}, {4, 3}}));
}

// A closed loop whose requests take R0 alone and X_max saturates the CPU: X = min(N / R0, X_max), and latency
// R = max(R0, N / X_max) (Little's law once saturated).
Step synthetic(int n, double r0 = 0.005, double xmax = 8000) {
  Step s;
  s.procs = 1;
  s.concurrency = n;
  s.throughput = std::min(n / r0, xmax);
  s.ok = static_cast<uint64_t>(s.throughput);
  s.elapsed_s = 1;
  const double r = std::max(r0, n / xmax);
  s.p50_s = r;
  s.p99_s = r * 1.1;
  s.p999_s = r * 1.2;
  return s;
}

std::vector<Step> ladder_of(std::initializer_list<int> ns) {
  std::vector<Step> v;
  for (int n : ns) v.push_back(synthetic(n));
  return v;
}

TEST(SweepKnee, BothKneesOfASyntheticLadder) {
  auto a = analyze(ladder_of({4096, 16, 32, 64, 128, 256, 512, 1024, 2048}), 0.1);  // any order
  ASSERT_TRUE(a) << a.error().message();
  EXPECT_EQ(a->peak_throughput, 8000);
  EXPECT_EQ(a->peak_concurrency, 64);  // the first to reach it
  // (b): 32 gives 6400/s, 64 gives 8000/s; the 95% line (7600) crossed at 32 + 1200/1600 * 32 = 56 on a straight
  // line between them (the true knee is 38: the doubling ladder cannot see the corner).
  ASSERT_TRUE(a->knee_95.found);
  EXPECT_EQ(a->knee_95.concurrency, 64);
  EXPECT_DOUBLE_EQ(a->knee_95.interpolated, 56);
  // (a): p99 = 1.1 N / 8000 <= 100 ms up to N = 727: the step 512.
  ASSERT_TRUE(a->knee_slo.found) << a->knee_slo.how;
  EXPECT_EQ(a->knee_slo.concurrency, 512);
  EXPECT_TRUE(a->usl) << a->usl.error().message();
  EXPECT_TRUE(a->problems.empty());

  // Refining puts steps between 32 and 64; with them the 95% line is crossed between 32 and 40: 38 exactly.
  const auto more = refine_points(*a, 3);
  EXPECT_EQ(more, (std::vector<int>{40, 48, 56}));
  auto steps = a->steps;
  for (int n : more) steps.push_back(synthetic(n));
  auto b = analyze(steps, 0.1);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->knee_95.concurrency, 40);
  EXPECT_DOUBLE_EQ(b->knee_95.interpolated, 38);
  EXPECT_TRUE(refine_points(*b, 0).empty());
}

TEST(SweepKnee, TheSloKneeNeedsLatencyAndFewErrors) {
  auto steps = ladder_of({16, 32, 64, 128, 256, 512});
  steps[4].errors["timeout"] = steps[4].ok / 10;  // N=256: 10% errors
  auto a = analyze(steps, 0.1);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->knee_slo.concurrency, 512);     // the highest, errors or not at 256
  steps[5].errors["read"] = steps[5].ok / 50;  // N=512: 2%
  a = analyze(steps, 0.1);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->knee_slo.concurrency, 128);
  a = analyze(steps, 0.001);  // an SLO below R0: no step meets it
  ASSERT_TRUE(a);
  EXPECT_FALSE(a->knee_slo.found);
  EXPECT_NE(a->knee_slo.how.find("no step"), std::string::npos);
  EXPECT_TRUE(a->knee_95.found);  // (b) does not depend on the SLO
}

TEST(SweepKnee, EdgesOfTheLadderAreSaid) {
  auto rising = analyze(ladder_of({2, 4, 8, 16}), 0.1);  // all below the knee: still rising
  ASSERT_TRUE(rising);
  EXPECT_EQ(rising->peak_concurrency, 16);
  ASSERT_FALSE(rising->problems.empty());
  EXPECT_NE(rising->problems[0].find("last step"), std::string::npos) << rising->problems[0];
  EXPECT_TRUE(rising->peak_at_end);
  EXPECT_TRUE(refine_points(*rising, 3).empty()) << "the knee lies beyond the ladder, not between its steps";
  // Highest at the last step, but by less than kPlateau over the one before: levelled off, not still rising.
  std::vector<Step> level = ladder_of({16, 32, 64, 128});
  level.back().throughput = level[2].throughput * 1.004;
  auto levelled = analyze(level, 0.1);
  ASSERT_TRUE(levelled);
  EXPECT_EQ(levelled->peak_concurrency, 128);
  EXPECT_FALSE(levelled->peak_at_end);
  EXPECT_TRUE(levelled->knee_95.found);
  auto flat = analyze(ladder_of({128, 256, 512}), 0.1);  // all past it: the knee is at or below the first step
  ASSERT_TRUE(flat);
  EXPECT_EQ(flat->knee_95.concurrency, 128);
  EXPECT_NE(flat->knee_95.how.find("at or below"), std::string::npos);
  EXPECT_TRUE(refine_points(*flat, 3).empty());
}

TEST(SweepKnee, DegenerateLaddersAreErrorsOrSaidNotCrashes) {
  EXPECT_FALSE(analyze({}, 0.1));
  EXPECT_FALSE(analyze(ladder_of({16, 32}), NAN));
  EXPECT_FALSE(analyze(ladder_of({16, 32}), -1));

  auto one = analyze(ladder_of({64}), 0.1);
  ASSERT_TRUE(one) << one.error().message();
  EXPECT_EQ(one->peak_concurrency, 64);
  EXPECT_FALSE(one->usl);
  ASSERT_FALSE(one->problems.empty());
  EXPECT_NE(one->problems[0].find("one step"), std::string::npos);

  auto failed = ladder_of({16, 32, 64});
  for (Step& s : failed) {
    s.throughput = 0, s.ok = 0, s.p50_s = s.p99_s = s.p999_s = NAN;
    s.errors["connect"] = 5;
  }
  auto all = analyze(failed, 0.1);
  ASSERT_FALSE(all);
  EXPECT_NE(all.error().message().find("every step failed"), std::string::npos) << all.error().message();

  auto some = ladder_of({16, 32, 64, 128, 256});
  some[1].throughput = NAN;
  some[2].throughput = 0, some[2].ok = 0, some[2].errors["connect"] = 64;
  auto a = analyze(some, 0.1);
  ASSERT_TRUE(a) << a.error().message();
  EXPECT_EQ(a->steps.size(), 4u);  // the NaN one left out, the failed one kept (it is a measurement)
  EXPECT_EQ(a->problems.size(), 2u);

  auto dup = ladder_of({16, 16, 32});
  EXPECT_FALSE(analyze(dup, 0.1));
}

TEST(SweepBounds, ClosedSystemBoundsAndWhereAMeasurementLies) {
  // R0 5 ms, X_max 8000/s (D = 125 us): the optimistic bound's corner, the knee, is at N* = 40.
  Bounds b = closed_bounds(8, 0.005, 8000, 1600);
  EXPECT_DOUBLE_EQ(b.optimistic, 1600);
  EXPECT_DOUBLE_EQ(b.pessimistic, 8 / (0.005 + 7 * 125e-6));
  EXPECT_DOUBLE_EQ(b.position, 1);
  b = closed_bounds(128, 0.005, 8000, 128 / (0.005 + 127 * 125e-6));  // a convoy: on the pessimistic bound
  EXPECT_DOUBLE_EQ(b.optimistic, 8000);
  EXPECT_NEAR(b.position, 0, 1e-12);
  b = closed_bounds(1, 0.005, 8000, 200);  // one request: the bounds coincide
  EXPECT_TRUE(std::isnan(b.position));
  EXPECT_TRUE(std::isnan(closed_bounds(8, NAN, 8000, 1).optimistic));
  EXPECT_TRUE(std::isnan(closed_bounds(8, 0.005, 0, 1).optimistic));
}

TEST(SweepRecommend, HighestPeakPerProcessorWithinFivePercentOfTheBest) {
  Ladder one, two;
  one.procs = 1, one.peak_throughput = 8000;
  two.procs = 2, two.peak_throughput = 8200;  // 8000 is within 95% of 8200: one processor does as well
  auto r = recommend({one, two});
  ASSERT_TRUE(r.found);
  EXPECT_EQ(r.procs, 1);
  two.peak_throughput = 15000;
  r = recommend({one, two});
  EXPECT_EQ(r.procs, 2);
  EXPECT_NE(r.how.find("per processor"), std::string::npos);
  EXPECT_FALSE(recommend({}).found);
}

TEST(SweepParse, ListsAndLadders) {
  auto c = parse_cpu_list("0,2-3,2");
  ASSERT_TRUE(c);
  EXPECT_EQ(*c, (std::vector<int>{0, 2, 3}));
  for (const char* bad : {"", "x", "3-1", "-1", "1,", "0-99999"}) EXPECT_FALSE(parse_cpu_list(bad)) << bad;
  auto l = parse_int_list("--ladder", "64,16,32,16");
  ASSERT_TRUE(l);
  EXPECT_EQ(*l, (std::vector<int>{16, 32, 64}));
  for (const char* bad : {"", "0", "-4", "16,,32", "1.5", "nan"}) {
    auto e = parse_int_list("--ladder", bad);
    ASSERT_FALSE(e) << bad;
    EXPECT_NE(e.error().message().find("--ladder"), std::string::npos);
  }
  EXPECT_EQ(doubling_ladder(16, 8192).size(), 10u);
  EXPECT_EQ(doubling_ladder(16, 100), (std::vector<int>{16, 32, 64, 100}));
  EXPECT_TRUE(doubling_ladder(8, 4).empty());
  EXPECT_EQ(wrk_seconds(0.5), 1);
  EXPECT_EQ(wrk_seconds(3), 3);
}

TEST(SweepParse, LoadGeneratorAndCapacityOutput) {
  auto t = parse_tern_load_json(R"({"ok": 300, "elapsed_s": 1.5, "throughput": 200, "errors": {"connect": 2},
      "latency": {"p50_s": 0.005, "p99_s": 0.009, "p99_9_s": 0.012}})");
  ASSERT_TRUE(t) << t.error().message();
  EXPECT_EQ(t->ok, 300u);
  EXPECT_EQ(t->throughput, 200);
  EXPECT_EQ(t->errors.at("connect"), 2u);
  EXPECT_EQ(t->p999_s, 0.012);
  EXPECT_FALSE(parse_tern_load_json("tern-load: connect refused"));
  EXPECT_FALSE(parse_tern_load_json(R"({"ok": 1})"));

  auto w = parse_wrk_done(
      "Running 1s test\nTERN_SWEEP_WRK {\"requests\":1000,\"duration_us\":2000000,\"connect\":0,\"read\":3,\"write\":0,"
      "\"status\":10,\"timeout\":1,\"p50_us\":5000,\"p99_us\":9000,\"p999_us\":12000}\n");
  ASSERT_TRUE(w) << w.error().message();
  EXPECT_EQ(w->ok, 990u);
  EXPECT_DOUBLE_EQ(w->throughput, 495);
  EXPECT_EQ(w->errors.size(), 3u);
  EXPECT_DOUBLE_EQ(w->p99_s, 0.009);
  EXPECT_FALSE(parse_wrk_done("Running 1s test\n  10 requests\n"));
  EXPECT_NE(wrk_lua_script().find("done = function"), std::string::npos);

  auto p = parse_capacity_json(R"({"n": 39, "binding": "cpu", "knee": {"predicted": 39.5, "predicted_95": 44,
      "x_max": 7800, "r0": 0.00506}, "probe": {"cpu_per_request_s": 0.000128}, "problems": ["x"]})");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->knee, 39.5);
  EXPECT_EQ(p->knee_95, 44);
  EXPECT_EQ(p->binding, "cpu");
  EXPECT_TRUE(p->error.empty());
  auto none = parse_capacity_json(R"({"n": 39, "binding": "cpu", "knee": {"predicted": null}})");
  ASSERT_TRUE(none);
  EXPECT_FALSE(none->error.empty());
  EXPECT_TRUE(std::isnan(none->knee_95));
  EXPECT_FALSE(parse_capacity_json("not json"));
}

// A scratch directory for one test's outputs, removed after.
struct TempDir {
  fs::path path;
  TempDir() {
    char t[] = "/tmp/tern-sweep-test.XXXXXX";
    path = mkdtemp(t);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

nlohmann::json read_json(const fs::path& p) {
  std::ifstream f(p);
  return nlohmann::json::parse(f, nullptr, false);
}

bool have_gnuplot() {
  return std::system("command -v gnuplot >/dev/null 2>&1") == 0;
}

TEST(TernSweep, ATwoStepSweepWritesItsReportPlotsAndJson) {
  TempDir dir;
  const auto t0 = std::chrono::steady_clock::now();
  test::Child sweep({TERN_SWEEP_BIN, "--ladder", "2,4", "--procs", "1", "--step-duration", "1s", "--warmup", "200ms",
                     "--refine", "0", "--path", "/mix?cpu_us=50&sleep_ms=2", "--out", dir.path.string()});
  const int st = sweep.wait();
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string out = sweep.output();
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << out;
  EXPECT_LT(took, 15) << out;
  EXPECT_NE(out.find("step 1 of 2 (procs 1, concurrency 2)"), std::string::npos) << out;
  EXPECT_NE(out.find("ETA"), std::string::npos) << out;
  EXPECT_NE(out.find("knee"), std::string::npos) << out;

  ASSERT_TRUE(fs::exists(dir.path / "report.md"));
  auto j = read_json(dir.path / "sweep.json");
  ASSERT_FALSE(j.is_discarded());
  ASSERT_EQ(j["runs"].size(), 1u);
  const auto& run = j["runs"][0];
  EXPECT_EQ(run["procs"], 1);
  ASSERT_EQ(run["steps"].size(), 2u) << run.dump(2);
  for (const auto& s : run["steps"]) {
    EXPECT_GT(s["throughput"].get<double>(), 0) << s.dump();
    EXPECT_GT(s["p99_s"].get<double>(), 0.002) << "every request sleeps 2 ms: " << s.dump();
    EXPECT_GT(s["server_cpu_per_request_s"].get<double>(), 0) << s.dump();
  }
  EXPECT_EQ(run["steps"][0]["concurrency"], 2);
  EXPECT_EQ(run["steps"][1]["concurrency"], 4);
  EXPECT_TRUE(run["prediction"]["knee"].is_number()) << run["prediction"].dump();
  EXPECT_TRUE(run["analysis"]["knee_95"]["found"].get<bool>());
  EXPECT_TRUE(run["comparison"]["error_pct"].is_number()) << run["comparison"].dump();
  std::ifstream rf(dir.path / "report.md");
  const std::string report((std::istreambuf_iterator<char>(rf)), std::istreambuf_iterator<char>());
  EXPECT_NE(report.find("predicted knee"), std::string::npos);
  EXPECT_NE(report.find("## How it was run"), std::string::npos);
  if (have_gnuplot()) {
    for (const char* png : {"throughput.png", "p99.png"}) {
      std::error_code ec;
      EXPECT_GT(fs::file_size(dir.path / png, ec), 1000u) << png << " " << j["plots_note"];
      EXPECT_NE(report.find(png), std::string::npos);
    }
  } else {
    EXPECT_NE(report.find("gnuplot is not installed"), std::string::npos);
  }
}

TEST(TernSweep, SweepsARunningServer) {
  const int port = test::free_port(), mport = test::free_port();
  test::Child server({TERN_ECHO_BIN, "--listen", "127.0.0.1:" + std::to_string(port), "--procs", "1", "--metrics",
                      "127.0.0.1:" + std::to_string(mport)});
  ASSERT_TRUE(test::wait_for_port(port));
  ASSERT_TRUE(test::wait_for_port(mport));
  TempDir dir;
  test::Child sweep({TERN_SWEEP_BIN, "--server", "127.0.0.1:" + std::to_string(port), "--metrics",
                     "127.0.0.1:" + std::to_string(mport), "--server-pid", std::to_string(server.pid()), "--ladder",
                     "1,2,4", "--step-duration", "500ms", "--warmup", "0", "--refine", "0", "--path",
                     "/mix?cpu_us=20&sleep_ms=1", "--out", dir.path.string()});
  const int st = sweep.wait();
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << sweep.output();
  auto j = read_json(dir.path / "sweep.json");
  ASSERT_FALSE(j.is_discarded());
  const auto& run = j["runs"][0];
  EXPECT_EQ(run["procs"], 1) << "from its metrics";
  ASSERT_EQ(run["steps"].size(), 3u);
  EXPECT_TRUE(run["analysis"]["usl"]["lambda"].is_number()) << run["analysis"].dump(2);
  EXPECT_NE(run["steps"][2]["server_cpu_source"].get<std::string>().find("metrics"), std::string::npos);
}

TEST(TernSweep, BadFlagsAreNamed) {
  const std::vector<std::vector<std::string>> cases = {
      {"--step-duration", "-1s"},   {"--step-duration", "nan"}, {"--warmup", "-5ms"}, {"--slo-ms", "nan"},
      {"--slo-ms", "-3"},           {"--ladder", ""},           {"--ladder", "16,x"}, {"--ladder-from", "-4"},
      {"--ladder-to", "0"},         {"--load", "ab"},           {"--procs", "0"},     {"--refine", "1.5"},
      {"--server-cpus", "3-1"},     {"--load-cpus", "x"},       {"--path", "mix"},    {"--server-bin", "/nonexistent"},
      {"--metrics", "127.0.0.1:1"}, {"--nice", "-21"},          {"--nice", "x"}};
  for (const auto& c : cases) {
    test::Child sweep({TERN_SWEEP_BIN, c[0], c[1], "--out", "/tmp/tern-sweep-badflag-never-written"});
    const int st = sweep.wait();
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 2) << c[0] << " " << c[1] << ": " << sweep.output();
    EXPECT_NE(sweep.output().find(c[0]), std::string::npos) << c[0] << " " << c[1] << ": " << sweep.output();
  }
  EXPECT_FALSE(fs::exists("/tmp/tern-sweep-badflag-never-written"));
  test::Child unknown({TERN_SWEEP_BIN, "--no-such-flag"});
  const int st = unknown.wait();
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 2) << unknown.output();
  EXPECT_NE(unknown.output().find("--no-such-flag"), std::string::npos) << unknown.output();
}

}  // namespace
}  // namespace tern::sweep
