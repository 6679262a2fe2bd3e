// accept() under descriptor exhaustion, for both backends, in a child process (death-test style) whose RLIMIT_NOFILE
// is lowered and then filled: accept must back off (counted), not spin or crash, and take the pending connection once
// descriptors are free again.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "netpoll/netpoll.h"
#include "runtime/go.h"
#include "runtime/net/net.h"
#include "runtime/runtime.h"
#include "runtime/sync/wait_group.h"
#include "tests/support/require.h"

namespace tern::net {
namespace {

using namespace std::chrono_literals;

// Low enough to fill in a moment, high enough for the runtime's own descriptors (rings, eventfds, threads' rings).
constexpr rlim_t kFdLimit = 256;
// How long accept is left starving: long enough for several back-offs (1, 2, 4, ... ms).
constexpr auto kStarve = 100ms;

// Exit codes of the child, so a failure says which step failed.
enum Step { kOk = 0, kSetup = 10, kNoBackoff, kAcceptFailed, kEchoFailed, kSpun };

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

void starve_and_recover(const std::string& poller) {
  rlimit rl{kFdLimit, kFdLimit};
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) std::exit(kSetup);
  Config cfg;
  cfg.procs = 2;
  cfg.poller = poller;
  Runtime rt(cfg);
  int code = kOk;
  rt.run([&] {
    auto l = listen("127.0.0.1:0");
    if (!l) {
      code = kSetup;
      return;
    }
    // The client socket exists before the table fills; its connect needs no new descriptor.
    int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (client < 0 || ::connect(client, l->local_addr().sockaddr_ptr(), l->local_addr().size()) != 0) {
      code = kSetup;
      return;
    }
    // Let the scheduler threads start while descriptors remain. The io_uring backend makes a thread's ring on its
    // first operation, so here the acceptor's thread meets the limit there too and falls back to the shared ring:
    // that path is under test as well.
    for (int i = 0; i < 8; i++) tern::go([] {});
    sleep_for(10ms);
    std::vector<int> filler;
    for (int fd; (fd = ::dup(client)) >= 0;) filler.push_back(fd);
    // go + WaitGroup rather than spawn: under UBSan a first virtual call on a type (spawn's shared_ptr control block)
    // checks the vtable through a pipe, which a full descriptor table makes fail.
    std::optional<Result<Stream>> accepted;
    WaitGroup done;
    done.add(1);
    tern::go([&] {
      accepted.emplace(l->accept(10s));
      done.done();
    });
    double cpu0 = cpu_seconds();
    sleep_for(kStarve);
    double cpu = cpu_seconds() - cpu0;
    uint64_t backoffs = l->accept_backoffs();
    for (int fd : filler) ::close(fd);
    done.wait();
    auto& s = *accepted;
    if (backoffs == 0) {
      code = kNoBackoff;
      return;
    }
    // Two threads spinning for the whole starvation would burn 2 x kStarve of CPU; back-off keeps it a sliver.
    if (cpu > 0.5 * std::chrono::duration<double>(kStarve).count()) {
      code = kSpun;
      return;
    }
    if (!s) {
      code = kAcceptFailed;
      return;
    }
    if (::write(client, "x", 1) != 1) {
      code = kEchoFailed;
      return;
    }
    char c;
    auto r = s->read_full(&c, 1, 10s);
    if (!r || c != 'x') code = kEchoFailed;
    std::fprintf(stderr, "backoffs=%llu\n", static_cast<unsigned long long>(backoffs));
    ::close(client);
  });
  std::exit(code);
}

class AcceptEmfileDeathTest : public ::testing::TestWithParam<std::string> {};

TEST_P(AcceptEmfileDeathTest, BacksOffAndRecovers) {
  if (GetParam() == "uring") TERN_SKIP_UNLESS_URING();
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(starve_and_recover(GetParam()), ::testing::ExitedWithCode(kOk), "backoffs=[1-9]");
}

INSTANTIATE_TEST_SUITE_P(Backends, AcceptEmfileDeathTest, ::testing::Values("epoll", "uring"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace tern::net
