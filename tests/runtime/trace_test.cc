// Tests of the event trace (TERN_TRACE: scheduler/trace.h, runtime/debug/trace_file.h): a small program's trace is
// JSON in the Chrome trace event format, every event carries the schema's fields, and every kind of event the trace
// promises is there; an unwritable path is an error before anything runs; the environment variable is read.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>

#include "runtime/config.h"
#include "runtime/go.h"
#include "runtime/net/net.h"
#include "runtime/runtime.h"
#include "runtime/sync/channel.h"
#include "runtime/sync/mutex.h"
#include "runtime/sync/wait_group.h"

namespace {

using namespace std::chrono_literals;

std::string temp_path(const char* name) {
  return testing::TempDir() + "tern_trace_" + std::to_string(getpid()) + "_" + name + ".json";
}

nlohmann::json load(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  return nlohmann::json::parse(in);  // throws (fails the test) on anything that is not JSON
}

// A program that does a bit of everything the trace records.
void small_program(tern::Runtime& rt) {
  rt.run([&] {
    // Park on a channel, wake, and finish; yield.
    tern::Channel<int> ch;
    tern::WaitGroup wg;
    for (int i = 0; i < 8; i++) {
      wg.add(1);
      tern::go([&] {
        ch.send(1);
        tern::yield();
        wg.done();
      });
    }
    for (int i = 0; i < 8; i++) (void)ch.recv();
    wg.wait();
    // A receive that surely parks: above, the senders may all be waiting by the time the receiver comes (seen under
    // TSan: no "chan receive" park at all); here the send waits until the fiber dump shows the receiver parked.
    wg.add(1);
    tern::go([&] {
      (void)ch.recv();
      wg.done();
    });
    auto receiver_parked = [&] {
      for (const auto& f : rt.dump_fibers())
        if (f.reason == tern::sched::WaitReason::kChanReceive) return true;
      return false;
    };
    while (!receiver_parked()) tern::sleep_for(1ms);
    ch.send(2);
    wg.wait();
    // A timer wakes a sleeper.
    tern::sleep_for(2ms);
    // A mutex.
    tern::Mutex mu;
    mu.lock();
    wg.add(1);
    tern::go([&] {
      mu.lock();
      mu.unlock();
      wg.done();
    });
    tern::sleep_for(1ms);
    mu.unlock();
    wg.wait();
    // The network: an accept that waits is woken by a poll (epoll: the only way its edge arrives).
    auto l = tern::net::listen("127.0.0.1:0");
    ASSERT_TRUE(l) << l.error().message();
    wg.add(1);
    tern::go([&] {
      auto s = l->accept();
      EXPECT_TRUE(s);
      wg.done();
    });
    tern::sleep_for(1ms);
    auto c = tern::net::dial(l->local_addr(), 5s);
    ASSERT_TRUE(c) << c.error().message();
    wg.wait();
    // Work spread from one P: the other steals it. Retried until the counters show a steal (usually the first round).
    const auto until = std::chrono::steady_clock::now() + 20s;
    while (rt.stats().steals == 0 && std::chrono::steady_clock::now() < until) {
      for (int i = 0; i < 64; i++) {
        wg.add(1);
        tern::go([&] {
          const auto end = std::chrono::steady_clock::now() + 50us;
          while (std::chrono::steady_clock::now() < end) {
          }
          wg.done();
        });
      }
      wg.wait();
    }
  });
  // A resize.
  rt.set_procs(1);
  rt.set_procs(2);
}

TEST(Trace, ChromeTraceWithEveryKind) {
  const std::string path = temp_path("kinds");
  tern::Config cfg;
  cfg.procs = 0;  // the controller's: it is made to decide below
  cfg.poller = "epoll";
  cfg.trace = path;
  cfg.controller_interval_ns = 10'000'000;
  // A bound the starting count is outside of forces a controller decision ("limits") on its first ticks.
  const int start = cfg.resolved_procs();
  if (start >= 2) {
    cfg.procs_max = 1;
  } else {
    cfg.procs_min = cfg.procs_max = 2;
  }
  {
    auto rt = tern::Runtime::create(cfg);
    ASSERT_TRUE(rt) << rt.error().message();
    const auto until = std::chrono::steady_clock::now() + 20s;
    while ((*rt)->controller_stats().decisions_up + (*rt)->controller_stats().decisions_down == 0 &&
           std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(5ms);
    }
    (*rt)->set_procs(2);  // pins the count (static) for the program
    small_program(**rt);
    EXPECT_GT((*rt)->stats().steals, 0u);
  }  // the trace is written here

  const nlohmann::json j = load(path);
  ASSERT_TRUE(j.contains("traceEvents"));
  ASSERT_TRUE(j["traceEvents"].is_array());
  std::map<std::string, int> names;
  std::set<std::string> park_reasons;
  for (const auto& e : j["traceEvents"]) {
    // The fields of the Chrome trace event format.
    ASSERT_TRUE(e.contains("name") && e["name"].is_string()) << e.dump();
    ASSERT_TRUE(e.contains("ph") && e["ph"].is_string()) << e.dump();
    ASSERT_TRUE(e.contains("ts") && e["ts"].is_number()) << e.dump();
    ASSERT_TRUE(e.contains("pid") && e["pid"].is_number_integer()) << e.dump();
    ASSERT_TRUE(e.contains("tid") && e["tid"].is_number_integer()) << e.dump();
    ASSERT_TRUE(e.contains("args") && e["args"].is_object()) << e.dump();
    const std::string ph = e["ph"];
    EXPECT_TRUE(ph == "X" || ph == "i" || ph == "M") << e.dump();
    if (ph == "X") {
      ASSERT_TRUE(e.contains("dur") && e["dur"].is_number()) << e.dump();
      EXPECT_GE(e["dur"].get<double>(), 0);
    }
    if (ph != "M") {
      EXPECT_GE(e["ts"].get<double>(), 0) << e.dump();
    }
    names[e["name"]]++;
    if (e["name"] == "park") park_reasons.insert(e["args"]["reason"].get<std::string>());
  }
  for (const char* kind :
       {"spawn", "run", "park", "ready", "steal", "poll", "resize", "controller", "thread_name", "process_name"}) {
    EXPECT_GT(names[kind], 0) << "no " << kind << " event in " << path;
  }
  for (const char* reason : {"chan receive", "sleep", "mutex", "wait group", "net accept"}) {
    EXPECT_TRUE(park_reasons.count(reason)) << "no park with reason " << reason;
  }
  EXPECT_EQ(j["otherData"]["dropped"]["P0"].get<uint64_t>(), 0u);
  std::remove(path.c_str());
}

TEST(Trace, UnwritablePathIsAnErrorUpFront) {
  tern::Config cfg;
  cfg.procs = 1;
  cfg.trace = "/nonexistent-dir/trace.json";
  auto rt = tern::Runtime::create(cfg);
  ASSERT_FALSE(rt);
  EXPECT_NE(rt.error().message().find("/nonexistent-dir/trace.json"), std::string::npos) << rt.error().message();
  EXPECT_NE(rt.error().message().find("TERN_TRACE"), std::string::npos) << rt.error().message();
}

TEST(Trace, FromEnvironment) {
  setenv("TERN_TRACE", "/tmp/some-trace.json", 1);
  auto cfg = tern::Config::from_env();
  unsetenv("TERN_TRACE");
  ASSERT_TRUE(cfg);
  EXPECT_EQ(cfg->trace, "/tmp/some-trace.json");
}

}  // namespace
