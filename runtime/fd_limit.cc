// runtime/fd_limit.cc: raising the soft RLIMIT_NOFILE (fd_limit.h).
#include "runtime/fd_limit.h"

#include <sys/resource.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace tern {

namespace {

uint64_t to_u64(rlim_t v) {
  return v == RLIM_INFINITY ? UINT64_MAX : static_cast<uint64_t>(v);
}

std::string limit_text(uint64_t v) {
  return v == UINT64_MAX ? std::string("unlimited") : std::to_string(v);
}

}  // namespace

std::string FdLimit::message() const {
  std::string s = limit_text(soft_before);
  if (soft != soft_before) s += " -> " + limit_text(soft);
  s += " (hard " + limit_text(hard) + ")";
  if (error != 0) s += std::string(": cannot raise it: ") + std::strerror(error);
  return s;
}

FdLimit current_fd_limit() {
  FdLimit out;
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    out.error = errno;
    return out;
  }
  out.soft = out.soft_before = to_u64(rl.rlim_cur);
  out.hard = to_u64(rl.rlim_max);
  return out;
}

FdLimit raise_fd_limit() {
  FdLimit out = current_fd_limit();
  if (out.error != 0 || out.soft >= out.hard) return out;
  rlimit rl{};
  rl.rlim_cur = out.hard == UINT64_MAX ? RLIM_INFINITY : static_cast<rlim_t>(out.hard);
  rl.rlim_max = rl.rlim_cur;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
    // Linux refuses a soft limit above fs.nr_open even where the hard one is higher (EPERM): the limits stay.
    out.error = errno;
    return out;
  }
  out.soft = out.hard;
  return out;
}

}  // namespace tern
