#include "runtime/runtime.h"

#include <cstdio>
#include <cstdlib>

#include "netpoll/netpoll.h"
#include "runtime/go.h"
#include "scheduler/park.h"
#include "scheduler/timer.h"

namespace tern {

Result<std::unique_ptr<Runtime>> Runtime::create(Config cfg) {
  // "auto" never fails here (it falls back to epoll); an explicit choice that cannot work is an error to report.
  auto poller = netpoll::make_poller(cfg.poller, cfg.uring_park);
  if (!poller) return make_error(poller.error());
  return std::unique_ptr<Runtime>(new Runtime(std::move(cfg), std::move(*poller)));
}

Runtime::Runtime(Config cfg) : cfg_(std::move(cfg)) {
  auto poller = netpoll::make_poller(cfg_.poller, cfg_.uring_park);
  if (!poller) {
    std::fprintf(stderr, "tern: %s\n", poller.error().c_str());
    std::exit(2);
  }
  start(std::move(*poller));
}

Runtime::Runtime(Config cfg, std::unique_ptr<sched::Poller> poller) : cfg_(std::move(cfg)) {
  start(std::move(poller));
}

void Runtime::start(std::unique_ptr<sched::Poller> poller) {
  sched::SchedOptions opts;
  opts.procs = cfg_.resolved_procs();
  opts.stack_size = cfg_.stack_size;
  poller_ = std::move(poller);
  opts.poller = poller_.get();
  sched_ = std::make_unique<sched::Sched>(std::move(opts));
}

Runtime::~Runtime() {
  sched_.reset();
}

const char* Runtime::poller_name() const {
  return sched_->poller()->name();
}

namespace detail {

void go_outside_fiber() {
  std::fprintf(stderr, "tern: tern::go/spawn called outside a fiber; use Runtime::go or tern::spawn(runtime, f)\n");
  std::abort();
}

void terminate_uncaught(uint64_t fiber_id, std::exception_ptr e) {
  std::string what = "(not a std::exception)";
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    what = ex.what();
  } catch (...) {
  }
  std::fprintf(stderr, "tern: fiber %llu terminated by an uncaught exception: %s\n",
               static_cast<unsigned long long>(fiber_id), what.c_str());
  std::fflush(stderr);
  std::abort();
}

uint64_t current_fiber_id() {
  return sched::current_id();
}

}  // namespace detail

void sleep_until(std::chrono::steady_clock::time_point deadline) {
  // steady_clock is CLOCK_MONOTONIC on Linux, the clock timers run on.
  int64_t when = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.time_since_epoch()).count();
  if (!sched::in_fiber()) {
    std::this_thread::sleep_until(deadline);
    return;
  }
  if (when <= sched::now_ns()) {
    sched::yield();
    return;
  }
  struct Sleep {
    sched::Timer timer;
    sched::G* g;
  } s;
  s.g = sched::current();
  s.timer.when = when;
  s.timer.arg = &s;
  s.timer.fire = [](sched::Timer* t) { return static_cast<Sleep*>(t->arg)->g; };
  sched::park(
      [](sched::G*, void* arg) {
        sched::add_timer(static_cast<sched::Timer*>(arg));
        return true;
      },
      &s.timer);
}

void sleep_for(std::chrono::nanoseconds d) {
  sleep_until(std::chrono::steady_clock::now() + d);
}

}  // namespace tern
