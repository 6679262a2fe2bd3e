// Tests of the fiber dump (Runtime::dump_fibers, scheduler/fibers.cc) and its renderers (runtime/debug/fibers.h):
// a parked fiber shows what it waits on (channel receive, sleep, mutex), for how long and where it was spawned; a
// running one shows its P; the dump is consistent while fibers come and go around it.
#include "runtime/debug/fibers.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "runtime/go.h"
#include "runtime/runtime.h"
#include "runtime/sync/channel.h"
#include "runtime/sync/mutex.h"
#include "runtime/sync/wait_group.h"
#include "scheduler/timer.h"
#include "tests/procs.h"
#include "tests/scale.h"
#include "tests/support/watchdog.h"

namespace {

using namespace std::chrono_literals;
using tern::FiberInfo;
using tern::sched::GStatus;
using tern::sched::WaitReason;
using tern::test::procs;

constexpr int64_t kMs = 1'000'000;

// The dump's entry for fiber `id`, polling until `ok` holds for it (the fiber gets there asynchronously); nullopt
// after 10 s.
template <class Ok>
std::optional<FiberInfo> await_fiber(const tern::Runtime& rt, uint64_t id, Ok ok) {
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < until) {
    for (const FiberInfo& f : rt.dump_fibers()) {
      if (f.id == id && ok(f)) return f;
    }
    std::this_thread::sleep_for(1ms);
  }
  return std::nullopt;
}

std::optional<FiberInfo> await_waiting(const tern::Runtime& rt, uint64_t id, WaitReason why) {
  return await_fiber(rt, id, [why](const FiberInfo& f) { return f.status == GStatus::kWaiting && f.reason == why; });
}

bool ends_with(const char* s, const char* suffix) {
  const size_t n = std::strlen(s), m = std::strlen(suffix);
  return n >= m && std::strcmp(s + n - m, suffix) == 0;
}

