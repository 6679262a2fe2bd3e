// Task (scheduler/task.h): inline vs heap storage, moves/copies in, destruction after run, reset, re-emplace, throw.
#include "scheduler/task.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

namespace tern::sched {
namespace {

// Whether p lies inside the Task object itself (inline storage) rather than elsewhere (the heap).
bool inside(const Task& t, const void* p) {
  auto lo = reinterpret_cast<uintptr_t>(&t);
  auto at = reinterpret_cast<uintptr_t>(p);
  return at >= lo && at < lo + sizeof(Task);
}

// Counts constructions, copies, moves and destructions of a callable of `Pad` bytes of payload; records where it
// ran.
struct Counts {
  int ctor = 0, copies = 0, moves = 0, dtor = 0, calls = 0;
  const void* ran_at = nullptr;
  int live() const { return ctor + copies + moves - dtor; }
};

template <size_t Pad>
struct Probe {
  Counts* c;
  unsigned char pad[Pad] = {};
  explicit Probe(Counts* counts) : c(counts) { c->ctor++; }
  Probe(const Probe& o) : c(o.c) { c->copies++; }
  Probe(Probe&& o) noexcept : c(o.c) { c->moves++; }
  ~Probe() { c->dtor++; }
  void operator()() {
    c->calls++;
    c->ran_at = this;
  }
};

using Small = Probe<8>;                                // 16 bytes
using Exact = Probe<Task::kInline - sizeof(Counts*)>;  // exactly kInline bytes: still inline
using Large = Probe<Task::kInline>;                    // kInline + 8 bytes: heap
static_assert(sizeof(Small) <= Task::kInline);
static_assert(sizeof(Exact) == Task::kInline);
static_assert(sizeof(Large) > Task::kInline);

struct alignas(64) OverAligned {
  Counts* c;
  explicit OverAligned(Counts* counts) : c(counts) { c->ctor++; }
  OverAligned(const OverAligned& o) : c(o.c) { c->copies++; }
  OverAligned(OverAligned&& o) noexcept : c(o.c) { c->moves++; }
  ~OverAligned() { c->dtor++; }
  void operator()() {
    c->calls++;
    c->ran_at = this;
  }
};
static_assert(sizeof(OverAligned) <= Task::kInline && alignof(OverAligned) > alignof(std::max_align_t));

TEST(Task, EmptyByDefault) {
  Task t;
  EXPECT_FALSE(t);
  t.reset();  // harmless on an empty task
  EXPECT_FALSE(t);
}

TEST(Task, RunsOnceAndBecomesEmpty) {
  int runs = 0;
  Task t;
  t.emplace([&] { runs++; });
  EXPECT_TRUE(t);
  t();
  EXPECT_EQ(runs, 1);
  EXPECT_FALSE(t);
  t.reset();  // nothing left to destroy
  EXPECT_EQ(runs, 1);
}

template <class F>
void check_storage(bool want_inline) {
  Counts c;
  {
    Task t;
    t.emplace(F(&c));
    EXPECT_EQ(c.ctor, 1);
    EXPECT_EQ(c.copies, 0) << "an rvalue callable must be moved in, not copied";
    EXPECT_EQ(c.moves, 1);
    EXPECT_EQ(c.live(), 1);
    t();
    EXPECT_EQ(c.calls, 1);
    EXPECT_EQ(inside(t, c.ran_at), want_inline);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(c.ran_at) % alignof(F), 0u) << "callable stored misaligned";
    EXPECT_EQ(c.live(), 0) << "running must destroy the callable";
    EXPECT_FALSE(t);
  }
  EXPECT_EQ(c.live(), 0) << "destroyed twice (or not at all)";
  EXPECT_EQ(c.dtor, 2);  // the temporary and the stored one
}

TEST(Task, SmallCallableIsStoredInline) {
  check_storage<Small>(true);
}
TEST(Task, CallableOfExactlyInlineSizeIsStoredInline) {
  check_storage<Exact>(true);
}
TEST(Task, LargerCallableGoesToTheHeap) {
  check_storage<Large>(false);
}
TEST(Task, OverAlignedCallableGoesToTheHeapAligned) {
  check_storage<OverAligned>(false);
}

TEST(Task, LvalueCallableIsCopiedAndTheOriginalKept) {
  Counts c;
  Small original(&c);
  {
    Task t;
    t.emplace(original);
    EXPECT_EQ(c.copies, 1);
    EXPECT_EQ(c.moves, 0);
    t();
  }
  EXPECT_EQ(c.calls, 1);
  EXPECT_EQ(c.live(), 1) << "only the caller's original is left";
  original();
  EXPECT_EQ(c.calls, 2);
}

TEST(Task, MoveOnlyCaptureWorksInlineAndOnHeap) {
  auto small_p = std::make_unique<int>(7);
  int seen_small = 0;
  Task a;
  a.emplace([p = std::move(small_p), &seen_small] { seen_small = *p; });
  a();
  EXPECT_EQ(seen_small, 7);

  auto big_p = std::make_unique<int>(9);
  int seen_big = 0;
  char filler[Task::kInline] = {1};
  Task b;
  b.emplace([p = std::move(big_p), &seen_big, filler] { seen_big = *p + filler[0]; });
  b();
  EXPECT_EQ(seen_big, 10);
}

// A fiber that never ran (shutdown with fibers queued): its callable is destroyed exactly once, by reset() or by the
// Task's destructor, inline or on the heap.
template <class F>
void check_never_run() {
  Counts c;
  {
    Task t;
    t.emplace(F(&c));
    ASSERT_EQ(c.live(), 1);
    t.reset();
    EXPECT_EQ(c.live(), 0);
    EXPECT_FALSE(t);
    EXPECT_EQ(c.calls, 0);
  }
  EXPECT_EQ(c.live(), 0);
  Counts d;
  {
    Task t;
    t.emplace(F(&d));
  }
  EXPECT_EQ(d.calls, 0);
  EXPECT_EQ(d.live(), 0) << "the destructor must destroy a callable that never ran";
}

TEST(Task, NeverRunInlineCallableIsDestroyed) {
  check_never_run<Small>();
}
TEST(Task, NeverRunHeapCallableIsDestroyed) {
  check_never_run<Large>();
}

TEST(Task, EmplaceOverAnotherDestroysTheFirst) {
  Counts first, second;
  Task t;
  t.emplace(Large(&first));
  t.emplace(Small(&second));
  EXPECT_EQ(first.live(), 0) << "re-emplacing must destroy the callable it replaces";
  EXPECT_EQ(second.live(), 1);
  t();
  EXPECT_EQ(first.calls, 0);
  EXPECT_EQ(second.calls, 1);
  EXPECT_EQ(second.live(), 0);
}

// A callable that throws is still destroyed, and the Task is left empty, reusable.
template <size_t Pad>
struct Thrower {
  Counts* c;
  unsigned char pad[Pad] = {};
  explicit Thrower(Counts* counts) : c(counts) { c->ctor++; }
  Thrower(Thrower&& o) noexcept : c(o.c) { c->moves++; }
  ~Thrower() { c->dtor++; }
  void operator()() {
    c->calls++;
    throw std::runtime_error("boom");
  }
};

template <class F>
void check_throw() {
  Counts c;
  Task t;
  t.emplace(F(&c));
  EXPECT_THROW(t(), std::runtime_error);
  EXPECT_EQ(c.calls, 1);
  EXPECT_EQ(c.live(), 0) << "a throwing callable must still be destroyed";
  EXPECT_FALSE(t);
  int runs = 0;
  t.emplace([&] { runs++; });
  t();
  EXPECT_EQ(runs, 1);
}

TEST(Task, ThrowingInlineCallableIsDestroyed) {
  check_throw<Thrower<8>>();
}
TEST(Task, ThrowingHeapCallableIsDestroyed) {
  check_throw<Thrower<Task::kInline>>();
}

TEST(Task, ReusableForManyCallables) {
  Task t;
  std::string log;
  for (int i = 0; i < 4; i++) {
    if (i % 2 == 0) {
      t.emplace([&log, i] { log += std::to_string(i); });
    } else {
      char big[Task::kInline] = {};
      big[0] = static_cast<char>('a' + i);
      t.emplace([&log, big] { log += big[0]; });
    }
    t();
  }
  EXPECT_EQ(log, "0b2d");
}

}  // namespace
}  // namespace tern::sched
