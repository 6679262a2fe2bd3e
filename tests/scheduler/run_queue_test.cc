#include "scheduler/run_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "tests/scale.h"

namespace tern::sched {
namespace {

TEST(RunQueue, FifoAndCapacityLimit) {
  std::vector<G> gs(RunQueue::kCapacity + 1);
  RunQueue q;
  for (uint32_t i = 0; i < RunQueue::kCapacity; i++) ASSERT_TRUE(q.push(&gs[i]));
  EXPECT_FALSE(q.push(&gs[RunQueue::kCapacity])) << "a full queue must refuse, not overwrite";
  EXPECT_EQ(q.size(), RunQueue::kCapacity);
  for (uint32_t i = 0; i < RunQueue::kCapacity; i++) ASSERT_EQ(q.pop(), &gs[i]);
  EXPECT_EQ(q.pop(), nullptr);
}

TEST(RunQueue, PopHalfOnlyWhenFull) {
  std::vector<G> gs(RunQueue::kCapacity);
  RunQueue q;
  G* out[RunQueue::kCapacity / 2];
  for (uint32_t i = 0; i < RunQueue::kCapacity - 1; i++) ASSERT_TRUE(q.push(&gs[i]));
  EXPECT_EQ(q.pop_half(out), 0u);
  ASSERT_TRUE(q.push(&gs[RunQueue::kCapacity - 1]));
  ASSERT_EQ(q.pop_half(out), RunQueue::kCapacity / 2);
  for (uint32_t i = 0; i < RunQueue::kCapacity / 2; i++) EXPECT_EQ(out[i], &gs[i]);
  EXPECT_EQ(q.size(), RunQueue::kCapacity / 2);
}

TEST(RunQueue, StealTakesHalfRoundedUp) {
  std::vector<G> gs(5);
  RunQueue victim, thief;
  for (auto& g : gs) ASSERT_TRUE(victim.push(&g));
  EXPECT_EQ(victim.steal_into(thief), 3u);
  EXPECT_EQ(thief.pop(), &gs[0]);
  EXPECT_EQ(victim.pop(), &gs[3]);
}

// One owner pushes and pops while thieves steal into their own queues and drain them: every item is taken exactly
// once.
TEST(RunQueue, ConcurrentPushPopStealTakesEachItemOnce) {
  const int64_t kItems = test::scaled(2'000'000, 20'000);
  constexpr int kThieves = 3;
  std::vector<G> gs(kItems);
  for (int64_t i = 0; i < kItems; i++) gs[i].id = static_cast<uint64_t>(i);
  std::vector<std::atomic<uint8_t>> taken(kItems);
  RunQueue owner;
  std::atomic<bool> done{false};
  std::atomic<int64_t> total{0};
  auto take = [&](G* g) {
    ASSERT_EQ(taken[g->id].fetch_add(1), 0) << "item " << g->id << " taken twice";
    total.fetch_add(1, std::memory_order_relaxed);
  };
  std::vector<std::thread> thieves;
  for (int t = 0; t < kThieves; t++) {
    thieves.emplace_back([&] {
      RunQueue mine;
      while (!done.load(std::memory_order_acquire)) {
        if (owner.steal_into(mine) == 0) std::this_thread::yield();
        while (G* g = mine.pop()) take(g);
      }
    });
  }
  int64_t next = 0;
  while (next < kItems) {
    for (int k = 0; k < 8 && next < kItems; k++) {
      if (!owner.push(&gs[next])) break;
      next++;
    }
    if (G* g = owner.pop()) take(g);
  }
  while (G* g = owner.pop()) take(g);
  while (total.load() < kItems) std::this_thread::yield();
  done.store(true);
  for (auto& t : thieves) t.join();
  EXPECT_EQ(total.load(), kItems);
  for (int64_t i = 0; i < kItems; i++) ASSERT_EQ(taken[i].load(), 1) << "item " << i;
}

}  // namespace
}  // namespace tern::sched
