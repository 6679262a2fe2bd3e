// tools/sweep/run.cc: child processes, load steps and server readings (see run.h).
#include "tools/sweep/run.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/core.h>

#include "tools/top/exposition.h"
#include "tools/top/http_get.h"

namespace tern::sweep {
namespace {

Result<int> parse_int(std::string_view what, std::string_view s) {
  int v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty())
    return make_error(fmt::format("{}: '{}' is not an integer", what, s));
  return v;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    const size_t at = s.find(sep, start);
    out.push_back(s.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start));
    if (at == std::string_view::npos) return out;
    start = at + 1;
  }
}

std::string read_file(const std::string& path, size_t limit = 1 << 24) {
  std::ifstream f(path);
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (s.size() > limit) s.resize(limit);
  return s;
}

std::string tail_lines(const std::string& s, size_t max_chars) {
  std::string t = s.size() > max_chars ? s.substr(s.size() - max_chars) : s;
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  std::replace(t.begin(), t.end(), '\n', ' ');
  return t;
}

}  // namespace

Result<std::vector<int>> parse_cpu_list(std::string_view s) {
  if (s.empty()) return make_error("empty CPU list");
  std::set<int> cpus;
  for (std::string_view part : split(s, ',')) {
    const size_t dash = part.find('-');
    auto lo = parse_int("CPU", part.substr(0, dash));
    if (!lo) return lo.error();
    int hi = *lo;
    if (dash != std::string_view::npos) {
      auto h = parse_int("CPU", part.substr(dash + 1));
      if (!h) return h.error();
      hi = *h;
    }
    if (*lo < 0 || hi < *lo || hi >= CPU_SETSIZE)
      return make_error(fmt::format("CPU range '{}': needs 0 <= first <= last < {}", part, CPU_SETSIZE));
    for (int c = *lo; c <= hi; c++) cpus.insert(c);
  }
  return std::vector<int>(cpus.begin(), cpus.end());
}

Result<std::vector<int>> parse_int_list(std::string_view flag, std::string_view s) {
  if (s.empty()) return make_error(fmt::format("{}: empty list", flag));
  std::vector<int> out;
  for (std::string_view part : split(s, ',')) {
    auto v = parse_int(flag, part);
    if (!v) return v.error();
    if (*v < 1) return make_error(fmt::format("{}: {} must be at least 1", flag, *v));
    out.push_back(*v);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<int> doubling_ladder(int from, int to) {
  std::vector<int> out;
  if (from < 1 || to < from) return out;
  for (long n = from; n <= to; n *= 2) out.push_back(static_cast<int>(n));
  if (out.back() != to) out.push_back(to);
  return out;
}

Result<Process> Process::start(const std::vector<std::string>& argv, const std::vector<int>& cpus,
                               const std::string& out_path, const std::string& err_path, int niceness) {
  if (argv.empty()) return make_error("no program to run");
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c : cpus) CPU_SET(c, &set);
  const int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0) return errno_error(errno, "open " + out_path);
  int err = out;
  if (!err_path.empty()) {
    err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (err < 0) {
      const int e = errno;
      close(out);
      return errno_error(e, "open " + err_path);
    }
  }
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) {
    const int e = errno;
    close(out);
    if (err != out) close(err);
    return errno_error(e, "pipe");
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  // Between fork and exec only system calls (async-signal-safe): the parent may have threads.
  const pid_t pid = fork();
  if (pid < 0) {
    const int e = errno;
    close(out);
    if (err != out) close(err);
    close(pipefd[0]);
    close(pipefd[1]);
    return errno_error(e, "fork");
  }
  if (pid == 0) {
    int what = 0, e = 0;
    if (!cpus.empty() && sched_setaffinity(0, sizeof set, &set) != 0) {
      what = 1, e = errno;
    } else if (niceness != 0 && setpriority(PRIO_PROCESS, 0, niceness) != 0) {
      what = 4, e = errno;
    } else if (dup2(out, STDOUT_FILENO) < 0 || dup2(err, STDERR_FILENO) < 0) {
      what = 2, e = errno;
    } else {
      execv(args[0], args.data());
      what = 3, e = errno;
    }
    const int msg[2] = {what, e};
    ssize_t n = write(pipefd[1], msg, sizeof msg);
    (void)n;
    _exit(127);
  }
  close(pipefd[1]);
  close(out);
  if (err != out) close(err);
  int msg[2] = {0, 0};
  ssize_t n;
  do {
    n = read(pipefd[0], msg, sizeof msg);
  } while (n < 0 && errno == EINTR);
  close(pipefd[0]);
  if (n == static_cast<ssize_t>(sizeof msg)) {
    int st;
    waitpid(pid, &st, 0);
    std::string cpu_text;
    for (int c : cpus) cpu_text += fmt::format("{}{}", cpu_text.empty() ? "" : ",", c);
    const char* what[] = {"", "pin to CPUs ", "redirect output of ", "execute ", "set nice value "};
    std::string detail = msg[0] == 1 ? cpu_text + " for " : msg[0] == 4 ? std::to_string(niceness) + " for " : "";
    return errno_error(msg[1], std::string(what[msg[0]]) + detail + argv[0]);
  }
  Process p;
  p.pid_ = pid;
  return p;
}

