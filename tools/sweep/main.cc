// tools/sweep/main.cc: tern-sweep, a server's throughput and latency over a concurrency ladder, its knee found two
// ways and compared with tern-capacity's prediction, for each processor count; a Markdown report, PNG plots and JSON.
//
//   tern-sweep                                             # tern-echo started here, procs 1 and 2, N = 16..8192
//   tern-sweep --server-cpus 0 --load-cpus 1 --procs 1 --ladder-to 1024 --path '/mix?cpu_us=20&sleep_ms=20'
//   tern-sweep --ladder 2,4 --procs 1 --step-duration 1s --out /tmp/s   # a two-step smoke run
//   tern-sweep --server 127.0.0.1:8080 --metrics 127.0.0.1:9100 --server-pid 1234   # a server already running
//   tern-sweep --load wrk --json ...                       # wrk as the generator; the analysis as JSON on stdout
//
// Each step is a closed loop at concurrency N: N connections, each sending its next request when its reply is in (the
// load generator's rate 0), so N is the number of requests in flight, the quantity the knee is a value of. The load
// generator is a child process (pinned with --load-cpus) and so is the server (--server-cpus, restarted for each
// processor count so that one count's leftovers do not bias the next); tern-sweep itself only waits and reads.
//
// The prediction comes first, from the server unloaded (tern-capacity --probe: R0 and CPU per request), so that it is
// a prediction; the ladder then measures. Exit status: 0 with at least one processor count analyzed, 1 when none
// could be (the outputs still say why), 2 for a bad flag (named), 130 when interrupted (partial outputs written).
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "runtime/config.h"
#include "runtime/net/address.h"
#include "tools/sweep/analysis.h"
#include "tools/sweep/report.h"
#include "tools/sweep/run.h"
#include "tools/top/proc_stat.h"

