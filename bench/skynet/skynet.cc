// bench/skynet/skynet.cc: tern-skynet, the skynet benchmark (github.com/atemerev/skynet) on tern fibers.
//
// A tree of `size` leaf fibers with fan-out `fanout`: each leaf sends its ordinal on its parent's unbuffered channel,
// each inner node sums its children's values and sends the sum up, and the root prints the sum of 0..size-1. Every
// round prints the line the Go peer (bench/peers/go_skynet) prints, so bench/skynet.sh can compare medians:
//
//   $ build/bin/tern-skynet --procs 2
//   Result: 499999500000 in 320 ms.
//   ...
//
// After the rounds it prints the runtime's statistics. It exits 1 if a round's sum is wrong.
#include <fmt/core.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>

#include "runtime/config.h"
#include "runtime/go.h"
#include "runtime/runtime.h"
#include "runtime/sync/channel.h"

namespace {

// Unbuffered, as in the Go original: every send is a rendezvous with the parent's receive.
constexpr size_t kSkynetChannelCapacity = 0;

// The channel lives in the parent's frame; the parent receives from every child before it returns, and a sender does
// not touch the channel once its send has completed, so the reference outlives every use.
void skynet(tern::Channel<int64_t>& out, int64_t num, int64_t size, int64_t fanout) {
  if (size == 1) {
    out.send(num);
    return;
  }
  tern::Channel<int64_t> children(kSkynetChannelCapacity);
  const int64_t child_size = size / fanout;
  for (int64_t i = 0; i < fanout; i++) {
    tern::go(
        [&children, num = num + i * child_size, child_size, fanout] { skynet(children, num, child_size, fanout); });
  }
  int64_t sum = 0;
  for (int64_t i = 0; i < fanout; i++) {
    // A closed channel would be a channel bug; the wrong sum it leaves is caught by the caller's check.
    sum += children.recv().value_or(0);
  }
  out.send(sum);
}

void print_stats(const tern::RuntimeStats& s) {
  fmt::print(
      "runtime: procs={} threads={} idle_procs={} spinning={}\n"
      "fibers:  spawned={} finished={} live={} runnable={}\n"
      "sched:   switches={} yields={} parks={} steals={} global_taken={} overflows={} timers_fired={} polls={} "
      "long_running={}\n"
      "stacks:  mapped={} in_use={} free_global={} released={} unmapped={} map_failures={}\n",
      s.procs, s.threads, s.idle_procs, s.spinning, s.spawned, s.finished, s.live, s.runnable, s.switches, s.yields,
      s.parks, s.steals, s.global_taken, s.overflows, s.timers_fired, s.polls, s.long_running, s.stacks.mapped,
      s.stacks.in_use, s.stacks.free_global, s.stacks.released, s.stacks.unmapped, s.stacks.map_failures);
}

}  // namespace

int main(int argc, char** argv) {
  auto cfg = tern::Config::from_env();
  if (!cfg) {
    fmt::print(stderr, "tern-skynet: {}\n", cfg.error().message());
    return 2;
  }

  CLI::App app{"skynet: a tree of a million fibers summing their ordinals through channels"};
  std::string procs;
  int rounds = 5;
  int64_t size = 1'000'000;
  int64_t fanout = 10;
  bool dry_run = false;
  app.add_option("--procs", procs, "processors: auto or N (default: TERN_PROCS, else the machine's)");
  app.add_option("--rounds", rounds, "rounds to run")->check(CLI::PositiveNumber);
  app.add_option("--size", size, "leaves in the tree (a power of the fan-out)")->check(CLI::PositiveNumber);
  app.add_option("--fanout", fanout, "children per node")->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
  app.add_flag("--dry-run", dry_run, "print the configuration as JSON and exit");
  CLI11_PARSE(app, argc, argv);

  if (!procs.empty()) {
    auto p = tern::parse_procs(procs);
    if (!p) {
      fmt::print(stderr, "tern-skynet: --procs: {}\n", p.error().message());
      return 2;
    }
    cfg->procs = *p;
  }
  if (dry_run) {
    fmt::print("{}\n", cfg->to_json());
    return 0;
  }

  const int64_t expected = size * (size - 1) / 2;
  bool ok = true;
  auto created = tern::Runtime::create(*cfg);
  if (!created) {
    fmt::print(stderr, "tern-skynet: {}\n", created.error().message());
    return 2;
  }
  tern::Runtime& rt = **created;
  rt.run([&] {
    for (int r = 0; r < rounds; r++) {
      const auto start = std::chrono::steady_clock::now();
      tern::Channel<int64_t> root(kSkynetChannelCapacity);
      tern::go([&root, size, fanout] { skynet(root, 0, size, fanout); });
      const int64_t result = root.recv().value_or(-1);
      const auto ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
      fmt::print("Result: {} in {} ms.\n", result, ms);
      std::fflush(stdout);
      if (result != expected) ok = false;
    }
  });
  print_stats(rt.stats());
  if (!ok) {
    fmt::print(stderr, "tern-skynet: wrong sum (expected {})\n", expected);
    return 1;
  }
  return 0;
}
