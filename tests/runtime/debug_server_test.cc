// Tests of the debug endpoint (runtime/metrics/debug_server.h, debug_routes.h) on a real Runtime over real sockets:
// the exposition parses with Debian's Prometheus client (python3-prometheus-client) and carries every runtime metric
// with sane values under load; the endpoint answers while every P runs a CPU-bound fiber; admin routes refuse a
// non-loopback peer without the token and accept one with it; refused and malformed requests change nothing.
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>

#include "alloc/arena.h"
#include "runtime/pool.h"
#include "runtime/tern.h"

namespace {

using namespace std::chrono_literals;

// A reply must come within this (a functional bound for a slow sanitizer build, not a latency assertion).
constexpr int kReplyTimeoutMs = 10'000;

struct Reply {
  int status = 0;
  std::string headers, body;
};

// Sends `raw` to host:port (from `source` when set) and reads the reply until the server closes.
Reply request(const std::string& host, uint16_t port, const std::string& raw, const std::string& source = "") {
  Reply r;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return r;
  if (!source.empty()) {
    sockaddr_in s{};
    s.sin_family = AF_INET;
    inet_pton(AF_INET, source.c_str(), &s.sin_addr);
    if (bind(fd, reinterpret_cast<sockaddr*>(&s), sizeof s) != 0) {
      close(fd);
      return r;
    }
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, host.c_str(), &a.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return r;
  }
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
  const size_t end = in.find("\r\n\r\n");
  if (in.rfind("HTTP/1.1 ", 0) != 0 || end == std::string::npos) return r;
  r.status = std::stoi(in.substr(9, 3));
  r.headers = in.substr(0, end);
  r.body = in.substr(end + 4);
  return r;
}

Reply get(uint16_t port, const std::string& path, const std::string& host = "127.0.0.1") {
  return request(host, port, "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n");
}

Reply post(uint16_t port, const std::string& path, const std::string& extra = "", const std::string& host = "127.0.0.1",
           const std::string& source = "") {
  return request(host, port, "POST " + path + " HTTP/1.1\r\nHost: x\r\n" + extra + "\r\n", source);
}

// An IPv4 address of this machine's that is not a loopback one; empty if there is none.
std::string non_loopback_address() {
  ifaddrs* ifs = nullptr;
  if (getifaddrs(&ifs) != 0) return "";
  std::string out;
  for (ifaddrs* i = ifs; i != nullptr && out.empty(); i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET) continue;
    const auto* a = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
    if ((ntohl(a->sin_addr.s_addr) >> 24) == 127) continue;
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
    out = buf;
  }
  freeifaddrs(ifs);
  return out;
}

std::unique_ptr<tern::Runtime> start(const std::string& listen, const std::string& token = "", int procs = 2) {
  tern::Config cfg;
  cfg.procs = procs;
  cfg.metrics = listen;
  cfg.admin_token = token;
  auto rt = tern::Runtime::create(cfg);
  EXPECT_TRUE(rt) << (rt ? "" : rt.error().message());
  return rt ? std::move(*rt) : nullptr;
}

// The exposition as Debian's Prometheus client reads it: sample name -> [(labels, value)]. The script fails (and
// so the test) on text the client cannot parse.
std::multimap<std::string, std::pair<nlohmann::json, double>> parse_with_prometheus_client(const std::string& text) {
  char path[] = "/tmp/tern_metrics_XXXXXX";
  const int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  close(fd);
  const std::string cmd = std::string(
                              "/usr/bin/python3 -c '\n"
                              "import json, sys\n"
                              "from prometheus_client.parser import text_string_to_metric_families\n"
                              "out = []\n"
                              "for f in text_string_to_metric_families(open(sys.argv[1]).read()):\n"
                              "    for s in f.samples:\n"
                              "        out.append([s.name, s.labels, repr(s.value)])\n"
                              "print(json.dumps(out))\n' ") +
                          path + " 2>&1";
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    const int rc = pclose(p);
    EXPECT_EQ(rc, 0) << "python3-prometheus-client could not parse the exposition (tools/tern deps installs it):\n"
                     << out;
  }
  unlink(path);
  std::multimap<std::string, std::pair<nlohmann::json, double>> samples;
  const auto j = nlohmann::json::parse(out, nullptr, false);
  if (j.is_discarded()) {
    ADD_FAILURE() << out;
    return samples;
  }
  for (const auto& s : j) samples.emplace(s[0].get<std::string>(), std::pair{s[1], std::stod(s[2].get<std::string>())});
  return samples;
}

