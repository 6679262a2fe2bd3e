// bench/pool_bench.cc: tern::Pool (runtime/pool.h) and the node arenas (alloc/arena.h), in build/bin/tern-bench.
//
//   build/bin/tern-bench --benchmark_filter='BM_Pool|BM_Arena'
//
//   BM_PoolGetPut            one get/put pair on one P that hits (the pool's fast path; target <= 10 ns)
//   BM_PoolGetPutNew         the same pair as new/delete of the same 16 KiB object, for scale
//   BM_ArenaSpawnJoin/arenas:N      spawn + join one fiber at a time, G records on node arenas (1) or operator new
//                                   (0), in the same process (Config::node_arenas)
//   BM_ArenaSpawnManyFresh/arenas:N a fresh runtime spawning 10k fibers alive at once: every G record block is a new
//                                   allocation (157 blocks of 64), on the arenas or from operator new
//   BM_ArenaAllocFree/arenas:N/bytes:B  a node_alloc/node_free pair on a bound thread vs malloc/free
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <optional>

#include "runtime/config.h"
#include "runtime/go.h"
#include "runtime/pool.h"  // and, through it, alloc/arena.h (node_alloc, heap_name): the pool's default allocator
#include "runtime/runtime.h"
#include "runtime/sync/wait_group.h"

namespace {

constexpr size_t kBufferBytes = 16 << 10;  // tern-echo's read buffer
constexpr int kFreshSpawnCount = 10'000;

struct Buffer {
  char bytes[kBufferBytes];
};

std::optional<tern::Config> pool_bench_config(benchmark::State& state, int procs) {
  auto cfg = tern::Config::from_env();
  if (!cfg) {
    state.SkipWithError(cfg.error().message().c_str());
    return std::nullopt;
  }
  cfg->procs = procs;
  return *cfg;
}

void BM_PoolGetPut(benchmark::State& state) {
  auto cfg = pool_bench_config(state, 1);
  if (!cfg) return;
  tern::Pool<Buffer> pool("bench_get_put");
  tern::Runtime rt(*cfg);
  rt.run([&] {
    pool.put(pool.get());  // the slot and one object exist: every pair below hits
    for (auto _ : state) {
      Buffer* b = pool.get();
      benchmark::DoNotOptimize(b);
      pool.put(b);
    }
  });
  state.counters["misses"] = static_cast<double>(pool.stats().misses);
}
BENCHMARK(BM_PoolGetPut)->UseRealTime();

void BM_PoolGetPutNew(benchmark::State& state) {
  auto cfg = pool_bench_config(state, 1);
  if (!cfg) return;
  tern::Runtime rt(*cfg);
  rt.run([&] {
    for (auto _ : state) {
      auto* b = new Buffer;
      benchmark::DoNotOptimize(b);
      delete b;
    }
  });
}
BENCHMARK(BM_PoolGetPutNew)->UseRealTime();

void BM_ArenaSpawnJoin(benchmark::State& state) {
  auto cfg = pool_bench_config(state, 1);
  if (!cfg) return;
  cfg->node_arenas = state.range(0) != 0;
  tern::Runtime rt(*cfg);
  rt.run([&] {
    for (auto _ : state) {
      auto h = tern::spawn([] { return 1; });
      benchmark::DoNotOptimize(h.join());
    }
  });
  state.SetLabel(cfg->node_arenas ? tern::alloc::heap_name() : "operator new");
}
BENCHMARK(BM_ArenaSpawnJoin)->ArgName("arenas")->Arg(1)->Arg(0)->Arg(1)->Arg(0)->UseRealTime();

void BM_ArenaSpawnManyFresh(benchmark::State& state) {
  auto cfg = pool_bench_config(state, 1);
  if (!cfg) return;
  cfg->node_arenas = state.range(0) != 0;
  for (auto _ : state) {
    tern::Runtime rt(*cfg);
    rt.run([&] {
      tern::WaitGroup wg;
      tern::WaitGroup gate(1);
      for (int i = 0; i < kFreshSpawnCount; i++) {
        wg.add(1);
        tern::go([&] {
          gate.wait();
          wg.done();
        });
      }
      gate.done();
      wg.wait();
    });
  }
  state.SetItemsProcessed(state.iterations() * kFreshSpawnCount);
  state.SetLabel(cfg->node_arenas ? tern::alloc::heap_name() : "operator new");
}
BENCHMARK(BM_ArenaSpawnManyFresh)
    ->ArgName("arenas")
    ->Arg(1)
    ->Arg(0)
    ->Arg(1)
    ->Arg(0)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

void BM_ArenaAllocFree(benchmark::State& state) {
  const bool arenas = state.range(0) != 0;
  const auto bytes = static_cast<size_t>(state.range(1));
  if (arenas) tern::alloc::bind_thread(0);
  for (auto _ : state) {
    void* p = arenas ? tern::alloc::node_alloc(bytes, alignof(std::max_align_t), 0) : std::malloc(bytes);
    benchmark::DoNotOptimize(p);
    if (arenas) {
      tern::alloc::node_free(p, bytes, alignof(std::max_align_t));
    } else {
      std::free(p);
    }
  }
  state.SetLabel(arenas ? tern::alloc::heap_name() : "malloc");
}
BENCHMARK(BM_ArenaAllocFree)->ArgNames({"arenas", "bytes"})->ArgsProduct({{1, 0}, {256, 4096, 16384}});

}  // namespace
