// tests/tools/top_test.cc: tern-top's parts: the Prometheus text reader (good and bad input), histogram quantiles,
// a frame from two scrapes, its text, and the HTTP GET against a peer that answers each way a server may.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <string>
#include <thread>

#include "tests/support/process.h"
#include "tools/top/exposition.h"
#include "tools/top/frame.h"
#include "tools/top/http_get.h"
#include "tools/top/proc_stat.h"

namespace tern::top {
namespace {

constexpr const char* kText = R"(# HELP tern_procs Processors (Ps) now.
# TYPE tern_procs gauge
tern_procs 2
tern_procs_limit{source="affinity"} 2
tern_procs_limit{source="quota"} 2
tern_threads{state="running"} 2
tern_threads{state="idle"} 1
tern_fibers{state="waiting"} 100
tern_runq_length{p="0"} 3
tern_runq_length{p="1"} 0
tern_proc_busy_seconds_total{p="0"} 10.5
tern_proc_busy_seconds_total{p="1"} 4
process_cpu_seconds_total 15.25
tern_work_total 1000
tern_controller_decisions_total{policy="quota",direction="up"} 1
tern_controller_target_procs 2
tern_cgroup_cpu_quota_cores NaN
tern_odd{path="a \"quoted\" \\ back\nslash",empty=""} +Inf 1700000000000
# TYPE tern_sched_latency_seconds histogram
tern_sched_latency_seconds_bucket{le="1e-06"} 10
tern_sched_latency_seconds_bucket{le="1e-05"} 90
tern_sched_latency_seconds_bucket{le="0.0001"} 100
tern_sched_latency_seconds_bucket{le="+Inf"} 100
tern_sched_latency_seconds_sum 0.002
tern_sched_latency_seconds_count 100
)";

TEST(Exposition, ReadsSamplesLabelsEscapesAndSpecialValues) {
  auto s = parse_exposition(kText);
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ(s->value("tern_procs"), 2);
  EXPECT_EQ(s->value("tern_procs_limit", {{"source", "quota"}}), 2);
  EXPECT_TRUE(std::isnan(s->value("tern_procs_limit", {{"source", "cpuset"}})));
  EXPECT_TRUE(std::isnan(s->value("tern_missing")));
  EXPECT_DOUBLE_EQ(s->sum("tern_proc_busy_seconds_total"), 14.5);
  EXPECT_EQ(s->all("tern_runq_length").size(), 2u);
  EXPECT_TRUE(std::isnan(s->value("tern_cgroup_cpu_quota_cores")));
  const Sample* odd = s->find("tern_odd");
  ASSERT_NE(odd, nullptr);
  EXPECT_EQ(odd->label("path"), "a \"quoted\" \\ back\nslash");
  EXPECT_EQ(odd->label("empty"), "");
  EXPECT_TRUE(std::isinf(odd->value));
  EXPECT_EQ(parse_exposition("")->samples.size(), 0u);
  EXPECT_EQ(parse_exposition("# only a comment\n\n")->samples.size(), 0u);
  EXPECT_EQ(parse_exposition("a 1\r\nb -2.5e-3\r\n")->value("b"), -2.5e-3);
}

TEST(Exposition, ABadLineIsAnErrorNamingIt) {
  for (const char* bad : {"1abc 1", "x", "x{a=\"1\" 2", "x{a=1} 2", "x{=\"1\"} 2", "x{a=\"\\q\"} 1", "x 1 2 3",
                          "x nan(1)", "x 0x10", "x 1e999", "x{a=\"1\"}2", "x 1 12ab"}) {
    auto s = parse_exposition(std::string("ok 1\n") + bad + "\n");
    EXPECT_FALSE(s) << bad;
    if (!s) {
      EXPECT_NE(s.error().message().find("line 2"), std::string::npos) << s.error().message();
    }
  }
}

TEST(Frame, HistogramQuantileInterpolatesInsideTheBucket) {
  auto s = parse_exposition(kText);
  ASSERT_TRUE(s);
  // 100 observations: 10 <= 1us, 80 in (1us, 10us], 10 in (10us, 100us].
  EXPECT_NEAR(histogram_quantile(nullptr, *s, "tern_sched_latency_seconds", 0.5), 1e-6 + 9e-6 * 40 / 80, 1e-12);
  EXPECT_NEAR(histogram_quantile(nullptr, *s, "tern_sched_latency_seconds", 0.99), 1e-5 + 9e-5 * 9 / 10, 1e-12);
  EXPECT_NEAR(histogram_quantile(nullptr, *s, "tern_sched_latency_seconds", 0.05), 0.5e-6, 1e-12);
  EXPECT_EQ(histogram_quantile(nullptr, *s, "tern_nothing", 0.5), -1);
  // Over an interval: only what was added counts; all of it landed in the +Inf bucket -> the highest finite bound.
  auto later = parse_exposition(
      "tern_sched_latency_seconds_bucket{le=\"1e-06\"} 10\ntern_sched_latency_seconds_bucket{le=\"1e-05\"} 90\n"
      "tern_sched_latency_seconds_bucket{le=\"0.0001\"} 100\ntern_sched_latency_seconds_bucket{le=\"+Inf\"} 150\n");
  ASSERT_TRUE(later);
  EXPECT_DOUBLE_EQ(histogram_quantile(&*s, *later, "tern_sched_latency_seconds", 0.5), 1e-4);
  // Nothing added: no quantile.
  EXPECT_EQ(histogram_quantile(&*s, *s, "tern_sched_latency_seconds", 0.5), -1);
}

TEST(Frame, RatesAndUtilizationComeFromTheInterval) {
  auto a = parse_exposition(kText);
  std::string t = kText;
  auto replace = [&](const std::string& from, const std::string& to) { t.replace(t.find(from), from.size(), to); };
  replace("tern_proc_busy_seconds_total{p=\"0\"} 10.5", "tern_proc_busy_seconds_total{p=\"0\"} 11.4");
  replace("tern_proc_busy_seconds_total{p=\"1\"} 4", "tern_proc_busy_seconds_total{p=\"1\"} 4.25");
  replace("process_cpu_seconds_total 15.25", "process_cpu_seconds_total 16.5");
  replace("tern_work_total 1000", "tern_work_total 3000");
  replace("direction=\"up\"} 1", "direction=\"up\"} 3");
  auto b = parse_exposition(t);
  ASSERT_TRUE(a && b);
  const Frame f = make_frame(&*a, *b, 1.0);
  ASSERT_EQ(f.per_p.size(), 2u);
  EXPECT_NEAR(f.per_p[0].busy, 0.9, 1e-9);
  EXPECT_NEAR(f.per_p[1].busy, 0.25, 1e-9);
  EXPECT_EQ(f.per_p[0].runq, 3);
  EXPECT_NEAR(f.busy_procs, 1.15, 1e-9);
  EXPECT_NEAR(f.cpu_cores, 1.25, 1e-9);
  EXPECT_NEAR(f.work_rate, 2000, 1e-9);
  EXPECT_EQ(f.decisions.at("quota up"), 2);
  EXPECT_EQ(f.procs_limit.at("affinity"), 2);
  EXPECT_EQ(f.threads.at("idle"), 1);
  // A counter that went backwards (the program restarted): the new count is the interval's.
  const Frame r = make_frame(&*b, *a, 1.0);
  EXPECT_NEAR(r.work_rate, 1000, 1e-9);
  // One scrape: no rates.
  const Frame one = make_frame(nullptr, *a, 0);
  EXPECT_EQ(one.work_rate, -1);
  EXPECT_EQ(one.per_p[0].busy, -1);

  const auto lines = render(f, "127.0.0.1:9100", 100);
  std::string all;
  for (const auto& l : lines) {
    EXPECT_LE(l.size(), 100u) << l;
    all += l + "\n";
  }
  EXPECT_NE(all.find("procs 2"), std::string::npos) << all;
  EXPECT_NE(all.find("work 2000/s"), std::string::npos) << all;
  EXPECT_NE(all.find(" 90%"), std::string::npos) << all;
  EXPECT_NE(all.find("quota up 2"), std::string::npos) << all;
  EXPECT_NE(all.find("quota none"), std::string::npos) << all;
}

// A peer on a loopback port that answers one connection with `reply` (after reading the request), then closes.
class Peer {
 public:
  explicit Peer(std::string reply, bool hang = false) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(listen(fd_, 4), 0);
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this, reply = std::move(reply), hang] {
      const int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      char buf[4096];
      std::string req;
      while (req.find("\r\n\r\n") == std::string::npos) {
        const ssize_t n = read(c, buf, sizeof buf);
        if (n <= 0) break;
        req.append(buf, static_cast<size_t>(n));
      }
      request_ = req;
      if (!hang) {
        EXPECT_EQ(write(c, reply.data(), reply.size()), static_cast<ssize_t>(reply.size()));
      } else {
        while (read(c, buf, sizeof buf) > 0) {
        }
      }
      close(c);
    });
  }
  ~Peer() {
    shutdown(fd_, SHUT_RDWR);
    thread_.join();
    close(fd_);
  }
  net::Address addr() const { return *net::Address::parse("127.0.0.1:" + std::to_string(port_)); }
  std::string request_;

 private:
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
};