TEST(DebugServer, ExpositionParsesAndCarriesEveryMetricUnderLoad) {
  auto rt = start("127.0.0.1:0");
  ASSERT_NE(rt, nullptr);
  ASSERT_NE(rt->debug_server(), nullptr);
  const uint16_t port = rt->debug_server()->port();
  std::atomic<bool> stop{false};
  std::atomic<int> connected{0};
  // Load: a TCP echo pair, a contended mutex, channel ping-pong and CPU; and a pool used once a round.
  tern::Pool<int> pool("debug_server_test");
  tern::WaitGroup done;
  rt->run([&] {
    pool.put(pool.get());
    pool.put(pool.get());
    auto l = tern::net::listen("127.0.0.1:0");
    ASSERT_TRUE(l);
    const tern::net::Address addr = l->local_addr();
    done.add(4);
    tern::go([&, l = std::move(*l)]() mutable {
      auto s = l.accept();
      connected++;
      char buf[64];
      while (s && !stop.load()) {
        auto r = s->read(buf, sizeof buf);
        if (!r || r.n == 0) break;
        if (!s->write_all(buf, r.n)) break;
      }
      done.done();
    });
    tern::go([&, addr] {
      auto c = tern::net::dial(addr);
      connected++;
      char buf[64] = "ping";
      while (c && !stop.load()) {
        if (!c->write_all(buf, 4)) break;
        if (auto r = c->read(buf, sizeof buf); !r || r.n == 0) break;
      }
      done.done();
    });
    auto mu = std::make_shared<tern::Mutex>();
    for (int k = 0; k < 2; k++) {
      tern::go([&, mu] {
        while (!stop.load()) {
          mu->lock();
          tern::sleep_for(1ms);
          mu->unlock();
        }
        done.done();
      });
    }
  });
  std::this_thread::sleep_for(300ms);  // the monitor and the controller have looked a few times
  const Reply r = get(port, "/metrics");
  ASSERT_EQ(r.status, 200) << r.headers;
  EXPECT_NE(r.headers.find("Content-Type: text/plain; version=0.0.4"), std::string::npos) << r.headers;
  stop.store(true);
  rt->run([&] { done.wait(); });

  const auto samples = parse_with_prometheus_client(r.body);
  auto value = [&](const std::string& name, const std::string& label = "", const std::string& lv = "") {
    for (auto [it, end] = samples.equal_range(name); it != end; ++it) {
      if (label.empty() || (it->second.first.contains(label) && it->second.first[label] == lv))
        return it->second.second;
    }
    ADD_FAILURE() << "no sample " << name << (label.empty() ? "" : "{" + label + "=" + lv + "}");
    return std::nan("");
  };
  EXPECT_EQ(value("tern_procs"), 2);
  for (const char* s : {"affinity", "cpuset", "quota", "max"}) value("tern_procs_limit", "source", s);
  EXPECT_GE(value("tern_procs_limit", "source", "affinity"), 1);
  double threads = 0;
  for (const char* s : {"running", "idle", "spinning", "blocked"}) threads += value("tern_threads", "state", s);
  EXPECT_GE(threads, 1);
  for (const char* s : {"runnable", "running", "waiting"}) EXPECT_GE(value("tern_fibers", "state", s), 0);
  EXPECT_GE(value("tern_fibers", "state", "waiting"), 1);  // the mutex and socket waiters, some of them
  EXPECT_GE(value("tern_fibers_spawned_total"), 5);
  EXPECT_GE(value("tern_work_total"), 0);
  EXPECT_GE(value("tern_runq_length", "p", "0"), 0);
  EXPECT_GE(value("tern_runq_length", "p", "1"), 0);
  EXPECT_GE(value("tern_global_runq_length"), 0);
  const double busy = value("tern_proc_busy_seconds_total", "p", "0") + value("tern_proc_busy_seconds_total", "p", "1");
  EXPECT_GT(busy, 0);
  EXPECT_LT(busy, 2 * 60.0);
  EXPECT_GT(value("process_cpu_seconds_total"), 0);
  EXPECT_GT(value("process_resident_memory_bytes"), 1 << 20);  // this test program, its runtime and its stacks
  EXPECT_GE(value("tern_steals_total", "scope", "node"), 0);
  EXPECT_EQ(value("tern_steals_total", "scope", "remote"), 0);  // one node here (no placement over several)
  const double lat_count = value("tern_sched_latency_seconds_count");
  EXPECT_GT(lat_count, 0);
  EXPECT_EQ(value("tern_sched_latency_seconds_bucket", "le", "+Inf"), lat_count);
  EXPECT_GT(value("tern_sched_latency_seconds_sum"), 0);
  EXPECT_GE(value("tern_oldest_runnable_seconds"), 0);
  EXPECT_GE(value("tern_netpoll_ready_total"), 0);
  EXPECT_GE(value("tern_netpoll_polls_total"), value("tern_netpoll_ready_total"));
  EXPECT_GT(value("tern_context_switches_total"), 100);
  EXPECT_GT(value("tern_mutex_wait_seconds_total"), 0);
  EXPECT_GE(value("tern_long_running_total"), 0);
  EXPECT_EQ(value("tern_controller_target_procs"), 2);
  EXPECT_EQ(value("tern_controller_shadow_procs"), 0);
  EXPECT_EQ(value("tern_controller_decisions_total", "direction", "up"), 0);  // static: nothing decided
  EXPECT_EQ(value("tern_controller_rollbacks_total"), 0);
  EXPECT_NE(r.body.find("# TYPE tern_controller_errors_total counter"), std::string::npos);
  value("tern_cgroup_cpu_quota_cores");  // NaN without a quota: present either way
  EXPECT_GE(value("tern_cgroup_throttled_periods_total"), 0);
  EXPECT_GE(value("tern_cgroup_throttled_seconds_total"), 0);
  EXPECT_GT(value("tern_stack_bytes", "state", "in_use"), 0);
  EXPECT_GE(value("tern_stack_bytes", "state", "cached"), 0);
  for (const char* k : {"allocated", "active", "resident"}) EXPECT_GT(value("tern_heap_bytes", "kind", k), 0);
  const double metadata = value("tern_heap_bytes", "kind", "metadata");  // NaN with malloc (sanitizer builds)
  if (tern::alloc::heap_kind() != tern::alloc::HeapKind::kMalloc) {
    EXPECT_GT(metadata, 0);
  }
  EXPECT_EQ(value("tern_allocator_info", "allocator", tern::alloc::heap_name()), 1);
  EXPECT_EQ(value("tern_pool_hits_total", "pool", "debug_server_test"), 1);
  EXPECT_EQ(value("tern_pool_misses_total", "pool", "debug_server_test"), 1);
  EXPECT_GT(value("tern_fds_open"), 3);
  EXPECT_GE(value("tern_fds_limit"), value("tern_fds_open"));
  EXPECT_GE(value("tern_connections_open"), 2);  // the echo pair was open during the scrape
  EXPECT_EQ(connected.load(), 2);
}