TEST(FiberDump, ChannelReceiveWithTimeAndSite) {
  tern::Runtime rt(procs(2));
  tern::Channel<int> ch;
  std::atomic<uint64_t> id{0};
  const uint32_t spawn_line = __LINE__ + 1;
  rt.go([&] {
    id.store(tern::this_fiber::id());
    (void)ch.recv();
  });
  while (id.load() == 0) std::this_thread::sleep_for(1ms);
  auto f = await_waiting(rt, id.load(), WaitReason::kChanReceive);
  ASSERT_TRUE(f.has_value()) << "the receiver never showed as waiting on a channel receive";
  // Parked before the first sighting; the stamp is never later than the park, so the time is at least this.
  const int64_t seen = tern::sched::now_ns();
  std::this_thread::sleep_for(120ms);
  const int64_t slept = tern::sched::now_ns() - seen;
  f = await_waiting(rt, id.load(), WaitReason::kChanReceive);
  ASSERT_TRUE(f.has_value());
  EXPECT_GE(f->for_ns, slept);
  EXPECT_LT(f->for_ns, slept + 10'000 * kMs) << "a wait time from no clock";
  EXPECT_TRUE(ends_with(f->site.file_name(), "tests/runtime/fiber_dump_test.cc")) << f->site.file_name();
  EXPECT_EQ(f->site.line(), spawn_line);
  EXPECT_GE(f->p, 0);
  EXPECT_LT(f->p, 2);

  // The renderers say the same.
  const auto j = nlohmann::json::parse(tern::debug::fibers_json(rt.dump_fibers()));
  bool found = false;
  for (const auto& e : j.at("fibers")) {
    if (e.at("id").get<uint64_t>() != id.load()) continue;
    found = true;
    EXPECT_EQ(e.at("state"), "waiting");
    EXPECT_EQ(e.at("reason"), "chan receive");
    EXPECT_GE(e.at("seconds").get<double>(), 0.12);
    EXPECT_EQ(e.at("site").at("line").get<uint32_t>(), spawn_line);
  }
  EXPECT_TRUE(found) << j.dump(2);
  EXPECT_GE(j.at("states").at("waiting").get<int>(), 1);
  const std::string text = tern::debug::fibers_text(rt.dump_fibers());
  EXPECT_NE(text.find("[waiting: chan receive"), std::string::npos) << text;
  EXPECT_NE(text.find("fiber_dump_test.cc:" + std::to_string(spawn_line)), std::string::npos) << text;

  ch.send(1);  // lets it finish
}

TEST(FiberDump, SleepAndMutexAndSend) {
  tern::Runtime rt(procs(2));
  std::atomic<uint64_t> sleeper{0}, locker{0}, sender{0};
  tern::Mutex mu;
  tern::Channel<int> ch;
  std::atomic<bool> locked{false};
  std::atomic<bool> release{false};
  rt.go([&] {
    sleeper.store(tern::this_fiber::id());
    tern::sleep_for(30s);  // the runtime's destructor discards it
  });
  rt.go([&] {
    mu.lock();
    locked.store(true);
    while (!release.load()) tern::sleep_for(1ms);
    mu.unlock();
  });
  while (!locked.load()) std::this_thread::sleep_for(1ms);
  rt.go([&] {
    locker.store(tern::this_fiber::id());
    mu.lock();
    mu.unlock();
  });
  rt.go([&] {
    sender.store(tern::this_fiber::id());
    ch.send(7);
  });
  while (sleeper.load() == 0 || locker.load() == 0 || sender.load() == 0) std::this_thread::sleep_for(1ms);
  EXPECT_TRUE(await_waiting(rt, sleeper.load(), WaitReason::kSleep).has_value());
  EXPECT_TRUE(await_waiting(rt, locker.load(), WaitReason::kMutex).has_value());
  EXPECT_TRUE(await_waiting(rt, sender.load(), WaitReason::kChanSend).has_value());
  release.store(true);
  EXPECT_EQ(ch.recv(), 7);
}

// Many fibers parked at one site read as one group with their count.
TEST(FiberDump, GroupsBySite) {
  constexpr int kFibers = 40;
  tern::Runtime rt(procs(2));
  tern::Channel<int> ch;
  tern::WaitGroup parked;
  parked.add(kFibers);
  for (int i = 0; i < kFibers; i++) {
    rt.go([&] {
      parked.done();
      (void)ch.recv();
    });
  }
  parked.wait();
  std::optional<nlohmann::json> group;
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (!group && std::chrono::steady_clock::now() < until) {
    const auto j = nlohmann::json::parse(tern::debug::fibers_json(rt.dump_fibers()));
    for (const auto& g : j.at("groups")) {
      if (g.value("reason", "") == "chan receive" && g.at("count").get<int>() == kFibers) group = g;
    }
    if (!group) std::this_thread::sleep_for(1ms);
  }
  ASSERT_TRUE(group.has_value()) << tern::debug::fibers_text(rt.dump_fibers());
  EXPECT_EQ(group->at("ids").size(), std::min<size_t>(kFibers, tern::debug::kGroupIds));
  EXPECT_EQ(group->at("state"), "waiting");
  const std::string text = tern::debug::fibers_text(rt.dump_fibers());
  EXPECT_NE(text.find(std::to_string(kFibers) + " fibers [waiting: chan receive, up to"), std::string::npos) << text;
  ch.close();
}

// A fiber that spins shows as running, on a P, for a time that grows.
TEST(FiberDump, Running) {
  tern::Runtime rt(procs(2));
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> id{0};
  rt.go([&] {
    id.store(tern::this_fiber::id());
    while (!stop.load(std::memory_order_relaxed)) {
    }
  });
  while (id.load() == 0) std::this_thread::sleep_for(1ms);
  auto f = await_fiber(rt, id.load(), [](const FiberInfo& f) { return f.status == GStatus::kRunning; });
  ASSERT_TRUE(f.has_value());
  EXPECT_GE(f->p, 0);
  EXPECT_LT(f->p, 2);
  std::this_thread::sleep_for(50ms);
  f = await_fiber(rt, id.load(), [](const FiberInfo& f) { return f.status == GStatus::kRunning; });
  ASSERT_TRUE(f.has_value());
  EXPECT_GE(f->for_ns, 50 * kMs);
  stop.store(true);
}

// Dumps from a plain thread while fibers spawn, park, wake and finish: every entry is a live state with a unique id,
// and nothing crashes (run under TSan and ASan by tools/tern test).
TEST(FiberDump, ConsistentUnderChurn) {
  tern::Runtime rt(procs(2));
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> finished{0};
  tern::test::Watchdog dog("fiber dump churn");
  rt.go([&] {
    tern::WaitGroup wg;
    while (!stop.load(std::memory_order_relaxed)) {
      tern::Channel<int> ch;
      for (int i = 0; i < 16; i++) {
        wg.add(1);
        tern::go([&, i] {
          if (i % 2 == 0) {
            ch.send(i);
          } else {
            (void)ch.recv();
          }
          finished.fetch_add(1, std::memory_order_relaxed);
          wg.done();
        });
      }
      wg.wait();
    }
  });
  // At least this many dumps, and on until the churn has finished this many fibers meanwhile.
  const int dumps = tern::test::scaled(300);
  const uint64_t churned = static_cast<uint64_t>(tern::test::scaled(5000));
  uint64_t seen = 0;
  for (int i = 0; i < dumps || finished.load(std::memory_order_relaxed) < churned; i++) {
    const std::vector<FiberInfo> fibers = rt.dump_fibers();
    std::set<uint64_t> ids;
    for (const FiberInfo& f : fibers) {
      EXPECT_TRUE(f.status == GStatus::kRunnable || f.status == GStatus::kRunning || f.status == GStatus::kWaiting);
      EXPECT_NE(f.id, 0u);
      EXPECT_TRUE(ids.insert(f.id).second) << "fiber " << f.id << " listed twice";
      EXPECT_GE(f.for_ns, 0);
      EXPECT_LT(f.p, 2);
      if (f.status != GStatus::kWaiting) {
        EXPECT_EQ(f.reason, WaitReason::kNone);
      }
    }
    seen += fibers.size();
    (void)tern::debug::fibers_json(fibers);  // renders whatever the snapshot holds
    dog.kick();
  }
  stop.store(true);
  EXPECT_GE(finished.load(), churned);
  EXPECT_GT(seen, 0u) << "no dump saw the churning fibers";
}

}  // namespace
