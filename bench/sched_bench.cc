// bench/sched_bench.cc: scheduler benchmarks (part of build/bin/tern-bench, which links benchmark_main).
//
//   build/bin/tern-bench --benchmark_filter=BM_Sched
//
// Each benchmark function creates its own Runtime and runs the timed loop inside rt.run(), i.e. in a fiber, except
// BM_SchedSpawnManyRemote, whose point is spawning from a plain thread. Times are wall-clock (UseRealTime): the loop
// runs on a runtime thread, not on the thread Google Benchmark measures CPU time on.
//
//   BM_SchedSpawnJoin          tern::spawn + JoinHandle::join, one fiber at a time
//   BM_SchedSpawnManyCounter   spawn N fibers, join them through one counter (amortized cost per fiber)
//   BM_SchedYieldRoundTrip     one fiber yielding on one P: out to the scheduler and back
//   BM_SchedSpawnManyLocal     Tokio's rt_multi_threaded set: spawn many from inside the runtime,
//   BM_SchedSpawnManyRemote      ... from outside (a plain thread calling Runtime::go),
//   BM_SchedYieldMany            ... many fibers each yielding many times,
//   BM_SchedChainedSpawn         ... each fiber spawning the next
//   BM_SchedWakeWide           N fibers parked ~1 KiB deep (as a connection fiber parks) woken at once: the cost of
//                              resuming fibers whose stacks have left the cache
//   BM_SchedIdleCpu            CPU the whole process burns while its only fiber sleeps (idle_cpu_pct; target < 1)
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

#include "runtime/config.h"
#include "runtime/go.h"
#include "runtime/runtime.h"
#include "runtime/sync/waiter.h"

namespace {

// Sizes of Tokio's benches/rt_multi_threaded.rs, so the figures can be set beside Tokio's.
constexpr int kTokioSpawnCount = 10'000;  // NUM_SPAWN
constexpr int kTokioYieldCount = 1'000;   // NUM_YIELD
constexpr int kTokioTasksPerProc = 50;    // TASKS_PER_CPU
constexpr int kTokioChainLength = 1'000;  // ITER in chained_spawn
// Long enough that start-up and the first monitor periods are noise next to it.
constexpr int kIdleSeconds = 5;

// The environment's configuration (TERN_PROCS, ...) with `procs` forced when positive; skips the benchmark when the
// environment is malformed.
std::optional<tern::Config> sched_bench_config(benchmark::State& state, int procs = 0) {
  auto cfg = tern::Config::from_env();
  if (!cfg) {
    state.SkipWithError(cfg.error().message().c_str());
    return std::nullopt;
  }
  if (procs > 0) cfg->procs = procs;
  return *cfg;
}

// Counts fibers down; the last one wakes the waiter (a fiber parks, a plain thread blocks on a futex). One-shot, like
// the Waiter inside it. count_down() touches nothing after notify(), so the waiter may destroy the latch at once.
class SchedBenchLatch {
 public:
  explicit SchedBenchLatch(int n) : left_(n) {}
  void count_down() {
    if (left_.fetch_sub(1, std::memory_order_acq_rel) == 1) done_.notify();
  }
  void wait() { done_.wait(); }

