// DescTable (netpoll/desc_table.h): acquire/release/lookup, index reuse, stale-tag rejection, growth, for_each_live.
#include "netpoll/desc_table.h"

#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "netpoll/io_backend.h"

namespace tern::netpoll {
namespace {

struct TestDesc : Desc {
  int payload = 0;
};
using Table = DescTable<TestDesc>;

TEST(DescTable, AcquireGivesLiveDistinctRecords) {
  Table t;
  TestDesc* a = t.acquire();
  TestDesc* b = t.acquire();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a, b);
  EXPECT_NE(a->index, b->index);
  EXPECT_TRUE(a->live);
  EXPECT_TRUE(b->live);
  EXPECT_EQ(t.lookup(Table::tag(a)), a);
  EXPECT_EQ(t.lookup(Table::tag(b)), b);
  t.release(a);
  t.release(b);
}

TEST(DescTable, TagCarriesIndexAndGeneration) {
  Table t;
  TestDesc* d = t.acquire();
  ASSERT_NE(d, nullptr);
  const uint64_t tag = Table::tag(d);
  EXPECT_EQ(static_cast<uint32_t>(tag), d->index);
  EXPECT_EQ(static_cast<uint32_t>(tag >> 32), d->gen.load());
  t.release(d);
}

TEST(DescTable, ReleaseMakesTheOldTagStale) {
  Table t;
  TestDesc* d = t.acquire();
  ASSERT_NE(d, nullptr);
  d->fd = 42;
  const uint64_t tag = Table::tag(d);
  const uint32_t gen = d->gen.load();
  t.release(d);
  EXPECT_EQ(t.lookup(tag), nullptr) << "an event for a released descriptor must be dropped";
  EXPECT_EQ(d->gen.load(), gen + 1);
  EXPECT_EQ(d->fd, -1);
  EXPECT_FALSE(d->live);
}

// A released index is handed out again, at the same address (type-stable), under a new generation: the old tag stays
// stale while the new one resolves.
TEST(DescTable, ReusedIndexGetsNewGenerationAndRejectsOldTags) {
  Table t;
  TestDesc* d = t.acquire();
  ASSERT_NE(d, nullptr);
  const uint32_t index = d->index;
  std::vector<uint64_t> old_tags;
  for (int round = 0; round < 5; round++) {
    old_tags.push_back(Table::tag(d));
    t.release(d);
    TestDesc* again = t.acquire();
    ASSERT_EQ(again, d) << "the only free index must be reused, in place";
    EXPECT_EQ(again->index, index);
    EXPECT_TRUE(again->live);
    EXPECT_EQ(t.lookup(Table::tag(again)), again);
    for (uint64_t old : old_tags) EXPECT_EQ(t.lookup(old), nullptr) << "stale tag " << std::hex << old;
  }
  t.release(d);
}

TEST(DescTable, FreedIndexesAreReusedBeforeNewOnes) {
  Table t;
  std::vector<TestDesc*> ds;
  for (int i = 0; i < 4; i++) ds.push_back(t.acquire());
  for (int i = 0; i < 4; i++)
    EXPECT_EQ(ds[i]->index, static_cast<uint32_t>(i)) << "fresh indexes are handed out in order";
  t.release(ds[1]);
  t.release(ds[3]);
  std::set<TestDesc*> again{t.acquire(), t.acquire()};
  EXPECT_EQ(again, (std::set<TestDesc*>{ds[1], ds[3]}));
  TestDesc* fresh = t.acquire();
  EXPECT_EQ(fresh->index, 4u);
  for (TestDesc* d : {ds[0], ds[1], ds[2], ds[3], fresh}) t.release(d);
}

TEST(DescTable, LookupOfIndexBeyondAnyChunkIsNull) {
  Table t;
  TestDesc* d = t.acquire();
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(t.lookup(Table::kChunkSize * 5), nullptr) << "no chunk there yet";
  EXPECT_EQ(t.lookup(uint64_t{Table::kChunkSize} * Table::kMaxChunks), nullptr) << "index past the table";
  EXPECT_EQ(t.lookup(0xffffffffu), nullptr);
  t.release(d);
}

// Past one chunk the table allocates more; every record keeps its address, index and tag.
TEST(DescTable, GrowsAcrossChunksWithStableRecords) {
  Table t;
  const uint32_t n = Table::kChunkSize * 3 + 7;
  std::vector<TestDesc*> ds;
  std::vector<uint64_t> tags;
  for (uint32_t i = 0; i < n; i++) {
    TestDesc* d = t.acquire();
    ASSERT_NE(d, nullptr);
    ASSERT_EQ(d->index, i);
    d->payload = static_cast<int>(i) * 3;
    ds.push_back(d);
    tags.push_back(Table::tag(d));
  }
  EXPECT_EQ(std::set<TestDesc*>(ds.begin(), ds.end()).size(), n);
  for (uint32_t i = 0; i < n; i++) {
    ASSERT_EQ(t.lookup(tags[i]), ds[i]);
    EXPECT_EQ(ds[i]->payload, static_cast<int>(i) * 3);
  }
  // Release every other one: their tags go stale, the rest still resolve.
  for (uint32_t i = 0; i < n; i += 2) t.release(ds[i]);
  for (uint32_t i = 0; i < n; i++) EXPECT_EQ(t.lookup(tags[i]), i % 2 == 0 ? nullptr : ds[i]) << "index " << i;
  for (uint32_t i = 1; i < n; i += 2) t.release(ds[i]);
}

TEST(DescTable, ForEachLiveVisitsExactlyTheAcquired) {
  Table t;
  std::vector<TestDesc*> ds;
  for (uint32_t i = 0; i < Table::kChunkSize + 10; i++) ds.push_back(t.acquire());
  std::set<TestDesc*> expect;
  for (size_t i = 0; i < ds.size(); i++) {
    if (i % 3 == 0) {
      t.release(ds[i]);
    } else {
      expect.insert(ds[i]);
    }
  }
  std::set<TestDesc*> seen;
  size_t calls = 0;
  t.for_each_live([&](TestDesc* d) {
    seen.insert(d);
    calls++;
  });
  EXPECT_EQ(calls, expect.size()) << "a record visited twice";
  EXPECT_EQ(seen, expect);
  for (TestDesc* d : expect) t.release(d);
  calls = 0;
  t.for_each_live([&](TestDesc*) { calls++; });
  EXPECT_EQ(calls, 0u);
}

// A reader looks up tags taken from records that another thread keeps acquiring and releasing: lookup returns either
// nullptr (stale) or the record itself, never a different record.
TEST(DescTable, ConcurrentLookupDuringChurn) {
#if defined(TERN_SANITIZE_THREAD)
  constexpr int kRounds = 2000;
#else
  constexpr int kRounds = 20000;
#endif
  Table t;
  std::vector<TestDesc*> held;
  for (int i = 0; i < 8; i++) held.push_back(t.acquire());
  std::vector<std::atomic<uint64_t>> tags(held.size());
  for (size_t i = 0; i < held.size(); i++) tags[i].store(Table::tag(held[i]));
  std::atomic<bool> stop{false};
  std::atomic<bool> wrong{false};
  std::thread reader([&] {
    while (!stop.load(std::memory_order_acquire)) {
      for (auto& tg : tags) {
        const uint64_t tag = tg.load(std::memory_order_acquire);
        TestDesc* d = t.lookup(tag);
        if (d != nullptr && d->index != static_cast<uint32_t>(tag)) wrong = true;
      }
    }
  });
  for (int r = 0; r < kRounds; r++) {
    size_t i = static_cast<size_t>(r) % held.size();
    t.release(held[i]);
    held[i] = t.acquire();
    ASSERT_NE(held[i], nullptr);
    tags[i].store(Table::tag(held[i]), std::memory_order_release);
  }
  stop.store(true, std::memory_order_release);
  reader.join();
  EXPECT_FALSE(wrong.load());
  for (TestDesc* d : held) t.release(d);
}

}  // namespace
}  // namespace tern::netpoll
