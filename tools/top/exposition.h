// tools/top/exposition.h: the Prometheus text exposition format (version 0.0.4), read: what tern-top scrapes from a
// program's GET /metrics.
//
//   auto scrape = tern::top::parse_exposition(body);     // Result<Scrape>
//   double procs = scrape->value("tern_procs");           // NaN when absent
//   double busy = scrape->sum("tern_proc_busy_seconds_total");
//   for (const auto& s : scrape->all("tern_runq_length")) use(s.label("p"), s.value);
//
// The grammar read: `# HELP` and `# TYPE` lines and other comments (skipped), blank lines, and samples
// `name{label="value",...} value [timestamp]`, with label values escaped as \\, \" and \n, and values that may be
// NaN, +Inf or -Inf. A line that does not parse is an error naming its number and what was wrong: a scrape is taken
// whole or not at all, so a view never mixes a half-read frame with the last one.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

namespace tern::top {

struct Sample {
  std::string name;
  std::vector<std::pair<std::string, std::string>> labels;  // in the order written
  double value = 0;

  // The value of label `key`, empty when the sample has none.
  std::string_view label(std::string_view key) const;
};

struct Scrape {
  std::vector<Sample> samples;

  // The first sample named `name` whose labels include every (key, value) in `match`; nullptr when none.
  const Sample* find(std::string_view name,
                     std::initializer_list<std::pair<std::string_view, std::string_view>> match = {}) const;
  // That sample's value, NaN when there is none.
  double value(std::string_view name,
               std::initializer_list<std::pair<std::string_view, std::string_view>> match = {}) const;
  // The sum over every sample named `name` (all label sets); NaN when there is none.
  double sum(std::string_view name) const;
  // Every sample named `name`.
  std::vector<const Sample*> all(std::string_view name) const;
};

Result<Scrape> parse_exposition(std::string_view text);

}  // namespace tern::top
