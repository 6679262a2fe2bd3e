// The order a stealer visits the other Ps in (scheduler/steal_order.h): with several NUMA nodes every same-node victim
// comes before any remote one; with one node, the plain rotations.
#include "scheduler/steal_order.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace tern::sched {
namespace {

struct Visit {
  int v, pass;
  bool remote;
};

std::vector<Visit> order(const std::vector<int>& nodes, int self, bool multi_node, uint32_t seed) {
  std::vector<Visit> out;
  uint32_t r = seed;
  visit_victims(
      static_cast<int>(nodes.size()), self, multi_node, [&](int i) { return nodes[static_cast<size_t>(i)]; },
      [&] { return r = r * 1103515245u + 12345u; },
      [&](int v, int pass, bool remote) {
        out.push_back({v, pass, remote});
        return false;
      });
  return out;
}

TEST(StealOrder, SameNodeVictimsComeBeforeAnyRemoteOne) {
  const std::vector<int> nodes = {0, 1, 0, 1, 1, 0, 0, 1};
  for (int self = 0; self < static_cast<int>(nodes.size()); self++) {
    for (uint32_t seed = 1; seed < 50; seed++) {
      const auto o = order(nodes, self, true, seed);
      // Every other P, kStealPasses times: the same node's passes, then the others'.
      ASSERT_EQ(o.size(), (nodes.size() - 1) * kStealPasses);
      bool seen_remote = false;
      std::vector<int> per_pass_local(kStealPasses, 0), per_pass_remote(kStealPasses, 0);
      for (const Visit& x : o) {
        ASSERT_NE(x.v, self);
        const bool remote = nodes[static_cast<size_t>(x.v)] != nodes[static_cast<size_t>(self)];
        ASSERT_EQ(x.remote, remote) << "victim " << x.v;
        if (remote) seen_remote = true;
        ASSERT_FALSE(!remote && seen_remote) << "a same-node victim (" << x.v << ") after a remote one, self " << self;
        (remote ? per_pass_remote : per_pass_local)[static_cast<size_t>(x.pass)]++;
      }
      for (int p = 0; p < kStealPasses; p++) {
        EXPECT_EQ(per_pass_local[static_cast<size_t>(p)], 3);  // the 3 other Ps of self's node, once per pass
        EXPECT_EQ(per_pass_remote[static_cast<size_t>(p)], 4);
      }
    }
  }
}

TEST(StealOrder, OneNodeIsThePlainRotation) {
  const std::vector<int> nodes(6, 0);
  uint32_t r = 7;
  std::vector<int> want;
  for (int pass = 0; pass < kStealPasses; pass++) {
    r = r * 1103515245u + 12345u;
    const uint32_t start = r % 6;
    for (uint32_t i = 0; i < 6; i++) {
      const int v = static_cast<int>((start + i) % 6);
      if (v != 2) want.push_back(v);
    }
  }
  std::vector<int> got;
  for (const Visit& x : order(nodes, 2, false, 7)) {
    EXPECT_FALSE(x.remote);
    got.push_back(x.v);
  }
  EXPECT_EQ(got, want);
}

TEST(StealOrder, StopsAtTheFirstVictimThatYields) {
  const std::vector<int> nodes = {0, 0, 1, 1};
  int visits = 0;
  uint32_t r = 3;
  const bool found = visit_victims(
      4, 0, true, [&](int i) { return nodes[static_cast<size_t>(i)]; }, [&] { return r++; },
      [&](int v, int, bool remote) {
        visits++;
        return remote && v == 2;
      });
  EXPECT_TRUE(found);
  // P 1 (same node) four times, then the remote passes until P 2: at most two visits into them.
  EXPECT_GE(visits, kStealPasses + 1);
  EXPECT_LE(visits, kStealPasses + 2);
  EXPECT_FALSE(visit_victims(
      1, 0, false, [](int) { return 0; }, [] { return 0u; }, [](int, int, bool) { return true; }));
}

}  // namespace
}  // namespace tern::sched