 private:
  std::atomic<int> left_;
  tern::Waiter done_;
};

// Reports the amortized time per fiber (`per_fiber`, in seconds with an SI prefix) and fibers per second.
void report_per_fiber(benchmark::State& state, int64_t fibers_per_iteration) {
  state.SetItemsProcessed(state.iterations() * fibers_per_iteration);
  state.counters["per_fiber"] =
      benchmark::Counter(static_cast<double>(fibers_per_iteration),
                         benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void BM_SchedSpawnJoin(benchmark::State& state) {
  auto cfg = sched_bench_config(state);
  if (!cfg) return;
  tern::Runtime rt(*cfg);
  rt.run([&] {
    for (auto _ : state) {
      auto h = tern::spawn([] { return 1; });
      benchmark::DoNotOptimize(h.join());
    }
  });
  report_per_fiber(state, 1);
}
BENCHMARK(BM_SchedSpawnJoin)->UseRealTime();

void BM_SchedSpawnManyCounter(benchmark::State& state) {
  auto cfg = sched_bench_config(state);
  if (!cfg) return;
  const int n = static_cast<int>(state.range(0));
  tern::Runtime rt(*cfg);
  rt.run([&] {
    for (auto _ : state) {
      SchedBenchLatch latch(n);
      for (int i = 0; i < n; i++) tern::go([&latch] { latch.count_down(); });
      latch.wait();
    }
  });
  report_per_fiber(state, n);
}
BENCHMARK(BM_SchedSpawnManyCounter)->Arg(100)->Arg(10'000)->UseRealTime();

void BM_SchedYieldRoundTrip(benchmark::State& state) {
  auto cfg = sched_bench_config(state, 1);
  if (!cfg) return;
  tern::Runtime rt(*cfg);
  rt.run([&] {
    for (auto _ : state) tern::yield();
  });
}
BENCHMARK(BM_SchedYieldRoundTrip)->UseRealTime();

void BM_SchedSpawnManyLocal(benchmark::State& state) {
  auto cfg = sched_bench_config(state);
  if (!cfg) return;
  tern::Runtime rt(*cfg);
  rt.run([&] {
    for (auto _ : state) {
      SchedBenchLatch latch(kTokioSpawnCount);
      for (int i = 0; i < kTokioSpawnCount; i++) tern::go([&latch] { latch.count_down(); });
      latch.wait();
    }
  });
  report_per_fiber(state, kTokioSpawnCount);
}
BENCHMARK(BM_SchedSpawnManyLocal)->UseRealTime();

void BM_SchedSpawnManyRemote(benchmark::State& state) {
  auto cfg = sched_bench_config(state);
  if (!cfg) return;
  tern::Runtime rt(*cfg);
  for (auto _ : state) {
    SchedBenchLatch latch(kTokioSpawnCount);
    for (int i = 0; i < kTokioSpawnCount; i++) rt.go([&latch] { latch.count_down(); });
    latch.wait();
  }
  report_per_fiber(state, kTokioSpawnCount);
}
BENCHMARK(BM_SchedSpawnManyRemote)->UseRealTime();

void BM_SchedYieldMany(benchmark::State& state) {
  auto cfg = sched_bench_config(state);
  if (!cfg) return;
  tern::Runtime rt(*cfg);
  const int fibers = kTokioTasksPerProc * rt.procs();
  rt.run([&] {
    for (auto _ : state) {
      SchedBenchLatch latch(fibers);
      for (int i = 0; i < fibers; i++) {
        tern::go([&latch] {
          for (int y = 0; y < kTokioYieldCount; y++) tern::yield();
          latch.count_down();
        });
      }
      latch.wait();
    }
  });
  state.SetItemsProcessed(state.iterations() * fibers * kTokioYieldCount);
}
BENCHMARK(BM_SchedYieldMany)->UseRealTime();

// Parks `depth` frames of kWideFrameBytes deep (a connection fiber parks about 1 KiB deep) on a Waiter published in
// *slot, after counting down `parked`; returns once woken.
constexpr int kWideFrameBytes = 256;
constexpr int kWideDepth = 4;
void sched_bench_park_deep(int depth, std::atomic<tern::Waiter*>* slot, SchedBenchLatch* parked) {
  volatile char frame[kWideFrameBytes];
  frame[0] = static_cast<char>(depth);
  if (depth > 0) {
    sched_bench_park_deep(depth - 1, slot, parked);
  } else {
    tern::Waiter w;
    slot->store(&w, std::memory_order_release);
    parked->count_down();
    w.wait();
  }
  benchmark::DoNotOptimize(frame[0]);
}

// N parked fibers woken at once, as a poller readies a batch of connections: their stacks have left the cache by the
// time each resumes. Per iteration: N fibers park, the driver wakes them all (they queue up on its P and spill to the
// global queue, other Ps steal), and waits for them to finish. Times are per fiber, spawn included.
void BM_SchedWakeWide(benchmark::State& state) {
  auto cfg = sched_bench_config(state);
  if (!cfg) return;
  tern::Runtime rt(*cfg);
  const int fibers = static_cast<int>(state.range(0));
  std::vector<std::atomic<tern::Waiter*>> slots(static_cast<size_t>(fibers));
  rt.run([&] {
    for (auto _ : state) {
      SchedBenchLatch parked(fibers);
      SchedBenchLatch done(fibers);
      for (int i = 0; i < fibers; i++) {
        tern::go([&, i] {
          sched_bench_park_deep(kWideDepth, &slots[static_cast<size_t>(i)], &parked);
          done.count_down();
        });
      }
      parked.wait();
      for (auto& s : slots) s.load(std::memory_order_acquire)->notify();
      done.wait();
    }
  });
  report_per_fiber(state, fibers);
}
BENCHMARK(BM_SchedWakeWide)->Arg(100)->Arg(10'000)->UseRealTime();

void sched_bench_chain(SchedBenchLatch* latch, int left) {
  if (left == 0) {
    latch->count_down();
    return;
  }
  tern::go([latch, left] { sched_bench_chain(latch, left - 1); });
}

void BM_SchedChainedSpawn(benchmark::State& state) {
  auto cfg = sched_bench_config(state);
  if (!cfg) return;
  tern::Runtime rt(*cfg);
  rt.run([&] {
    for (auto _ : state) {
      SchedBenchLatch latch(1);
      sched_bench_chain(&latch, kTokioChainLength);
      latch.wait();
    }
  });
  report_per_fiber(state, kTokioChainLength);
}
BENCHMARK(BM_SchedChainedSpawn)->UseRealTime();

double process_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto secs = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6; };
  return secs(ru.ru_utime) + secs(ru.ru_stime);
}

// The whole process's CPU time (every M, the monitor, the benchmark's own thread blocked in rt.run) over the wall
// time while the runtime's only fiber sleeps: what an idle tern server costs the machine.
void BM_SchedIdleCpu(benchmark::State& state) {
  auto cfg = sched_bench_config(state);
  if (!cfg) return;
  tern::Runtime rt(*cfg);
  double cpu = 0;
  double wall = 0;
  rt.run([&] {
    for (auto _ : state) {
      const double cpu0 = process_cpu_seconds();
      const auto t0 = std::chrono::steady_clock::now();
      tern::sleep_for(std::chrono::seconds(kIdleSeconds));
      wall += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      cpu += process_cpu_seconds() - cpu0;
    }
  });
  state.counters["idle_cpu_pct"] = wall > 0 ? 100.0 * cpu / wall : 0.0;
}
BENCHMARK(BM_SchedIdleCpu)->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
