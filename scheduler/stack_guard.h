// scheduler/stack_guard.h: turning a fiber stack overflow into a clear message.
//
// A fiber that runs off its stack touches the guard page below it and takes SIGSEGV on the very stack that has no room
// left. Each M therefore runs with an alternate signal stack (StackGuardThread), and a process-wide SIGSEGV handler
// (installed once, chaining to whatever handler was there before) checks whether the fault address lies in the
// running fiber's guard page; if so it prints
//   tern: fatal: stack overflow in fiber <id> (stack <n> bytes); raise Config::stack_size or TERN_STACK_SIZE
// and aborts. Other faults go to the previous handler (or the default action) unchanged.
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
