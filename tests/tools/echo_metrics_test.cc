// End-to-end test of tern-echo's application metrics: started with --metrics, it counts every request it answers in
// tern_echo_requests_total and tern_echo_request_seconds (through the public tern::metrics API), and its /metrics
// shows them beside the runtime's; without --metrics there is no endpoint.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "tests/support/process.h"

namespace {

using namespace std::chrono_literals;

constexpr int kReplyTimeoutMs = 10'000;

// One request on its own connection (Connection: close); the whole reply.
std::string exchange(int port, const std::string& raw) {
  const int fd = tern::test::connect_loopback(port);
  if (fd < 0) return "";
  send(fd, raw.data(), raw.size(), MSG_NOSIGNAL);
  std::string in;
  char buf[8192];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, kReplyTimeoutMs) <= 0) break;
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    in.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return in;
}

// The value of the unlabelled sample `name` (a whole line "name value"), -1 when there is none. (Not std::regex: GCC 12
// under ASan warns maybe-uninitialized inside <regex>, which -Werror turns into a failed build.)
double sample(const std::string& text, const std::string& name) {
  const std::string key = "\n" + name + " ";
  const size_t at = text.find(key);
  if (at == std::string::npos) return -1;
  const size_t from = at + key.size(), end = text.find('\n', from);
  if (end == std::string::npos) return -1;
  const std::string value = text.substr(from, end - from);
  char* stop = nullptr;
  const double v = std::strtod(value.c_str(), &stop);
  return stop == value.c_str() + value.size() && !value.empty() ? v : -1;
}

