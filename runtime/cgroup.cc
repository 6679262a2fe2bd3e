// runtime/cgroup.cc: CPU-limit discovery: mountinfo and /proc/self/cgroup resolution, quota along the ancestors,
// cpuset, affinity, cpu.stat throttling, each failure as a CgroupErrc reason.
#include "runtime/cgroup.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sched.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <bitset>
#include <cerrno>
#include <cstring>
#include <utility>

namespace tern {
namespace {

// The largest per-tick file read (cpu.stat is ~250 bytes, cpu.max ~20); a cpuset list can be longer (every other
// CPU of 8192 is ~20 KiB), so CPU lists get kListBufSize on the heap, allocated once per CgroupDiscovery.
constexpr size_t kSmallBufSize = 4096;
constexpr size_t kListBufSize = 64 << 10;

const char* const kReasonNames[] = {"unknown",  "missing",    "unreadable",  "garbage", "negative",
                                    "overflow", "zero_quota", "zero_period", "removed"};

class CgroupCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "cgroup"; }
  std::string message(int v) const override { return cgroup_reason_name(static_cast<CgroupErrc>(v)); }
};

CgroupProblem problem(CgroupErrc code, std::string message) {
  return {code, cgroup_reason_name(code), std::move(message)};
}

// The outcome of reading one file: errno (0 on success; EFBIG when it did not fit), and its length.
struct ReadResult {
  int err = 0;
  size_t len = 0;
};

// Reads a whole small file into buf (NUL-terminated) with open/read/close: no allocation, no iostreams.
ReadResult read_small(const std::string& path, char* buf, size_t cap) {
  ReadResult r;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {errno, 0};
  while (r.len < cap - 1) {
    const ssize_t n = ::read(fd, buf + r.len, cap - 1 - r.len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      r.err = errno;
      break;
    }
    if (n == 0) break;
    r.len += static_cast<size_t>(n);
  }
  if (r.err == 0 && r.len == cap - 1) {
    char extra;
    ssize_t n;
    while ((n = ::read(fd, &extra, 1)) < 0 && errno == EINTR) {
    }
    if (n > 0) r.err = EFBIG;
  }
  ::close(fd);
  buf[r.len] = '\0';
  return r;
}

// Reads a file of any size (mountinfo on a busy host is hundreds of KiB); only when resolving.
int read_all(const std::string& path, std::string* out) {
  out->clear();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  char buf[kSmallBufSize];
  int err = 0;
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) err = errno;
    if (n <= 0) break;
    out->append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return err;
}

bool dir_exists(const std::string& dir) {
  return ::access(dir.c_str(), F_OK) == 0;
}

// The reason a failed open or read gives: a vanished file or cgroup (ENOENT, ENODEV: a removed cgroup's files),
// else unreadable.
CgroupErrc errno_reason(int err) {
  if (err == ENOENT || err == ENOTDIR) return CgroupErrc::missing;
  if (err == ENODEV) return CgroupErrc::removed;
  return CgroupErrc::unreadable;
}

std::string errno_text(int err) {
  if (err == EFBIG) return "longer than expected";
  return std::strerror(err);
}

bool is_space(char c) {
  return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// A decimal integer, the whole of `s` (already trimmed): "-1", "100000". Not "+1", "1e5", "nan", "0x10", "".
struct Int {
  CgroupErrc err{};  // 0: ok
  int64_t v = 0;
};
Int parse_int(std::string_view s) {
  Int r;
  bool neg = false;
  if (!s.empty() && s.front() == '-') {
    neg = true;
    s.remove_prefix(1);
  }
  if (s.empty()) return {CgroupErrc::garbage, 0};
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return {CgroupErrc::garbage, 0};
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return {CgroupErrc::overflow, 0};
    v = v * 10 + d;
  }
  if (v > static_cast<uint64_t>(INT64_MAX)) return {CgroupErrc::overflow, 0};
  r.v = neg ? -static_cast<int64_t>(v) : static_cast<int64_t>(v);
  return r;
}

