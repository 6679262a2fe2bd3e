// tests/install/consumer/main.cc: a program built against an installed tern (find_package(tern), tern::tern).
//
// It includes only runtime/tern.h, as a server author would. It splits a sum over fibers that yield, join and add
// under a tern::Mutex, and sends it over a loopback TCP connection; it exits 0 only if the sum that arrives matches the
// closed form.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "runtime/tern.h"

namespace {
// Enough fibers that two processors both run some, few enough to finish at once under the sanitizers.
constexpr int kFibers = 64;
constexpr int64_t kChunk = 1000;
}  // namespace

int main() {
  auto cfg = tern::Config::from_env();
  if (!cfg) {
    std::fprintf(stderr, "tern-consumer: %s\n", cfg.error().message().c_str());
    return 2;
  }
  tern::Runtime rt(*cfg);
  int64_t total = 0, received = -1;
  rt.run([&total, &received] {
    tern::Mutex mu;
    std::vector<tern::JoinHandle<void>> parts;
    for (int i = 0; i < kFibers; i++) {
      parts.push_back(tern::spawn([i, &mu, &total] {
        tern::yield();
        int64_t sum = 0;
        for (int64_t v = i * kChunk; v < (i + 1) * kChunk; v++) sum += v;
        std::lock_guard lk(mu);
        total += sum;
      }));
    }
    for (auto& p : parts) p.join();
    // The total, over TCP on loopback: a listener fiber reads what a dialled connection writes.
    auto l = tern::net::listen("127.0.0.1:0");
    if (!l) return;
    tern::WaitGroup wg;
    wg.add(1);
    tern::go([&] {
      char buf[32] = {};
      if (auto s = l->accept(); s) {
        if (auto r = s->read(buf, sizeof buf - 1); r) received = std::stoll(std::string(buf, r.n));
      }
      wg.done();
    });
    auto c = tern::net::dial(l->local_addr(), std::chrono::seconds(5));
    if (c) {
      const std::string text = std::to_string(total);
      if (auto w = c->write_all(text.data(), text.size()); !w) std::fprintf(stderr, "tern-consumer: write failed\n");
      c->close();
    }
    wg.wait();
  });
  const int64_t n = kFibers * kChunk;
  const int64_t expected = n * (n - 1) / 2;
  std::printf("tern-consumer: %d fibers on %d procs summed %lld, %lld arrived over TCP (expected %lld)\n", kFibers,
              rt.procs(), static_cast<long long>(total), static_cast<long long>(received),
              static_cast<long long>(expected));
  return total == expected && received == expected ? 0 : 1;
}
