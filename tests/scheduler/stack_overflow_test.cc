// A fiber whose frames are larger than a page must still die on its own guard with the stack-overflow message, not
// step over the guard into the stack below it (mapped right there: stacks are carved top-down from adjacent mappings)
// and corrupt a parked fiber's frames. Each death test parks kNeighbours fibers holding a canary in their topmost
// frame, then recurses in a fresh fiber with frames of kFrameBytes of which it writes one word (the realistic case:
// a large local buffer filled only in part), checking every canary at every level. The initial offset shifts where
// the frames fall against the guard, since one layout can happen to land a frame in it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <alloca.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "alloc/stack.h"
#include "runtime/go.h"
#include "runtime/runtime.h"
#include "runtime/sync/wait_group.h"

namespace {

constexpr int kNeighbours = 64;
constexpr size_t kCanaryWords = 32;
constexpr uint64_t kCanary = 0x5afe'c0de'5afe'c0deULL;
constexpr size_t kStackBytes = 64 << 10;  // small, so the recursion reaches the guard in a few frames

volatile uint64_t* g_canaries[kNeighbours];

void check_canaries() {
  for (volatile uint64_t* c : g_canaries) {
    for (size_t i = 0; i < kCanaryWords; i++) {
      if (c[i] != kCanary) {
        static const char msg[] = "canary hit: a frame landed in a parked fiber's stack\n";
        ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)w;
        _exit(4);
      }
    }
  }
}

template <size_t kFrameBytes>
[[gnu::noinline]] int recurse(int depth) {
  volatile char frame[kFrameBytes];
  frame[0] = static_cast<char>(depth);  // the one write: the lowest word of the frame
  check_canaries();
  if (depth == INT32_MAX) return 0;  // never: the guard stops it first (and the compiler sees a base case)
  int r = recurse<kFrameBytes>(depth + 1);
  return r + frame[0];  // used after the call: no tail call, the frame stays
}

// The same frame compiled without stack clash protection (as a library built without it would be): nothing but the
// size of the guard region stands between it and the neighbour.
template <size_t kFrameBytes>
[[gnu::noinline, gnu::optimize("no-stack-clash-protection")]] int recurse_unprobed(int depth) {
  volatile char frame[kFrameBytes];
  frame[0] = static_cast<char>(depth);
  check_canaries();
  if (depth == INT32_MAX) return 0;
  int r = recurse_unprobed<kFrameBytes>(depth + 1);
  return r + frame[0];
}

template <int (*kRecurse)(int)>
[[noreturn]] void overflow_beside_parked_fibers(size_t offset) {
  tern::Config cfg;
  cfg.procs = 1;
  cfg.stack_size = kStackBytes;
  tern::Runtime rt(cfg);
  rt.run([offset] {
    tern::WaitGroup parked, gate(1);
    for (int i = 0; i < kNeighbours; i++) {
      parked.add(1);
      tern::go([i, &parked, &gate] {
        volatile uint64_t canary[kCanaryWords];
        for (size_t j = 0; j < kCanaryWords; j++) canary[j] = kCanary;
        g_canaries[i] = canary;
        parked.done();
        gate.wait();
      });
    }
    parked.wait();
    tern::WaitGroup done(1);
    tern::go([offset, &done] {
      volatile char* shift = static_cast<char*>(alloca(offset + 1));
      shift[0] = 0;
      kRecurse(0);
      done.done();
    });
    done.wait();
  });
  std::_Exit(0);
}

class StackOverflow : public ::testing::TestWithParam<size_t> {};

constexpr const char* kOverflowMessage = "tern: fatal: stack overflow in fiber";

TEST_P(StackOverflow, EightKiBFramesDieOnTheGuardNotInTheNeighbour) {
  EXPECT_DEATH(overflow_beside_parked_fibers<recurse<8 << 10>>(GetParam()), kOverflowMessage);
}

TEST_P(StackOverflow, SixteenKiBFramesDieOnTheGuardNotInTheNeighbour) {
  EXPECT_DEATH(overflow_beside_parked_fibers<recurse<16 << 10>>(GetParam()), kOverflowMessage);
}

// Larger than the guard region: only the probes of -fstack-clash-protection (a usage requirement of tern::tern)
// make it touch the guard.
TEST_P(StackOverflow, FramesLargerThanTheGuardDieOnTheGuard) {
  static_assert((96 << 10) > tern::alloc::kDefaultGuardBytes);
  EXPECT_DEATH(overflow_beside_parked_fibers<recurse<96 << 10>>(GetParam()), kOverflowMessage);
}

// Without probes: the guard region's size alone must cover the frame.
TEST_P(StackOverflow, UnprobedFramesSmallerThanTheGuardDieOnTheGuard) {
  static_assert((32 << 10) < tern::alloc::kDefaultGuardBytes);
  EXPECT_DEATH(overflow_beside_parked_fibers<recurse_unprobed<32 << 10>>(GetParam()), kOverflowMessage);
  EXPECT_DEATH(overflow_beside_parked_fibers<recurse_unprobed<8 << 10>>(GetParam()), kOverflowMessage);
}

// Offsets in 1 KiB steps across one 8 KiB frame.
INSTANTIATE_TEST_SUITE_P(Offsets, StackOverflow, ::testing::Values(0, 1024, 2048, 3072, 4096, 5120, 6144, 7168));

}  // namespace
