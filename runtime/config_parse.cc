// runtime/config_parse.cc: the parsers of setting values (config.h): pure functions of their text, so that they can be
// fuzzed alone (tests/fuzz/config_fuzz.cc) and used by flags, the environment and tests alike.
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>

#include "runtime/config.h"
#include "scheduler/limits.h"

namespace tern {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
}  // namespace

std::string detail::format_number(double x) {
  std::string out = std::to_string(x);
  while (out.size() > 1 && out.back() == '0') out.pop_back();
  if (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

Result<bool> parse_on_off(const std::string& name, const std::string& s) {
  if (s == "on" || s == "1") return true;
  if (s == "off" || s == "0") return false;
  return make_error(name + ": must be on or off, not '" + s + "'");
}

Result<int> parse_procs(const std::string& s) {
  auto bad = [&s] {
    return make_error("procs must be 'auto' or an integer from 1 to " + std::to_string(sched::kMaxProcs) + ", not '" +
                      s + "'");
  };
  if (s == "auto" || s == "0") return 0;
  if (s.empty() || s.size() > 6) return bad();
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) return bad();
  int n = std::stoi(s);
  if (n < 1 || n > sched::kMaxProcs) return bad();
  return n;
}

Result<size_t> parse_size(const std::string& s) {
  size_t i = 0;
  unsigned long long v = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
    if (v > std::numeric_limits<unsigned long long>::max() / 10) return make_error("size too large: '" + s + "'");
    v = v * 10 + static_cast<unsigned>(s[i] - '0');
    i++;
  }
  if (i == 0) return make_error("size must be a number with an optional k/m/g suffix, not '" + s + "'");
  std::string suffix = s.substr(i);
  unsigned long long mult = 1;
  if (suffix == "k" || suffix == "K" || suffix == "KiB") {
    mult = 1ull << 10;
  } else if (suffix == "m" || suffix == "M" || suffix == "MiB") {
    mult = 1ull << 20;
  } else if (suffix == "g" || suffix == "G" || suffix == "GiB") {
    mult = 1ull << 30;
  } else if (!suffix.empty()) {
    return make_error("size must be a number with an optional k/m/g suffix, not '" + s + "'");
  }
  return static_cast<size_t>(v * mult);
}

Result<int64_t> parse_duration_ns(const std::string& s) {
  auto bad = [&s] {
    return make_error("duration must be a positive number with a unit ns, us, ms or s (a bare number is ms), not '" +
                      s + "'");
  };
  if (s.empty() || s.size() > 32) return bad();
  size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) i++;
  if (i == 0) return bad();
  char* end = nullptr;
  const std::string num = s.substr(0, i);
  const double v = std::strtod(num.c_str(), &end);
  if (end != num.c_str() + num.size() || !std::isfinite(v) || v <= 0) return bad();
  const std::string unit = s.substr(i);
  double mult = 0;
  if (unit == "ns") {
    mult = 1;
  } else if (unit == "us") {
    mult = 1e3;
  } else if (unit == "ms" || unit.empty()) {
    mult = 1e6;
  } else if (unit == "s") {
    mult = 1e9;
  } else {
    return bad();
  }
  const double ns = v * mult;
  // A day is far past any interval tern takes; beyond it is a typo (and near int64's end, an overflow).
  if (ns < 1 || ns > 86'400e9) return bad();
  return static_cast<int64_t>(ns);
}

Result<double> parse_number(const std::string& name, const std::string& s, double lo, double hi) {
  char* end = nullptr;
  const double v = s.empty() ? kNaN : std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || !std::isfinite(v) || v < lo || v > hi) {
    return make_error(name + ": must be a number from " + detail::format_number(lo) + " to " +
                      detail::format_number(hi) + ", not '" + s + "'");
  }
  return v;
}

}  // namespace tern
