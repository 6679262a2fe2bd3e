// tests/install/consumer/main.cc: a program built against an installed tern (find_package(tern), tern::tern).
//
// It splits a sum over fibers that yield and join, and exits 0 only if the fibers' parts add up to the closed form.
#include <cstdint>
#include <cstdio>
#include <vector>

#include "runtime/go.h"
#include "runtime/runtime.h"

namespace {
// Enough fibers that two processors both run some, few enough to finish at once under the sanitizers.
constexpr int kFibers = 64;
constexpr int64_t kChunk = 1000;
}  // namespace

int main() {
  auto cfg = tern::Config::from_env();
  if (!cfg) {
    std::fprintf(stderr, "tern-consumer: %s\n", cfg.error().c_str());
    return 2;
  }
  tern::Runtime rt(*cfg);
  int64_t total = 0;
  rt.run([&total] {
    std::vector<tern::JoinHandle<int64_t>> parts;
    for (int i = 0; i < kFibers; i++) {
      parts.push_back(tern::spawn([i] {
        tern::yield();
        int64_t sum = 0;
        for (int64_t v = i * kChunk; v < (i + 1) * kChunk; v++) sum += v;
        return sum;
      }));
    }
    for (auto& p : parts) total += p.join();
  });
  const int64_t n = kFibers * kChunk;
  const int64_t expected = n * (n - 1) / 2;
  std::printf("tern-consumer: %d fibers on %d procs summed %lld (expected %lld)\n", kFibers, rt.procs(),
              static_cast<long long>(total), static_cast<long long>(expected));
  return total == expected ? 0 : 1;
}
