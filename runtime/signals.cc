// runtime/signals.cc: the handler, the pipe and the relay thread behind tern::signals (signals.h).
#include "runtime/signals.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

namespace tern {

namespace {

// The pipe's write end, for the handler (-1 until the relay starts; never closed after).
std::atomic<int> g_pipe_write{-1};

void on_signal(int sig) {
  const int saved = errno;
  const int fd = g_pipe_write.load(std::memory_order_relaxed);
  if (fd >= 0) {
    const unsigned char b = static_cast<unsigned char>(sig);
    // Non-blocking: with 64 KiB of numbers unread the relay is far behind, and one more is lost rather than a thread
    // stopped inside a handler.
    ssize_t n = write(fd, &b, 1);
    (void)n;
  }
  errno = saved;
}

struct Relay {
  std::mutex mu;
  std::vector<SignalSubscription*> subs;  // guarded by mu
  // Per signal: how many subscriptions want it, and the disposition before the first (guarded by mu).
  int wanted[NSIG] = {};
  struct sigaction previous[NSIG] = {};
  int read_fd = -1;
  bool started = false;

  Result<void> start_locked() {
    if (started) return {};
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return errno_error(errno, "tern::signals: pipe2");
    // Only the write end is non-blocking: the relay thread blocks in read.
    if (fcntl(fds[1], F_SETFL, O_NONBLOCK) != 0) {
      const int err = errno;
      close(fds[0]);
      close(fds[1]);
      return errno_error(err, "tern::signals: fcntl");
    }
    try {
      std::thread([this, fd = fds[0]] { run(fd); }).detach();
    } catch (const std::system_error& e) {
      close(fds[0]);
      close(fds[1]);
      return make_error(std::string("tern::signals: cannot start the relay thread: ") + e.what());
    }
    read_fd = fds[0];
    g_pipe_write.store(fds[1], std::memory_order_relaxed);
    started = true;
    return {};
  }

  void run(int fd) {
    pthread_setname_np(pthread_self(), "tern-signals");
    // The relay takes no signal itself: a handler running on it would only write to its own pipe, but one that
    // interrupted its read with EINTR is needless.
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    unsigned char buf[64];
    for (;;) {
      ssize_t n = read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;  // cannot happen while the write end is open (it never closes)
      std::lock_guard lk(mu);
      for (ssize_t i = 0; i < n; i++) {
        for (SignalSubscription* s : subs) {
          const auto& want = s->signals();
          if (std::find(want.begin(), want.end(), buf[i]) != want.end()) (void)s->channel().try_send(int{buf[i]});
        }
      }
    }
  }
};

Relay& relay() {
  static Relay* r = new Relay;  // the detached relay thread uses it until the process ends
  return *r;
}

Result<void> check_signal(int sig) {
  const std::string n = std::to_string(sig);
  if (sig < 1 || sig > SIGRTMAX || sig >= NSIG) return make_error("tern::signals: no signal " + n);
  switch (sig) {
    case SIGKILL:
    case SIGSTOP:
      return make_error("tern::signals: signal " + n + " (" + strsignal(sig) + ") cannot be caught");
    case SIGSEGV:
    case SIGBUS:
    case SIGFPE:
    case SIGILL:
      return make_error("tern::signals: signal " + n + " (" + strsignal(sig) +
                        ") is a synchronous fault: it kills the faulting thread, it cannot be delivered to a channel");
    case SIGURG:
      return make_error("tern::signals: signal " + n + " (SIGURG) is the stall detector's (TERN_STALL_MS)");
    default:
      return {};
  }
}

}  // namespace

Result<std::unique_ptr<SignalSubscription>> signals(std::initializer_list<int> sigs, size_t capacity) {
  if (sigs.size() == 0) return make_error("tern::signals: no signal given");
  if (capacity == 0) return make_error("tern::signals: the channel needs room for at least one signal");
  std::vector<int> list;
  for (int s : sigs) {
    if (auto ok = check_signal(s); !ok) return ok.error();
    if (std::find(list.begin(), list.end(), s) == list.end()) list.push_back(s);
  }
  std::unique_ptr<SignalSubscription> sub(new SignalSubscription(std::move(list), capacity));
  Relay& r = relay();
  std::lock_guard lk(r.mu);
  if (auto ok = r.start_locked(); !ok) return ok.error();
  for (size_t i = 0; i < sub->sigs_.size(); i++) {
    const int s = sub->sigs_[i];
    if (r.wanted[s]++ > 0) continue;
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigfillset(&sa.sa_mask);
    if (sigaction(s, &sa, &r.previous[s]) != 0) {
      const int err = errno;
      // Undo this subscription's signals so far.
      for (size_t j = 0; j <= i; j++) {
        const int u = sub->sigs_[j];
        if (--r.wanted[u] == 0 && j < i) sigaction(u, &r.previous[u], nullptr);
      }
      return errno_error(err, ("tern::signals: sigaction(" + std::to_string(s) + ")").c_str());
    }
  }
  r.subs.push_back(sub.get());
  sub->active_ = true;
  return sub;
}

void SignalSubscription::reset() {
  {
    Relay& r = relay();
    std::lock_guard lk(r.mu);
    if (!active_) return;
    active_ = false;
    r.subs.erase(std::find(r.subs.begin(), r.subs.end(), this));
    for (int s : sigs_) {
      if (--r.wanted[s] == 0) sigaction(s, &r.previous[s], nullptr);
    }
  }
  ch_.close();
}

}  // namespace tern
