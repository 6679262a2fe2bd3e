// tools/top/proc_stat.cc: see proc_stat.h.
#include "tools/top/proc_stat.h"

#include <time.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace tern::top {

double process_cpu_seconds_from_stat(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  std::getline(f, text);
  const size_t close = text.rfind(')');  // the command may hold spaces and parentheses
  if (close == std::string::npos || close + 2 > text.size()) return NAN;
  std::istringstream in(text.substr(close + 2));
  std::string field;
  double utime = NAN, stime = NAN;
  for (int i = 3; in >> field; i++) {  // field 3 is the state
    if (i == 14) utime = std::strtod(field.c_str(), nullptr);
    if (i == 15) {
      stime = std::strtod(field.c_str(), nullptr);
      break;
    }
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double process_cpu_seconds(pid_t pid) {
  clockid_t clock;
  timespec ts{};
  if (clock_getcpuclockid(pid, &clock) == 0 && clock_gettime(clock, &ts) == 0)
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
  return process_cpu_seconds_from_stat(pid);
}

}  // namespace tern::top
