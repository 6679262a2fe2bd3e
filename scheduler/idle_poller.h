// scheduler/idle_poller.h: the Poller of a runtime without network I/O. It waits for wake() or a timeout and reports
// no fibers: the idle M that holds the poller role sleeps here until the earliest timer.
#pragma once

#include "scheduler/futex.h"
#include "scheduler/poller.h"

namespace tern::sched {

class IdlePoller final : public Poller {
 public:
  size_t poll(int64_t timeout_ns, GList&) override {
    if (timeout_ns != 0) note_.sleep(timeout_ns);
    return 0;
  }
  void wake() override { note_.wakeup(); }
  bool has_waiters() const override { return false; }
  const char* name() const override { return "none"; }

 private:
  Note note_;
};

}  // namespace tern::sched
