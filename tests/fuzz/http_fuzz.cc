// tests/fuzz/http_fuzz.cc: tern-echo's HTTP/1.1 request parser (tools/echo/http_parser.h) on arbitrary bytes, as a
// connection's buffer: requests parsed one after another as the server does, with small limits so that every limit
// is reached. Beyond not crashing, each result must be consistent: what a request consumed lies within the input, its
// views point into it, a body never exceeds the limit, and an error is one of the statuses the parser documents.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "tools/echo/http_parser.h"

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

bool within(std::string_view part, std::string_view whole) {
  return part.empty() || (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  tern::http::Limits limits;
  limits.max_header_bytes = 512;
  limits.max_body_bytes = 256;
  size_t pos = 0;
  for (int requests = 0; pos < all.size() && requests < 64; requests++) {
    const std::string_view in = all.substr(pos);
    tern::http::Request req;
    const tern::http::ParseResult r = tern::http::parse_request(in, limits, req);
    if (r.state == tern::http::ParseState::kNeedMore) {
      // More is needed: either the headers are incomplete (need 0), or the whole request is longer than what is here.
      check(r.need == 0 || r.need > in.size());
      check(r.need <= limits.max_header_bytes + limits.max_body_bytes + 2);
      check(in.size() <= limits.max_header_bytes + limits.max_body_bytes + 2);
      break;
    }
    if (r.state == tern::http::ParseState::kError) {
      check(r.status == 400 || r.status == 413 || r.status == 431 || r.status == 501 || r.status == 505);
      break;
    }
    check(r.consumed > 0 && r.consumed <= in.size());
    check(!req.method.empty() && !req.path.empty() && !req.target.empty());
    // An absolute-form target without a path reads as the constant "/", not a view into the input.
    check(within(req.method, in) && within(req.query, in) && within(req.body, in) &&
          (req.target == "/" || within(req.target, in)) && (req.path == "/" || within(req.path, in)));
    check(req.body.size() <= limits.max_body_bytes);
    check(req.minor_version == 0 || req.minor_version == 1);
    (void)tern::http::query_param(req.query, "us");
    pos += r.consumed;
  }
  return 0;
}
