// runtime/fd_limit.h: the soft RLIMIT_NOFILE raised to the hard limit when a runtime starts, as Go does.
//
// Many systems still give processes a soft limit of 1,024 open files beside a hard limit of 500k or more (the soft
// one is for select(2), whose fd_set cannot hold more). A server on the soft limit goes offline at about a thousand
// idle connections: accept fails with EMFILE and nothing else can be opened. Go raises its soft limit to the hard one
// at start (since 1.19); tern does the same in Runtime::start unless Config::raise_fd_limit is false
// (TERN_RAISE_FD_LIMIT=off). Child processes inherit the raised limit: a program that starts children which use
// select(2) on their descriptors should turn it off.
#pragma once

#include <cstdint>
#include <string>

namespace tern {

struct FdLimit {
  uint64_t soft = 0;  // RLIMIT_NOFILE's soft limit now (UINT64_MAX: unlimited)
  uint64_t hard = 0;
  uint64_t soft_before = 0;     // before raise_fd_limit() changed it (== soft if it did not)
  int error = 0;                // errno of a failed getrlimit/setrlimit, 0 if none
  std::string message() const;  // "1024 -> 524288 (hard 524288)", or why it could not be raised
};

// The current limits, changing nothing.
FdLimit current_fd_limit();
// Raises the soft limit to the hard limit if it is lower. A failure is reported in the result (and the limits are
// left as they were); the caller decides whether to warn.
FdLimit raise_fd_limit();

}  // namespace tern