namespace {

namespace fs = std::filesystem;
using tern::sweep::Step;

constexpr int kExitUsage = 2;
constexpr int kExitInterrupted = 130;

std::atomic<bool> g_interrupted{false};
extern "C" void on_signal(int) {
  g_interrupted.store(true);
}

std::string shell_quote(const std::string& a) {
  if (!a.empty() && a.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") ==
                        std::string::npos)
    return a;
  std::string q = "'";
  for (char c : a) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// PATH lookup, as a shell would; a name with a slash is taken as given. Empty when not found.
std::string find_program(const std::string& name) {
  if (name.find('/') != std::string::npos) return access(name.c_str(), X_OK) == 0 ? name : std::string();
  const char* path = std::getenv("PATH");
  std::string p = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  for (;;) {
    const size_t colon = p.find(':', start);
    std::string dir = p.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    if (dir.empty()) dir = ".";
    const std::string full = dir + "/" + name;
    if (access(full.c_str(), X_OK) == 0) return full;
    if (colon == std::string::npos) return "";
    start = colon + 1;
  }
}

std::string duration_text(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const long t = std::lround(s);
  return t >= 60 ? fmt::format("{}m{:02}s", t / 60, t % 60) : fmt::format("{}s", t);
}

std::string now_text(const char* format) {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, format, &tm);
  return buf;
}

// A duration flag: "3s", "500ms", a bare number of ms; "0" where zero is allowed.
tern::Result<double> duration_flag(const std::string& flag, const std::string& text, bool zero_ok) {
  if (zero_ok && (text == "0" || text == "0s" || text == "0ms")) return 0.0;
  auto d = tern::parse_duration_ns(text);
  if (!d) return d.error().wrap(flag + (zero_ok ? " (0 for none)" : ""));
  return static_cast<double>(*d) * 1e-9;
}

struct Context {
  std::string load_tool, load_bin, wrk_script, url, out_dir;
  std::vector<int> load_cpus;
  double step_s = 3, warmup_s = 0.5, timeout_s = 5;
  tern::net::Address metrics;    // empty: none
  std::vector<int> server_cpus;  // pinned to (empty: not pinned)
  int niceness = 0;              // of every child
  pid_t server_pid = 0;
  size_t steps_done = 0, steps_total = 0;
  std::chrono::steady_clock::time_point start;
};

tern::sweep::LoadSpec spec_for(const Context& c, int procs, int n, double duration, const std::string& tag) {
  tern::sweep::LoadSpec spec;
  spec.tool = c.load_tool;
  spec.bin = c.load_bin;
  spec.url = c.url;
  spec.connections = n;
  spec.duration_s = duration;
  spec.timeout_s = c.timeout_s;
  spec.cpus = c.load_cpus;
  spec.niceness = c.niceness;
  spec.wrk_script = c.wrk_script;
  const std::string base = fmt::format("{}/raw/p{}-n{}{}", c.out_dir, procs, n, tag);
  spec.out_path = base + (c.load_tool == "wrk" ? ".out" : ".json");
  spec.err_path = base + ".err";
  return spec;
}

Step run_step(Context& c, int procs, int n, bool refined) {
  Step st;
  st.procs = procs;
  st.concurrency = n;
  st.refined = refined;
  if (c.warmup_s > 0) {
    auto w = tern::sweep::run_load(spec_for(c, procs, n, c.warmup_s, "-warmup"));
    if (!w) st.note = "warmup: " + w.error().message();
  }
  tern::Result<tern::sweep::ServerSample> m0 = tern::make_error("no metrics");
  if (!c.metrics.empty()) m0 = tern::sweep::scrape_server(c.metrics);
  const double c0 = c.server_pid > 0 ? tern::top::process_cpu_seconds(c.server_pid) : NAN;
  const auto j0 = c.server_cpus.empty() ? std::pair<double, double>{NAN, NAN} : tern::sweep::cpu_jiffies(c.server_cpus);
  const auto l0 = c.load_cpus.empty() ? std::pair<double, double>{NAN, NAN} : tern::sweep::cpu_jiffies(c.load_cpus);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = tern::sweep::run_load(spec_for(c, procs, n, c.step_s, ""));
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto j1 = c.server_cpus.empty() ? std::pair<double, double>{NAN, NAN} : tern::sweep::cpu_jiffies(c.server_cpus);
  const double c1 = c.server_pid > 0 ? tern::top::process_cpu_seconds(c.server_pid) : NAN;
  const auto l1 = c.load_cpus.empty() ? std::pair<double, double>{NAN, NAN} : tern::sweep::cpu_jiffies(c.load_cpus);
  if (j1.second > j0.second) st.server_cpus_busy = (j1.first - j0.first) / (j1.second - j0.second);
  if (l1.second > l0.second) st.load_cpus_busy = (l1.first - l0.first) / (l1.second - l0.second);
  // The load's run includes its start and exit, a few ms of the server idling: close enough for "where did the CPU go".
  if (std::isfinite(c0) && std::isfinite(c1) && wall > 0) st.server_cpu_util = (c1 - c0) / wall;
  tern::Result<tern::sweep::ServerSample> m1 = tern::make_error("no metrics");
  if (!c.metrics.empty()) m1 = tern::sweep::scrape_server(c.metrics);
  if (!r) {
    st.note += (st.note.empty() ? "" : "; ") + r.error().message();
    return st;
  }
  st.ok = r->ok;
  st.elapsed_s = r->elapsed_s;
  st.throughput = r->throughput;
  st.p50_s = r->p50_s;
  st.p99_s = r->p99_s;
  st.p999_s = r->p999_s;
  st.errors = r->errors;
  if (!r->note.empty()) st.note += (st.note.empty() ? "" : "; ") + r->note;
  if (m0 && m1 && std::isfinite(m0->cpu_s) && std::isfinite(m1->cpu_s) && std::isfinite(m0->requests) &&
      std::isfinite(m1->requests) && m1->requests > m0->requests) {
    st.cpu_per_request_s = (m1->cpu_s - m0->cpu_s) / (m1->requests - m0->requests);
    st.cpu_source = "metrics: process_cpu_seconds_total / tern_echo_requests_total";
  } else if (std::isfinite(c0) && std::isfinite(c1) && st.ok > 0) {
    st.cpu_per_request_s = (c1 - c0) / static_cast<double>(st.ok);
    st.cpu_source = fmt::format("/proc/{}/stat / the load's ok replies", c.server_pid);
  }
  return st;
}

void progress(Context& c, const Step& st) {
  c.steps_done++;
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - c.start).count();
  const double per = elapsed / static_cast<double>(c.steps_done);
  const double eta = per * static_cast<double>(c.steps_total > c.steps_done ? c.steps_total - c.steps_done : 0);
  std::string what = st.throughput > 0
                         ? fmt::format("{:.0f} ok/s, p99 {}", st.throughput, tern::sweep::fmt_seconds(st.p99_s))
                         : std::string("no reply");
  if (st.error_count() > 0) what += fmt::format(", {} errors", st.error_count());
  fmt::print(stderr, "tern-sweep: step {} of {} (procs {}, concurrency {}{}): {}; elapsed {}, ETA {}\n", c.steps_done,
             c.steps_total, st.procs > 0 ? std::to_string(st.procs) : std::string("?"), st.concurrency,
             st.refined ? ", refining" : "", what, duration_text(elapsed), duration_text(eta));
}