TEST(DebugServer, AnswersWhileEveryProcessorBurnsCpu) {
  constexpr int kProcs = 2;
  auto rt = start("127.0.0.1:0", "", kProcs);
  ASSERT_NE(rt, nullptr);
  const uint16_t port = rt->debug_server()->port();
  std::atomic<bool> stop{false};
  std::atomic<int> running{0};
  for (int i = 0; i < 2 * kProcs; i++) {
    rt->go([&] {
      running++;
      while (!stop.load(std::memory_order_relaxed)) {
      }  // never yields: its P answers nothing else until stop
    });
  }
  while (running.load() < kProcs) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(50ms);  // the monitor has seen each P's fiber run a whole period
  const Reply m = get(port, "/metrics");
  const Reply s = get(port, "/debug/sched");
  const int burning = running.load();
  stop.store(true);
  EXPECT_EQ(m.status, 200);
  EXPECT_NE(m.body.find("tern_procs 2\n"), std::string::npos);
  ASSERT_EQ(s.status, 200);
  EXPECT_EQ(burning, kProcs);  // the answer came while the other fibers still waited behind the burning ones
  const auto j = nlohmann::json::parse(s.body);
  ASSERT_EQ(j["p"].size(), static_cast<size_t>(kProcs));
  for (const auto& p : j["p"]) {
    EXPECT_EQ(p["state"], "running") << p;
    EXPECT_TRUE(p["m"].is_number()) << p;
    EXPECT_TRUE(p["fiber"].is_number()) << p;
    EXPECT_TRUE(p["running_s"].is_number()) << p;
    EXPECT_GE(p["runq"].get<int>(), 0);
  }
}