TEST(HttpGet, ReadsTheBodyByLengthOrToTheClose) {
  {
    Peer p("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello and more");
    auto r = http_get(p.addr(), "/metrics", 5000);
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(*r, "hello");
  }
  {
    Peer p("HTTP/1.0 200 OK\r\n\r\nto the end");
    auto r = http_get(p.addr(), "/metrics", 5000);
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(*r, "to the end");
  }
}

TEST(HttpGet, EveryOtherAnswerIsAnErrorThatSaysWhich) {
  struct Case {
    const char* reply;
    const char* says;
  };
  for (const Case& c :
       {Case{"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", "404 Not Found"},
        Case{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "chunked"},
        Case{"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort", "before its Content-Length"},
        Case{"HTTP/1.1 200 OK\r\nContent-Le", "inside its headers"}, Case{"SSH-2.0-OpenSSH\r\n\r\n", "not HTTP"}}) {
    Peer p(c.reply);
    auto r = http_get(p.addr(), "/metrics", 5000);
    ASSERT_FALSE(r) << c.reply;
    EXPECT_NE(r.error().message().find(c.says), std::string::npos) << r.error().message();
  }
  {
    Peer p("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + std::string(100, 'x'));
    auto r = http_get(p.addr(), "/metrics", 5000, 10);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message().find("over 10 bytes"), std::string::npos) << r.error().message();
  }
  {
    Peer p("", /*hang=*/true);
    auto r = http_get(p.addr(), "/metrics", 200);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), std::errc::timed_out) << r.error().message();
  }
  {
    auto port = [] {  // a port nothing listens on
      Peer p("");
      return p.addr();
    }();
    auto r = http_get(port, "/metrics", 2000);
    EXPECT_FALSE(r);
  }
}

