// netpoll/io_backend.cc: the backend a fiber's socket calls go to (current_backend).
#include "netpoll/io_backend.h"

#include "scheduler/sched.h"

namespace tern::netpoll {

IoBackend* current_backend() {
  sched::Sched* s = sched::Sched::current();
  if (s == nullptr) return nullptr;
  // A cross-cast from the scheduler's Poller to the backend's other base; runtime/net does it once per socket.
  return dynamic_cast<IoBackend*>(s->poller());
}

}  // namespace tern::netpoll