Process& Process::operator=(Process&& o) noexcept {
  if (this != &o) {
    stop();
    pid_ = o.pid_;
    o.pid_ = -1;
  }
  return *this;
}

namespace {
const std::atomic<bool>* g_interrupt = nullptr;
}  // namespace

void set_interrupt_flag(const std::atomic<bool>* flag) {
  g_interrupt = flag;
}

bool interrupted() {
  return g_interrupt != nullptr && g_interrupt->load();
}

std::optional<int> Process::wait_for(std::chrono::milliseconds limit) {
  return wait(limit, true);
}

std::optional<int> Process::wait(std::chrono::milliseconds limit, bool interruptible) {
  if (pid_ <= 0) return std::nullopt;
  const auto end = std::chrono::steady_clock::now() + limit;
  for (;;) {
    int st = 0;
    const pid_t r = waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      return st;
    }
    if (r < 0 && errno != EINTR) {
      pid_ = -1;
      return -1;
    }
    if (std::chrono::steady_clock::now() >= end || (interruptible && interrupted())) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void Process::stop() {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  if (wait(std::chrono::seconds(2), false)) return;
  kill(pid_, SIGKILL);
  int st;
  waitpid(pid_, &st, 0);
  pid_ = -1;
}

std::string describe_status(int st) {
  if (st == -1) return "lost (not our child)";
  if (WIFEXITED(st)) return fmt::format("exit {}", WEXITSTATUS(st));
  if (WIFSIGNALED(st)) return fmt::format("signal {} ({})", WTERMSIG(st), strsignal(WTERMSIG(st)));
  return fmt::format("wait status {}", st);
}

int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

bool wait_for_port(const net::Address& addr, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    const int fd = socket(addr.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    const bool ok = connect(fd, addr.sockaddr_ptr(), addr.size()) == 0;
    close(fd);
    if (ok) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

std::string wrk_lua_script() {
  return R"(-- tern-sweep: one line with what tern-sweep reads from a wrk run (wrk prints no p99.9 otherwise).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'TERN_SWEEP_WRK {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"p50_us":%.3f,"p99_us":%.3f,"p999_us":%.3f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
)";
}

int wrk_seconds(double s) {
  return std::max(1, static_cast<int>(std::ceil(s - 1e-9)));
}

Result<LoadResult> parse_tern_load_json(std::string_view text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return make_error("tern-load --json: output is not a JSON object");
  try {
    LoadResult r;
    r.ok = j.at("ok").get<uint64_t>();
    r.elapsed_s = j.at("elapsed_s").get<double>();
    r.throughput = j.at("throughput").get<double>();
    for (const auto& [k, v] : j.at("errors").items()) r.errors[k] = v.get<uint64_t>();
    if (r.ok > 0) {
      const auto& lat = j.at("latency");
      r.p50_s = lat.at("p50_s").get<double>();
      r.p99_s = lat.at("p99_s").get<double>();
      r.p999_s = lat.at("p99_9_s").get<double>();
    }
    return r;
  } catch (const nlohmann::json::exception& e) {
    return make_error(std::string("tern-load --json: ") + e.what());
  }
}

Result<LoadResult> parse_wrk_done(std::string_view text) {
  constexpr std::string_view kTag = "TERN_SWEEP_WRK ";
  const size_t at = text.rfind(kTag);
  if (at == std::string_view::npos)
    return make_error("wrk: its output has no TERN_SWEEP_WRK line (did the done() script run?)");
  std::string_view line = text.substr(at + kTag.size());
  line = line.substr(0, line.find('\n'));
  nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return make_error("wrk: the TERN_SWEEP_WRK line is not JSON");
  try {
    LoadResult r;
    const auto requests = j.at("requests").get<uint64_t>();
    const auto status = j.at("status").get<uint64_t>();
    r.ok = requests > status ? requests - status : 0;
    r.elapsed_s = j.at("duration_us").get<double>() * 1e-6;
    r.throughput = r.elapsed_s > 0 ? static_cast<double>(r.ok) / r.elapsed_s : 0;
    for (const char* k : {"connect", "read", "write", "status", "timeout"}) {
      const auto v = j.at(k).get<uint64_t>();
      if (v > 0) r.errors[k] = v;
    }
    if (r.ok > 0) {
      r.p50_s = j.at("p50_us").get<double>() * 1e-6;
      r.p99_s = j.at("p99_us").get<double>() * 1e-6;
      r.p999_s = j.at("p999_us").get<double>() * 1e-6;
    }
    return r;
  } catch (const nlohmann::json::exception& e) {
    return make_error(std::string("wrk: ") + e.what());
  }
}

Result<LoadResult> run_load(const LoadSpec& spec) {
  std::vector<std::string> argv;
  if (spec.tool == "wrk") {
    const int threads =
        std::max(1, std::min<int>(spec.connections, spec.cpus.empty() ? 1 : static_cast<int>(spec.cpus.size())));
    argv = {spec.bin,
            "-t",
            std::to_string(threads),
            "-c",
            std::to_string(spec.connections),
            "-d",
            fmt::format("{}s", wrk_seconds(spec.duration_s)),
            "--timeout",
            fmt::format("{}s", wrk_seconds(spec.timeout_s)),
            "-s",
            spec.wrk_script,
            spec.url};
  } else {
    argv = {spec.bin,    spec.url,
            "-c",        std::to_string(spec.connections),
            "-d",        fmt::format("{}ms", std::max<long>(1, std::lround(spec.duration_s * 1e3))),
            "--timeout", fmt::format("{}ms", std::max<long>(1, std::lround(spec.timeout_s * 1e3))),
            "--json"};
  }
  auto p = Process::start(argv, spec.cpus, spec.out_path, spec.err_path, spec.niceness);
  if (!p) return p.error();
  // The run, the requests still out at its end (each within the timeout) and room for dialing many connections.
  const auto limit = std::chrono::milliseconds(static_cast<long>((spec.duration_s + spec.timeout_s) * 1e3) + 30'000);
  auto st = p->wait_for(limit);
  std::string note;
  if (!st) {
    p->stop();
    if (interrupted()) return make_error(spec.tool + ": interrupted");
    return make_error(fmt::format("{} ran past {} s: stopped", spec.tool, limit.count() / 1000));
  }
  const std::string out = read_file(spec.out_path);
  const std::string err = read_file(spec.err_path);
  if (*st != 0) note = fmt::format("{} {}", spec.tool, describe_status(*st));
  if (!err.empty() && (*st != 0 || spec.tool != "wrk")) note += (note.empty() ? "" : ": ") + tail_lines(err, 300);
  auto r = spec.tool == "wrk" ? parse_wrk_done(out) : parse_tern_load_json(out);
  if (!r) {
    if (!note.empty()) return r.error().wrap(note);
    return r.error();
  }
  r->note = note;
  return r;
}

Result<ServerSample> scrape_server(const net::Address& metrics, int timeout_ms) {
  auto body = top::http_get(metrics, "/metrics", timeout_ms);
  if (!body) return body.error().wrap("scrape " + metrics.to_string() + "/metrics");
  auto s = top::parse_exposition(*body);
  if (!s) return s.error().wrap("scrape " + metrics.to_string() + "/metrics");
  ServerSample out;
  out.cpu_s = s->value("process_cpu_seconds_total");
  out.requests = s->value("tern_echo_requests_total");
  out.procs = s->value("tern_procs");
  return out;
}

std::pair<double, double> cpu_jiffies(const std::vector<int>& cpus) {
  std::ifstream f("/proc/stat");
  double busy = 0, total = 0;
  size_t seen = 0;
  for (std::string line; std::getline(f, line);) {
    if (line.rfind("cpu", 0) != 0 || line.size() < 4 || !std::isdigit(static_cast<unsigned char>(line[3]))) continue;
    std::istringstream in(line.substr(3));
    int cpu = -1;
    in >> cpu;
    if (std::find(cpus.begin(), cpus.end(), cpu) == cpus.end()) continue;
    // user nice system idle iowait irq softirq steal (guest time is inside user)
    double v[8] = {};
    for (double& x : v) in >> x;
    if (!in) return {NAN, NAN};
    const double idle = v[3] + v[4];
    double all = 0;
    for (double x : v) all += x;
    busy += all - idle;
    total += all;
    seen++;
  }
  if (seen != cpus.size() || cpus.empty()) return {NAN, NAN};
  return {busy, total};
}

double loadavg1() {
  std::ifstream f("/proc/loadavg");
  double v = NAN;
  if (!(f >> v)) return NAN;
  return v;
}

MachineInfo machine_info() {
  MachineInfo m;
  m.cpus_online = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) m.cpu_model = line.substr(std::min(line.size(), colon + 2));
      break;
    }
  }
  utsname u{};
  if (uname(&u) == 0) m.kernel = std::string(u.sysname) + " " + u.release;
  m.loadavg1 = loadavg1();
  return m;
}

}  // namespace tern::sweep