struct Server {
  tern::sweep::Process proc;
  tern::net::Address addr, metrics;
  std::string log;
};

tern::Result<Server> start_server(const std::string& bin, int procs, const std::vector<int>& cpus, int niceness,
                                  const std::string& out_dir) {
  std::string last;
  for (int attempt = 0; attempt < 3; attempt++) {
    const int port = tern::sweep::free_port(), mport = tern::sweep::free_port();
    if (port == 0 || mport == 0 || port == mport) continue;
    Server s;
    s.addr = tern::net::Address::loopback_v4(static_cast<uint16_t>(port));
    s.metrics = tern::net::Address::loopback_v4(static_cast<uint16_t>(mport));
    s.log = fmt::format("{}/raw/server-p{}.log", out_dir, procs);
    auto p = tern::sweep::Process::start(
        {bin, "--listen", s.addr.to_string(), "--metrics", s.metrics.to_string(), "--procs", std::to_string(procs)},
        cpus, s.log, "", niceness);
    if (!p) return p.error();
    s.proc = std::move(*p);
    if (tern::sweep::wait_for_port(s.addr, std::chrono::seconds(10)) &&
        tern::sweep::wait_for_port(s.metrics, std::chrono::seconds(5)))
      return s;
    std::ifstream f(s.log);
    std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    last = fmt::format("{} did not accept on {} (output: {})", bin, s.addr.to_string(),
                       text.empty() ? "none" : text.substr(0, 300));
  }
  return tern::make_error(last.empty() ? "no free port" : last);
}