TEST(EchoMetrics, RequestsAndLatencyAreApplicationMetrics) {
  const int port = tern::test::free_port(), mport = tern::test::free_port();
  const std::string listen = "127.0.0.1:" + std::to_string(port), metrics = "127.0.0.1:" + std::to_string(mport);
  tern::test::Child s({TERN_ECHO_BIN, "--procs", "2", "--listen", listen, "--metrics", metrics});
  ASSERT_TRUE(s.started());
  ASSERT_TRUE(tern::test::wait_for_port(port)) << s.output();
  ASSERT_TRUE(tern::test::wait_for_port(mport)) << s.output();
  constexpr int kRequests = 25;
  for (int i = 0; i < kRequests; i++) {
    const std::string r = exchange(port, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    ASSERT_EQ(r.rfind("HTTP/1.1 200", 0), 0u) << r;
  }
  const std::string m = exchange(mport, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_EQ(m.rfind("HTTP/1.1 200", 0), 0u) << m.substr(0, 200);
  EXPECT_EQ(sample(m, "tern_echo_requests_total"), kRequests);
  EXPECT_EQ(sample(m, "tern_echo_request_seconds_count"), kRequests);
  const double sum = sample(m, "tern_echo_request_seconds_sum");
  EXPECT_GT(sum, 0);
  EXPECT_LT(sum, kRequests * 10.0);
  EXPECT_EQ(sample(m, "tern_procs"), 2);
  EXPECT_EQ(sample(m, "tern_work_total"), kRequests);  // tern-echo's count_work(1) per response
  EXPECT_GE(sample(m, "tern_context_switches_total"), kRequests);
}

// The labelled sample `name{labels}` (labels as exposed, e.g. pool="x"), -1 when there is none.
double labelled(const std::string& text, const std::string& name, const std::string& labels) {
  return sample(text, name + "{" + labels + "}");
}

// Each connection takes its read buffer from tern::Pool and gives it back when done: connections after the first on
// each P reuse one (hits), and every request is a hit or a miss. With --buffers alloc the pool is never made.
TEST(EchoMetrics, ReadBuffersComeFromThePool) {
  for (const char* buffers : {"pool", "alloc"}) {
    const int port = tern::test::free_port(), mport = tern::test::free_port();
    const std::string listen = "127.0.0.1:" + std::to_string(port), metrics = "127.0.0.1:" + std::to_string(mport);
    tern::test::Child s(
        {TERN_ECHO_BIN, "--procs", "2", "--listen", listen, "--metrics", metrics, "--buffers", buffers});
    ASSERT_TRUE(s.started());
    ASSERT_TRUE(tern::test::wait_for_port(port)) << s.output();
    ASSERT_TRUE(tern::test::wait_for_port(mport)) << s.output();
    constexpr int kRequests = 25;
    for (int i = 0; i < kRequests; i++) {
      const std::string r =
          exchange(port, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
      ASSERT_EQ(r.rfind("HTTP/1.1 200", 0), 0u) << r;
      ASSERT_NE(r.find("\r\n\r\nhello"), std::string::npos) << r;
    }
    const std::string m = exchange(mport, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    ASSERT_EQ(m.rfind("HTTP/1.1 200", 0), 0u) << m.substr(0, 200);
    const std::string pool = "pool=\"echo_read_buffers\"";
    const double hits = labelled(m, "tern_pool_hits_total", pool);
    const double misses = labelled(m, "tern_pool_misses_total", pool);
    if (std::string(buffers) == "alloc") {
      EXPECT_EQ(hits, -1) << "the pool was made with --buffers alloc";
      continue;
    }
    // Every connection takes one: the requests', and wait_for_port's probe.
    EXPECT_GE(hits + misses, kRequests);
    EXPECT_LE(hits + misses, kRequests + 2);
    // A miss where the previous connection's fiber still held its buffer (it lingers until the client has closed).
    EXPECT_GE(hits, kRequests / 2);
  }
}

// With --cpu-pool the process runs two runtimes: /metrics labels each runtime's figures with its name, and /work's
// fibers are started on the pool's.
TEST(EchoMetrics, CpuPoolFiguresAreLabelledByRuntime) {
  const int port = tern::test::free_port(), mport = tern::test::free_port();
  const std::string listen = "127.0.0.1:" + std::to_string(port), metrics = "127.0.0.1:" + std::to_string(mport);
  tern::test::Child s({TERN_ECHO_BIN, "--procs", "2", "--cpu-pool", "1", "--listen", listen, "--metrics", metrics});
  ASSERT_TRUE(s.started());
  ASSERT_TRUE(tern::test::wait_for_port(port)) << s.output();
  ASSERT_TRUE(tern::test::wait_for_port(mport)) << s.output();
  constexpr int kRequests = 5;
  for (int i = 0; i < kRequests; i++) {
    const std::string r = exchange(port, "GET /work?us=1000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    ASSERT_EQ(r.rfind("HTTP/1.1 200", 0), 0u) << r;
  }
  const std::string m = exchange(mport, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_EQ(m.rfind("HTTP/1.1 200", 0), 0u) << m.substr(0, 200);
  EXPECT_EQ(sample(m, "tern_procs{runtime=\"main\"}"), 2) << m;
  EXPECT_EQ(sample(m, "tern_procs{runtime=\"cpu\"}"), 1);
  EXPECT_EQ(sample(m, "tern_procs"), -1) << "no unlabelled series beside the labelled ones";
  EXPECT_GE(sample(m, "tern_fibers_spawned_total{runtime=\"cpu\"}"), kRequests);
  EXPECT_EQ(sample(m, "tern_work_total{runtime=\"main\"}"), kRequests);  // counted by the connection's fiber
  EXPECT_EQ(sample(m, "tern_echo_requests_total"), kRequests);           // the application's: one per process
  EXPECT_GT(sample(m, "process_cpu_seconds_total"), 0);
}

TEST(EchoMetrics, BadMetricsAddressIsAUsageError) {
  tern::test::Child c({TERN_ECHO_BIN, "--metrics", "nohost", "--listen", "127.0.0.1:0"});
  const int status = c.wait();
  ASSERT_TRUE(WIFEXITED(status)) << c.output();
  EXPECT_EQ(WEXITSTATUS(status), 2);
}

}  // namespace
