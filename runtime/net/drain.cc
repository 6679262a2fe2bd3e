// runtime/net/drain.cc: see drain.h.
#include "runtime/net/drain.h"

#include <algorithm>
#include <mutex>
#include <vector>

#include "runtime/sync/cond_var.h"
#include "runtime/sync/mutex.h"

namespace tern::net {

// A connection's state moves kBusy <-> kIdle under its own fiber, and to kClosed by the drain (from kIdle at start,
// from either at the deadline). The fiber's idle() and the drain's start() each write one atomic and then read the
// other's (all sequentially consistent): at least one of them sees the other, so an idle connection is never missed
// by a drain that has begun, and a connection never waits for a request while a drain it did not see has begun.
enum : uint8_t { kBusy, kIdle, kClosed };

struct Drain::State {
  mutable tern::Mutex mu;  // guards listeners, conns and the entries' streams
  tern::CondVar left;      // a connection left
  std::vector<Listener*> listeners;
  std::vector<Entry*> conns;
  std::atomic<bool> draining{false};

  void close_listeners_locked() {
    for (Listener* l : listeners) l->close();
    listeners.clear();
  }
};

Drain::Drain() : st_(std::make_shared<State>()) {}
Drain::~Drain() = default;

Drain::Conn::Conn() = default;

// Registers under the lock unless the drain has begun, in which case the handle stays unjoined (st_ null).
Drain::Conn::Conn(std::shared_ptr<State> st, Stream& s) {
  e_.s = &s;
  e_.state.store(kBusy, std::memory_order_relaxed);
  std::lock_guard lk(st->mu);
  if (st->draining.load()) return;
  e_.index = st->conns.size();
  st->conns.push_back(&e_);
  st_ = std::move(st);
}

Drain::Conn::Conn(Conn&& o) noexcept {
  if (o.st_ == nullptr) return;
  std::lock_guard lk(o.st_->mu);  // the drain reads the entry's stream and state under it
  e_.s = o.e_.s;
  e_.state.store(o.e_.state.load());
  e_.index = o.e_.index;
  o.st_->conns[e_.index] = &e_;
  st_ = std::move(o.st_);
}

Drain::Conn::~Conn() {
  if (st_ == nullptr) return;
  std::lock_guard lk(st_->mu);
  auto& v = st_->conns;
  // Out of the list in O(1): the last entry takes this one's place.
  Entry* last = v.back();
  v[e_.index] = last;
  last->index = e_.index;
  v.pop_back();
  st_->left.notify_all();
}

bool Drain::Conn::idle() {
  if (st_ == nullptr) return false;
  uint8_t s = kBusy;
  if (!e_.state.compare_exchange_strong(s, kIdle)) return false;  // kClosed: the drain's deadline closed it
  if (!st_->draining.load()) return true;
  // A drain has begun: take the connection back to busy and leave, unless the drain already claimed (and closed) it.
  s = kIdle;
  e_.state.compare_exchange_strong(s, kBusy);
  return false;
}

bool Drain::Conn::busy() {
  if (st_ == nullptr) return false;
  uint8_t s = kIdle;
  return e_.state.compare_exchange_strong(s, kBusy) || s == kBusy;
}

bool Drain::Conn::draining() const {
  return st_ != nullptr && st_->draining.load();
}

void Drain::watch(Listener& l) {
  std::lock_guard lk(st_->mu);
  if (st_->draining.load()) {
    l.close();
    return;
  }
  st_->listeners.push_back(&l);
}

void Drain::unwatch(Listener& l) {
  std::lock_guard lk(st_->mu);
  auto& v = st_->listeners;
  v.erase(std::remove(v.begin(), v.end(), &l), v.end());
}

Drain::Conn Drain::join(Stream& s) {
  return Conn(st_, s);
}

bool Drain::start() {
  std::lock_guard lk(st_->mu);
  if (st_->draining.exchange(true)) return false;
  st_->close_listeners_locked();
  for (Entry* e : st_->conns) {
    uint8_t s = kIdle;
    // The stream's close() wakes the read it waits in (Errc::closed); the connection's fiber then leaves.
    if (e->state.compare_exchange_strong(s, kClosed)) e->s->close();
  }
  return true;
}

bool Drain::draining() const {
  return st_->draining.load();
}

bool Drain::wait(std::chrono::steady_clock::time_point deadline) {
  start();
  std::unique_lock lk(st_->mu);
  if (st_->left.wait_until(lk, deadline, [&] { return st_->conns.empty(); })) return true;
  // Past the deadline: close what is left. Each leaves when its fiber next touches its stream (a request computing or
  // sleeping leaves when it is done); the handles keep the state alive meanwhile.
  for (Entry* e : st_->conns) {
    e->state.store(kClosed);
    e->s->close();
  }
  return false;
}

size_t Drain::open() const {
  std::lock_guard lk(st_->mu);
  return st_->conns.size();
}

}  // namespace tern::net