// An unsigned counter (cpu.stat values may use all 64 bits).
struct Uint {
  CgroupErrc err{};
  uint64_t v = 0;
};
Uint parse_uint(std::string_view s) {
  if (!s.empty() && s.front() == '-') return {CgroupErrc::negative, 0};
  if (s.empty()) return {CgroupErrc::garbage, 0};
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return {CgroupErrc::garbage, 0};
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return {CgroupErrc::overflow, 0};
    v = v * 10 + d;
  }
  return {CgroupErrc{}, v};
}

bool ok(CgroupErrc e) {
  return e == CgroupErrc{};
}

// CPUs in this thread's affinity mask; 0 when sched_getaffinity fails.
int affinity_count() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
  // More possible CPUs than cpu_set_t holds (1024): ask with a mask as large as the kernel can have.
  cpu_set_t* big = CPU_ALLOC(kMaxCpuNumber);
  if (big == nullptr) return 0;
  const size_t size = CPU_ALLOC_SIZE(kMaxCpuNumber);
  CPU_ZERO_S(size, big);
  const int n = sched_getaffinity(0, size, big) == 0 ? CPU_COUNT_S(size, big) : 0;
  CPU_FREE(big);
  return n;
}

std::string quoted(std::string_view s) {
  constexpr size_t kShown = 40;  // enough to recognise the text, short enough for a log line
  std::string out = "'";
  for (char c : s.substr(0, kShown)) out += (c == '\n' ? ' ' : c);
  if (s.size() > kShown) out += "...";
  return out + "'";
}

