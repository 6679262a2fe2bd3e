// tests/runtime/runtime_test.cc: Runtime: run, create, shutdown, several runtimes, fibers started from outside, join,
// uncaught exceptions and stack overflow reports.
#include "runtime/runtime.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "runtime/cgroup.h"
#include "runtime/config.h"
#include "runtime/go.h"
#include "tests/procs.h"
#include "tests/scale.h"

namespace tern {
namespace {

using tern::test::procs;

int thread_count() {
  int n = 0;
  DIR* d = opendir("/proc/self/task");
  while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

TEST(Runtime, RunReturnsWhenMainReturns) {
  Runtime rt(procs(2));
  int v = 0;
  rt.run([&] {
    auto h = spawn([] { return 41; });
    v = h.join() + 1;
  });
  EXPECT_EQ(v, 42);
  EXPECT_EQ(rt.procs(), 2);
}

TEST(Runtime, CreateReportsAnUnusableConfigurationAsAValue) {
  Config bad = procs(1);
  bad.poller = "kqueue";
  auto r = Runtime::create(bad);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("kqueue"), std::string::npos) << r.error().message();
  auto ok = Runtime::create(procs(1));
  ASSERT_TRUE(ok) << ok.error().message();
  int v = 0;
  (*ok)->run([&] { v = 1; });
  EXPECT_EQ(v, 1);
}

// The address ranges of this process's mappings, from /proc/self/maps.
std::vector<std::pair<uintptr_t, uintptr_t>> mappings() {
  std::vector<std::pair<uintptr_t, uintptr_t>> out;
  std::ifstream f("/proc/self/maps");
  std::string line;
  while (std::getline(f, line)) {
    uintptr_t lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%" SCNxPTR "-%" SCNxPTR, &lo, &hi) == 2) out.emplace_back(lo, hi);
  }
  return out;
}
size_t count_mapped(const std::vector<uintptr_t>& addrs) {
  const auto maps = mappings();
  size_t n = 0;
  for (uintptr_t a : addrs) {
    for (const auto& [lo, hi] : maps) {
      if (a >= lo && a < hi) {
        n++;
        break;
      }
    }
  }
  return n;
}

TEST(Runtime, ShutdownLeavesNoThreadsOrStacks) {
  // ThreadSanitizer starts a background thread of its own with the process's first thread: let that happen first.
  std::thread([] {}).join();
  int before = thread_count();
  // An address on each fiber's stack: after shutdown none of them may be mapped any more.
  std::mutex mu;
  std::vector<uintptr_t> stack_addrs;
  auto note_stack = [&] {
    volatile char here = 0;
    std::lock_guard lk(mu);
    stack_addrs.push_back(reinterpret_cast<uintptr_t>(&here));
  };
  constexpr int kParked = 200;
  {
    Runtime rt(procs(4));
    rt.run([&] {
      std::vector<JoinHandle<void>> hs;
      for (int i = 0; i < 1000; i++) {
        hs.push_back(spawn([&] {
          note_stack();
          sleep_for(std::chrono::microseconds(100));
        }));
      }
      for (auto& h : hs) h.join();
      // Fibers left parked forever: shutdown must still free their stacks.
      std::atomic<int> parked{0};
      for (int i = 0; i < kParked; i++) {
        go([&] {
          note_stack();
          parked.fetch_add(1);
          sleep_for(std::chrono::hours(1));
        });
      }
      while (parked.load() < kParked) sleep_for(std::chrono::microseconds(100));
    });
    EXPECT_GE(rt.stats().stacks.mapped, static_cast<uint64_t>(kParked));
    ASSERT_EQ(count_mapped(stack_addrs), stack_addrs.size()) << "the stacks are mapped while the runtime lives";
  }
  EXPECT_EQ(thread_count(), before);
  // A freed range can be mapped again by someone else (the allocator, a sanitizer) right away; a leak keeps them all.
  const size_t still = count_mapped(stack_addrs);
  EXPECT_LE(still * 20, stack_addrs.size())
      << still << " of " << stack_addrs.size() << " fiber stack addresses are still mapped after shutdown";
}

TEST(Runtime, SeveralRuntimesAtOnce) {
  Runtime a(procs(2)), b(procs(1));
  std::atomic<int> in_a{0}, in_b{0};
  std::thread ta([&] {
    a.run([&] {
      for (int i = 0; i < 1000; i++) go([&] { in_a++; });
      while (in_a.load() < 1000) yield();
      EXPECT_TRUE(a.on_this_runtime());
      EXPECT_FALSE(b.on_this_runtime());
    });
  });
  std::thread tb([&] {
    b.run([&] {
      for (int i = 0; i < 1000; i++) go([&] { in_b++; });
      while (in_b.load() < 1000) yield();
      EXPECT_TRUE(b.on_this_runtime());
      EXPECT_FALSE(a.on_this_runtime());
    });
  });
  ta.join();
  tb.join();
  EXPECT_EQ(in_a.load(), 1000);
  EXPECT_EQ(in_b.load(), 1000);
}

TEST(Runtime, GoFromOutsideThreads) {
  Runtime rt(procs(2));
  std::atomic<int> ran{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; t++) {
    ts.emplace_back([&] {
      for (int i = 0; i < 2500; i++) rt.go([&] { ran.fetch_add(1); });
    });
  }
  for (auto& t : ts) t.join();
  rt.run([&] {
    while (ran.load() < 10000) sleep_for(std::chrono::microseconds(50));
  });
  EXPECT_EQ(ran.load(), 10000);
}

TEST(Runtime, JoinRethrowsTheFibersException) {
  Runtime rt(procs(2));
  rt.run([] {
    auto h = spawn([]() -> int { throw std::runtime_error("boom"); });
    EXPECT_THROW(
        {
          try {
            h.join();
          } catch (const std::runtime_error& e) {
            EXPECT_STREQ(e.what(), "boom");
            throw;
          }
        },
        std::runtime_error);
  });
  // From a plain thread too.
  auto h = spawn(rt, [] { return 7; });
  EXPECT_EQ(h.join(), 7);
}

TEST(RuntimeDeathTest, UncaughtExceptionNamesTheFiber) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        Runtime rt(procs(1));
        rt.run([] {
          go([] { throw std::logic_error("lost?"); });
          sleep_for(std::chrono::seconds(5));
        });
      },
      "fiber [0-9]+ terminated by an uncaught exception: lost\\?");
}

