// bench/sync_bench.cc: costs of the fiber sync primitives (runtime/sync/).
//
//   build/bin/tern-bench --benchmark_filter=BM_Sync
//
// Each benchmark function creates one Runtime and runs its timed loop inside rt.run(), so runtime start-up is not
// timed. Times are wall-clock (UseRealTime): the loop runs in a fiber whose thread may change, so per-thread CPU
// time means nothing here. One iteration of a ping-pong is one round trip (two channel operations each way: a send
// and a receive on each side); "per_op" / "per_round_trip" on the others are wall time per operation / round trip.
#include <benchmark/benchmark.h>

#include <mutex>
#include <optional>
#include <vector>

#include "runtime/blocking.h"
#include "runtime/go.h"
#include "runtime/runtime.h"
#include "runtime/sync/sync.h"

namespace {

tern::Config sync_bench_config(int procs) {
  tern::Config cfg;
  cfg.procs = procs;
  return cfg;
}

// Two fibers bouncing one value over a pair of unbuffered channels: the park/ready/handoff path. On one P the woken
// partner runs from runnext, so a round trip is two parks and two direct handoffs with no queueing.
void BM_SyncChanPingPong(benchmark::State& state) {
  tern::Runtime rt(sync_bench_config(static_cast<int>(state.range(0))));
  rt.run([&] {
    tern::Channel<int> ping;
    tern::Channel<int> pong;
    tern::WaitGroup wg;
    wg.add(1);
    tern::go([&] {
      while (std::optional<int> v = ping.recv()) pong.send(*v);
      wg.done();
    });
    int i = 0;
    for (auto _ : state) {
      ping.send(i++);
      benchmark::DoNotOptimize(pong.recv());
    }
    ping.close();
    wg.wait();
  });
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SyncChanPingPong)->ArgName("procs")->Arg(1)->Arg(2)->UseRealTime();

// The same through a buffered channel of capacity 1 (the value goes through the ring, not a handoff).
void BM_SyncChanPingPongBuffered(benchmark::State& state) {
  tern::Runtime rt(sync_bench_config(static_cast<int>(state.range(0))));
  rt.run([&] {
    tern::Channel<int> ping(1);
    tern::Channel<int> pong(1);
    tern::WaitGroup wg;
    wg.add(1);
    tern::go([&] {
      while (std::optional<int> v = ping.recv()) pong.send(*v);
      wg.done();
    });
    int i = 0;
    for (auto _ : state) {
      ping.send(i++);
      benchmark::DoNotOptimize(pong.recv());
    }
    ping.close();
    wg.wait();
  });
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SyncChanPingPongBuffered)->ArgName("procs")->Arg(1)->Arg(2)->UseRealTime();

// Ping-pong where the echoing side waits in a two-case select (the select engine's lock-all, enqueue, unlink path).
void BM_SyncSelectPingPong(benchmark::State& state) {
  tern::Runtime rt(sync_bench_config(1));
  rt.run([&] {
    tern::Channel<int> ping;
    tern::Channel<int> quit;
    tern::Channel<int> pong;
    tern::WaitGroup wg;
    wg.add(1);
    tern::go([&] {
      bool running = true;
      while (running) {
        tern::select(tern::recv_case(ping, [&](std::optional<int> v) { pong.send(*v); }),
                     tern::recv_case(quit, [&](std::optional<int>) { running = false; }));
      }
      wg.done();
    });
    int i = 0;
    for (auto _ : state) {
      ping.send(i++);
      benchmark::DoNotOptimize(pong.recv());
    }
    quit.close();
    wg.wait();
  });
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SyncSelectPingPong)->UseRealTime();

// Tokio's ping_pong shape: many pairs at once, each doing kSyncPairRounds round trips per iteration, on 2 Ps.
constexpr int kSyncPairRounds = 100;
void BM_SyncChanPingPongPairs(benchmark::State& state) {
  const int pairs = static_cast<int>(state.range(0));
  tern::Runtime rt(sync_bench_config(2));
  rt.run([&] {
    for (auto _ : state) {
      tern::WaitGroup wg;
      for (int p = 0; p < pairs; p++) {
        wg.add(1);
        tern::go([&wg] {
          tern::Channel<int> ping;
          tern::Channel<int> pong;
          tern::WaitGroup echo_done;
          echo_done.add(1);
          tern::go([&] {
            while (std::optional<int> v = ping.recv()) pong.send(*v);
            echo_done.done();
          });
          for (int r = 0; r < kSyncPairRounds; r++) {
            ping.send(r);
            benchmark::DoNotOptimize(pong.recv());
          }
          ping.close();
          echo_done.wait();
          wg.done();
        });
      }
      wg.wait();
    }
  });
  state.SetItemsProcessed(state.iterations() * pairs * kSyncPairRounds);
  // Inverted rate: wall seconds per round trip, printed with an SI prefix (e.g. "250ns").
  state.counters["per_round_trip"] =
      benchmark::Counter(static_cast<double>(pairs) * kSyncPairRounds,
                         benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_SyncChanPingPongPairs)->ArgName("pairs")->Arg(100)->Arg(1000)->UseRealTime();

// Four fibers on two Ps hammering one Mutex around a tiny critical section.
constexpr int kSyncMutexFibers = 4;
constexpr int kSyncMutexOpsPerFiber = 10000;
void BM_SyncMutexContended(benchmark::State& state) {
  tern::Runtime rt(sync_bench_config(2));
  rt.run([&] {
    tern::Mutex mu;
    long counter = 0;
    for (auto _ : state) {
      tern::WaitGroup wg;
      for (int f = 0; f < kSyncMutexFibers; f++) {
        wg.add(1);
        tern::go([&] {
          for (int i = 0; i < kSyncMutexOpsPerFiber; i++) {
            std::lock_guard g(mu);
            counter++;
          }
          wg.done();
        });
      }
      wg.wait();
    }
    benchmark::DoNotOptimize(counter);
  });
  constexpr double kOps = static_cast<double>(kSyncMutexFibers) * kSyncMutexOpsPerFiber;
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kOps));
  state.counters["per_op"] =
      benchmark::Counter(kOps, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_SyncMutexContended)->UseRealTime();

// Two fibers, one per P, counting one WaitGroup down and up again as fast as they can while nobody waits: the cost of
// add()/done() when every P calls them (a fan-in of many fibers to one WaitGroup).
constexpr int kSyncWgOpsPerFiber = 100000;
void BM_SyncWaitGroupAddDone(benchmark::State& state) {
  tern::Runtime rt(sync_bench_config(2));
  rt.run([&] {
    tern::WaitGroup counted(1);
    for (auto _ : state) {
      tern::WaitGroup wg(2);
      for (int f = 0; f < 2; f++) {
        tern::go([&] {
          for (int i = 0; i < kSyncWgOpsPerFiber; i++) {
            counted.add(1);
            counted.done();
          }
          wg.done();
        });
      }
      wg.wait();
    }
  });
  constexpr double kOps = 2.0 * kSyncWgOpsPerFiber;
  state.counters["per_pair"] =
      benchmark::Counter(kOps, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_SyncWaitGroupAddDone)->UseRealTime();

// Uncontended lock/unlock from one fiber: the fast path (one CAS each way).
void BM_SyncMutexUncontended(benchmark::State& state) {
  tern::Runtime rt(sync_bench_config(1));
  rt.run([&] {
    tern::Mutex mu;
    for (auto _ : state) {
      mu.lock();
      mu.unlock();
    }
  });
}
BENCHMARK(BM_SyncMutexUncontended)->UseRealTime();

// tern::blocking around a call that does not block (issue 18's bound: at most 100 ns): the section's stores and the
// compare-and-swap that takes the processor back, against the same loop without it (BM_BlockingBaseline).
void BM_BlockingNonBlocking(benchmark::State& state) {
  tern::Runtime rt(sync_bench_config(1));
  rt.run([&] {
    uint64_t x = 0;
    for (auto _ : state) {
      x += tern::blocking([&] { return x & 1; });
      benchmark::DoNotOptimize(x);
    }
  });
}
BENCHMARK(BM_BlockingNonBlocking)->UseRealTime();

void BM_BlockingBaseline(benchmark::State& state) {
  tern::Runtime rt(sync_bench_config(1));
  rt.run([&] {
    uint64_t x = 0;
    for (auto _ : state) {
      x += [&] { return x & 1; }();
      benchmark::DoNotOptimize(x);
    }
  });
}
BENCHMARK(BM_BlockingBaseline)->UseRealTime();

}  // namespace