// GET /debug/fibers: a fiber parked on a channel shows as waiting on "chan receive", with its spawn site, in the JSON
// and in the text form; an unknown format is 400.
TEST(DebugServer, FibersShowWhatEachWaitsOn) {
  auto rt = start("127.0.0.1:0", "", 1);
  ASSERT_NE(rt, nullptr);
  const uint16_t port = rt->debug_server()->port();
  tern::Channel<int> ch;
  std::atomic<bool> parked{false};
  const int line = __LINE__ + 1;
  rt->go([&] {
    parked = true;
    (void)ch.recv();
  });
  while (!parked.load()) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(30ms);
  const Reply j = get(port, "/debug/fibers");
  const Reply t = get(port, "/debug/fibers?format=text");
  const Reply bad = get(port, "/debug/fibers?format=xml");
  ch.close();
  ASSERT_EQ(j.status, 200) << j.body;
  const auto d = nlohmann::json::parse(j.body);
  bool found = false;
  for (const auto& f : d["fibers"]) {
    if (f["state"] != "waiting" || f["reason"] != "chan receive") continue;
    found = true;
    EXPECT_EQ(f["site"]["line"].get<int>(), line) << f;
    EXPECT_NE(f["site"]["file"].get<std::string>().find("debug_server_test.cc"), std::string::npos) << f;
  }
  EXPECT_TRUE(found) << j.body;
  EXPECT_EQ(t.status, 200);
  EXPECT_NE(t.body.find("[waiting: chan receive"), std::string::npos) << t.body;
  EXPECT_EQ(bad.status, 400);
}

TEST(DebugServer, LoopbackAdminSetsProcsAndPolicyAndBadInputChangesNothing) {
  auto rt = start("127.0.0.1:0");
  ASSERT_NE(rt, nullptr);
  const uint16_t port = rt->debug_server()->port();
  Reply r = post(port, "/debug/procs?n=1");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(rt->procs(), 1);
  EXPECT_EQ(rt->controller_stats().policy, "static");
  for (const char* bad : {"/debug/procs", "/debug/procs?n=0", "/debug/procs?n=abc", "/debug/procs?n=5000",
                          "/debug/procs?n=3&n=4", "/debug/procs?n=%zz"}) {
    EXPECT_EQ(post(port, bad).status, 400) << bad;
  }
  EXPECT_EQ(get(port, "/debug/procs?n=3").status, 405);
  EXPECT_EQ(rt->procs(), 1);

  r = post(port, "/debug/policy?name=hill");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(rt->controller_stats().policy, "hill");
  r = post(port, "/debug/policy?name=bogus");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("bogus"), std::string::npos) << r.body;
  EXPECT_EQ(rt->controller_stats().policy, "hill");
  // Request data said back in an answer is escaped, and no answer may be sniffed as another type: a policy named
  // "<script>" came back as it was sent.
  r = post(port, "/debug/policy?name=%3Cscript%3Ealert(1)%3C%2Fscript%3E%0D%0AX:%20y");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body.find('<'), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find('\r'), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("\\x3cscript\\x3e"), std::string::npos) << r.body;
  EXPECT_NE(r.headers.find("X-Content-Type-Options: nosniff"), std::string::npos) << r.headers;

  // Malformed requests: 400, and the admin route they name is not run.
  for (const std::string& raw : {
           std::string("GARBAGE\r\n\r\n"),
           std::string("POST /debug/procs?n=3 HTTP/2.0\r\n\r\n"),
           std::string("POST /debug/procs?n=3 HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
           std::string("POST /debug/procs?n=3 HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"),
           std::string("POST /debug/procs?n=3 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
           std::string("POST /debug/procs?n=3 HTTP/1.1\r\nBad Header\r\n\r\n"),
           std::string("POST /debug/procs?n=3 HTTP/1.1\r\nX: ") + std::string(9000, 'a') + "\r\n\r\n",
           std::string("POST  /debug/procs?n=3 HTTP/1.1\r\n\r\n"),
       }) {
    EXPECT_EQ(request("127.0.0.1", port, raw).status, 400) << raw.substr(0, 80);
  }
  EXPECT_EQ(rt->procs(), 1);
  EXPECT_EQ(get(port, "/nope").status, 404);

  // Other code can add a route (the lead wires /debug/fibers this way).
  rt->debug_server()->handle("GET", "/debug/extra", [](const tern::metrics::HttpRequest& req) {
    return tern::metrics::HttpResponse{200, "text/plain", "extra " + req.query.at("x") + "\n"};
  });
  r = get(port, "/debug/extra?x=a%20b");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "extra a b\n");
}

