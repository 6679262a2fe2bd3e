// netpoll/uring_setup.cc: io_uring backend setup: probe, create, teardown, each thread's ring, descriptors' open/close.
#include "netpoll/uring_poller.h"

#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <memory>
#include <mutex>
#include <new>
#include <string>

#include "netpoll/uring_internal.h"

namespace tern::netpoll {

using uring_detail::kTagAccept;
using uring_detail::kTagMask;
using uring_detail::prep_futex_wait;
using uring_detail::this_thread_ring;
using uring_detail::ThreadRing;

namespace {

// Whether `ring` takes futex waits: one on a word that does not hold the value must fail at once with -EAGAIN (an
// older kernel rejects the opcode with -EINVAL).
bool futex_wait_works(io_uring* ring) {
  std::atomic<uint32_t> word{1};
  io_uring_sqe* sqe = io_uring_get_sqe(ring);
  if (sqe == nullptr) return false;
  prep_futex_wait(sqe, &word, 0);
  io_uring_sqe_set_data64(sqe, 1);
  if (io_uring_submit(ring) != 1) return false;
  io_uring_cqe* cqe = nullptr;
  __kernel_timespec ts{1, 0};
  if (io_uring_wait_cqe_timeout(ring, &cqe, &ts) < 0) return false;
  const int res = cqe->res;
  io_uring_cqe_seen(ring, cqe);
  return res == -EAGAIN;
}

// The wait ring holds one POLL_ADD at a time.
constexpr unsigned kWaitEntries = 4;

std::atomic<uint64_t> next_poller_id{1};

// Each thread's ThreadRing is built in place in static TLS on first use, and torn down at thread exit by a pthread
// key's destructor rather than by a thread_local destructor. A thread_local with a destructor registers it with
// __cxa_thread_atexit on first use, which calls calloc: an M started while the process's map table is full (glibc
// reuses a cached thread stack, so pthread_create needs no new mapping) died in its first park, with SIGSEGV inside
// jemalloc or glibc's "failed to register TLS destructor" abort. A key's value is kept in the thread descriptor (for
// the first 32 keys of a process), so setting it allocates nothing. The key is made at load time, before any thread
// can need it.
alignas(ThreadRing) thread_local unsigned char t_ring_storage[sizeof(ThreadRing)];
thread_local bool t_ring_built = false;

void destroy_thread_ring(void* p) {
  static_cast<ThreadRing*>(p)->~ThreadRing();
  t_ring_built = false;
}

struct RingKey {
  pthread_key_t key{};
  bool ok = false;
  RingKey() { ok = pthread_key_create(&key, destroy_thread_ring) == 0; }
};
const RingKey ring_key;

__attribute__((noinline, cold)) ThreadRing* build_thread_ring() {
  auto* tr = new (t_ring_storage) ThreadRing();
  t_ring_built = true;
  // Without the key (the process has used up PTHREAD_KEYS_MAX) or its value (a key past the first 32 whose second
  // level block cannot be allocated), the ring is not released when the thread exits: it stays owned, and another
  // thread of the same runtime makes its own. Only a thread that submitted to a ring holds one.
  if (ring_key.ok) (void)pthread_setspecific(ring_key.key, tr);
  return tr;
}

std::string errno_text(const char* what, int err) {
  return errno_error(err, what).message();
}

}  // namespace

// The calling thread's ThreadRing. Fiber code must reach that ring only through this: a fiber that parks may resume on
// another thread, and a compiler is free to compute a thread_local's address once per function and keep it across the
// park (it cannot know that a call switches threads), which would then submit to the old thread's ring without its
// lock: two threads writing one submission queue. GCC 12 -O2 happens to recompute it today, but inlining (LTO) or
// another compiler need not. Out of line, with a compiler barrier, every call takes the address afresh on the thread
// that runs it: the same device as sched::this_m() (scheduler/sched.cc).
namespace {

// The ring fd of the deferred ring this thread owns, or -1: read by the nudge handler, so initial-exec TLS (no lazy
// allocation in a signal handler).
__attribute__((tls_model("initial-exec"))) thread_local int t_deferred_fd = -1;
struct sigaction g_prev_nudge {};
std::once_flag g_nudge_once;

void nudge_handler(int sig, siginfo_t* info, void* uctx) {
  const int saved = errno;
  if (const int fd = t_deferred_fd; fd >= 0) {
    // Runs the completion work waiting for this thread (posting its CQEs, which any thread may then reap); submits
    // nothing, so whatever the interrupted code was doing with the submission queue is untouched.
    ::syscall(__NR_io_uring_enter, fd, 0, 0, IORING_ENTER_GETEVENTS, nullptr, 0);
  }
  errno = saved;
  if (g_prev_nudge.sa_flags & SA_SIGINFO) {
    if (g_prev_nudge.sa_sigaction != nullptr) g_prev_nudge.sa_sigaction(sig, info, uctx);
  } else if (g_prev_nudge.sa_handler != SIG_DFL && g_prev_nudge.sa_handler != SIG_IGN) {
    g_prev_nudge.sa_handler(sig);
  }
}

}  // namespace

void uring_detail::install_nudge_handler() {
  std::call_once(g_nudge_once, [] {
    struct sigaction sa {};
    sa.sa_sigaction = nudge_handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(kNudgeSignal, &sa, &g_prev_nudge);
  });
}

void uring_detail::own_deferred(Ring* r) {
  r->owner_tid.store(static_cast<int>(::syscall(SYS_gettid)), std::memory_order_relaxed);
  t_deferred_fd = r->uring()->ring_fd;
}

void uring_detail::release_deferred(Ring* r) {
  t_deferred_fd = -1;
  r->owner_tid.store(0, std::memory_order_relaxed);
}

__attribute__((noinline)) ThreadRing* uring_detail::this_thread_ring() {
  asm volatile("" ::: "memory");
  if (!t_ring_built) [[unlikely]]
    return build_thread_ring();
  return std::launder(reinterpret_cast<ThreadRing*>(t_ring_storage));
}

std::string UringPoller::probe() {
  io_uring ring;
  io_uring_params p{};
  int rc = io_uring_queue_init_params(kWaitEntries, &ring, &p);
  if (rc < 0) return errno_text("io_uring_setup", -rc);
  unpoison_fresh_mapping(&ring);
  struct Cleanup {
    io_uring* ring;
    int efd = -1, sock = -1;
    ~Cleanup() {
      io_uring_queue_exit(ring);
      if (efd >= 0) ::close(efd);
      if (sock >= 0) ::close(sock);
    }
  } cleanup{&ring};

  const struct {
    uint32_t bit;
    const char* name;
  } features[] = {{IORING_FEAT_FAST_POLL, "IORING_FEAT_FAST_POLL"},
                  {IORING_FEAT_NODROP, "IORING_FEAT_NODROP"},
                  {IORING_FEAT_EXT_ARG, "IORING_FEAT_EXT_ARG"}};
  for (const auto& f : features)
    if ((p.features & f.bit) == 0) return std::string("kernel lacks ") + f.name;

  io_uring_probe* pr = io_uring_get_probe_ring(&ring);
  if (pr == nullptr) return "IORING_REGISTER_PROBE failed";
  const struct {
    int op;
    const char* name;
  } ops[] = {{IORING_OP_RECV, "RECV"},       {IORING_OP_SEND, "SEND"},     {IORING_OP_SENDMSG, "SENDMSG"},
             {IORING_OP_CONNECT, "CONNECT"}, {IORING_OP_ACCEPT, "ACCEPT"}, {IORING_OP_POLL_ADD, "POLL_ADD"}};
  for (const auto& o : ops) {
    if (!io_uring_opcode_supported(pr, o.op)) {
      io_uring_free_probe(pr);
      return std::string("kernel lacks IORING_OP_") + o.name;
    }
  }
  io_uring_free_probe(pr);

  cleanup.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (cleanup.efd < 0) return errno_text("eventfd", errno);
  rc = io_uring_register_eventfd(&ring, cleanup.efd);
  if (rc < 0) return errno_text("IORING_REGISTER_EVENTFD", -rc);

  // Accept and synchronous cancellation, for real: arm one on an autobound abstract unix socket (no network needed),
  // cancel it, and expect -ECANCELED.
  cleanup.sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (cleanup.sock < 0) return errno_text("socket(AF_UNIX)", errno);
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  if (bind(cleanup.sock, reinterpret_cast<sockaddr*>(&sun), sizeof(sa_family_t)) < 0 || listen(cleanup.sock, 1) < 0)
    return errno_text("probe socket", errno);
  io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  io_uring_prep_accept(sqe, cleanup.sock, nullptr, nullptr, SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, 1);
  rc = io_uring_submit(&ring);
  if (rc < 0) return errno_text("io_uring_enter", -rc);
  io_uring_sync_cancel_reg reg{};
  reg.addr = 1;
  reg.timeout.tv_sec = -1;
  reg.timeout.tv_nsec = -1;
  rc = io_uring_register_sync_cancel(&ring, &reg);
  if (rc == -EINVAL) return "kernel lacks IORING_REGISTER_SYNC_CANCEL";
  io_uring_cqe* cqe = nullptr;
  __kernel_timespec ts{1, 0};  // the completion is posted before the cancel returns; a second is slack
  rc = io_uring_wait_cqe_timeout(&ring, &cqe, &ts);
  if (rc < 0) return errno_text("accept probe", -rc);
  int res = cqe->res;
  io_uring_cqe_seen(&ring, cqe);
  if (res != -ECANCELED) return errno_text("accept", res < 0 ? -res : EPROTO);
  return {};
}

Result<std::unique_ptr<UringPoller>> UringPoller::create(bool park_in_ring, bool deferred) {
  std::string why = probe();
  if (!why.empty()) return Error(std::make_error_code(std::errc::function_not_supported), why);
  int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (efd < 0) return errno_error(errno, "eventfd");
  std::unique_ptr<UringPoller> p(new UringPoller(efd));
  int rc = io_uring_queue_init(kWaitEntries, &p->wait_ring_, 0);
  if (rc < 0) return errno_error(-rc, "io_uring_setup");
  p->wait_ring_ok_ = true;
  unpoison_fresh_mapping(&p->wait_ring_);
  p->futex_park_ = park_in_ring && futex_wait_works(&p->wait_ring_);
  // A deferred ring's completion work runs only when its owner waits in it: an idle M must sleep there, not on a futex.
  p->defer_ = deferred && p->futex_park_;
  if (p->defer_) uring_detail::install_nudge_handler();
  auto shared = Ring::create(efd, /*shared=*/true);
  if (!shared) return shared.error();
  p->shared_ = std::shared_ptr<Ring>(std::move(*shared));
  p->owners_.push_back(p->shared_);
  p->rings_[0].store(p->shared_.get(), std::memory_order_release);
  p->nrings_.store(1, std::memory_order_release);
  return p;
}

UringPoller::UringPoller(int efd) : id_(next_poller_id.fetch_add(1, std::memory_order_relaxed)), efd_(efd) {}

UringPoller::~UringPoller() {
  // Fibers are gone: completions still queued are dropped unread, except accepted connections, which are closed.
  for (auto& r : owners_) {
    std::lock_guard lk(r->cq_mu);
    io_uring* u = r->uring();
    unsigned head, seen = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(u, head, cqe) {
      if ((cqe->user_data & kTagMask) == kTagAccept && cqe->res >= 0) ::close(cqe->res);
      seen++;
    }
    io_uring_cq_advance(u, seen);
  }
  descs_.for_each_live([](UringDesc* d) {
    if (d->listen != nullptr) {
      for (int fd : d->listen->ready) ::close(fd);
      delete d->listen;
    }
    if (d->fd >= 0) ::close(d->fd);
  });
  if (wait_ring_ok_) io_uring_queue_exit(&wait_ring_);
  ::close(efd_);
}

Ring* UringPoller::thread_ring() {
  ThreadRing* tr = this_thread_ring();
  if (tr->poller_id == id_) [[likely]]
    return tr->ring.get();
  return adopt_ring();
}

Ring* UringPoller::adopt_ring() {
  ThreadRing* tr = this_thread_ring();
  tr->release();
  std::shared_ptr<Ring> pick;
  {
    std::lock_guard lk(rings_mu_);
    // A ring whose thread exited is reused before a new one is made, so thread churn does not grow the set.
    for (auto& r : owners_) {
      bool expected = false;
      // A deferred ring takes submissions from the thread that made it only: it is never handed on.
      if (!r->shared() && !r->deferred() &&
          r->owned.compare_exchange_strong(expected, true, std::memory_order_acquire)) {
        pick = r;
        break;
      }
    }
    int n = nrings_.load(std::memory_order_relaxed);
    if (!pick && n < kMaxRings) {
      auto created = Ring::create(efd_, /*shared=*/false, /*incremental=*/true, defer_);
      if (created) {
        pick = std::shared_ptr<Ring>(std::move(*created));
        pick->owned.store(true, std::memory_order_relaxed);
        if (pick->deferred()) uring_detail::own_deferred(pick.get());
        owners_.push_back(pick);
        rings_[n].store(pick.get(), std::memory_order_release);
        nrings_.store(n + 1, std::memory_order_release);
      }
    }
    if (!pick) pick = shared_;
  }
  tr->poller_id = id_;
  tr->ring = std::move(pick);
  return tr->ring.get();
}

Result<Desc*> UringPoller::open(int fd, bool listening) {
  UringDesc* d = descs_.acquire();
  if (d == nullptr) return errno_code(ENOMEM);
  d->fd = fd;
  d->listen = listening ? new ListenState() : nullptr;
  d->read_waits = false;
  RecvState& rs = d->recv;
  rs.chunks.clear();
  rs.head = 0;
  rs.ring = nullptr;
  rs.armed = rs.throttled = rs.nobufs = rs.eof = false;
  rs.error = 0;
  rs.slot.reset();
  return static_cast<Desc*>(d);
}

void UringPoller::close(Desc* d) {
  auto* ud = static_cast<UringDesc*>(d);
  if (ListenState* ls = ud->listen) {
    bool armed;
    {
      std::lock_guard lk(ls->mu);
      armed = ls->armed;
    }
    if (armed) {
      cancel(ls->ring, reinterpret_cast<uint64_t>(ls) | kTagAccept);
      wait_disarmed(ls);
    }
    for (int fd : ls->ready) ::close(fd);
    delete ls;
    ud->listen = nullptr;
  } else {
    recv_disarm(ud);
  }
  ::close(ud->fd);
  descs_.release(ud);
}

}  // namespace tern::netpoll
