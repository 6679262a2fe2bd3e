// A listener whose program accepts slowly must leave the surplus of connections to the kernel's backlog, on both
// backends: the process must not take them all into descriptors of its own (the io_uring backend's multishot accept
// did: every dialing client became an fd in a queue nobody read, until EMFILE hit every fd user in the process).
#include <dirent.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#include "netpoll/netpoll.h"
#include "netpoll/uring_poller.h"
#include "runtime/go.h"
#include "runtime/net/net.h"
#include "runtime/runtime.h"
#include "tests/support/require.h"

namespace tern::net {
namespace {

using namespace std::chrono_literals;

// The listen backlog the program asks for, and the clients that dial it: far more than the backlog, as in a connect
// storm against a server that is busy.
constexpr int kBacklog = 8;
constexpr int kClients = 300;
// Connections the process may hold beyond those it accepted: the result of an accept still in flight when accept()
// last returned (UringPoller::kMaxAcceptAhead; none here, where accept() returned with a connection). The epoll
// backend takes none ahead either. A multishot accept, cancelled by its reaper at a limit of 16 unread, still took
// 40 to 162 of the 300: the kernel's accept loop drains the backlog on every arrival, faster than completions are
// reaped.
constexpr size_t kBound = netpoll::UringPoller::kMaxAcceptAhead;
// How long the process is watched after the clients dialed. A multishot accept with no bound took all 300 within a
// few milliseconds; the kernel's SYN retransmits (the first after 1 s) let more clients complete after that.
constexpr auto kWatch = 1500ms;

// Connected TCP sockets this process holds whose local address is `port` on loopback: the server side of connections
// the kernel has handed to the process (the listener itself is excluded: SO_ACCEPTCONN).
size_t server_side_sockets(uint16_t port) {
  size_t n = 0;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return 0;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    int fd = std::atoi(e->d_name);
    if (fd == dirfd(dir)) continue;
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0 || ss.ss_family != AF_INET) continue;
    if (ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port) != port) continue;
    int listening = 0;
    socklen_t llen = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &llen) != 0 || listening != 0) continue;
    n++;
  }
  closedir(dir);
  return n;
}

class NetAcceptBoundTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "uring") TERN_SKIP_UNLESS_URING();
  }
};

TEST_P(NetAcceptBoundTest, ConnectionsNotAcceptedStayInTheKernelBacklog) {
  Config cfg;
  cfg.procs = 2;
  cfg.poller = GetParam();
  Runtime rt(cfg);
  rt.run([&] {
    auto l = listen("127.0.0.1:0", {.backlog = kBacklog});
    ASSERT_TRUE(l) << l.error().message();
    const uint16_t port = l->local_addr().port();
    // Accept once: on io_uring that arms the listener's accept, which then serves every later connection.
    auto first = dial(l->local_addr(), 10s);
    ASSERT_TRUE(first) << first.error().message();
    auto served = l->accept(10s);
    ASSERT_TRUE(served) << served.error().message();
    const size_t before = server_side_sockets(port);
    ASSERT_EQ(before, 1u);

    // The clients connect without blocking: those the backlog has no room for keep retrying in the kernel.
    std::vector<int> clients;
    for (int i = 0; i < kClients; i++) {
      int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      ASSERT_GE(fd, 0) << "socket: " << errno;
      clients.push_back(fd);
      int rc = ::connect(fd, l->local_addr().sockaddr_ptr(), l->local_addr().size());
      ASSERT_TRUE(rc == 0 || errno == EINPROGRESS) << "connect: " << errno;
    }
    size_t most = before;
    const auto t0 = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - t0 < kWatch) {
      most = std::max(most, server_side_sockets(port));
      if (most - before > kBound) break;
      sleep_for(10ms);
    }
    EXPECT_LE(most - before, kBound) << "connections the program never accepted were taken into the process";

    // Accepting goes on, past what the backlog held when the clients dialed. Those it refused arrive with their SYN
    // retransmits (1, 3, 7, 15 s after their first SYN): hence the long timeout.
    for (int i = 0; i < kBacklog + 2; i++) {
      auto s = l->accept(30s);
      ASSERT_TRUE(s) << "accept " << i << ": " << s.error().message();
    }
    for (int fd : clients) ::close(fd);
  });
}

INSTANTIATE_TEST_SUITE_P(Backends, NetAcceptBoundTest, ::testing::Values("epoll", "uring"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace tern::net
