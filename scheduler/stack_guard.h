// scheduler/stack_guard.h: turning a fiber stack overflow into a clear message.
//
// A fiber that runs off its stack touches the guard region below it (alloc/stack.h: kDefaultGuardBytes) and takes
// SIGSEGV on the very stack that has no room left. Each M therefore runs with an alternate signal stack
// (StackGuardThread), and a process-wide SIGSEGV handler (installed once, chaining to whatever handler was there
// before) checks whether the fault address lies in the running fiber's guard region; if so it prints
//   tern: fatal: stack overflow in fiber <id> (stack <n> bytes); raise Config::stack_size or TERN_STACK_SIZE
// and aborts. Other faults go to the previous handler (or the default action) unchanged.
//
// The stack below a fiber's guard is another fiber's (stacks are adjacent mappings), so an overflow is caught only
// if it touches the guard: a frame bigger than the guard that writes just part of itself could otherwise land in
// the neighbour, unnoticed, and a later fault there would not be recognised as an overflow. Two things close that:
// tern::tern's users compile with -fstack-clash-protection (a PUBLIC compile option: large frames touch each page
// as they grow), and the guard region outsizes the frames of code built without it (tests/scheduler/
// stack_overflow_test.cc has both cases).
#pragma once

namespace tern::sched {

void install_stack_guard_handler();

// RAII: an alternate signal stack for the calling thread.
class StackGuardThread {
 public:
  StackGuardThread();
  ~StackGuardThread();
  StackGuardThread(const StackGuardThread&) = delete;
  StackGuardThread& operator=(const StackGuardThread&) = delete;

 private:
  void* mem_ = nullptr;
};

}  // namespace tern::sched
