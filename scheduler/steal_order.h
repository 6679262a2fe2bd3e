// scheduler/steal_order.h: the order in which a stealer visits the other Ps (Sched::steal_work).
//
// kStealPasses passes, each over every P from a random start (Go's stealWork). With a placement over several NUMA
// nodes (SchedOptions::placement), all the passes over the Ps on the stealer's own node come first and the passes
// over the other nodes' Ps only after they found nothing: Vyukov's NUMA-aware scheduler design for Go (2014), which
// keeps fibers, and the memory they touch, on the node where they were made unless a node runs dry. With one node the
// order is exactly the plain rotation, at the plain rotation's cost.
//
//   visit_victims(n, self, multi, node_of, rand, [&](int v, int pass, bool remote) { return try_steal(v); });
#pragma once

#include <cstdint>

namespace tern::sched {

// Passes over the other Ps when stealing (Go's stealTries). Per node scope: a placement over several nodes makes up to
// twice as many (the same node's, then the others').
inline constexpr int kStealPasses = 4;

// Visits the Ps 0 .. n-1 other than `self` in steal order, calling visit(v, pass, remote) until it returns true;
// returns whether it did. `multi_node`: the Ps are spread over several nodes (node_of(i) is P i's node); false visits
// kStealPasses rotations without looking at nodes. rand() gives each pass's starting point.
template <class NodeOf, class Rand, class Visit>
inline bool visit_victims(int n, int self, bool multi_node, NodeOf&& node_of, Rand&& rand, Visit&& visit) {
  const auto un = static_cast<uint32_t>(n);
  if (!multi_node) [[likely]] {
    for (int pass = 0; pass < kStealPasses; pass++) {
      const uint32_t start = rand() % un;
      for (uint32_t i = 0; i < un; i++) {
        const int v = static_cast<int>((start + i) % un);
        if (v != self && visit(v, pass, false)) return true;
      }
    }
    return false;
  }
  const int home = node_of(self);
  for (const bool remote : {false, true}) {
    for (int pass = 0; pass < kStealPasses; pass++) {
      const uint32_t start = rand() % un;
      for (uint32_t i = 0; i < un; i++) {
        const int v = static_cast<int>((start + i) % un);
        if (v != self && (node_of(v) != home) == remote && visit(v, pass, remote)) return true;
      }
    }
  }
  return false;
}

}  // namespace tern::sched
