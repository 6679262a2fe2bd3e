// tests/fuzz/cgroup_fuzz.cc: CPU- and memory-limit discovery (runtime/cgroup.h) over a filesystem tree the input
// describes: /proc/self/mountinfo, /proc/self/cgroup and the cgroup files they lead to, each as
//
//   @@ relative/path
//   contents...
//
// written afresh under a private directory for every input. Discovery must never crash, and each reading must be
// consistent: a quota it reports is positive and finite, CPU counts are within the CPU number limit, a failed reading
// names its problem. count_cpu_list() also gets every file's contents as a CPU list.
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "runtime/cgroup.h"

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

const std::string& root() {
  static const std::string r = "/dev/shm/tern-fuzz-cgroup-" + std::to_string(getpid());
  return r;
}

int remove_entry(const char* path, const struct stat*, int, struct FTW*) {
  remove(path);
  return 0;
}

// A path the input may name: relative, at most 12 parts, no "." or ".." parts, printable characters but '\\'.
bool safe(std::string_view p) {
  if (p.empty() || p.size() > 200 || p.front() == '/') return false;
  int parts = 0;
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find('/', start);
    if (end == std::string_view::npos) end = p.size();
    std::string_view part = p.substr(start, end - start);
    if (part.empty() || part == "." || part == ".." || ++parts > 12) return false;
    for (unsigned char c : part) {
      if (c < 0x20 || c >= 0x7f || c == '\\') return false;
    }
    start = end + 1;
  }
  return true;
}

void write_file(const std::string& rel, std::string_view contents) {
  std::string path = root() + "/" + rel;
  for (size_t i = root().size() + 1; i < path.size(); i++) {
    if (path[i] == '/') {
      path[i] = '\0';
      mkdir(path.c_str(), 0755);
      path[i] = '/';
    }
  }
  if (FILE* f = std::fopen(path.c_str(), "w")) {
    std::fwrite(contents.data(), 1, contents.size(), f);
    std::fclose(f);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  nftw(root().c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  mkdir(root().c_str(), 0755);
  // Each record starts with "@@ " at the start of a line and runs to the next one.
  size_t at = in.starts_with("@@ ") ? 0 : in.find("\n@@ ");
  if (at != 0 && at != std::string_view::npos) at++;
  while (at != std::string_view::npos) {
    const size_t eol = in.find('\n', at);
    const std::string_view name = in.substr(at + 3, eol == std::string_view::npos ? in.npos : eol - (at + 3));
    const size_t body_at = eol == std::string_view::npos ? in.size() : eol + 1;
    const size_t next = in.find("\n@@ ", body_at - 1);  // the header's own newline may end an empty body
    const size_t body_end = next == std::string_view::npos ? in.size() : std::max(next, body_at);
    const std::string_view body = in.substr(body_at, body_end - body_at);
    if (safe(name)) write_file(std::string(name), body);
    (void)tern::count_cpu_list(body);
    at = next == std::string_view::npos ? next : next + 1;
  }

  tern::CgroupDiscovery d(root());
  for (int round = 0; round < 2; round++) {  // the second reading reuses the resolved paths
    const tern::CpuLimits c = d.cpu_limits();
    if (c.has_quota()) check(c.quota_cores > 0 && std::isfinite(c.quota_cores) && !c.quota_source.empty());
    check(c.cpuset_cpus >= 0 && c.cpus >= 0 && c.affinity_cpus >= 0);
    if (!c.quota_ok) check(!c.errors.empty());
    (void)d.throttle();
    const tern::MemoryLimit m = d.memory_limit();
    if (m.has_limit()) check(m.bytes > 0 && !m.source.empty());
    if (!m.ok) check(!m.errors.empty());
  }
  return 0;
}
