// runtime/topology.cc: Topology from hwloc, and the placement orders (runtime/topology.h).
#include "runtime/topology.h"

#include <hwloc.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>

namespace tern {

Result<NumaPolicy> parse_numa_policy(std::string_view s) {
  if (s == "none") return NumaPolicy::kNone;
  if (s == "compact") return NumaPolicy::kCompact;
  if (s == "scatter") return NumaPolicy::kScatter;
  return make_error("must be none, compact or scatter, not '" + std::string(s) + "'");
}

const char* numa_policy_name(NumaPolicy p) {
  switch (p) {
    case NumaPolicy::kNone:
      return "none";
    case NumaPolicy::kCompact:
      return "compact";
    case NumaPolicy::kScatter:
      return "scatter";
  }
  return "none";
}

namespace {

struct TopologyDeleter {
  void operator()(hwloc_topology* t) const { hwloc_topology_destroy(t); }
};
using TopologyPtr = std::unique_ptr<hwloc_topology, TopologyDeleter>;

// hwloc_topology_init, then `set` (which chooses the source: this machine, synthetic, XML), then load.
template <class Set>
Result<TopologyPtr> load(const char* what, Set&& set) {
  hwloc_topology_t raw = nullptr;
  if (hwloc_topology_init(&raw) != 0) return errno_error(errno, std::string(what) + ": hwloc_topology_init");
  TopologyPtr t(raw);
  if (set(raw) != 0) return make_error(std::string(what) + ": hwloc cannot read it");
  if (hwloc_topology_load(raw) != 0) return errno_error(errno, std::string(what) + ": hwloc_topology_load");
  return t;
}

// The PUs of a loaded topology whose OS number `allowed` accepts, with their node and core.
template <class Allowed>
Result<Topology> collect(hwloc_topology_t t, const char* what, Allowed&& allowed) {
  Topology topo;
  const int npu = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PU);
  const int nnode = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE);
  std::vector<int> core_seen;  // PUs of each core collected so far: the next one's smt rank
  std::vector<bool> node_used(static_cast<size_t>(std::max(nnode, 1)), false);
  for (int i = 0; i < npu; i++) {
    hwloc_obj_t pu = hwloc_get_obj_by_type(t, HWLOC_OBJ_PU, static_cast<unsigned>(i));
    if (pu == nullptr || !allowed(static_cast<int>(pu->os_index))) continue;
    Topology::Pu p;
    p.os = static_cast<int>(pu->os_index);
    for (int n = 0; n < nnode; n++) {
      hwloc_obj_t node = hwloc_get_obj_by_type(t, HWLOC_OBJ_NUMANODE, static_cast<unsigned>(n));
      if (node != nullptr && node->cpuset != nullptr && hwloc_bitmap_isset(node->cpuset, pu->os_index)) {
        p.node = static_cast<int>(node->logical_index);
        break;
      }
    }
    // A machine hwloc shows without cores (some virtual machines): each PU is a core of its own.
    hwloc_obj_t core = hwloc_get_ancestor_obj_by_type(t, HWLOC_OBJ_CORE, pu);
    p.core = core != nullptr ? static_cast<int>(core->logical_index) : static_cast<int>(pu->logical_index);
    if (core_seen.size() <= static_cast<size_t>(p.core)) core_seen.resize(static_cast<size_t>(p.core) + 1, 0);
    p.smt = core_seen[static_cast<size_t>(p.core)]++;
    if (static_cast<size_t>(p.node) < node_used.size()) node_used[static_cast<size_t>(p.node)] = true;
    topo.pus.push_back(p);
  }
  if (topo.pus.empty()) return make_error(std::string(what) + ": no processing unit the process may run on");
  topo.nodes = static_cast<int>(std::count(node_used.begin(), node_used.end(), true));
  return topo;
}

}  // namespace

Result<Topology> Topology::discover() {
  constexpr const char* kWhat = "topology of this machine";
  auto t = load(kWhat, [](hwloc_topology_t) { return 0; });
  if (!t) return t.error();
  // hwloc leaves out PUs outside the cpuset cgroup already; the affinity (taskset, a parent's binding) is the
  // process's own. Its main thread's stands for the process, as it does for tern's unbound threads.
  const sched::CpuMask mask = sched::CpuMask::of_process();
  return collect(t->get(), kWhat, [&](int os) { return mask.empty() || mask.has(os); });
}

Result<Topology> Topology::synthetic(const std::string& description) {
  const std::string what = "synthetic topology '" + description + "'";
  auto t =
      load(what.c_str(), [&](hwloc_topology_t raw) { return hwloc_topology_set_synthetic(raw, description.c_str()); });
  if (!t) return t.error();
  return collect(t->get(), what.c_str(), [](int) { return true; });
}

Result<Topology> Topology::from_xml(const std::string& xml) {
  auto t = load("XML topology", [&](hwloc_topology_t raw) {
    return hwloc_topology_set_xmlbuffer(raw, xml.data(), static_cast<int>(xml.size() + 1));
  });
  if (!t) return t.error();
  return collect(t->get(), "XML topology", [](int) { return true; });
}

std::vector<sched::PlacementSlot> placement_order(const Topology& topo, NumaPolicy policy) {
  std::vector<sched::PlacementSlot> out;
  if (policy == NumaPolicy::kNone) return out;
  // Each node's own order: the first hardware thread of every core, then the second ones, ...
  std::vector<Topology::Pu> pus = topo.pus;
  std::stable_sort(pus.begin(), pus.end(), [](const Topology::Pu& a, const Topology::Pu& b) {
    if (a.node != b.node) return a.node < b.node;
    if (a.smt != b.smt) return a.smt < b.smt;
    return a.core < b.core;
  });
  out.reserve(pus.size());
  if (policy == NumaPolicy::kCompact) {
    // Node by node, but every node's physical cores before any hyperthread: 2 nodes of 36 cores take 72 Ps on 72
    // cores, and only the 73rd shares one.
    std::stable_sort(pus.begin(), pus.end(),
                     [](const Topology::Pu& a, const Topology::Pu& b) { return a.smt < b.smt; });
    for (const Topology::Pu& p : pus) out.push_back({p.os, p.node});
    return out;
  }
  // Scatter: one from each node in turn, each node's in its own order.
  std::vector<std::vector<Topology::Pu>> by_node;
  for (const Topology::Pu& p : pus) {
    if (by_node.empty() || by_node.back().front().node != p.node) by_node.emplace_back();
    by_node.back().push_back(p);
  }
  for (size_t k = 0; out.size() < pus.size(); k++) {
    for (const auto& node : by_node) {
      if (k < node.size()) out.push_back({node[k].os, node[k].node});
    }
  }
  return out;
}

Result<std::vector<sched::PlacementSlot>> machine_placement(const std::string& numa) {
  auto policy = parse_numa_policy(numa);
  if (!policy) return policy.error().wrap("numa");
  if (*policy == NumaPolicy::kNone) return std::vector<sched::PlacementSlot>{};
  auto topo = Topology::discover();
  if (!topo) return topo.error();
  return placement_order(*topo, *policy);
}

}  // namespace tern
