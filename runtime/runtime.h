// runtime/runtime.h: tern::Runtime, the object a server's main creates.
//
//   int main() {
//     tern::Runtime rt(tern::Config::from_env().value());
//     rt.run([] {
//       tern::WaitGroup wg;
//       for (int i = 0; i < 10; i++) { wg.add(1); tern::go([&] { work(); wg.done(); }); }
//       wg.wait();
//     });                                  // returns when this fiber returns
//   }
//
// Several Runtimes may live in one process; nothing in tern is a process-wide singleton. Destroying a Runtime stops
// its threads and frees every fiber stack; fibers still parked at that point are discarded without unwinding.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <source_location>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "runtime/config.h"
#include "runtime/controller/controller.h"
#include "runtime/debug/trace_file.h"
#include "runtime/join_handle.h"
#include "runtime/metrics/debug_server.h"
#include "scheduler/sched.h"

namespace tern {

namespace metrics {
class RuntimeMetrics;
}

namespace detail {
template <class F>
auto spawn(sched::Sched& s, F&& f, std::source_location site = std::source_location::current())
    -> JoinHandle<std::invoke_result_t<std::decay_t<F>&>> {
  using T = std::invoke_result_t<std::decay_t<F>&>;
  auto state = std::make_shared<JoinState<T>>();
  s.go([state, fn = std::forward<F>(f)]() mutable { state->run(fn); }, site);
  return JoinHandle<T>(std::move(state));
}
// As spawn(), but false where no stack can be had (f is not run): try_go's rule.
template <class F>
auto try_spawn(sched::Sched& s, F&& f, std::source_location site = std::source_location::current())
    -> std::optional<JoinHandle<std::invoke_result_t<std::decay_t<F>&>>> {
  using T = std::invoke_result_t<std::decay_t<F>&>;
  auto state = std::make_shared<JoinState<T>>();
  if (!s.try_go([state, fn = std::forward<F>(f)]() mutable { state->run(fn); }, site)) return std::nullopt;
  return JoinHandle<T>(std::move(state));
}
}  // namespace detail

using RuntimeStats = sched::SchedStats;
using FiberInfo = sched::FiberInfo;

class Runtime {
 public:
  // Starts the runtime's processors (threads start on demand). Config::procs = 0 resolves from the machine.
  // Returns an error if the configuration cannot work here (poller = "uring" on a kernel without io_uring).
  static Result<std::unique_ptr<Runtime>> create(Config cfg = {});
  // As create(), throwing std::runtime_error with the reason where create() returns an error. The library never exits
  // the process: a program that wants an exit status on a bad configuration uses create().
  explicit Runtime(Config cfg = {});
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Runs main in a fiber and blocks the calling thread (which must not be a fiber) until it returns.
  // The fiber dump names the caller's line as where each fiber was spawned (`site`, here and below).
  template <class F>
  void run(F&& main, std::source_location site = std::source_location::current()) {
    // A mutex and condition variable rather than a semaphore: pthread_cond_wait is a call the sanitizers know blocks,
    // so ThreadSanitizer runs a signal handler that interrupts this wait at once. Over a semaphore (a bare futex
    // system call) it defers the handler until the thread next enters an intercepted function, and a signal sent to
    // the process, which Linux gives the main thread first, would never reach tern::signals (signals.h).
    struct Done {
      std::mutex mu;
      std::condition_variable cv;
      bool done = false;
    } done;
    go(
        [&main, &done] {
          struct Signal {
            Done& d;
            ~Signal() {
              std::lock_guard lk(d.mu);
              d.done = true;
              d.cv.notify_one();
            }
          } signal{done};
          main();
        },
        site);
    std::unique_lock lk(done.mu);
    done.cv.wait(lk, [&] { return done.done; });
  }

  // Starts a detached fiber; callable from any thread, inside or outside this runtime's fibers.
  template <class F>
  void go(F&& f, std::source_location site = std::source_location::current()) {
    sched_->go(std::forward<F>(f), site);
  }

  // Like go(), but when no stack can be had it returns the error (f is not run) instead of stopping the process;
  // see tern::try_go in runtime/go.h.
  template <class F>
  Result<void> try_go(F&& f, std::source_location site = std::source_location::current()) {
    if (sched_->try_go(std::forward<F>(f), site)) return {};
    return stack_exhausted_error();
  }

