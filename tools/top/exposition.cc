// tools/top/exposition.cc: the Prometheus text format reader (see exposition.h).
#include "tools/top/exposition.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <system_error>

namespace tern::top {
namespace {

bool name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}
bool name_char(char c) {
  return name_start(c) || (c >= '0' && c <= '9');
}

Error bad(size_t line_no, std::string_view what, std::string_view line) {
  std::string shown(line.substr(0, 80));
  if (line.size() > 80) shown += "...";
  return {std::make_error_code(std::errc::invalid_argument),
          "line " + std::to_string(line_no) + ": " + std::string(what) + ": \"" + shown + "\""};
}

// A float as the format writes it: decimal or exponent notation, NaN, +Inf, -Inf (Go's ParseFloat spellings).
bool parse_value(std::string_view s, double* out) {
  if (s == "NaN") return *out = std::numeric_limits<double>::quiet_NaN(), true;
  if (s == "+Inf" || s == "Inf") return *out = std::numeric_limits<double>::infinity(), true;
  if (s == "-Inf") return *out = -std::numeric_limits<double>::infinity(), true;
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {  // strtod would also take "nan(...)", "infinity" and hex: not this format's
    if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-')) return false;
  }
  char buf[65];
  s.copy(buf, s.size());
  buf[s.size()] = '\0';
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(buf, &end);
  if (end != buf + s.size() || errno == ERANGE) return false;
  *out = v;
  return true;
}

}  // namespace

std::string_view Sample::label(std::string_view key) const {
  for (const auto& [k, v] : labels)
    if (k == key) return v;
  return {};
}

const Sample* Scrape::find(std::string_view name,
                           std::initializer_list<std::pair<std::string_view, std::string_view>> match) const {
  for (const Sample& s : samples) {
    if (s.name != name) continue;
    bool ok = true;
    for (const auto& [k, v] : match) ok = ok && s.label(k) == v;
    if (ok) return &s;
  }
  return nullptr;
}

double Scrape::value(std::string_view name,
                     std::initializer_list<std::pair<std::string_view, std::string_view>> match) const {
  const Sample* s = find(name, match);
  return s ? s->value : std::numeric_limits<double>::quiet_NaN();
}

double Scrape::sum(std::string_view name) const {
  double total = 0;
  bool any = false;
  for (const Sample& s : samples) {
    if (s.name != name) continue;
    total += s.value;
    any = true;
  }
  return any ? total : std::numeric_limits<double>::quiet_NaN();
}

std::vector<const Sample*> Scrape::all(std::string_view name) const {
  std::vector<const Sample*> out;
  for (const Sample& s : samples)
    if (s.name == name) out.push_back(&s);
  return out;
}

Result<Scrape> parse_exposition(std::string_view text) {
  Scrape scrape;
  size_t line_no = 0;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    line_no++;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    size_t i = 0;
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) i++;
    if (i == line.size() || line[i] == '#') continue;  // blank, HELP, TYPE, comment

    Sample s;
    const size_t name_at = i;
    if (!name_start(line[i])) return bad(line_no, "a metric name must start with a letter, '_' or ':'", line);
    while (i < line.size() && name_char(line[i])) i++;
    s.name = std::string(line.substr(name_at, i - name_at));
    if (i < line.size() && line[i] == '{') {
      i++;
      for (;;) {
        while (i < line.size() && (line[i] == ' ' || line[i] == ',')) i++;
        if (i < line.size() && line[i] == '}') {
          i++;
          break;
        }
        const size_t k = i;
        while (i < line.size() && name_char(line[i]) && line[i] != ':') i++;
        if (i == k) return bad(line_no, "a label name was expected", line);
        std::string key(line.substr(k, i - k));
        if (i >= line.size() || line[i] != '=') return bad(line_no, "'=' was expected after label " + key, line);
        i++;
        if (i >= line.size() || line[i] != '"')
          return bad(line_no, "a quoted value was expected for label " + key, line);
        i++;
        std::string value;
        bool closed = false;
        while (i < line.size()) {
          const char c = line[i++];
          if (c == '"') {
            closed = true;
            break;
          }
          if (c != '\\') {
            value += c;
            continue;
          }
          if (i >= line.size()) break;
          const char e = line[i++];
          if (e == 'n') {
            value += '\n';
          } else if (e == '\\' || e == '"') {
            value += e;
          } else {
            return bad(line_no, std::string("unknown escape \\") + e + " in label " + key, line);
          }
        }
        if (!closed) return bad(line_no, "unterminated value of label " + key, line);
        s.labels.emplace_back(std::move(key), std::move(value));
      }
    }
    if (i >= line.size() || (line[i] != ' ' && line[i] != '\t')) return bad(line_no, "a value was expected", line);
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) i++;
    const size_t v = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') i++;
    if (!parse_value(line.substr(v, i - v), &s.value)) return bad(line_no, "the value is not a number", line);
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) i++;
    if (i < line.size()) {  // an optional timestamp: an integer of milliseconds
      const size_t t = i;
      if (line[i] == '-') i++;
      while (i < line.size() && line[i] >= '0' && line[i] <= '9') i++;
      if (i == t || i != line.size()) return bad(line_no, "junk after the value", line);
    }
    scrape.samples.push_back(std::move(s));
  }
  return scrape;
}

}  // namespace tern::top
