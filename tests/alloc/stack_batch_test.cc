// Stacks mapped in batches (alloc/stack.h): every stack of one mapping is usable, a guard lies between each two and
// stops an overflow before the neighbour, the free stacks above max_free go back to the kernel, trim() still releases
// idle ones, and a pool bound to a NUMA node mbinds its batches (or survives the refusal, where the node is absent).
#include <gtest/gtest.h>
#include <linux/mempolicy.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "alloc/stack.h"

namespace tern::alloc {
namespace {

constexpr size_t kBatch = 8;
constexpr size_t kSmallStack = 16 << 10;

size_t page_size() {
  return static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

size_t resident_pages(const Stack& s) {
  std::vector<unsigned char> vec(s.size / page_size());
  EXPECT_EQ(mincore(s.lo, s.size, vec.data()), 0);
  size_t n = 0;
  for (unsigned char c : vec) n += c & 1;
  return n;
}

bool is_mapped(const void* addr) {
  unsigned char v = 0;
  void* page = reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(addr) & ~(page_size() - 1));
  return mincore(page, page_size(), &v) == 0 || errno != ENOMEM;
}

std::vector<Stack> get_n(StackPool& pool, size_t n) {
  std::vector<Stack> v(n);
  EXPECT_EQ(pool.get_batch(v.data(), n), n);
  return v;
}

TEST(StackBatch, OneMappingHoldsTheBatchEveryStackUsableWithAGuardBetweenEach) {
  StackPool pool({.stack_size = kSmallStack, .map_batch = kBatch});
  std::vector<Stack> v = get_n(pool, kBatch);
  EXPECT_EQ(pool.stats().batches, 1u) << "one mmap for the whole batch";
  EXPECT_EQ(pool.stats().mapped, kBatch);
  std::sort(v.begin(), v.end(), [](const Stack& a, const Stack& b) { return a.lo < b.lo; });
  for (size_t i = 0; i < v.size(); i++) {
    ASSERT_TRUE(v[i].valid());
    EXPECT_EQ(v[i].size, kSmallStack);
    std::memset(v[i].lo, static_cast<int>(i + 1), v[i].size);  // all of it is writable
    EXPECT_TRUE(v[i].in_guard(static_cast<char*>(v[i].lo) - 1));
    if (i > 0) {
      // The stacks of a batch sit side by side: each one's guard starts where the one below ends.
      EXPECT_EQ(v[i].guard, v[i - 1].top()) << "stack " << i;
    }
  }
  for (size_t i = 0; i < v.size(); i++) {
    // Nothing written to one stack reached another.
    const auto* p = static_cast<const unsigned char*>(v[i].lo);
    EXPECT_TRUE(std::all_of(p, p + v[i].size, [&](unsigned char c) { return c == i + 1; })) << "stack " << i;
  }
  pool.put_batch(v.data(), v.size());
}

TEST(StackBatch, OverflowFromEachStackOfABatchHitsItsGuardNotTheStackBelow) {
  StackPool pool({.stack_size = kSmallStack, .map_batch = kBatch});
  std::vector<Stack> v = get_n(pool, kBatch);
  std::sort(v.begin(), v.end(), [](const Stack& a, const Stack& b) { return a.lo < b.lo; });
  for (size_t i = 0; i < v.size(); i++) {
    // Just below the stack, and the guard's lowest byte, right above the top of the stack below: both fault.
    EXPECT_DEATH(*(static_cast<volatile char*>(v[i].lo) - 1) = 1, "") << "stack " << i;
    EXPECT_DEATH(*static_cast<volatile char*>(v[i].guard) = 1, "") << "stack " << i;
  }
  pool.put_batch(v.data(), v.size());
}

TEST(StackBatch, TheRestOfABatchWaitsInThePoolAndComesOutInAddressOrder) {
  StackPool pool({.stack_size = kSmallStack, .map_batch = kBatch});
  Stack first = pool.get();
  ASSERT_TRUE(first.valid());
  EXPECT_EQ(pool.stats().free_global, kBatch - 1);
  Stack prev = first;
  for (size_t i = 1; i < kBatch; i++) {
    Stack s = pool.get();
    EXPECT_EQ(s.guard, prev.top()) << "stack " << i;
    prev = s;
  }
  EXPECT_EQ(pool.stats().batches, 1u) << "no new mapping while the batch lasts";
  pool.get_batch(&prev, 1);
  EXPECT_EQ(pool.stats().batches, 2u);
}

TEST(StackBatch, FreeStacksAboveMaxFreeAreUnmappedAndTheRestStayUsable) {
  constexpr size_t kMaxFree = 8;
  StackPool pool({.stack_size = kSmallStack, .max_free = kMaxFree, .map_batch = kBatch});
  std::vector<Stack> v = get_n(pool, 8 * kBatch);
  for (Stack& s : v) std::memset(s.lo, 1, s.size);
  pool.put_batch(v.data(), v.size());
  const StackStats st = pool.stats();
  EXPECT_EQ(st.mapped, kMaxFree);
  EXPECT_EQ(st.free_global, kMaxFree);
  EXPECT_EQ(st.unmapped, v.size() - kMaxFree);
  size_t unmapped = 0;
  for (Stack& s : v) unmapped += !is_mapped(s.lo);
  EXPECT_EQ(unmapped, v.size() - kMaxFree) << "the counted unmaps gave the address ranges back";
  // The kept ones (the most recently freed) are whole stacks, usable, with their guards.
  std::vector<Stack> kept = get_n(pool, kMaxFree);
  for (Stack& s : kept) {
    EXPECT_TRUE(is_mapped(s.lo));
    std::memset(s.lo, 2, s.size);
  }
  EXPECT_DEATH(*(static_cast<volatile char*>(kept[0].lo) - 1) = 1, "");
  pool.put_batch(kept.data(), kept.size());
}

TEST(StackBatch, TrimReleasesIdleStacksOfABatch) {
  StackPool pool({.stack_size = kSmallStack, .high_watermark = 0, .map_batch = kBatch});
  std::vector<Stack> v = get_n(pool, kBatch);
  for (Stack& s : v) std::memset(s.lo, 1, s.size);
  pool.put_batch(v.data(), v.size());
  size_t resident = 0;
  for (Stack& s : v) resident += resident_pages(s);
  EXPECT_EQ(resident, kBatch * kSmallStack / page_size());
  pool.trim();  // starts the observation period
  EXPECT_EQ(pool.trim(), kBatch);
  resident = 0;
  for (Stack& s : v) resident += resident_pages(s);
  EXPECT_EQ(resident, 0u) << "trim gave every idle page back";
  EXPECT_EQ(pool.stats().mapped, kBatch) << "released, still mapped for reuse";
}

size_t mapping_count() {
  std::ifstream maps("/proc/self/maps");
  return static_cast<size_t>(std::count(std::istreambuf_iterator<char>(maps), {}, '\n'));
}

TEST(StackBatch, MprotectedGuardsOfABatchAlsoStopOverflowsBetweenNeighbours) {
  // The path of kernels without guard regions: each guard an mprotect'ed range, two mappings per stack.
  StackPool pool({.stack_size = kSmallStack, .map_batch = kBatch, .guard_regions = false});
  const size_t before = mapping_count();
  std::vector<Stack> v = get_n(pool, kBatch);
  EXPECT_FALSE(pool.guard_regions());
  EXPECT_EQ(pool.stats().batches, 1u);
  EXPECT_GE(mapping_count(), before + 2 * kBatch - 1) << "every guard split the batch";
  std::sort(v.begin(), v.end(), [](const Stack& a, const Stack& b) { return a.lo < b.lo; });
  for (size_t i = 0; i < v.size(); i++) {
    std::memset(v[i].lo, 1, v[i].size);
    if (i > 0) {
      EXPECT_EQ(v[i].guard, v[i - 1].top());
    }
    EXPECT_DEATH(*(static_cast<volatile char*>(v[i].lo) - 1) = 1, "") << "stack " << i;
    EXPECT_DEATH(*static_cast<volatile char*>(v[i].guard) = 1, "") << "stack " << i;
  }
  pool.put_batch(v.data(), v.size());
}

// The nodes this machine has online ("0", "0-1", "0,2-3"): whether node n is among them.
bool node_online(int n) {
  std::ifstream f("/sys/devices/system/node/online");
  std::string list;
  if (!(f >> list)) return n == 0;
  size_t pos = 0;
  while (pos < list.size()) {
    size_t end = list.find(',', pos);
    if (end == std::string::npos) end = list.size();
    const std::string range = list.substr(pos, end - pos);
    const size_t dash = range.find('-');
    const int lo = std::stoi(range.substr(0, dash));
    const int hi = dash == std::string::npos ? lo : std::stoi(range.substr(dash + 1));
    if (n >= lo && n <= hi) return true;
    pos = end + 1;
  }
  return false;
}

TEST(StackNode, ABoundPoolMbindsEachBatchToItsNode) {
  StackPool pool({.stack_size = kSmallStack, .map_batch = kBatch, .node = 0, .bind_node = true});
  std::vector<Stack> v = get_n(pool, kBatch);
  for (Stack& s : get_n(pool, kBatch)) v.push_back(s);
  const StackStats st = pool.stats();
  EXPECT_EQ(st.batches, 2u);
  EXPECT_EQ(st.binds, 2u) << "one mbind per mapped batch";
  EXPECT_EQ(st.bind_failures, 0u) << "node 0 is always there";
  // The kernel's own record of the range's policy: preferred node 0.
  int mode = -1;
  unsigned long mask[16] = {};
  ASSERT_EQ(syscall(SYS_get_mempolicy, &mode, mask, 8 * sizeof mask, v[0].lo, MPOL_F_ADDR), 0) << strerror(errno);
  EXPECT_EQ(mode, MPOL_PREFERRED);
  EXPECT_EQ(mask[0], 1UL);
  for (Stack& s : v) EXPECT_EQ(s.node, 0);
  pool.put_batch(v.data(), v.size());
}

TEST(StackNode, AnAbsentNodeIsOneWarningAndUsableStacks) {
  constexpr int kNode = 1;
  if (node_online(kNode)) GTEST_SKIP() << "this machine has a node 1: the refusal cannot be provoked with it";
  StackPool pool({.stack_size = kSmallStack, .map_batch = kBatch, .node = kNode, .bind_node = true});
  testing::internal::CaptureStderr();
  std::vector<Stack> v;
  for (int i = 0; i < 3; i++) {
    for (Stack& s : get_n(pool, kBatch)) v.push_back(s);
  }
  const std::string err = testing::internal::GetCapturedStderr();
  const StackStats st = pool.stats();
  EXPECT_EQ(st.batches, 3u);
  EXPECT_EQ(st.binds, 3u) << "every batch tried";
  EXPECT_EQ(st.bind_failures, 3u);
  EXPECT_NE(err.find("cannot bind fiber stacks to NUMA node 1"), std::string::npos) << err;
  EXPECT_EQ(err.find("cannot bind", err.find("cannot bind") + 1), std::string::npos) << "warned once: " << err;
  for (Stack& s : v) {
    EXPECT_EQ(s.node, kNode);
    std::memset(s.lo, 1, s.size);
  }
  pool.put_batch(v.data(), v.size());
  EXPECT_EQ(pool.stats().foreign, 0u);
}

TEST(StackNode, AStackGivenBackToAnotherNodesPoolIsCounted) {
  StackPool node0({.stack_size = kSmallStack, .map_batch = 1, .node = 0});
  StackPool node1({.stack_size = kSmallStack, .map_batch = 1, .node = 1});
  Stack s0 = node0.get(), s1 = node1.get();
  EXPECT_EQ(s0.node, 0);
  EXPECT_EQ(s1.node, 1);
  node0.put(s0);
  EXPECT_EQ(node0.stats().foreign, 0u);
  node1.put(s1);
  EXPECT_EQ(node1.stats().foreign, 0u);
  Stack back = node1.get();
  node0.put(back);  // the wrong pool
  EXPECT_EQ(node0.stats().foreign, 1u);
  Stack again = node0.get();  // LIFO: the same one
  EXPECT_EQ(again.lo, back.lo);
  node1.put(again);
}

}  // namespace
}  // namespace tern::alloc
