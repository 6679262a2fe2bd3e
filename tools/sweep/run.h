// tools/sweep/run.h: the processes tern-sweep runs and what it reads from them: a child pinned to a CPU list (the
// server on some CPUs, the load generator on others, as `taskset` would), one load step by tern-load or wrk, the
// server's CPU and request count from its metrics or /proc.
//
//   auto p = Process::start({"build/bin/tern-echo", "--listen", ...}, {0}, "server.log");   // pinned to CPU 0
//   auto r = run_load(spec);           // tern-load --json or wrk with a Lua done() script, raw output kept
//   auto m = scrape_server(*addr);     // process_cpu_seconds_total, tern_echo_requests_total, tern_procs
//
// A plain program: no tern runtime, blocking calls only (the load is in the child).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "runtime/net/address.h"

namespace tern::sweep {

// "0", "0-3", "0,2-3" (taskset -c's form): the CPUs, sorted, each once. An error names what is wrong.
Result<std::vector<int>> parse_cpu_list(std::string_view s);
// "16,32,64": positive integers, at least one. `flag` names the flag in errors.
Result<std::vector<int>> parse_int_list(std::string_view flag, std::string_view s);
// 16, 32, ... doubling from `from` up to `to` inclusive (to itself added when it is not a power-of-two multiple).
std::vector<int> doubling_ladder(int from, int to);

class Process {
 public:
  // fork, pin (sched_setaffinity; empty cpus: not pinned), set the nice value (0: as this process), stdout to
  // out_path and stderr to err_path (the same file when err_path is empty), exec. An error when the program cannot be
  // executed (errno from exec, reported through a close-on-exec pipe), a CPU is not allowed or the nice value is not.
  static Result<Process> start(const std::vector<std::string>& argv, const std::vector<int>& cpus,
                               const std::string& out_path, const std::string& err_path = "", int niceness = 0);
  Process() = default;
  Process(Process&& o) noexcept : pid_(o.pid_) { o.pid_ = -1; }
  Process& operator=(Process&& o) noexcept;
  ~Process() { stop(); }

  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }
  // The wait status once it exits within `limit`; nullopt while it runs on, or at once when interrupted().
  std::optional<int> wait_for(std::chrono::milliseconds limit);
  // SIGTERM, up to 2 s, then SIGKILL; reaps it.
  void stop();

 private:
  std::optional<int> wait(std::chrono::milliseconds limit, bool interruptible);
  pid_t pid_ = -1;
};

// A flag a signal handler sets (SIGINT, SIGTERM): every wait for a child returns at once, so the sweep stops at its
// next check instead of running its steps out.
void set_interrupt_flag(const std::atomic<bool>* flag);
bool interrupted();

// "exit 1", "signal 9 (Killed)".
std::string describe_status(int wait_status);

int free_port();
// True once something accepts on addr within limit.
bool wait_for_port(const net::Address& addr, std::chrono::milliseconds limit);

struct LoadSpec {
  std::string tool = "tern-load";  // or "wrk"
  std::string bin;
  std::string url;  // http://HOST:PORT/PATH
  int connections = 1;
  double duration_s = 3;
  double timeout_s = 5;
  std::vector<int> cpus;   // the generator's CPUs (empty: unpinned)
  int niceness = 0;        // its nice value (0: as tern-sweep's)
  std::string out_path;    // its stdout, kept
  std::string err_path;    // its stderr, kept
  std::string wrk_script;  // wrk: the Lua script with done()
};

struct LoadResult {
  uint64_t ok = 0;
  double elapsed_s = 0;
  double throughput = 0;
  double p50_s = NAN, p99_s = NAN, p999_s = NAN;
  std::map<std::string, uint64_t> errors;
  std::string note;  // the generator's exit status when not 0, what it printed on stderr
};

// Runs one step and reads its result. An error only when there is no result to read (the program did not run, its
// output did not parse); failed requests are counted in the result's errors.
Result<LoadResult> run_load(const LoadSpec& spec);

// The parsers, for the tests: tern-load's --json object and the line wrk's done() script (wrk_lua_script) prints.
Result<LoadResult> parse_tern_load_json(std::string_view text);
Result<LoadResult> parse_wrk_done(std::string_view text);
std::string wrk_lua_script();
// wrk's -d: whole seconds (it reads no fractions), at least 1.
int wrk_seconds(double s);

struct ServerSample {
  double cpu_s = NAN;     // process_cpu_seconds_total
  double requests = NAN;  // tern_echo_requests_total
  double procs = NAN;     // tern_procs
};
Result<ServerSample> scrape_server(const net::Address& metrics, int timeout_ms = 3000);

// Busy and total jiffies of a set of CPUs from /proc/stat (busy: all but idle and iowait); {NaN, NaN} when unreadable.
std::pair<double, double> cpu_jiffies(const std::vector<int>& cpus);

// The machine, for the report.
struct MachineInfo {
  int cpus_online = 0;
  std::string cpu_model;
  std::string kernel;
  double loadavg1 = NAN;
};
MachineInfo machine_info();
double loadavg1();

}  // namespace tern::sweep
