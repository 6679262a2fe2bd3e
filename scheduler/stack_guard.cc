// scheduler/stack_guard.cc: the SIGSEGV handler that names a fiber stack overflow before dying.
#include "scheduler/stack_guard.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <mutex>

#include "scheduler/g.h"
#include "scheduler/m.h"

namespace tern::sched {

M* this_m_for_signal();

namespace {

// Room for the handler's frame and for ASan's own SEGV machinery, which may run on it too.
constexpr size_t kAltStackSize = 64 << 10;

struct sigaction g_previous;  // the handler we chain to; written once under call_once

size_t append(char* buf, size_t at, const char* s) {
  size_t n = strlen(s);
  memcpy(buf + at, s, n);
  return at + n;
}
size_t append_u64(char* buf, size_t at, unsigned long long v) {
  char tmp[24];
  size_t n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0) buf[at++] = tmp[--n];
  return at;
}

void on_segv(int sig, siginfo_t* info, void* uctx) {
  M* m = this_m_for_signal();
  G* g = m != nullptr ? m->curg : nullptr;
  if (g != nullptr && g->stack.in_guard(info->si_addr)) {
    // Only async-signal-safe calls from here on.
    char buf[256];
    size_t n = append(buf, 0, "tern: fatal: stack overflow in fiber ");
    n = append_u64(buf, n, g->id);
    n = append(buf, n, " (stack ");
    n = append_u64(buf, n, g->stack.size);
    n = append(buf, n, " bytes); raise Config::stack_size or TERN_STACK_SIZE\n");
    ssize_t w = write(STDERR_FILENO, buf, n);
    (void)w;
    signal(SIGABRT, SIG_DFL);
    abort();
  }
  if (g_previous.sa_flags & SA_SIGINFO) {
    if (g_previous.sa_sigaction != nullptr) return g_previous.sa_sigaction(sig, info, uctx);
  } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN) {
    return g_previous.sa_handler(sig);
  }
  // Default action: restore it and return; the faulting instruction runs again and the kernel kills the process.
  signal(SIGSEGV, SIG_DFL);
}

}  // namespace

void install_stack_guard_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &g_previous);
  });
}

StackGuardThread::StackGuardThread() {
  void* p = mmap(nullptr, kAltStackSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return;  // without it an overflow still kills the process, just without the message
  stack_t ss{};
  ss.ss_sp = p;
  ss.ss_size = kAltStackSize;
  if (sigaltstack(&ss, nullptr) != 0) {
    munmap(p, kAltStackSize);
    return;
  }
  mem_ = p;
}

StackGuardThread::~StackGuardThread() {
  if (mem_ == nullptr) return;
  stack_t ss{};
  ss.ss_flags = SS_DISABLE;
  sigaltstack(&ss, nullptr);
  munmap(mem_, kAltStackSize);
}

}  // namespace tern::sched
