// GlobalQueue (scheduler/global_queue.h): FIFO order, batches, lists, growth, wrap-around, concurrent use.
#include "scheduler/global_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "tests/scale.h"

namespace tern::sched {
namespace {

TEST(GlobalQueue, EmptyQueue) {
  GlobalQueue q;
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.size(), 0u);
  EXPECT_EQ(q.pop(), nullptr);
  G* out[4] = {};
  EXPECT_EQ(q.pop_batch(out, 4), 0u);
  EXPECT_EQ(out[0], nullptr);
}

TEST(GlobalQueue, PushPopIsFifoAndTracksSize) {
  std::vector<G> gs(5);
  GlobalQueue q;
  for (size_t i = 0; i < gs.size(); i++) {
    q.push(&gs[i]);
    EXPECT_EQ(q.size(), i + 1);
    EXPECT_FALSE(q.empty());
  }
  for (size_t i = 0; i < gs.size(); i++) {
    ASSERT_EQ(q.pop(), &gs[i]);
    EXPECT_EQ(q.size(), gs.size() - i - 1);
  }
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.pop(), nullptr);
}

TEST(GlobalQueue, PushBatchKeepsOrderAfterEarlierPushes) {
  std::vector<G> gs(6);
  GlobalQueue q;
  q.push(&gs[0]);
  G* batch[] = {&gs[1], &gs[2], &gs[3], &gs[4]};
  q.push_batch(batch, 4);
  q.push(&gs[5]);
  EXPECT_EQ(q.size(), 6u);
  for (auto& g : gs) ASSERT_EQ(q.pop(), &g);
  q.push_batch(batch, 0);
  EXPECT_TRUE(q.empty());
}

TEST(GlobalQueue, PopBatchTakesAtMostMaxInOrder) {
  std::vector<G> gs(10);
  GlobalQueue q;
  for (auto& g : gs) q.push(&g);
  G* out[16] = {};
  ASSERT_EQ(q.pop_batch(out, 3), 3u);
  for (int i = 0; i < 3; i++) EXPECT_EQ(out[i], &gs[i]);
  EXPECT_EQ(q.size(), 7u);
  // Asking for more than is there takes what is there and leaves the rest of out[] alone.
  G sentinel;
  for (auto& o : out) o = &sentinel;
  ASSERT_EQ(q.pop_batch(out, 16), 7u);
  for (int i = 0; i < 7; i++) EXPECT_EQ(out[i], &gs[3 + i]);
  EXPECT_EQ(out[7], &sentinel);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.size(), 0u);
}

TEST(GlobalQueue, PushListDrainsTheListInOrder) {
  std::vector<G> gs(4);
  GlobalQueue q;
  G first;
  q.push(&first);
  GList list;
  for (auto& g : gs) list.push(&g);
  q.push_list(list);
  EXPECT_TRUE(list.empty());
  EXPECT_EQ(list.size, 0u);
  EXPECT_EQ(q.size(), 5u);
  EXPECT_EQ(q.pop(), &first);
  for (auto& g : gs) ASSERT_EQ(q.pop(), &g);
  EXPECT_EQ(q.pop(), nullptr);
  GList none;
  q.push_list(none);
  EXPECT_TRUE(q.empty());
}

// Past the initial 1024 slots the ring doubles; nothing is lost or reordered.
TEST(GlobalQueue, GrowsPastInitialCapacityKeepingOrder) {
  constexpr size_t kN = 5000;
  std::vector<G> gs(kN);
  GlobalQueue q;
  for (auto& g : gs) q.push(&g);
  EXPECT_EQ(q.size(), kN);
  for (size_t i = 0; i < kN; i++) ASSERT_EQ(q.pop(), &gs[i]) << "at " << i;
  EXPECT_TRUE(q.empty());
}

