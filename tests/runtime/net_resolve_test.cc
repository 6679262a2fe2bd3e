// Name resolution (runtime/net/resolve.h) and dial by name, on both netpoll backends: localhost and numeric addresses
// take no lookup, the machine's own host name goes through getaddrinfo on the blocking pool and connects, an
// unresolvable name and malformed text are errors that name what failed, and a lookup that outlives the dial's
// deadline times the dial out while the processor keeps running other fibers, its late answer dropped safely.
#include <gtest/gtest.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "runtime/blocking.h"
#include "runtime/go.h"
#include "runtime/net/net.h"
#include "runtime/runtime.h"
#include "tests/support/net.h"

namespace tern::net {
namespace {

using namespace std::chrono_literals;
using test::NetTest;

std::atomic<int> lookups{0};
void count_lookup() {
  lookups.fetch_add(1);
}

// Installs a lookup hook for one test.
class HookScope {
 public:
  explicit HookScope(void (*hook)()) { detail::lookup_hook.store(hook); }
  ~HookScope() { detail::lookup_hook.store(nullptr); }
  HookScope(const HookScope&) = delete;
  HookScope& operator=(const HookScope&) = delete;
};

// The machine's host name and its first address as getaddrinfo gives them (on this thread, outside any runtime), or an
// empty name where it does not resolve.
std::string own_host_name(Address* first) {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "";
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(name, nullptr, &hints, &res) != 0) return "";
  *first = Address::from_sockaddr(res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  return first->empty() ? "" : name;
}

// Accepts one connection and echoes one byte.
void echo_one(Listener& l) {
  auto s = l.accept(10s);
  ASSERT_TRUE(s) << s.error().message();
  char b;
  ASSERT_TRUE(s->read_full(&b, 1, 10s));
  ASSERT_TRUE(s->write_all(&b, 1));
}

void expect_echo(Stream& s) {
  char b = 'x';
  ASSERT_TRUE(s.write_all(&b, 1));
  b = 0;
  ASSERT_TRUE(s.read_full(&b, 1, 10s));
  EXPECT_EQ(b, 'x');
}

TEST_P(NetTest, DialLocalhostAndNumericAddressesTakeNoLookup) {
  Runtime rt(config());
  HookScope hook(count_lookup);
  lookups = 0;
  rt.run([] {
    auto l = listen("127.0.0.1:0");
    ASSERT_TRUE(l);
    const std::string port = std::to_string(l->local_addr().port());
    for (const std::string& a : {"localhost:" + port, "127.0.0.1:" + port}) {
      auto server = spawn([&] { echo_one(*l); });
      auto s = dial(a, 10s);
      ASSERT_TRUE(s) << a << ": " << s.error().message();
      expect_echo(*s);
      server.join();
    }
    auto r = resolve("localhost:80");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->size(), 1u);
    EXPECT_EQ((*r)[0].to_string(), "127.0.0.1:80");
  });
  EXPECT_EQ(lookups.load(), 0);
}

TEST_P(NetTest, DialByHostNameResolvesThroughTheBlockingPool) {
  Address first;
  const std::string host = own_host_name(&first);
  if (host.empty()) GTEST_SKIP() << "this machine's host name does not resolve";
  Runtime rt(config());
  HookScope hook(count_lookup);
  lookups = 0;
  rt.run([&] {
    // On the host name's first address, which dial tries first.
    auto l = listen(first.with_port(0));
    ASSERT_TRUE(l) << first.to_string() << ": " << l.error().message();
    const std::string target = host + ":" + std::to_string(l->local_addr().port());
    auto addrs = resolve(target, 10s);
    ASSERT_TRUE(addrs) << addrs.error().message();
    ASSERT_FALSE(addrs->empty());
    EXPECT_EQ((*addrs)[0].to_string(), l->local_addr().to_string());
    auto server = spawn([&] { echo_one(*l); });
    auto s = dial(target, 10s);
    ASSERT_TRUE(s) << target << ": " << s.error().message();
    expect_echo(*s);
    server.join();
  });
  EXPECT_EQ(lookups.load(), 2);
}

TEST_P(NetTest, UnresolvableNameIsAnErrorNamingTheHost) {
  Runtime rt(config());
  rt.run([] {
    // .invalid never resolves (RFC 6761). A machine without a reachable name server says it could not ask.
    auto s = dial("no-such-host.invalid:80", 30s);
    ASSERT_FALSE(s);
    EXPECT_TRUE(s.error() == Errc::no_such_host || s.error() == Errc::lookup_failed) << s.error().message();
    EXPECT_NE(s.error().message().find("lookup no-such-host.invalid"), std::string::npos) << s.error().message();
    EXPECT_NE(s.error().message().find("dial no-such-host.invalid:80"), std::string::npos) << s.error().message();
  });
}

TEST_P(NetTest, MalformedHostPortIsBadAddressWithoutALookup) {
  Runtime rt(config());
  HookScope hook(count_lookup);
  lookups = 0;
  rt.run([] {
    const std::vector<std::string> malformed = {"just-a-host",
                                                "host:",
                                                "host:http",
                                                "host:65536",
                                                ":x",
                                                "[not-v6]:80",
                                                "a b:80",
                                                std::string(300, 'h') + ":80",
                                                std::string("nul\0host:80", 11)};
    for (const std::string& a : malformed) {
      auto s = dial(a, 1s);
      ASSERT_FALSE(s) << a;
      EXPECT_EQ(s.error(), Errc::bad_address) << a << ": " << s.error().message();
      EXPECT_FALSE(resolve(a));
    }
  });
  EXPECT_EQ(lookups.load(), 0);
}

// The pool thread's lookup waits here until the test lets it go.
std::atomic<bool> lookup_may_go{false};
std::atomic<int> lookups_held{0};
void hold_lookup() {
  lookups_held.fetch_add(1);
  while (!lookup_may_go.load()) std::this_thread::sleep_for(1ms);
}

TEST_P(NetTest, SlowLookupTimesOutTheDialAndOthersRunMeanwhile) {
  Runtime rt(config(/*procs=*/1));
  HookScope hook(hold_lookup);
  lookup_may_go = false;
  lookups_held = 0;
  const uint64_t completed_before = BlockingPool::instance().stats().completed;
  rt.run([] {
    std::atomic<bool> dialing{true};
    std::atomic<int> ticks{0};
    // On the one processor beside the dial: it runs only if the wait for the lookup parks the fiber, not the thread.
    auto ticker = spawn([&] {
      while (dialing.load()) {
        ticks.fetch_add(1);
        sleep_for(1ms);
      }
    });
    auto t0 = Clock::now();
    auto s = dial("slow.invalid:80", 100ms);
    auto took = Clock::now() - t0;
    dialing = false;
    ticker.join();
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error(), std::errc::timed_out) << s.error().message();
    EXPECT_NE(s.error().message().find("lookup slow.invalid: timed out"), std::string::npos) << s.error().message();
    EXPECT_GE(took, 100ms);
    EXPECT_LT(took, 5s);  // the lookup never finished: only the deadline ended the wait
    EXPECT_GT(ticks.load(), 0);
  });
  EXPECT_EQ(lookups_held.load(), 1);
  // Let the abandoned lookup finish: it writes its answer into state only it still holds.
  lookup_may_go = true;
  for (int i = 0; i < 10000 && BlockingPool::instance().stats().completed == completed_before; i++) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_GT(BlockingPool::instance().stats().completed, completed_before);
}

INSTANTIATE_TEST_SUITE_P(Backends, NetTest, ::testing::Values("epoll", "uring", "uring_defer"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace tern::net
