// netpoll/netpoll.cc: choosing a poller backend ("auto" is epoll: netpoll.h says why).
#include "netpoll/netpoll.h"

#include "netpoll/epoll_poller.h"
#include "netpoll/uring_poller.h"

namespace tern::netpoll {

Result<std::unique_ptr<sched::Poller>> make_poller(const std::string& kind, bool uring_park, bool uring_defer) {
  if (kind == "epoll" || kind == "auto") {
    auto p = EpollPoller::create();
    if (!p) return p.error().wrap("epoll poller");
    return std::unique_ptr<sched::Poller>(std::move(*p));
  }
  if (kind == "uring") {
    auto p = UringPoller::create(uring_park, uring_defer);
    if (p) return std::unique_ptr<sched::Poller>(std::move(*p));
    return p.error().wrap("poller 'uring' requested but io_uring is unusable here");
  }
  return make_error("unknown poller '" + kind + "' (expected auto, uring or epoll)");
}

std::string uring_unavailable_reason() {
  return UringPoller::probe();
}

}  // namespace tern::netpoll
