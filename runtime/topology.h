// runtime/topology.h: the machine's processing units and NUMA nodes (from hwloc), and the NUMA placement computed from
// them: which PU, on which node, each P runs on (sched::SchedOptions::placement). The only user of hwloc in tern.
//
//   auto topo = tern::Topology::discover();                     // this machine, within the process's affinity
//   if (!topo) ...                                              // an Error saying what hwloc could not do
//   auto slots = tern::placement_order(*topo, tern::NumaPolicy::kCompact);  // P i takes slots[i]
//
// The policies (Config::numa, TERN_NUMA, --numa):
//   none     nothing is bound; every P is on node 0.
//   compact  node by node, physical cores (the first PU of each) before hyperthreads: node 0's cores, node 1's
//            cores, ..., then node 0's second hardware threads, node 1's, .... N processors stay on as few nodes as
//            hold N cores, and no core runs two Ps while any core has none.
//   scatter  the nodes in turn: the first core of node 0, of node 1, ..., then the second of each; each node's own
//            order is compact's. Spreads memory bandwidth and cache over every node.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "scheduler/sched.h"

namespace tern {

enum class NumaPolicy { kNone, kCompact, kScatter };

// "none", "compact" or "scatter"; anything else is an error naming the three.
Result<NumaPolicy> parse_numa_policy(std::string_view s);
const char* numa_policy_name(NumaPolicy p);

struct Topology {
  struct Pu {
    int os = 0;    // the OS's number for it (what sched_setaffinity and taskset take)
    int node = 0;  // its NUMA node's logical index (0 .. nodes-1 on the whole machine)
    int core = 0;  // its physical core's logical index over the machine
    int smt = 0;   // its rank among the PUs of that core (0: the first hardware thread)
  };
  std::vector<Pu> pus;  // hwloc's logical order
  int nodes = 1;        // NUMA nodes with at least one of those PUs

  // This machine, restricted to the PUs the process may run on (cpuset cgroup and affinity).
  static Result<Topology> discover();
  // A synthetic machine in hwloc's description ("pack:2 numa:1 core:36 pu:2"), for tests and planning. Its PUs'
  // numbers are hwloc's; the kernel knows none beyond this machine's, so binding to them fails.
  static Result<Topology> synthetic(const std::string& description);
  // A machine exported by `lstopo machine.xml` (hwloc's XML), not restricted.
  static Result<Topology> from_xml(const std::string& xml);
};

// Every PU of `topo` in the policy's order (empty for kNone): P i takes element i.
std::vector<sched::PlacementSlot> placement_order(const Topology& topo, NumaPolicy policy);
// The placement of this machine for a Config::numa setting: parse, discover, order. Empty for "none" (discovering
// nothing); an Error for a setting that does not parse or a machine hwloc cannot read.
Result<std::vector<sched::PlacementSlot>> machine_placement(const std::string& numa);

}  // namespace tern
