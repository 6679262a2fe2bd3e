// runtime/runtime.cc: Runtime: creating the poller and the scheduler, run, shutdown, errors.
#include "runtime/runtime.h"

#include <time.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <stdexcept>

#include "netpoll/netpoll.h"
#include "runtime/blocking.h"
#include "runtime/debug/stall_report.h"
#include "runtime/fd_limit.h"
#include "runtime/go.h"
#include "runtime/metrics/debug_routes.h"
#include "runtime/metrics/runtime_metrics.h"
#include "runtime/topology.h"
#include "scheduler/park.h"
#include "scheduler/timer.h"

namespace tern {

Result<std::unique_ptr<Runtime>> Runtime::create(Config cfg) {
  if (auto v = cfg.validate(); !v) return v.error();
  // "auto" (epoll) never fails here; an explicit choice that cannot work is an error to report.
  auto poller = netpoll::make_poller(cfg.poller, cfg.uring_park, cfg.uring_defer);
  if (!poller) return poller.error();
  std::unique_ptr<Runtime> rt(new Runtime(std::move(cfg), nullptr));
  if (auto s = rt->start(std::move(*poller)); !s) return s.error();
  return rt;
}

Runtime::Runtime(Config cfg) : cfg_(std::move(cfg)) {
  if (auto v = cfg_.validate(); !v) throw std::runtime_error("tern: " + v.error().message());
  auto poller = netpoll::make_poller(cfg_.poller, cfg_.uring_park, cfg_.uring_defer);
  if (!poller) throw std::runtime_error("tern: " + poller.error().message());
  if (auto s = start(std::move(*poller)); !s) throw std::runtime_error("tern: " + s.error().message());
}

Runtime::Runtime(Config cfg, std::unique_ptr<sched::Poller>) : cfg_(std::move(cfg)) {}

Result<void> Runtime::start(std::unique_ptr<sched::Poller> poller) {
  if (cfg_.raise_fd_limit) {
    // Before anything opens a descriptor; once per process in effect (later runtimes find soft == hard). A limit
    // that cannot be raised is said once and the runtime runs with it.
    const FdLimit fd = raise_fd_limit();
    static std::atomic<bool> warned{false};
    if (fd.error != 0 && !warned.exchange(true)) {
      std::fprintf(stderr, "tern: RLIMIT_NOFILE %s; set TERN_RAISE_FD_LIMIT=off to leave it alone\n",
                   fd.message().c_str());
    }
  }
  sched::SchedOptions opts;
  if (!cfg_.trace.empty()) {
    // Opened now, before anything runs: a path that cannot be written is an error here, not a trace lost at the end.
    auto f = debug::TraceFile::open(cfg_.trace);
    if (!f) return f.error();
    trace_file_ = std::move(*f);
    tracer_ = std::make_unique<sched::Tracer>();
    opts.tracer = tracer_.get();
  }
  opts.procs = cfg_.resolved_procs();
  opts.stack_size = cfg_.stack_size;
  opts.max_threads = cfg_.max_threads;
  opts.node_arenas = cfg_.node_arenas;
  opts.stall_ns = cfg_.stall_ms * 1'000'000;
  // validate() checked the setting; a machine hwloc cannot read runs unplaced, with one line saying so.
  if (auto placement = machine_placement(cfg_.numa); placement) {
    opts.placement = std::move(*placement);
  } else {
    std::fprintf(stderr, "tern: NUMA placement '%s' off: %s\n", cfg_.numa.c_str(), placement.error().message().c_str());
  }
  opts.on_stall = [](const sched::StallReport& r) {
    const std::string text = debug::format_stall(r);
    std::fwrite(text.data(), 1, text.size(), stderr);
    std::fflush(stderr);
  };
  BlockingPool::instance().set_max_threads(cfg_.max_blocking_threads);
  poller_ = std::move(poller);
  opts.poller = poller_.get();
  sched_ = std::make_unique<sched::Sched>(std::move(opts));
  if (trace_file_) trace_file_->attach(tracer_.get(), sched_->id());

  controller::ControllerConfig cc;
  cc.policy = cfg_.resolved_policy();
  cc.shadow_policy = cfg_.shadow_policy;
  cc.policy_config.static_procs = sched_->procs();
  cc.policy_config.rounding = *controller::parse_rounding(cfg_.quota_rounding);  // validate() checked it
  cc.policy_config.latency_target_s = cfg_.latency_target_s;
  cc.procs_min = cfg_.procs_min;
  cc.procs_max = cfg_.procs_max;
  cc.interval_ns = cfg_.controller_interval_ns;
  cc.quota_reserve = cfg_.quota_reserve;
  cc.rollback_drop = cfg_.rollback_drop;
  cc.schedtrace_ns = cfg_.schedtrace_ms * 1'000'000;
  cc.debug = cfg_.debug_controller;
  cc.fs_root = cfg_.fs_root;
  auto c = controller::Controller::start(*sched_, std::move(cc));
  if (!c) {
    sched_.reset();
    return c.error().wrap("controller");
  }
  controller_ = std::move(*c);
  // An explicit count is never overridden (docs/architecture.md, invariant 5): without the pin, the static policy's
  // target would still be clamped to the quota's ceiling, and --procs 2 under a 1-core quota ran 1 processor.
  if (cfg_.procs > 0) controller_->pin(sched_->procs());
  metrics_ = std::make_unique<metrics::RuntimeMetrics>(*sched_, *controller_, cfg_.fs_root);
  metrics_label_ = metrics::expose_runtime(cfg_.name, sched_->id(), metrics_.get());
  if (!cfg_.metrics.empty()) {
    auto d = metrics::DebugServer::start(cfg_.metrics, cfg_.admin_token);
    if (!d) {
      stop_metrics();
      controller_.reset();
      sched_.reset();
      return d.error().wrap("metrics endpoint");
    }
    debug_ = std::move(*d);
    metrics::add_runtime_routes(*debug_, *this);
  }
  return {};
}

void Runtime::stop_metrics() {
  debug_.reset();
  if (metrics_) metrics::hide_runtime(metrics_.get());  // returns once no scrape is reading this runtime
  metrics_.reset();
}

Result<void> Runtime::set_policy(const std::string& name) {
  return controller_->set_policy(name);
}

void Runtime::set_procs(int n) {
  controller_->pin(std::clamp(n, 1, sched::kMaxProcs));
  sched_->set_procs(n);
}

Runtime::~Runtime() {
  stop_metrics();
  controller_.reset();
  sched_.reset();
  if (trace_file_) {
    // A destructor cannot return the error; the trace is what the user asked for, so say why it is missing.
    if (auto r = trace_file_->write(); !r) std::fprintf(stderr, "tern: %s\n", r.error().message().c_str());
  }
}

const char* Runtime::poller_name() const {
  return sched_->poller()->name();
}

Error Runtime::stack_exhausted_error() const {
  return detail::stack_exhausted_error(*sched_);
}

namespace detail {

void go_outside_fiber() {
  std::fprintf(stderr, "tern: tern::go/spawn called outside a fiber; use Runtime::go or tern::spawn(runtime, f)\n");
  std::abort();
}

void terminate_uncaught(uint64_t fiber_id, std::exception_ptr e) {
  sched::terminate_uncaught(fiber_id, e);  // one printer for both: the scheduler's default
}

Error stack_exhausted_error(sched::Sched& s) {
  return Error(std::make_error_code(std::errc::not_enough_memory), alloc::exhausted_message(s.stats().stacks));
}

uint64_t current_fiber_id() {
  return sched::current_id();
}

}  // namespace detail

namespace detail {

void sleep_until_ns(int64_t deadline_ns) {
  if (!sched::in_fiber()) {
    // CLOCK_MONOTONIC, the clock of every deadline here; kNoDeadline sleeps to the clock's far end (never reached).
    const int64_t when = deadline_ns == kNoDeadline ? std::numeric_limits<int64_t>::max() : deadline_ns;
    const timespec ts{static_cast<time_t>(when / 1'000'000'000), static_cast<long>(when % 1'000'000'000)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
    }
    return;
  }
  if (deadline_ns == kNoDeadline) {
    // No timer: nothing will ready this fiber, and a timer at the far end would only sit in the P's heap.
    sched::park([](sched::G*, void*) { return true; }, nullptr, sched::WaitReason::kSleep);
    return;
  }
  if (deadline_ns <= sched::now_ns()) {
    sched::yield();
    return;
  }
  struct Sleep {
    sched::Timer timer;
    sched::G* g;
  } s;
  s.g = sched::current();
  s.timer.when = deadline_ns;
  s.timer.arg = &s;
  s.timer.fire = [](sched::Timer* t) { return static_cast<Sleep*>(t->arg)->g; };
  sched::park(
      [](sched::G*, void* arg) {
        sched::add_timer(static_cast<sched::Timer*>(arg));
        return true;
      },
      &s.timer, sched::WaitReason::kSleep);
}

}  // namespace detail

}  // namespace tern