tern::sweep::Prediction predict(const std::string& capacity_bin, const Context& c, int procs, pid_t pid,
                                const tern::net::Address& metrics) {
  tern::sweep::Prediction pr;
  std::vector<std::string> argv = {capacity_bin, "--json", "--probe", c.url};
  if (pid > 0) argv.insert(argv.end(), {"--pid", std::to_string(pid)});
  if (!metrics.empty()) argv.insert(argv.end(), {"--from", metrics.to_string()});
  const std::string out = fmt::format("{}/raw/capacity-p{}.json", c.out_dir, procs);
  const std::string err = fmt::format("{}/raw/capacity-p{}.err", c.out_dir, procs);
  auto p = tern::sweep::Process::start(argv, c.load_cpus, out, err, c.niceness);
  if (!p) {
    pr.error = p.error().message();
    return pr;
  }
  auto st = p->wait_for(std::chrono::seconds(60));
  if (!st) {
    p->stop();
    pr.error = tern::sweep::interrupted() ? "tern-capacity: interrupted" : "tern-capacity ran past 60 s: stopped";
    return pr;
  }
  std::ifstream f(out);
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto parsed = tern::sweep::parse_capacity_json(text);
  if (!parsed) {
    std::ifstream e(err);
    std::string etext((std::istreambuf_iterator<char>(e)), std::istreambuf_iterator<char>());
    pr.error = fmt::format("tern-capacity {}: {}", tern::sweep::describe_status(*st),
                           etext.empty() ? parsed.error().message() : etext.substr(0, 300));
    while (!pr.error.empty() && pr.error.back() == '\n') pr.error.pop_back();
    return pr;
  }
  pr = *parsed;
  pr.raw_path = out;
  if (pid <= 0 && pr.error.empty() == false) pr.error += " (give --server-pid for the server's CPU per request)";
  return pr;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "tern-sweep: throughput and latency over a concurrency ladder, the knee measured and predicted, per processor "
      "count"};
  std::string server_bin, load_bin, capacity_bin, wrk_bin = "wrk", gnuplot_bin = "gnuplot";
  std::string procs_text = "1,2", server_cpus, load_cpus, server, metrics, server_pid_text;
  std::string ladder_text, ladder_from = "16", ladder_to = "8192", refine_text = "3";
  std::string path = "/mix?cpu_us=100&sleep_ms=5", load = "tern-load";
  std::string step_text = "3s", warmup_text = "500ms", timeout_text = "5s", slo_text = "100", out_dir, nice_text;
  bool json = false;
  app.add_option("--procs", procs_text, "server processor counts, each a ladder of its own (default 1,2)");
  app.add_option("--ladder", ladder_text,
                 "concurrencies, e.g. 16,32,64 (default: --ladder-from doubling to --ladder-to)");
  app.add_option("--ladder-from", ladder_from, "first concurrency of the doubling ladder (default 16)");
  app.add_option("--ladder-to", ladder_to, "last concurrency of the doubling ladder (default 8192)");
  app.add_option("--refine", refine_text,
                 "steps added between the two around the 95%-of-peak line, to locate the knee (default 3; 0: none)");
  app.add_option("--path", path, "request path (default /mix?cpu_us=100&sleep_ms=5)");
  app.add_option("--load", load, "load generator: tern-load or wrk (default tern-load)");
  app.add_option("--step-duration", step_text, "measured time per step (default 3s)");
  app.add_option("--warmup", warmup_text, "a discarded run before each step (default 500ms; 0: none)");
  app.add_option("--timeout", timeout_text, "per-request time limit (default 5s)");
  app.add_option("--slo-ms", slo_text, "p99 latency objective for knee (a), ms (default 100)");
  app.add_option("--server-cpus", server_cpus, "CPUs for the server, taskset -c style (0, 0-1, 0,2)");
  app.add_option("--load-cpus", load_cpus, "CPUs for the load generator and the probe");
  app.add_option("--nice", nice_text,
                 "nice value of the server, the load and the probe, -20..19 (a negative one, as root, puts them ahead "
                 "of background work on a machine that is not quiet; default: unchanged)");
  app.add_option("--server", server, "HOST:PORT of a server already running (then --metrics; no processor ladder)");
  app.add_option("--metrics", metrics, "HOST:PORT of that server's metrics endpoint");
  app.add_option("--server-pid", server_pid_text,
                 "that server's pid: its CPU per request from /proc (and the prediction)");
  app.add_option("--server-bin", server_bin, "tern-echo to start (default: the one beside tern-sweep)");
  app.add_option("--load-bin", load_bin, "tern-load to run (default: the one beside tern-sweep)");
  app.add_option("--capacity-bin", capacity_bin, "tern-capacity to run (default: the one beside tern-sweep)");
  app.add_option("--wrk-bin", wrk_bin, "wrk to run with --load wrk (default: wrk on PATH)");
  app.add_option("--gnuplot", gnuplot_bin, "gnuplot for the plots (default: gnuplot on PATH)");
  app.add_option("--out", out_dir, "output directory (default: sweep-<date>-<time> here)");
  app.add_flag("--json", json, "print the sweep and its analysis as JSON on stdout instead of the summary");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  auto usage = [](const std::string& what) {
    fmt::print(stderr, "tern-sweep: {}\n", what);
    return kExitUsage;
  };

  tern::sweep::Sweep sw;
  for (int i = 0; i < argc; i++) sw.command_line += (i ? " " : "") + shell_quote(argv[i]);
  Context c;
  // Flags, each checked and named.
  if (load != "tern-load" && load != "wrk") return usage("--load " + load + ": must be tern-load or wrk");
  c.load_tool = load;
  auto step = duration_flag("--step-duration", step_text, false);
  if (!step) return usage(step.error().message());
  auto warmup = duration_flag("--warmup", warmup_text, true);
  if (!warmup) return usage(warmup.error().message());
  auto timeout = duration_flag("--timeout", timeout_text, false);
  if (!timeout) return usage(timeout.error().message());
  c.step_s = *step, c.warmup_s = *warmup, c.timeout_s = *timeout;
  auto slo = tern::parse_number("--slo-ms", slo_text, 1e-3, 3.6e6);
  if (!slo) return usage(slo.error().message());
  auto refine = tern::parse_number("--refine", refine_text, 0, 32);
  if (!refine || std::floor(*refine) != *refine)
    return usage(refine ? "--refine: must be a whole number from 0 to 32, not '" + refine_text + "'"
                        : refine.error().message());
  if (path.empty() || path[0] != '/') return usage("--path " + path + ": must start with /");
  std::vector<int> ladder;
  if (app.count("--ladder") > 0 || !ladder_text.empty()) {
    auto l = tern::sweep::parse_int_list("--ladder", ladder_text);
    if (!l) return usage(l.error().message());
    ladder = *l;
  } else {
    auto from = tern::parse_number("--ladder-from", ladder_from, 1, 1e6);
    if (!from || std::floor(*from) != *from)
      return usage(from ? "--ladder-from: must be a whole number, not '" + ladder_from + "'" : from.error().message());
    auto to = tern::parse_number("--ladder-to", ladder_to, 1, 1e6);
    if (!to || std::floor(*to) != *to)
      return usage(to ? "--ladder-to: must be a whole number, not '" + ladder_to + "'" : to.error().message());
    if (*to < *from) return usage(fmt::format("--ladder-to {} is below --ladder-from {}", ladder_to, ladder_from));
    ladder = tern::sweep::doubling_ladder(static_cast<int>(*from), static_cast<int>(*to));
  }
  std::vector<int> procs_list;
  if (!server.empty()) {
    if (metrics.empty()) return usage("--server needs --metrics (the server's metrics endpoint: its CPU per request)");
    if (app.count("--procs") > 0) return usage("--procs: tern-sweep starts no server with --server; drop one of them");
    if (!server_cpus.empty()) return usage("--server-cpus: only for a server tern-sweep starts");
    procs_list = {0};
  } else {
    if (!metrics.empty()) return usage("--metrics: only with --server (a started server gets its own)");
    if (!server_pid_text.empty()) return usage("--server-pid: only with --server");
    auto p = tern::sweep::parse_int_list("--procs", procs_text);
    if (!p) return usage(p.error().message());
    for (int v : *p)
      if (v > 1024) return usage(fmt::format("--procs: {} is above 1024", v));
    procs_list = *p;
  }
  pid_t server_pid = 0;
  if (!server_pid_text.empty()) {
    auto v = tern::parse_number("--server-pid", server_pid_text, 1, 4194304);
    if (!v || std::floor(*v) != *v) return usage(v ? "--server-pid: must be a whole number" : v.error().message());
    server_pid = static_cast<pid_t>(*v);
    if (kill(server_pid, 0) != 0) return usage(fmt::format("--server-pid {}: no such process", server_pid));
  }
  if (!nice_text.empty()) {
    auto v = tern::parse_number("--nice", nice_text, -20, 19);
    if (!v || std::floor(*v) != *v) return usage(v ? "--nice: must be a whole number" : v.error().message());
    c.niceness = static_cast<int>(*v);
  }
  std::vector<int> scpus;
  if (!server_cpus.empty()) {
    auto v = tern::sweep::parse_cpu_list(server_cpus);
    if (!v) return usage(v.error().wrap("--server-cpus").message());
    scpus = *v;
  }
  if (!load_cpus.empty()) {
    auto v = tern::sweep::parse_cpu_list(load_cpus);
    if (!v) return usage(v.error().wrap("--load-cpus").message());
    c.load_cpus = *v;
  }
  const fs::path self_dir = fs::read_symlink("/proc/self/exe").parent_path();
  auto beside = [&](std::string& bin, const char* name, const char* flag) -> std::string {
    if (bin.empty()) bin = (self_dir / name).string();
    if (access(bin.c_str(), X_OK) != 0) return fmt::format("{} {}: not an executable file", flag, bin);
    return "";
  };
  if (server.empty())
    if (auto e = beside(server_bin, "tern-echo", "--server-bin"); !e.empty()) return usage(e);
  if (auto e = beside(capacity_bin, "tern-capacity", "--capacity-bin"); !e.empty()) return usage(e);
  if (c.load_tool == "tern-load") {
    if (auto e = beside(load_bin, "tern-load", "--load-bin"); !e.empty()) return usage(e);
    c.load_bin = load_bin;
  } else {
    c.load_bin = find_program(wrk_bin);
    if (c.load_bin.empty()) return usage("--load wrk: " + wrk_bin + " is not installed (apt-get install wrk)");
  }
  tern::net::Address given_server, given_metrics;
  if (!server.empty()) {
    auto a = tern::net::Address::parse(server);
    if (!a) return usage(a.error().wrap("--server").message());
    auto m = tern::net::Address::parse(metrics);
    if (!m) return usage(m.error().wrap("--metrics").message());
    given_server = *a, given_metrics = *m;
  }
  if (out_dir.empty()) out_dir = "sweep-" + now_text("%Y%m%d-%H%M%S");
  std::error_code ec;
  fs::create_directories(fs::path(out_dir) / "raw", ec);
  if (ec) return usage(fmt::format("--out {}: {}", out_dir, ec.message()));
  c.out_dir = out_dir;
  if (c.load_tool == "wrk") {
    c.wrk_script = (fs::absolute(out_dir) / "raw" / "done.lua").string();
    std::ofstream(c.wrk_script) << tern::sweep::wrk_lua_script();
  }
  const std::string gnuplot = find_program(gnuplot_bin);

  // Descriptors: a step of N connections needs N in the load generator and N in the server (plus a few). Children
  // inherit the limit, so raise the soft one to the hard one here.
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    if (rl.rlim_cur < rl.rlim_max) {
      rl.rlim_cur = rl.rlim_max;
      setrlimit(RLIMIT_NOFILE, &rl);
    }
    const int top = ladder.back();
    if (rl.rlim_cur != RLIM_INFINITY && static_cast<double>(top) + 64 > static_cast<double>(rl.rlim_cur))
      sw.notes.push_back(
          fmt::format("the descriptor limit is {} (RLIMIT_NOFILE, hard): steps near N={} may fail to "
                      "open their connections, which shows as connect errors",
                      rl.rlim_cur, top));
  }

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  tern::sweep::set_interrupt_flag(&g_interrupted);

  sw.machine = tern::sweep::machine_info();
  sw.started_at = now_text("%Y-%m-%d %H:%M:%S %Z");
  sw.loadavg_start = sw.machine.loadavg1;
  if (const int pol = sched_getscheduler(0); pol == SCHED_FIFO || pol == SCHED_RR) {
    sched_param sp{};
    sched_getparam(0, &sp);
    sw.notes.push_back(
        fmt::format("run under {} priority {} (chrt): the server, the load and the probe inherit it and "
                    "preempt other work on their CPUs at once",
                    pol == SCHED_FIFO ? "SCHED_FIFO" : "SCHED_RR", sp.sched_priority));
  }
  if (sw.loadavg_start >= 1)
    sw.notes.push_back(
        fmt::format("the machine was not quiet: load average {:.2f} before the sweep started; other "
                    "processes share the CPUs (the report's \"its CPUs busy\" column shows how much)",
                    sw.loadavg_start));
  sw.load_tool = c.load_tool;
  sw.path = path;
  sw.server_cpus = server_cpus;
  sw.load_cpus = load_cpus;
  sw.step_s = c.step_s;
  sw.warmup_s = c.warmup_s;
  sw.slo_s = *slo * 1e-3;
  sw.refine = static_cast<int>(*refine);
  sw.ladder = ladder;
  sw.niceness = c.niceness;
  sw.server = server.empty() ? "tern-echo (" + server_bin + ")" : "the server at " + server;
  c.start = std::chrono::steady_clock::now();
  c.steps_total = ladder.size() * procs_list.size();

  for (int procs : procs_list) {
    if (g_interrupted) break;
    tern::sweep::ProcsRun run;
    run.procs = procs;
    Server srv;
    if (server.empty()) {
      auto s = start_server(server_bin, procs, scpus, c.niceness, out_dir);
      if (!s) {
        sw.notes.push_back(fmt::format("procs {}: the server did not start: {}", procs, s.error().message()));
        fmt::print(stderr, "tern-sweep: procs {}: the server did not start: {}\n", procs, s.error().message());
        c.steps_total -= ladder.size();
        sw.runs.push_back(std::move(run));
        continue;
      }
      srv = std::move(*s);
      c.server_pid = srv.proc.pid();
      c.server_cpus = scpus;
      c.metrics = srv.metrics;
      run.server_log = srv.log;
    } else {
      srv.addr = given_server;
      c.metrics = given_metrics;
      c.server_pid = server_pid;
      if (auto m = tern::sweep::scrape_server(given_metrics); m && std::isfinite(m->procs))
        run.procs = static_cast<int>(m->procs);
    }
    c.url = "http://" + srv.addr.to_string() + path;
    sw.url = c.url;
    fmt::print(stderr, "tern-sweep: procs {}: server {} (pid {}), metrics {}; predicting the knee with tern-capacity\n",
               run.procs > 0 ? std::to_string(run.procs) : std::string("?"), srv.addr.to_string(), c.server_pid,
               c.metrics.to_string());
    run.prediction = predict(capacity_bin, c, run.procs, c.server_pid, c.metrics);
    if (std::isfinite(run.prediction.knee)) {
      fmt::print(stderr, "tern-sweep: predicted knee {:.1f} = X_max {:.0f}/s x R0 {} (binding term: {})\n",
                 run.prediction.knee, run.prediction.x_max, tern::sweep::fmt_seconds(run.prediction.r0_s),
                 run.prediction.binding);
    } else {
      fmt::print(stderr, "tern-sweep: no prediction: {}\n", run.prediction.error);
    }
    for (int n : ladder) {
      if (g_interrupted) break;
      run.steps.push_back(run_step(c, run.procs, n, false));
      progress(c, run.steps.back());
    }
    if (!g_interrupted && sw.refine > 0) {
      auto partial = tern::sweep::analyze(run.steps, sw.slo_s);
      if (partial) {
        const auto more = tern::sweep::refine_points(*partial, sw.refine);
        c.steps_total += more.size();
        for (int n : more) {
          if (g_interrupted) break;
          run.steps.push_back(run_step(c, run.procs, n, true));
          progress(c, run.steps.back());
        }
      }
    }
    srv.proc.stop();
    sw.runs.push_back(std::move(run));
  }
  if (g_interrupted) sw.notes.push_back("interrupted: the sweep stopped early; what it measured is below");
  sw.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - c.start).count();
  sw.loadavg_end = tern::sweep::loadavg1();
  tern::sweep::finish(sw);
  if (auto w = tern::sweep::write_outputs(sw, out_dir, gnuplot); !w) {
    fmt::print(stderr, "tern-sweep: {}\n", w.error().message());
    return 1;
  }
  if (json) {
    fmt::print("{}\n", tern::sweep::to_json(sw).dump(2));
  } else {
    fmt::print("{}", tern::sweep::summary_text(sw, out_dir));
  }
  if (g_interrupted) return kExitInterrupted;
  for (const auto& r : sw.runs)
    if (r.analysis) return 0;
  return 1;
}
