// runtime/sync/sync.h: every fiber-aware synchronization primitive of tern in one include.
//
//   #include "runtime/sync/sync.h"
//   tern::Channel<int> ch(16);
//   tern::WaitGroup wg;
//   wg.add(1);
//   tern::go([&] { for (int i = 0; i < 100; i++) ch.send(i); ch.close(); wg.done(); });
//   while (auto v = ch.recv()) sum += *v;
//   wg.wait();
//
// All of them park a waiting fiber (its thread runs other fibers meanwhile) and block a waiting plain OS thread, both
// through tern::Waiter (waiter.h). None is a process-wide singleton, and none allocates in steady state.
#pragma once

#include "runtime/sync/channel.h"     // Channel<T>: Go channels, buffered or not, with close
#include "runtime/sync/cond_var.h"    // CondVar over tern::Mutex
#include "runtime/sync/mutex.h"       // Mutex: Go's fair-ish mutex with starvation mode
#include "runtime/sync/once.h"        // Once: exactly-once initialization
#include "runtime/sync/select.h"      // select over channel cases, default and timeout
#include "runtime/sync/semaphore.h"   // Semaphore: counting, FIFO
#include "runtime/sync/spin_lock.h"   // SpinLock: for tiny critical sections that never block
#include "runtime/sync/wait_group.h"  // WaitGroup: wait for N completions
#include "runtime/sync/waiter.h"      // Waiter: the one-shot park/notify everything above is built on
