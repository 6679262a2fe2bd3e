// Owners of per-P stack caches racing a taker (StackPool::take_from_caches, which runs when no stack can be mapped):
// no stack may be handed to two holders at once, and none may be lost. Run with both exclusions: the asymmetric
// fences (membarrier) the caches use where the kernel has them, and the lock they fall back to.
//
// Each holder claims a stack by exchanging a tag into its first word: a stack held twice shows up as a nonzero old
// value. Under TSan an owner that skipped the taker's flag is also a data race on the cache's array.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "alloc/stack.h"

namespace tern::alloc {
namespace {

class StackCacheRace : public ::testing::TestWithParam<bool> {};

std::atomic<uint64_t>* claim_word(const Stack& s) {
  return reinterpret_cast<std::atomic<uint64_t>*>(s.lo);
}

// Claims every stack in `held`; false if one was already claimed by someone else.
bool claim(const std::vector<Stack>& held, uint64_t tag) {
  bool ok = true;
  for (const Stack& s : held) ok &= claim_word(s)->exchange(tag, std::memory_order_acq_rel) == 0;
  return ok;
}

// Releases the claims; false if a claim was overwritten meanwhile.
bool release(const std::vector<Stack>& held, uint64_t tag) {
  bool ok = true;
  for (const Stack& s : held) ok &= claim_word(s)->exchange(0, std::memory_order_acq_rel) == tag;
  return ok;
}

TEST_P(StackCacheRace, TakerNeverSharesAStackWithAnOwner) {
  StackPool pool({.stack_size = 16 << 10, .asymmetric_fences = GetParam()});
  if (GetParam() && !pool.asymmetric_fences()) GTEST_SKIP() << "membarrier(2) private expedited is unavailable here";
  constexpr int kOwners = 2;
#if defined(TERN_SANITIZE_THREAD)
  constexpr int kRounds = 20000;
#else
  constexpr int kRounds = 100000;
#endif
  std::atomic<int> owners_left{kOwners};
  std::atomic<uint64_t> bad{0}, taken{0};

  std::vector<std::thread> owners;
  for (int t = 0; t < kOwners; t++) {
    owners.emplace_back([&, t] {
      StackCache cache(pool);
      const uint64_t tag = 1 + static_cast<uint64_t>(t);
      std::vector<Stack> held;
      uint32_t r = 0x9E3779B9u * (t + 1);
      for (int round = 0; round < kRounds; round++) {
        // 1 to 40 stacks at once: crosses the refill (empty) and spill (full) paths as well as the plain ones.
        r = r * 1664525u + 1013904223u;
        const size_t want = 1 + (r >> 16) % 40;
        for (size_t i = 0; i < want; i++) {
          Stack s = cache.get();
          if (!s.valid()) {
            bad.fetch_add(1);
            break;
          }
          held.push_back(s);
        }
        if (!claim(held, tag)) bad.fetch_add(1);
        if (!release(held, tag)) bad.fetch_add(1);
        for (const Stack& s : held) cache.put(s);
        held.clear();
      }
      owners_left.fetch_sub(1);
    });
  }
  std::thread taker([&] {
    Stack buf[8];
    std::vector<Stack> held;
    while (owners_left.load() > 0) {
      const size_t got = pool.take_from_caches(nullptr, buf, 8);
      held.assign(buf, buf + got);
      if (!claim(held, 100)) bad.fetch_add(1);
      if (!release(held, 100)) bad.fetch_add(1);
      taken.fetch_add(got);
      pool.put_batch(buf, got);
      // Each take stalls the owners for a membarrier: leave them time to run their rounds.
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  });
  for (auto& t : owners) t.join();
  taker.join();

  RecordProperty("taken", std::to_string(taken.load()));
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_GT(taken.load(), 0u) << "the taker never met a cache holding stacks: the race was not exercised";
  const StackStats st = pool.stats();
  EXPECT_EQ(st.in_use, 0u);  // the caches flushed on destruction: every stack is back
  EXPECT_EQ(st.free_global, st.mapped) << "a stack was lost or counted twice";
}

INSTANTIATE_TEST_SUITE_P(Exclusion, StackCacheRace, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? std::string("AsymmetricFences") : std::string("Lock");
                         });

}  // namespace
}  // namespace tern::alloc