  // An explicit processor count: the controller stops changing it (its policy becomes static), as a call to Go's
  // runtime.GOMAXPROCS stops Go's automatic updates. n is clamped to [1, 1024].
  void set_procs(int n);
  // Makes `name` the controller's active policy (static, quota, threshold, hill, latency) and lets it change the
  // count again after a set_procs(). An unknown name is an error and changes nothing.
  Result<void> set_policy(const std::string& name);
  int procs() const { return sched_->procs(); }
  RuntimeStats stats() const { return sched_->stats(); }
  // Every live fiber with its state, what it waits on and for how long, the P it runs on and where it was spawned:
  // the goroutine dump. Callable from any thread, any time; it stops nothing, and costs a read of every G record.
  // runtime/debug/fibers.h renders it (JSON for GET /debug/fibers, text like Go's dump).
  std::vector<FiberInfo> dump_fibers() const { return sched_->fibers(); }
  // What the controller thread (runtime/controller/controller.h) has measured and decided.
  controller::ControllerStats controller_stats() const { return controller_->stats(); }
  // Adds n to the application's work counter from any thread (tern::count_work is the fibers' shortcut).
  void count_work(uint64_t n = 1) { sched_->count_work(n); }
  const Config& config() const { return cfg_; }
  // Config::name, and the value of the runtime="..." label its metrics carry while other runtimes live: the name, or
  // NAME-ID where a runtime of that name already lived when this one started (runtime/metrics/runtime_metrics.h).
  const std::string& name() const { return cfg_.name; }
  const std::string& metrics_label() const { return metrics_label_; }
  // Whether the caller is a fiber of this runtime (several runtimes may live in one process).
  bool on_this_runtime() const { return sched::Sched::current() == sched_.get(); }
  // Like go(), returning a handle to join the fiber with; callable from any thread (tern::spawn in runtime/go.h).
  template <class F>
  auto spawn(F&& f, std::source_location site = std::source_location::current()) {
    return detail::spawn(*sched_, std::forward<F>(f), site);
  }
  // Like spawn(), but when no stack can be had it returns the error (f is not run): see tern::try_go_on.
  template <class F>
  auto try_spawn(F&& f, std::source_location site = std::source_location::current())
      -> Result<JoinHandle<std::invoke_result_t<std::decay_t<F>&>>> {
    auto h = detail::try_spawn(*sched_, std::forward<F>(f), site);
    if (!h) return stack_exhausted_error();
    return std::move(*h);
  }
  // The poller backend in use ("uring", "epoll", or "none" before netpoll is attached).
  const char* poller_name() const;
  // The debug endpoint Config::metrics started (nullptr when off), for adding routes: debug_server()->handle(...).
  metrics::DebugServer* debug_server() const { return debug_.get(); }

 private:
  Runtime(Config cfg, std::unique_ptr<sched::Poller> poller);
  Result<void> start(std::unique_ptr<sched::Poller> poller);
  Error stack_exhausted_error() const;
  void stop_metrics();

  Config cfg_;
  // The event trace (Config::trace): declared before sched_ so that they outlive it; the file is written once the
  // scheduler has stopped, in the destructor.
  std::unique_ptr<debug::TraceFile> trace_file_;
  std::unique_ptr<sched::Tracer> tracer_;
  // Declared before sched_ so that it is destroyed after it: the scheduler's shutdown may still call wake().
  std::unique_ptr<sched::Poller> poller_;
  std::unique_ptr<sched::Sched> sched_;
  // Declared after sched_ so that it stops before the scheduler does.
  std::unique_ptr<controller::Controller> controller_;
  // The runtime's metrics (exposed with every other live runtime's by one process-wide collector: metric names are
  // process-wide, as in Prometheus's default registry) and the debug endpoint; both stop before the controller and
  // the scheduler.
  std::unique_ptr<metrics::RuntimeMetrics> metrics_;
  std::string metrics_label_;
  std::unique_ptr<metrics::DebugServer> debug_;
};

}  // namespace tern