int recurse(int depth) {
  volatile char buf[1024];
  buf[0] = static_cast<char>(depth);
  return depth > 1'000'000 ? buf[0] : recurse(depth + 1) + buf[0];
}

TEST(RuntimeDeathTest, StackOverflowIsReportedNotSilent) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        Config c = procs(1);
        c.stack_size = 64 << 10;
        Runtime rt(c);
        rt.run([] { recurse(0); });
      },
      "stack.overflow");
}

TEST(Runtime, SmallStacksAndManyFibers) {
  Config c = procs(2);
  c.stack_size = 16 << 10;
  Runtime rt(c);
  const int64_t n = test::scaled(100'000, 5'000);
  std::atomic<int64_t> ran{0};
  rt.run([&] {
    for (int64_t i = 0; i < n; i++) go([&] { ran.fetch_add(1, std::memory_order_relaxed); });
    while (ran.load() < n) sleep_for(std::chrono::microseconds(100));
    // A fiber counts as finished only once it has switched out, after its body returned: the last ones may still be
    // on an M the OS preempted right after their increment. Wait for their exits (bounded, so a lost one fails).
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (rt.stats().finished < static_cast<uint64_t>(n) && std::chrono::steady_clock::now() < until) {
      sleep_for(std::chrono::microseconds(100));
    }
  });
  auto st = rt.stats();
  EXPECT_GE(st.finished, static_cast<uint64_t>(n)) << "every fiber but main has finished";
  EXPECT_GE(st.finished + 1, st.spawned) << "every fiber but main (which may still be exiting) has finished";
}

}  // namespace
}  // namespace tern