// tern-top --once against a real tern-echo with its metrics endpoint, under a little load: the frame shows the
// processors, their utilization and the work rate.
TEST(TernTop, OneFrameOfARealServer) {
  const int port = test::free_port(), mport = test::free_port();
  test::Child server({TERN_ECHO_BIN, "--listen", "127.0.0.1:" + std::to_string(port), "--procs", "2", "--metrics",
                      "127.0.0.1:" + std::to_string(mport)});
  ASSERT_TRUE(test::wait_for_port(port)) << server.output();
  ASSERT_TRUE(test::wait_for_port(mport)) << server.output();
  std::atomic<bool> stop{false};
  std::thread load([&] {  // sequential requests on fresh connections: enough to move the counters
    const auto addr = *net::Address::parse("127.0.0.1:" + std::to_string(port));
    while (!stop.load()) (void)http_get(addr, "/work?us=200", 2000);
  });
  test::Child top({TERN_TOP_BIN, "127.0.0.1:" + std::to_string(mport), "--once", "--interval", "0.5"});
  const int status = top.wait();
  stop = true;
  load.join();
  const std::string out = top.output();
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << out;
  EXPECT_NE(out.find("procs 2"), std::string::npos) << out;
  EXPECT_EQ(out.find("work -/s"), std::string::npos) << "a work rate, from tern_work_total:\n" << out;
  EXPECT_NE(out.find("   0  ["), std::string::npos) << out;  // a utilization meter per P
  EXPECT_NE(out.find("   1  ["), std::string::npos) << out;

  test::Child nothing({TERN_TOP_BIN, "127.0.0.1:" + std::to_string(port), "--once", "--interval", "0.1"});
  const int s2 = nothing.wait();
  EXPECT_TRUE(WIFEXITED(s2) && WEXITSTATUS(s2) == 1) << "tern-echo's own port serves no /metrics";
  EXPECT_NE(nothing.output().find("404"), std::string::npos) << nothing.output();
}

// Another process's CPU time: a child burns a known amount, and both sources see it; the clock's figure has the
// resolution a short probe needs (the clock-tick one moves in 10 ms steps), and a pid that is gone reads NaN.
TEST(ProcStat, AnotherProcessesCpuTimeInNanoseconds) {
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
    while (std::chrono::steady_clock::now() < until) {
    }
    char c = 1;
    (void)!write(ready[1], &c, 1);
    pause();
    _exit(0);
  }
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  const double fine = process_cpu_seconds(pid);
  const double coarse = process_cpu_seconds_from_stat(pid);
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  close(ready[0]);
  close(ready[1]);
  // At least most of the 300 ms it spun (it may have been preempted: the wall clock bounds its CPU from above).
  EXPECT_GT(fine, 0.1);
  EXPECT_LT(fine, 1.0);
  EXPECT_NEAR(fine, coarse, 0.03);
  EXPECT_NE(fine * 100, std::floor(fine * 100)) << "not finer than a clock tick";
  EXPECT_TRUE(std::isnan(process_cpu_seconds(pid)));
  EXPECT_TRUE(std::isnan(process_cpu_seconds_from_stat(pid)));
}

}  // namespace
}  // namespace tern::top