// mountinfo escapes space, tab, newline and backslash in paths as \040, \011, \012, \134 (the kernel's
// seq_path/mangle_path); any three-octal-digit escape is decoded.
std::string unescape_octal(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      const char a = s[i + 1], b = s[i + 2], c = s[i + 3];
      if (a >= '0' && a <= '3' && b >= '0' && b <= '7' && c >= '0' && c <= '7') {
        out += static_cast<char>((a - '0') * 64 + (b - '0') * 8 + (c - '0'));
        i += 3;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

bool list_has(std::string_view list, std::string_view item) {
  while (!list.empty()) {
    const size_t comma = list.find(',');
    if (list.substr(0, comma) == item) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

struct Mount {
  std::string root, mountpoint, fstype, superopts;
};

// The lines of /proc/self/mountinfo that are cgroup mounts: "id parent maj:min root mountpoint opts [optional...] -
// fstype source superopts". Lines that do not have that shape are skipped.
std::vector<Mount> parse_mountinfo(std::string_view text, size_t* lines_parsed) {
  std::vector<Mount> out;
  *lines_parsed = 0;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    std::vector<std::string_view> f;
    while (!line.empty()) {
      const size_t sp = line.find(' ');
      if (sp != 0) f.push_back(line.substr(0, sp));
      if (sp == std::string_view::npos) break;
      line.remove_prefix(sp + 1);
    }
    size_t dash = 6;
    while (dash < f.size() && f[dash] != "-") dash++;
    if (f.size() < 6 || dash + 3 >= f.size()) continue;
    (*lines_parsed)++;
    const std::string_view fstype = f[dash + 1];
    if (fstype != "cgroup" && fstype != "cgroup2") continue;
    out.push_back({unescape_octal(f[3]), unescape_octal(f[4]), std::string(fstype), std::string(f[dash + 3])});
  }
  return out;
}

struct ProcCgroupLine {
  std::string id, controllers, path;
};

// /proc/self/cgroup: "hierarchy-id:controllers:path", the path being everything after the second colon (a cgroup
// name may hold colons; it is not escaped). v2's line is "0::/path".
std::vector<ProcCgroupLine> parse_proc_cgroup(std::string_view text) {
  std::vector<ProcCgroupLine> out;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    const size_t a = line.find(':');
    if (a == std::string_view::npos) continue;
    const size_t b = line.find(':', a + 1);
    if (b == std::string_view::npos) continue;
    const std::string_view path = line.substr(b + 1);
    if (path.empty() || path.front() != '/') continue;
    out.push_back({std::string(line.substr(0, a)), std::string(line.substr(a + 1, b - a - 1)), std::string(path)});
  }
  return out;
}

// Whether a cgroup path lies at or under a mount's root.
bool under_root(const std::string& root, const std::string& path) {
  if (root == "/") return true;
  return path.compare(0, root.size(), root) == 0 && (path.size() == root.size() || path[root.size()] == '/');
}

// The directories from the process's cgroup up to the mount's root: mountpoint + (path minus the mount's root), then
// each parent up to the mount point. A path outside the mount's root (or with "." or ".." components, as a process
// outside a cgroup namespace sees) gives the mount point alone.
std::vector<std::string> cgroup_dirs(const std::string& prefix, const Mount& m, const std::string& path) {
  std::string_view rel = path;
  bool under = under_root(m.root, path);
  const size_t root_len = m.root == "/" ? 0 : m.root.size();
  std::vector<std::string_view> parts;
  if (under) {
    rel.remove_prefix(root_len);
    while (!rel.empty()) {
      const size_t sl = rel.find('/');
      const std::string_view part = rel.substr(0, sl);
      if (part == "." || part == "..") {
        under = false;
        break;
      }
      if (!part.empty()) parts.push_back(part);
      if (sl == std::string_view::npos) break;
      rel.remove_prefix(sl + 1);
    }
  }
  std::string base = prefix + (m.mountpoint == "/" ? "" : m.mountpoint);
  if (base.empty()) base = "/";
  std::vector<std::string> dirs;
  if (under) {
    std::string dir = base;
    for (std::string_view p : parts) (dir += '/') += p;
    dirs.push_back(dir);
    for (size_t n = parts.size(); n > 0; n--) {
      dir.resize(dir.size() - parts[n - 1].size() - 1);
      dirs.push_back(dir.empty() ? "/" : dir);
    }
  } else {
    dirs.push_back(base);
  }
  return dirs;
}

// Where one controller lives for this process: its hierarchy and the directories from its cgroup to the mount's root.
struct Placement {
  CgroupVersion version = CgroupVersion::none;
  std::vector<std::string> dirs;  // leaf first; empty with version none
};

Placement place(const std::string& prefix, const std::vector<Mount>& mounts, const std::vector<ProcCgroupLine>& lines,
                std::string_view controller) {
  // v1: the hierarchy whose /proc/self/cgroup line lists the controller, mounted with it in the super options.
  for (const ProcCgroupLine& l : lines) {
    if (l.id == "0" || !list_has(l.controllers, controller)) continue;
    // Several mounts of one hierarchy (bind mounts): the one whose root holds the path, the longest such root.
    const Mount* best = nullptr;
    bool best_holds = false;
    for (const Mount& m : mounts) {
      if (m.fstype != "cgroup" || !list_has(m.superopts, controller)) continue;
      const bool holds = under_root(m.root, l.path);
      if (best == nullptr || (holds && (!best_holds || m.root.size() > best->root.size()))) {
        best = &m;
        best_holds = holds;
      }
    }
    if (best != nullptr) return {CgroupVersion::v1, cgroup_dirs(prefix, *best, l.path)};
  }
  // v2: the unified hierarchy serves every controller not mounted on v1.
  for (const ProcCgroupLine& l : lines) {
    if (l.id != "0" || !l.controllers.empty()) continue;
    for (const Mount& m : mounts) {
      if (m.fstype == "cgroup2") return {CgroupVersion::v2, cgroup_dirs(prefix, m, l.path)};
    }
  }
  return {};
}

// One directory of the cpu controller with its file names built once.
struct CpuLevel {
  std::string dir, quota, period, burst, stat;  // v2: quota is cpu.max and period is unused
};

// A quota reading at one level: none (no limit there), a limit, or a problem.
struct LevelQuota {
  bool limited = false;
  int64_t quota_us = 0, period_us = 0;
  CgroupErrc err{};
  std::string what;  // the problem's text, without the path
  std::string file;  // the file the problem or the limit came from
};

}  // namespace

const char* cgroup_reason_name(CgroupErrc e) {
  const int i = static_cast<int>(e);
  if (i < 1 || i >= static_cast<int>(std::size(kReasonNames))) return kReasonNames[0];
  return kReasonNames[i];
}

const char* cgroup_reason_name(const std::error_code& ec) {
  if (ec.category() != cgroup_category()) return cgroup_reason_name(CgroupErrc::unreadable);
  return cgroup_reason_name(static_cast<CgroupErrc>(ec.value()));
}

const std::error_category& cgroup_category() {
  static const CgroupCategory cat;
  return cat;
}

const char* cgroup_version_name(CgroupVersion v) {
  switch (v) {
    case CgroupVersion::v1:
      return "v1";
    case CgroupVersion::v2:
      return "v2";
    default:
      return "none";
  }
}

Result<int> count_cpu_list(std::string_view text) {
  auto bad = [&](CgroupErrc e, const char* why) {
    return Result<int>(Error(e, std::string("CPU list ") + quoted(text) + ": " + why));
  };
  std::string_view s = trim(text);
  if (s.empty()) return bad(CgroupErrc::garbage, "empty");
  std::bitset<kMaxCpuNumber> cpus;
  while (true) {
    const size_t comma = s.find(',');
    const std::string_view item = s.substr(0, comma);
    const size_t dash = item.find('-');
    const Int lo = parse_int(item.substr(0, dash));
    const Int hi = dash == std::string_view::npos ? lo : parse_int(item.substr(dash + 1));
    if (item.empty() || (dash == 0)) return bad(CgroupErrc::garbage, "not a CPU number or range");
    if (!ok(lo.err) || !ok(hi.err)) {
      return bad(
          lo.err == CgroupErrc::overflow || hi.err == CgroupErrc::overflow ? CgroupErrc::overflow : CgroupErrc::garbage,
          "not a CPU number or range");
    }
    if (lo.v < 0 || hi.v < 0) return bad(CgroupErrc::negative, "negative CPU number");
    if (hi.v < lo.v) return bad(CgroupErrc::garbage, "a range that runs backwards");
    if (hi.v >= kMaxCpuNumber) return bad(CgroupErrc::overflow, "CPU number beyond the kernel's limit");
    for (int64_t c = lo.v; c <= hi.v; c++) cpus.set(static_cast<size_t>(c));
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  return static_cast<int>(cpus.count());
}

int affinity_cpus() {
  return std::max(1, affinity_count());
}

struct CgroupDiscovery::State {
  std::string prefix;  // fs_root without its trailing slash ("" for "/")
  bool resolved = false;
  bool lost = false;  // a resolved directory vanished: a missing one is "removed" until a resolve finds it
  std::vector<CgroupProblem> resolve_problems;
  CgroupVersion cpu_version = CgroupVersion::none;
  std::vector<CpuLevel> cpu;  // leaf first
  CgroupVersion cpuset_version = CgroupVersion::none;
  std::vector<std::string> cpuset_files;  // v2: cpuset.cpus.effective leaf first; v1: effective_cpus, cpus
  std::string stat_file;                  // cpu.stat of the level whose quota bound last
  CgroupVersion memory_version = CgroupVersion::none;
  std::vector<std::string> memory_dirs;  // leaf first
  std::unique_ptr<char[]> list_buf = std::make_unique<char[]>(kListBufSize);
  // Open cgroupfs files, kept across readings: a pread at offset 0 of a kernfs file produces it afresh, so a tick
  // reads each file with one system call instead of four (open, read, read to EOF, close). A removed cgroup's open
  // file answers ENODEV, which reads as "removed". Cleared on resolve.
  std::vector<std::pair<std::string, int>> open_files;

  ~State() { close_files(); }
  void close_files() {
    for (const auto& f : open_files) ::close(f.second);
    open_files.clear();
  }
  // read_small, through a kept descriptor for files on a cgroup filesystem. Other files (a test's fixture tree, which
  // may be replaced or removed under it) are opened and closed each time.
  ReadResult read(const std::string& path, char* buf, size_t cap);

  void resolve();
  // Reads the quota along cpu; false when a directory vanished (the caller resolves again and retries once).
  bool read_quota(CpuLimits* out);
  bool read_cpuset(CpuLimits* out);
  void add(CpuLimits* out, CgroupErrc code, const std::string& message) {
    if (code == CgroupErrc::missing && lost) code = CgroupErrc::removed;
    out->errors.push_back(problem(code, message));
  }
};

ReadResult CgroupDiscovery::State::read(const std::string& path, char* buf, size_t cap) {
  auto it = std::find_if(open_files.begin(), open_files.end(), [&](const auto& f) { return f.first == path; });
  if (it == open_files.end()) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return {errno, 0};
    struct statfs fs;
    if (::fstatfs(fd, &fs) != 0 || (fs.f_type != CGROUP_SUPER_MAGIC && fs.f_type != CGROUP2_SUPER_MAGIC)) {
      ::close(fd);
      return read_small(path, buf, cap);
    }
    open_files.emplace_back(path, fd);
    it = open_files.end() - 1;
  }
  ssize_t n;
  while ((n = ::pread(it->second, buf, cap - 1, 0)) < 0 && errno == EINTR) {
  }
  if (n >= 0 && static_cast<size_t>(n) < cap - 1) {
    buf[n] = '\0';
    return {0, static_cast<size_t>(n)};
  }
  // An error (the cgroup removed: ENODEV) or a file that fills the buffer: drop the descriptor and let a fresh open
  // say what is there.
  ::close(it->second);
  open_files.erase(it);
  if (n < 0 && errno == ENODEV) return {ENODEV, 0};
  return read_small(path, buf, cap);
}

void CgroupDiscovery::State::resolve() {
  resolved = true;
  close_files();
  resolve_problems.clear();
  cpu.clear();
  cpuset_files.clear();
  memory_dirs.clear();
  cpu_version = cpuset_version = memory_version = CgroupVersion::none;
  stat_file.clear();

  std::string text;
  const std::string mi_path = prefix + "/proc/self/mountinfo";
  if (const int err = read_all(mi_path, &text); err != 0) {
    resolve_problems.push_back(problem(errno_reason(err), mi_path + ": " + errno_text(err)));
    return;
  }
  size_t parsed = 0;
  const std::vector<Mount> mounts = parse_mountinfo(text, &parsed);
  if (parsed == 0) {
    resolve_problems.push_back(problem(CgroupErrc::garbage, mi_path + ": no mount line parses"));
    return;
  }
  const std::string pc_path = prefix + "/proc/self/cgroup";
  if (const int err = read_all(pc_path, &text); err != 0) {
    resolve_problems.push_back(problem(errno_reason(err), pc_path + ": " + errno_text(err)));
    return;
  }
  const std::vector<ProcCgroupLine> lines = parse_proc_cgroup(text);
  if (lines.empty()) {
    resolve_problems.push_back(problem(CgroupErrc::garbage, pc_path + ": no 'id:controllers:path' line"));
    return;
  }

  Placement p = place(prefix, mounts, lines, "cpu");
  cpu_version = p.version;
  if (!p.dirs.empty() && !dir_exists(p.dirs.front())) {
    resolve_problems.push_back(problem(lost ? CgroupErrc::removed : CgroupErrc::missing,
                                       p.dirs.front() + ": the process's cpu cgroup directory does not exist"));
    cpu_version = CgroupVersion::none;
    p.dirs.clear();
  }
  for (const std::string& d : p.dirs) {
    if (cpu_version == CgroupVersion::v2) {
      cpu.push_back({d, d + "/cpu.max", "", d + "/cpu.max.burst", d + "/cpu.stat"});
    } else {
      cpu.push_back({d, d + "/cpu.cfs_quota_us", d + "/cpu.cfs_period_us", d + "/cpu.cfs_burst_us", d + "/cpu.stat"});
    }
  }
  if (!cpu.empty()) stat_file = cpu.front().stat;

  const Placement mem = place(prefix, mounts, lines, "memory");
  memory_version = mem.version;
  memory_dirs = mem.dirs;

  const Placement cs = place(prefix, mounts, lines, "cpuset");
  cpuset_version = cs.version;
  if (cs.version == CgroupVersion::v1) {
    cpuset_files = {cs.dirs.front() + "/cpuset.effective_cpus", cs.dirs.front() + "/cpuset.cpus"};
  } else {
    for (const std::string& d : cs.dirs) cpuset_files.push_back(d + "/cpuset.cpus.effective");
  }
  if (!resolve_problems.empty()) return;
  lost = false;
}

bool CgroupDiscovery::State::read_quota(CpuLimits* out) {
  out->quota_version = cpu_version;
  double best = kNoQuota;
  const CpuLevel* bound = nullptr;
  int64_t bound_period = 0;
  bool failed = false;
  char buf[kSmallBufSize];
  for (size_t i = 0; i < cpu.size(); i++) {
    const CpuLevel& lv = cpu[i];
    const ReadResult r = read(lv.quota, buf, sizeof buf);
    if (r.err != 0) {
      const CgroupErrc why = errno_reason(r.err);
      if (why == CgroupErrc::removed || (why == CgroupErrc::missing && !dir_exists(lv.dir))) return false;
      // A directory without the file: v2 without the cpu controller there, v1 without CFS bandwidth. No limit.
      if (why == CgroupErrc::missing) continue;
      add(out, why, lv.quota + ": " + errno_text(r.err));
      failed = true;
      continue;
    }
    const std::string_view text = trim(std::string_view(buf, r.len));
    int64_t quota = 0, period = 0;
    std::string_view quota_text = text, period_text;
    if (cpu_version == CgroupVersion::v2) {  // "QUOTA PERIOD" or "max PERIOD"
      const size_t sp = text.find(' ');
      quota_text = text.substr(0, sp);
      period_text = sp == std::string_view::npos ? std::string_view() : trim(text.substr(sp + 1));
      if (quota_text == "max") continue;
    }
    const Int q = parse_int(quota_text);
    if (!ok(q.err)) {
      add(out, q.err, lv.quota + ": quota " + quoted(quota_text) + " is not an integer");
      failed = true;
      continue;
    }
    if (cpu_version == CgroupVersion::v1 && q.v == -1) continue;  // v1's "no quota"
    if (q.v < 0) {
      add(out, CgroupErrc::negative, lv.quota + ": quota " + std::to_string(q.v) + " is negative");
      failed = true;
      continue;
    }
    if (q.v == 0) {
      add(out, CgroupErrc::zero_quota, lv.quota + ": quota is 0");
      failed = true;
      continue;
    }
    quota = q.v;
    std::string period_file = lv.quota;
    if (cpu_version == CgroupVersion::v1) {
      const ReadResult pr = read(lv.period, buf, sizeof buf);
      if (pr.err != 0) {
        const CgroupErrc why = errno_reason(pr.err);
        if (why == CgroupErrc::removed || (why == CgroupErrc::missing && !dir_exists(lv.dir))) return false;
        add(out, why, lv.period + ": " + errno_text(pr.err));
        failed = true;
        continue;
      }
      period_text = trim(std::string_view(buf, pr.len));
      period_file = lv.period;
    }
    const Int p = parse_int(period_text);
    if (!ok(p.err)) {
      add(out, p.err, period_file + ": period " + quoted(period_text) + " is not an integer");
      failed = true;
      continue;
    }
    if (p.v < 0) {
      add(out, CgroupErrc::negative, period_file + ": period " + std::to_string(p.v) + " is negative");
      failed = true;
      continue;
    }
    if (p.v == 0) {
      add(out, CgroupErrc::zero_period, period_file + ": period is 0");
      failed = true;
      continue;
    }
    period = p.v;
    const double cores = static_cast<double>(quota) / static_cast<double>(period);
    if (bound == nullptr || cores < best) {
      best = cores;
      bound = &lv;
      bound_period = period;
    }
  }
  out->quota_ok = !failed;
  if (bound == nullptr) {
    if (!cpu.empty()) stat_file = cpu.front().stat;
    return true;
  }
  stat_file = bound->stat;
  if (failed) return true;  // a level failed: no quota reported, the caller keeps its last good value
  out->quota_cores = best;
  out->quota_period_us = bound_period;
  out->quota_source = bound->quota;
  // The burst of the binding cgroup: absent on older kernels (cpu.max.burst 5.14, cpu.cfs_burst_us 5.14).
  const ReadResult br = read(bound->burst, buf, sizeof buf);
  if (br.err == 0) {
    const std::string_view text = trim(std::string_view(buf, br.len));
    const Int b = parse_int(text);
    if (!ok(b.err)) {
      add(out, b.err, bound->burst + ": " + quoted(text) + " is not an integer");
    } else if (b.v < 0) {
      add(out, CgroupErrc::negative, bound->burst + ": burst " + std::to_string(b.v) + " is negative");
    } else {
      out->burst_cores = static_cast<double>(b.v) / static_cast<double>(bound_period);
    }
  } else if (br.err != ENOENT) {
    add(out, errno_reason(br.err), bound->burst + ": " + errno_text(br.err));
  }
  return true;
}

bool CgroupDiscovery::State::read_cpuset(CpuLimits* out) {
  out->cpuset_version = cpuset_version;
  char* buf = list_buf.get();
  for (size_t i = 0; i < cpuset_files.size(); i++) {
    const std::string& file = cpuset_files[i];
    const ReadResult r = read(file, buf, kListBufSize);
    if (r.err != 0) {
      const CgroupErrc why = errno_reason(r.err);
      const std::string dir = file.substr(0, file.rfind('/'));
      if (why == CgroupErrc::removed || (why == CgroupErrc::missing && i == 0 && !dir_exists(dir))) return false;
      // v1: no effective_cpus on old kernels, cpuset.cpus next; v2: no cpuset controller at this level, the parent's
      // effective set applies.
      if (why == CgroupErrc::missing) continue;
      add(out, why, file + ": " + errno_text(r.err));
      return true;
    }
    const Result<int> n = count_cpu_list(std::string_view(buf, r.len));
    if (!n) {
      out->errors.push_back(
          problem(static_cast<CgroupErrc>(n.error().code().value()), file + ": " + n.error().message()));
      return true;
    }
    out->cpuset_cpus = *n;
    out->cpuset_source = file;
    return true;
  }
  return true;
}

CgroupDiscovery::CgroupDiscovery(std::string fs_root) : s_(std::make_unique<State>()) {
  while (!fs_root.empty() && fs_root.back() == '/') fs_root.pop_back();
  s_->prefix = std::move(fs_root);
}

CgroupDiscovery::~CgroupDiscovery() = default;

void CgroupDiscovery::invalidate() {
  s_->resolved = false;
}

CpuLimits CgroupDiscovery::cpu_limits() {
  CpuLimits out;
  for (int attempt = 0;; attempt++) {
    // Resolved paths are kept while they work; after a failed resolve every reading tries again.
    if (!s_->resolved || !s_->resolve_problems.empty()) s_->resolve();
    out = CpuLimits();
    out.errors = s_->resolve_problems;
    if (!out.errors.empty()) break;
    const bool quota_read = s_->read_quota(&out);
    if (quota_read && s_->read_cpuset(&out)) break;
    // A directory vanished (the cgroup was removed, the process moved): resolve again and read once more.
    s_->lost = true;
    s_->resolved = false;
    if (attempt == 1) {
      out.errors.push_back(problem(CgroupErrc::removed, "the process's cgroup directories vanished while read"));
      out.quota_ok = false;
      break;
    }
  }
  out.affinity_cpus = affinity_count();
  if (out.cpuset_cpus > 0 && out.affinity_cpus > 0) {
    out.cpus = std::min(out.cpuset_cpus, out.affinity_cpus);
  } else {
    out.cpus = std::max(out.cpuset_cpus, out.affinity_cpus);
  }
  return out;
}

Result<CpuThrottle> CgroupDiscovery::throttle() {
  if (!s_->resolved || !s_->resolve_problems.empty()) s_->resolve();
  if (!s_->resolve_problems.empty()) {
    const CgroupProblem& p = s_->resolve_problems.front();
    return Error(p.code, p.message);
  }
  CpuThrottle t;
  t.source = s_->stat_file;
  if (t.source.empty()) return t;  // no cpu controller: nothing throttles
  char buf[kSmallBufSize];
  const ReadResult r = s_->read(t.source, buf, sizeof buf);
  if (r.err != 0) {
    CgroupErrc why = errno_reason(r.err);
    if (why == CgroupErrc::removed ||
        (why == CgroupErrc::missing && !dir_exists(t.source.substr(0, t.source.rfind('/'))))) {
      s_->lost = true;
      s_->resolved = false;
      why = CgroupErrc::removed;
    }
    return Error(why, t.source + ": " + errno_text(r.err));
  }
  std::string_view text(buf, r.len);
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    const std::string_view line = trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (line.empty()) continue;
    const size_t sp = line.find(' ');
    if (sp == std::string_view::npos) return Error(CgroupErrc::garbage, t.source + ": line " + quoted(line));
    const std::string_view key = line.substr(0, sp);
    const bool wanted =
        key == "nr_periods" || key == "nr_throttled" || key == "throttled_usec" || key == "throttled_time";
    if (!wanted) continue;
    const std::string_view value = trim(line.substr(sp + 1));
    const Uint v = parse_uint(value);
    if (!ok(v.err)) return Error(v.err, t.source + ": " + std::string(key) + " " + quoted(value));
    if (key == "nr_periods") {
      t.periods = v.v;
    } else if (key == "nr_throttled") {
      t.throttled_periods = v.v;
    } else if (key == "throttled_usec") {
      t.throttled_s = static_cast<double>(v.v) * 1e-6;
    } else {
      t.throttled_s = static_cast<double>(v.v) * 1e-9;  // v1: nanoseconds
    }
  }
  return t;
}

