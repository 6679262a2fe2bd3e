// runtime/tern.h: everything a server author includes: the runtime, fibers, every sync primitive and TCP.
//
//   #include "runtime/tern.h"        // installed: #include <tern/runtime/tern.h>
//
//   int main() {
//     tern::Runtime rt;
//     rt.run([] {
//       tern::Mutex mu;
//       auto l = tern::net::listen(*tern::net::Address::parse("127.0.0.1:8080"));
//       ...
//     });
//   }
#pragma once

#include "base/result.h"              // Result<T>, Error
#include "runtime/blocking.h"         // blocking, spawn_blocking: calls that block their thread
#include "runtime/config.h"           // Config: procs, stack size, poller, from_env
#include "runtime/deadline.h"         // deadlines shared by sync and net
#include "runtime/debug/fibers.h"     // fiber dumps: debug::fibers_json, fibers_text
#include "runtime/go.h"               // go, try_go, spawn, yield, sleep_for
#include "runtime/join_handle.h"      // JoinHandle<T>: spawn's result
#include "runtime/metrics/metrics.h"  // tern::metrics: counters, gauges, histograms, snapshot()
#include "runtime/net/net.h"          // tern::net: listen, dial, Stream, BufReader, ...
#include "runtime/pool.h"             // Pool<T>: per-processor object pool (Go's sync.Pool)
#include "runtime/runtime.h"          // Runtime
#include "runtime/sync/sync.h"        // Mutex, CondVar, Channel, select, WaitGroup, Semaphore, Once, SpinLock, Waiter
