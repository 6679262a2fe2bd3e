// runtime/net/error.cc: net::Errc and its error category.
#include "runtime/net/error.h"

#include <string>

namespace tern::net {
namespace {

class NetCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "tern.net"; }
  std::string message(int ev) const override {
    switch (static_cast<Errc>(ev)) {
      case Errc::eof:
        return "end of stream";
      case Errc::not_in_fiber:
        return "tern::net operations must be called from a fiber of a tern::Runtime";
      case Errc::no_poller:
        return "the runtime has no network poller";
      case Errc::not_open:
        return "not open";
      case Errc::bad_address:
        return "bad address";
      case Errc::no_such_host:
        return "no such host";
      case Errc::lookup_failed:
        return "name resolution failed";
      case Errc::too_long:
        return "longer than the buffered reader's maximum size";
      case Errc::closed:
        return "use of closed network connection";
    }
    return "unknown tern.net error";
  }
};

}  // namespace

const std::error_category& net_category() {
  static const NetCategory category;
  return category;
}

std::error_code make_error_code(Errc e) {
  return {static_cast<int>(e), net_category()};
}

}  // namespace tern::net