// Growth while the live range wraps around the end of the ring (head not at slot 0) must copy it in queue order.
TEST(GlobalQueue, GrowsWhileWrappedKeepingOrder) {
  constexpr size_t kN = 3000;
  std::vector<G> gs(kN);
  GlobalQueue q;
  size_t pushed = 0, popped = 0;
  for (; pushed < 1000; pushed++) q.push(&gs[pushed]);
  for (; popped < 900; popped++) ASSERT_EQ(q.pop(), &gs[popped]);
  // 100 live at slots 900..999; the next 924 wrap to slot 0 and fill the 1024-slot ring, the rest force growth.
  G* batch[kN];
  uint32_t n = 0;
  for (; pushed < kN; pushed++) batch[n++] = &gs[pushed];
  q.push_batch(batch, n);
  EXPECT_EQ(q.size(), kN - popped);
  for (; popped < kN; popped++) ASSERT_EQ(q.pop(), &gs[popped]) << "at " << popped;
  EXPECT_TRUE(q.empty());
}

// Many rounds of partial fill and drain cycle the head around the ring; order holds throughout.
TEST(GlobalQueue, WrapAroundWithoutGrowth) {
  std::vector<G> gs(700);
  GlobalQueue q;
  G* out[700];
  for (int round = 0; round < 10; round++) {
    for (auto& g : gs) q.push(&g);
    ASSERT_EQ(q.pop_batch(out, 700), 700u);
    for (size_t i = 0; i < gs.size(); i++) ASSERT_EQ(out[i], &gs[i]) << "round " << round << " at " << i;
    ASSERT_TRUE(q.empty());
  }
}

// Producers push singly and in batches while consumers pop in batches: every fiber comes out exactly once, and each
// producer's fibers come out in the order it pushed them.
TEST(GlobalQueue, ConcurrentProducersConsumersTakeEachOnce) {
  constexpr int kProducers = 2, kConsumers = 2;
  const int64_t kPer = test::scaled(20'000, 2'000);
  std::vector<G> gs(kPer * kProducers);
  for (size_t i = 0; i < gs.size(); i++) gs[i].id = i;
  std::vector<std::atomic<uint8_t>> taken(gs.size());
  GlobalQueue q;
  std::atomic<int64_t> total{0};
  std::atomic<bool> order_ok{true};
  std::vector<std::thread> threads;
  for (int p = 0; p < kProducers; p++) {
    threads.emplace_back([&, p] {
      G* base = &gs[p * kPer];
      int64_t i = 0;
      while (i < kPer) {
        if (i % 3 == 0) {
          q.push(&base[i++]);
        } else {
          uint32_t n = static_cast<uint32_t>(std::min<int64_t>(7, kPer - i));
          G* batch[7];
          for (uint32_t k = 0; k < n; k++) batch[k] = &base[i + k];
          q.push_batch(batch, n);
          i += n;
        }
      }
    });
  }
  for (int c = 0; c < kConsumers; c++) {
    threads.emplace_back([&] {
      std::vector<uint64_t> last(kProducers, UINT64_MAX);
      G* out[16];
      while (total.load(std::memory_order_relaxed) < kPer * kProducers) {
        uint32_t n = q.pop_batch(out, 16);
        if (n == 0) std::this_thread::yield();
        for (uint32_t k = 0; k < n; k++) {
          uint64_t id = out[k]->id;
          if (taken[id].fetch_add(1) != 0) order_ok = false;
          size_t p = id / kPer;
          if (last[p] != UINT64_MAX && id <= last[p]) order_ok = false;
          last[p] = id;
        }
        total.fetch_add(n, std::memory_order_relaxed);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_TRUE(order_ok.load()) << "a fiber was taken twice or out of its producer's order";
  EXPECT_EQ(total.load(), kPer * kProducers);
  for (size_t i = 0; i < taken.size(); i++) ASSERT_EQ(taken[i].load(), 1) << "fiber " << i;
  EXPECT_TRUE(q.empty());
}

}  // namespace
}  // namespace tern::sched