TEST(DebugServer, AdminRefusesNonLoopbackWithoutTokenAndAcceptsWithIt) {
  const std::string ip = non_loopback_address();
  if (ip.empty()) GTEST_SKIP() << "this machine has no non-loopback IPv4 address";
  {
    auto rt = start("0.0.0.0:0");
    ASSERT_NE(rt, nullptr);
    const uint16_t port = rt->debug_server()->port();
    // Reads are open to anyone; changes only to loopback peers.
    EXPECT_EQ(get(port, "/metrics", ip).status, 200);
    const Reply r = post(port, "/debug/procs?n=1", "", ip, ip);
    EXPECT_EQ(r.status, 403) << r.body;
    EXPECT_EQ(post(port, "/debug/policy?name=hill", "", ip, ip).status, 403);
    EXPECT_EQ(rt->procs(), 2);
    EXPECT_EQ(rt->controller_stats().policy, "static");
    EXPECT_EQ(post(port, "/debug/procs?n=1", "", "127.0.0.1").status, 200);  // the same request from loopback
    EXPECT_EQ(rt->procs(), 1);
  }
  {
    const std::string token = "s3cret-token";
    auto rt = start("0.0.0.0:0", token);
    ASSERT_NE(rt, nullptr);
    const uint16_t port = rt->debug_server()->port();
    EXPECT_EQ(post(port, "/debug/procs?n=1", "", "127.0.0.1").status, 403);  // a token binds loopback too
    EXPECT_EQ(post(port, "/debug/procs?n=1", "Authorization: Bearer s3cret-tokeN\r\n", ip, ip).status, 403);
    EXPECT_EQ(post(port, "/debug/procs?n=1", "Authorization: Bearer s3cret-token-and-more\r\n", ip, ip).status, 403);
    EXPECT_EQ(post(port, "/debug/procs?n=1", "Authorization: Basic s3cret-token\r\n", ip, ip).status, 403);
    EXPECT_EQ(post(port, "/debug/procs?n=1", "Authorization: Bearer \r\n", ip, ip).status, 403);
    EXPECT_EQ(rt->procs(), 2);
    const Reply r = post(port, "/debug/procs?n=1", "Authorization: Bearer " + token + "\r\n", ip, ip);
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(rt->procs(), 1);
  }
}

TEST(DebugServer, BadListenAddressIsAnError) {
  tern::Config cfg;
  for (const char* bad : {"nohost", ":9090", "127.0.0.1:99999", "127.0.0.1:x", "[::1"}) {
    cfg.metrics = bad;
    auto rt = tern::Runtime::create(cfg);
    EXPECT_FALSE(rt) << bad;
  }
}

TEST(DebugServer, EnvironmentSetsTheEndpointAndToken) {
  setenv("TERN_METRICS", "127.0.0.1:0", 1);
  setenv("TERN_ADMIN_TOKEN", "tok", 1);
  auto cfg = tern::Config::from_env();
  ASSERT_TRUE(cfg) << cfg.error().message();
  EXPECT_EQ(cfg->metrics, "127.0.0.1:0");
  EXPECT_EQ(cfg->admin_token, "tok");
  EXPECT_EQ(cfg->to_json().find("tok\""), std::string::npos);  // the token is never printed
  setenv("TERN_METRICS", "127.0.0.1", 1);
  EXPECT_FALSE(tern::Config::from_env());
  unsetenv("TERN_METRICS");
  unsetenv("TERN_ADMIN_TOKEN");
}

}  // namespace