MemoryLimit CgroupDiscovery::memory_limit() {
  MemoryLimit out;
  if (!s_->resolved || !s_->resolve_problems.empty()) s_->resolve();
  out.errors = s_->resolve_problems;
  if (!out.errors.empty()) return out;
  out.version = s_->memory_version;
  out.ok = true;
  char buf[kSmallBufSize];
  // v1 keeps "unlimited" as the largest page-aligned 63-bit value; anything this large limits nothing.
  constexpr int64_t kV1Unlimited = int64_t{1} << 62;
  for (const std::string& d : s_->memory_dirs) {
    const std::string file = d + (out.version == CgroupVersion::v2 ? "/memory.max" : "/memory.limit_in_bytes");
    const ReadResult r = read_small(file, buf, sizeof buf);
    if (r.err != 0) {
      if (r.err == ENOENT && dir_exists(d)) continue;  // the root of a v2 tree has no memory.max
      out.errors.push_back(problem(errno_reason(r.err), file + ": " + errno_text(r.err)));
      out.ok = false;
      continue;
    }
    const std::string_view text = trim(std::string_view(buf, r.len));
    if (text == "max" && out.version == CgroupVersion::v2) continue;  // v2's "no limit" (v1 has no such word)
    const Int v = parse_int(text);
    if (!ok(v.err)) {
      out.errors.push_back(problem(v.err, file + ": " + quoted(text) + " is not an integer"));
      out.ok = false;
      continue;
    }
    if (v.v < 0) {
      if (out.version == CgroupVersion::v1 && v.v == -1) continue;  // v1 accepts -1 for "unlimited"
      out.errors.push_back(problem(CgroupErrc::negative, file + ": " + std::to_string(v.v) + " is negative"));
      out.ok = false;
      continue;
    }
    if (v.v == 0) {  // no memory at all: a broken setting, not a limit to size anything by
      out.errors.push_back(problem(CgroupErrc::zero_quota, file + ": limit is 0"));
      out.ok = false;
      continue;
    }
    if (out.version == CgroupVersion::v1 && v.v >= kV1Unlimited) continue;
    const double bytes = static_cast<double>(v.v);
    if (!out.has_limit() || bytes < out.bytes) {
      out.bytes = bytes;
      out.source = file;
    }
  }
  if (!out.ok) {
    out.bytes = kNoQuota;
    out.source.clear();
  }
  return out;
}

CpuLimits discover_cpu_limits(const std::string& fs_root) {
  return CgroupDiscovery(fs_root).cpu_limits();
}

}  // namespace tern
