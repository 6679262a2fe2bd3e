// Per-node stack pools (SchedOptions::numa_nodes, p_node): with a synthetic two-node setting, a fiber's stack comes
// from the pool of the node of the P it first ran on, goes back to that pool wherever the fiber finishes, and the
// second node's batches are mbind'ed to it (or, where this machine has no node 1, the refusal is counted and
// survived).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include "scheduler/m.h"
#include "scheduler/p.h"
#include "scheduler/park.h"
#include "scheduler/sched.h"
#include "tests/scale.h"

namespace tern::sched {
namespace {

constexpr int kNodes = 2;
constexpr int kProcs = 4;
// Long enough that the idle Ps are woken and take fibers from the global queue.
constexpr auto kSpin = std::chrono::microseconds(20);
constexpr int kYields = 8;

void spin_for(std::chrono::microseconds d) {
  const auto until = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < until) {
  }
}

bool node1_online() {
  std::ifstream f("/sys/devices/system/node/online");
  std::string list;
  return (f >> list) && list != "0";
}

TEST(StackNode, AFibersStackComesFromTheNodeOfThePItFirstRanOnAndGoesBackThere) {
  SchedOptions opts;
  opts.procs = kProcs;
  opts.numa_nodes = kNodes;
  opts.p_node = [](int p) { return p % kNodes; };
  Sched s(opts);
  ASSERT_EQ(s.numa_nodes(), kNodes);
  const int n = static_cast<int>(test::scaled(4000, 200));
  std::atomic<int> done{0}, mismatched{0};
  std::atomic<int> first_on[kNodes] = {};
  for (int i = 0; i < n; i++) {
    s.go([&] {
      // Nothing has switched since the fiber started: this P is the one it first ran on.
      const P* p = this_m()->p;
      const G* g = current();
      if (g->stack.node != p->node || p->node != p->id % kNodes) mismatched++;
      first_on[p->node]++;
      for (int y = 0; y < kYields; y++) {
        spin_for(kSpin);
        yield();  // and may move to a P of the other node, where it finishes
      }
      done++;
    });
  }
  while (done.load() < n) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(mismatched.load(), 0);
  EXPECT_GT(first_on[1].load(), 0) << "no fiber started on a node-1 P";
  EXPECT_GT(first_on[0].load(), 0);
  for (int node = 0; node < kNodes; node++) {
    const alloc::StackStats st = s.stack_stats(node);
    EXPECT_EQ(st.foreign, 0u) << "node " << node << " got stacks of the other node back";
    EXPECT_GT(st.batches, 0u) << "node " << node;
    EXPECT_EQ(st.binds, st.batches) << "node " << node << ": every batch of a multi-node runtime is mbind'ed";
  }
  const alloc::StackStats st1 = s.stack_stats(1);
  if (node1_online()) {
    EXPECT_EQ(st1.bind_failures, 0u);
  } else {
    EXPECT_EQ(st1.bind_failures, st1.binds) << "mbind to an absent node fails, and the runtime runs on";
  }
  EXPECT_EQ(s.stack_stats(0).bind_failures, 0u);
}

TEST(StackNode, OneNodeMeansOnePoolAndNoMbind) {
  SchedOptions opts;
  opts.procs = 2;
  Sched s(opts);
  EXPECT_EQ(s.numa_nodes(), 1);
  std::atomic<int> done{0};
  for (int i = 0; i < 100; i++) s.go([&] { done++; });
  while (done.load() < 100) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_GT(s.stack_stats().batches, 0u);
  EXPECT_EQ(s.stack_stats().binds, 0u);
}

}  // namespace
}  // namespace tern::sched
