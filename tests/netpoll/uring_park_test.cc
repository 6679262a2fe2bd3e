// UringPoller::park(), driven from a plain thread as the scheduler drives it: an idle M sleeps in io_uring_enter on its
// own ring, on a futex wait for its note. io_uring only (the epoll backend does not park this way).
#include <gtest/gtest.h>
#include <linux/futex.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>

#include "netpoll/netpoll.h"
#include "netpoll/uring_poller.h"
#include "scheduler/poller.h"
#include "tests/support/require.h"

namespace tern::netpoll {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// How long a park that has a wakeup to see may take to return: catches a sleep with no wait armed, not jitter.
constexpr auto kSlack = 2s;

// What the hook below works on (a hook takes no arguments).
UringPoller* g_poller = nullptr;
std::atomic<uint32_t>* g_word = nullptr;

// The interleaving the hook forces, between park()'s decision to reuse the futex wait an earlier park left armed and
// its sleep: the M's note is woken as sched::Note::wakeup() does it (the word set, one futex waiter woken), which
// completes that earlier wait, and another thread reaps the ring meanwhile (a non-blocking poll, as an M looking for
// work makes), consuming the wait's completion.
void wake_and_reap_elsewhere() {
  g_word->store(1, std::memory_order_release);
  syscall(SYS_futex, g_word, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
  // The wait's completion is posted by task work on this thread, which runs on the way out of a system call (the
  // futex wake just made, at the latest the thread start below). The reaper polls for long enough to take it.
  std::thread reaper([] {
    const auto t0 = Clock::now();
    while (Clock::now() - t0 < 20ms) {
      sched::GList out;
      g_poller->poll(0, out);
    }
  });
  reaper.join();
}

void on_signal(int) {}

TEST(UringPark, AWakeupWhoseCompletionAnotherThreadReapsStillEndsThePark) {
  TERN_SKIP_UNLESS_URING();
  auto created = UringPoller::create(/*park_in_ring=*/true);
  ASSERT_TRUE(created) << created.error().message();
  UringPoller& p = **created;
  std::atomic<uint32_t> word{0};
  g_poller = &p;
  g_word = &word;

  // Signals interrupt io_uring_enter (no SA_RESTART): how the first park is ended without completing its futex wait,
  // and how a stranded one is freed at the end.
  struct sigaction sa {
  }, old{};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  ASSERT_EQ(sigaction(SIGUSR1, &sa, &old), 0);

  // 1: set up, about to park; 2: first park returned; 3: second park returned, or the thread ended early (a failed
  // setup).
  std::atomic<int> stage{0};
  bool supported = true;
  std::thread m([&] {
    // Whatever ends this thread (an ASSERT failing in the setup returns early) tells the main thread, which would
    // otherwise signal it forever.
    struct Done {
      std::atomic<int>& stage;
      ~Done() { stage.store(3); }
    } done{stage};
    // A ring of this thread's own: the poller makes one on a thread's first submission, here an accept that finds its
    // connection queued and completes inline.
    int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sin;
    ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&sin), sizeof sin), 0);
    ASSERT_EQ(::listen(lfd, 1), 0);
    ASSERT_EQ(::getsockname(lfd, reinterpret_cast<sockaddr*>(&sin), &len), 0);
    int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_EQ(::connect(client, reinterpret_cast<sockaddr*>(&sin), sizeof sin), 0) << std::strerror(errno);
    Result<Desc*> d = p.open(lfd, /*listening=*/true);
    ASSERT_TRUE(d) << d.error().message();
    int fd = p.accept(*d, -1);
    ASSERT_GE(fd, 0) << -fd;
    ::close(fd);
    ::close(client);

    // The first park arms a futex wait on the word and is ended by a signal: the wait stays armed for the next.
    // Signals come only from here on: one during the setup above would interrupt connect() (no SA_RESTART).
    stage.store(1);
    sched::GList out;
    if (!p.park(&word, out)) {
      supported = false;  // the kernel lacks IORING_OP_FUTEX_WAIT
    } else {
      stage.store(2);
      UringPoller::park_enter_hook.store(wake_and_reap_elsewhere);
      p.park(&word, out);
      UringPoller::park_enter_hook.store(nullptr);
    }
    stage.store(3);
    p.close(*d);
  });

  const pthread_t mt = m.native_handle();
  while (stage.load() == 0) std::this_thread::sleep_for(1ms);
  // Interrupt the first park: signals until it returns (one that lands before the sleep is ignored).
  while (stage.load() == 1) {
    pthread_kill(mt, SIGUSR1);
    std::this_thread::sleep_for(5ms);
  }
  const auto t0 = Clock::now();
  while (stage.load() < 3 && Clock::now() - t0 < kSlack) std::this_thread::sleep_for(1ms);
  const bool returned = stage.load() == 3;
  // A stranded park sleeps until unrelated I/O; free it so that the test ends.
  while (stage.load() < 3) {
    pthread_kill(mt, SIGUSR1);
    std::this_thread::sleep_for(5ms);
  }
  m.join();
  sigaction(SIGUSR1, &old, nullptr);
  if (!supported) TERN_SKIP_OR_FAIL(test::uring_futex_required(), "the kernel lacks IORING_OP_FUTEX_WAIT (Linux 6.7)");
  EXPECT_TRUE(returned) << "the M slept with its note woken and no futex wait armed";
  EXPECT_EQ(word.load(), 1u);
}

}  // namespace
}  // namespace tern::netpoll
