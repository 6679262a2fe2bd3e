// bench/parked/parked.cc: tern-parked, many live fibers: N fibers each write a 1 KiB local array, report started on
// one WaitGroup and park on another. Prints the time to spawn and park them all and the resident memory they added
// (VmRSS with all parked minus VmRSS before the first spawn), per fiber, and the process's CPU time over the spawning
// and parking, in the line the Go peer (parked.go) prints:
//
//   $ build/bin/tern-parked --procs 2 --n 200000
//   parked n=200000 spawn_park_ms=4000 cpu_ms=... rss_before_kb=... rss_parked_kb=... bytes_per_fiber=4331
//   pte_bytes_per_fiber=627
//
// (one line). VmRSS leaves out the page tables, which a sparse stack layout makes large (a 4 KiB page-table page maps
// 2 MiB of address space, about six 256 KiB stacks with their guards): pte_bytes_per_fiber is their growth per fiber.
//
// then the runtime's stack statistics. bench/parked.sh runs it beside the Go program.
#include <fmt/core.h>
#include <CLI/CLI.hpp>

#include <sys/resource.h>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <thread>

#include "runtime/config.h"
#include "runtime/go.h"
#include "runtime/runtime.h"
#include "runtime/sync/wait_group.h"

namespace {

// The bytes of stack each fiber writes, as parked.go's goroutines do.
constexpr size_t kTouchBytes = 1024;
// Time for the last fiber between its started.done() and parking on release: RSS is read after it.
constexpr auto kSettle = std::chrono::milliseconds(100);

// The process's CPU time (user + system, all threads), in ms: beside the wall time, what a loaded machine cannot
// stretch by making the program wait for a processor.
int64_t cpu_ms() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return (static_cast<int64_t>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1'000'000 + ru.ru_utime.tv_usec +
          ru.ru_stime.tv_usec) /
         1000;
}

// A field of /proc/self/status (VmRSS, VmPTE), in KiB; -1 if unreadable.
long status_kb(const char* name) {
  const size_t len = std::strlen(name);
  FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return -1;
  char line[256];
  long kb = -1;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::strncmp(line, name, len) == 0 && line[len] == ':') {
      kb = std::strtol(line + len + 1, nullptr, 10);
      break;
    }
  }
  std::fclose(f);
  return kb;
}

[[gnu::noinline]] void touch(int64_t& sink) {
  volatile unsigned char buf[kTouchBytes];
  for (size_t i = 0; i < kTouchBytes; i++) buf[i] = static_cast<unsigned char>(i);
  sink += buf[kTouchBytes - 1];
}

}  // namespace

int main(int argc, char** argv) {
  auto cfg = tern::Config::from_env();
  if (!cfg) {
    fmt::print(stderr, "tern-parked: {}\n", cfg.error().message());
    return 2;
  }
  CLI::App app{"parked: N fibers touching a little stack, all parked on one WaitGroup"};
  std::string procs;
  int64_t n = 200'000;
  app.add_option("--procs", procs, "processors: auto or N (default: TERN_PROCS, else the machine's)");
  app.add_option("-n,--n", n, "fibers to park")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  if (!procs.empty()) {
    auto p = tern::parse_procs(procs);
    if (!p) {
      fmt::print(stderr, "tern-parked: --procs: {}\n", p.error().message());
      return 2;
    }
    cfg->procs = *p;
  }
  auto created = tern::Runtime::create(*cfg);
  if (!created) {
    fmt::print(stderr, "tern-parked: {}\n", created.error().message());
    return 2;
  }
  tern::Runtime& rt = **created;
  fmt::print(stderr, "procs={}\n", rt.procs());
  std::vector<int64_t> sinks(static_cast<size_t>(n));
  rt.run([&] {
    tern::WaitGroup started, release(1), finished;
    const long before = status_kb("VmRSS"), pte_before = status_kb("VmPTE");
    const int64_t cpu0 = cpu_ms();
    const auto t0 = std::chrono::steady_clock::now();
    started.add(n);
    finished.add(n);
    // tern::go, as the Go peer's `go`: the stack is bound when the fiber first runs, on whichever P runs it. Out of
    // stacks, it stops the program with the limit to raise.
    for (int64_t i = 0; i < n; i++) {
      tern::go([&, i] {
        touch(sinks[static_cast<size_t>(i)]);
        started.done();
        release.wait();
        finished.done();
      });
    }
    started.wait();
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
    const int64_t cpu = cpu_ms() - cpu0;
    std::this_thread::sleep_for(kSettle);
    const long parked = status_kb("VmRSS"), pte_parked = status_kb("VmPTE");
    release.done();
    finished.wait();
    fmt::print(
        "parked n={} spawn_park_ms={} cpu_ms={} rss_before_kb={} rss_parked_kb={} bytes_per_fiber={} "
        "pte_bytes_per_fiber={}\n",
        n, ms, cpu, before, parked, (parked - before) * 1024 / n, (pte_parked - pte_before) * 1024 / n);
  });
  const auto s = rt.stats();
  fmt::print(stderr, "stacks: mapped={} in_use={} free_global={} released={} unmapped={} map_failures={}\n",
             s.stacks.mapped, s.stacks.in_use, s.stacks.free_global, s.stacks.released, s.stacks.unmapped,
             s.stacks.map_failures, s.stacks.prefaulted);
  return 0;
}
