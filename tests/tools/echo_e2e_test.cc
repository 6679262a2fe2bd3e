// End-to-end tests of build/bin/tern-echo: each test starts the real program on a free loopback port, with the epoll
// and with the io_uring poller, and talks to it over plain blocking sockets.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "netpoll/netpoll.h"
#include "tests/scale.h"
#include "tests/support/cgroup.h"
#include "tests/support/process.h"

extern char** environ;

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// How long a client waits for any one reply before failing the test: generous, because sanitizer builds on a shared
// 2-CPU machine can be slow, and a hang should fail rather than block the suite.
constexpr int kReplyTimeoutMs = 10'000;
// How long the server gets to start listening.
constexpr auto kStartTimeout = 10s;
// Ports are picked by binding port 0 and closing; another process may take the port in between, so retry.
constexpr int kStartAttempts = 5;

// Enough of a sanitizer report to see the first stack.
constexpr size_t kMaxLogShown = 8000;

std::string read_file(const std::string& path) {
  std::string out;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

using tern::test::free_port;
int connect_to(int port) {
  return tern::test::connect_loopback(port);
}

// Runs a program and collects its stdout; the exit status goes to `status`.
std::string run_capture(const std::vector<std::string>& args, const std::vector<std::string>& env, int& status) {
  int pipefd[2];
  EXPECT_EQ(pipe(pipefd), 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&fa, pipefd[0]);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> envs(env);
  for (char** e = environ; *e != nullptr; e++) {
    if (std::strncmp(*e, "TERN_", 5) != 0) envs.emplace_back(*e);
  }
  std::vector<char*> envp;
  for (auto& e : envs) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = -1;
  EXPECT_EQ(posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), envp.data()), 0);
  posix_spawn_file_actions_destroy(&fa);
  close(pipefd[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(pipefd[0]);
  waitpid(pid, &status, 0);
  return out;
}

// A running tern-echo; stopped (SIGTERM, then SIGKILL) when destroyed.
class Server {
 public:
  // wrapper: a command the server is started through (its argv, the server's own argv appended), e.g. a shell that
  // moves itself into a cgroup and then execs the server.
  explicit Server(std::vector<std::string> flags, std::vector<std::string> wrapper = {})
      : wrapper_(std::move(wrapper)) {
    char path[] = "/tmp/tern-echo-e2e.XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    log_path_ = path;
    for (int attempt = 0; attempt < kStartAttempts && pid_ < 0; attempt++) try_start(flags);
  }
  ~Server() {
    if (pid_ >= 0) {
      kill(pid_, SIGTERM);
      bool exited = false;
      for (int i = 0; i < 100 && !exited; i++) {
        exited = waitpid(pid_, nullptr, WNOHANG) == pid_;
        if (!exited) std::this_thread::sleep_for(20ms);
      }
      if (!exited) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
      }
    }
    // Under -DTERN_SANITIZE the server is instrumented too: a report on its stderr fails the test that drove it.
    std::string log = read_file(log_path_);
    unlink(log_path_.c_str());
    if (log.find("Sanitizer") != std::string::npos) {
      ADD_FAILURE() << "tern-echo reported on stderr:\n" << log.substr(0, kMaxLogShown);
    }
  }
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  bool running() const { return pid_ >= 0; }
  int port() const { return port_; }
  // Sends `sig` and waits up to `limit` for the exit: the exit status (WEXITSTATUS), or -1 if it did not exit (or
  // was killed by a signal) in time. The process is reaped; the destructor then has nothing to stop.
  int signal_and_wait(int sig, std::chrono::milliseconds limit, std::chrono::milliseconds* took = nullptr) {
    const auto t0 = Clock::now();
    kill(pid_, sig);
    int status = 0;
    while (Clock::now() - t0 < limit) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        if (took != nullptr) *took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(5ms);
    }
    return -1;
  }
  std::string log() const { return read_file(log_path_); }
  // True while the process has not exited.
  bool alive() const { return pid_ >= 0 && waitpid(pid_, nullptr, WNOHANG) == 0; }

 private:
  void try_start(const std::vector<std::string>& flags) {
    port_ = free_port();
    std::vector<std::string> args = wrapper_;
    for (const std::string& a :
         {std::string(TERN_ECHO_BIN), std::string("--listen"), "127.0.0.1:" + std::to_string(port_)})
      args.push_back(a);
    args.insert(args.end(), flags.begin(), flags.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, log_path_.c_str(), O_WRONLY | O_APPEND, 0);
    pid_t pid = -1;
    int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) return;
    const auto deadline = Clock::now() + kStartTimeout;
    while (Clock::now() < deadline) {
      if (waitpid(pid, nullptr, WNOHANG) == pid) return;  // exited: most likely the port was taken meanwhile
      int fd = connect_to(port_);
      if (fd >= 0) {
        close(fd);
        pid_ = pid;
        return;
      }
      std::this_thread::sleep_for(10ms);
    }
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }

  std::vector<std::string> wrapper_;
  pid_t pid_ = -1;
  int port_ = 0;
  std::string log_path_;
};

struct HttpResponse {
  int status = 0;
  std::string headers;  // lower-cased, "name: value\r\n" each
  std::string body;
  bool has_header(const std::string& line) const { return headers.find(line + "\r\n") != std::string::npos; }
};

// A client connection that keeps unread bytes between responses (pipelining).
class Client {
 public:
  explicit Client(int port) : fd_(connect_to(port)) {}
  ~Client() {
    if (fd_ >= 0) close(fd_);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool ok() const { return fd_ >= 0; }

  bool send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Reads more bytes into the buffer; false on EOF, error or timeout.
  bool fill(int timeout_ms = kReplyTimeoutMs) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) != 1) return false;
    char buf[64 << 10];
    ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) return false;
    buf_.append(buf, static_cast<size_t>(n));
    return true;
  }

  std::optional<HttpResponse> response(int timeout_ms = kReplyTimeoutMs) {
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (!fill(timeout_ms)) return std::nullopt;
    }
    HttpResponse r;
    std::string head = buf_.substr(0, end + 2);
    if (head.rfind("HTTP/1.1 ", 0) != 0) return std::nullopt;
    r.status = std::stoi(head.substr(9, 3));
    r.headers = head.substr(head.find("\r\n") + 2);
    for (char& c : r.headers) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    size_t cl = r.headers.find("content-length: ");
    if (cl == std::string::npos) return std::nullopt;
    size_t length = std::stoul(r.headers.substr(cl + 16));
    while (buf_.size() < end + 4 + length) {
      if (!fill(timeout_ms)) return std::nullopt;
    }
    r.body = buf_.substr(end + 4, length);
    buf_.erase(0, end + 4 + length);
    return r;
  }

  // True when the server closes the connection (EOF or reset) within `limit` without sending more.
  bool closed_within(std::chrono::milliseconds limit, std::string* got = nullptr) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(limit.count())) != 1) return false;
    char buf[4096];
    ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n > 0 && got != nullptr) got->assign(buf, static_cast<size_t>(n));
    return n <= 0;
  }

  // Reads raw bytes until `n` have arrived.
  std::optional<std::string> bytes(size_t n) {
    while (buf_.size() < n) {
      if (!fill()) return std::nullopt;
    }
    std::string s = buf_.substr(0, n);
    buf_.erase(0, n);
    return s;
  }

  // True if the server closes the connection (EOF or reset) with nothing more to read.
  bool closed_by_peer() {
    if (!buf_.empty()) return false;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, kReplyTimeoutMs) != 1) return false;
    char c;
    ssize_t n = recv(fd_, &c, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
  }

  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }

 private:
  int fd_;
  std::string buf_;
};

std::string get(const std::string& target, const std::string& extra = "") {
  return "GET " + target + " HTTP/1.1\r\nHost: test\r\n" + extra + "\r\n";
}

std::string post(const std::string& target, const std::string& body, const std::string& extra = "") {
  return "POST " + target + " HTTP/1.1\r\nHost: test\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
         extra + "\r\n" + body;
}

std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; i++) s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
  return s;
}

class EchoE2E : public ::testing::TestWithParam<std::string> {
 protected:
  std::vector<std::string> flags(std::vector<std::string> extra = {}) {
    std::vector<std::string> f = {"--poller", GetParam()};
    if (std::find(extra.begin(), extra.end(), "--procs") == extra.end()) f.insert(f.end(), {"--procs", "2"});
    f.insert(f.end(), extra.begin(), extra.end());
    return f;
  }
};

TEST_P(EchoE2E, HealthKeepsTheConnectionAlive) {
  Server s(flags());
  ASSERT_TRUE(s.running());
  Client c(s.port());
  ASSERT_TRUE(c.ok());
  for (int i = 0; i < 3; i++) {
    ASSERT_TRUE(c.send(get("/health")));
    auto r = c.response();
    ASSERT_TRUE(r) << i;
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "OK\n");
    EXPECT_FALSE(r->has_header("connection: close"));
  }
}

TEST_P(EchoE2E, EchoReturnsTheBody) {
  Server s(flags());
  ASSERT_TRUE(s.running());
  Client c(s.port());
  ASSERT_TRUE(c.ok());
  // Small (copied into the response batch), large (sent from the read buffer) and at the 1 MiB default limit.
  for (size_t size : {size_t{0}, size_t{5}, size_t{100} << 10, size_t{1} << 20}) {
    const std::string body = pattern(size);
    ASSERT_TRUE(c.send(post("/echo", body)));
    auto r = c.response();
    ASSERT_TRUE(r) << size;
    EXPECT_EQ(r->status, 200);
    EXPECT_TRUE(r->body == body) << size;
  }
}

// --buffers alloc: each request's read buffer from new/delete instead of tern::Pool; the same answers, the large body's
// grown buffer included.
TEST_P(EchoE2E, EchoWithAllocatedBuffers) {
  Server s(flags({"--buffers", "alloc"}));
  ASSERT_TRUE(s.running());
  Client c(s.port());
  ASSERT_TRUE(c.ok());
  for (size_t size : {size_t{5}, size_t{100} << 10, size_t{5}}) {
    const std::string body = pattern(size);
    ASSERT_TRUE(c.send(post("/echo", body)));
    auto r = c.response();
    ASSERT_TRUE(r) << size;
    EXPECT_EQ(r->status, 200);
    EXPECT_TRUE(r->body == body) << size;
  }
}

TEST_P(EchoE2E, MixBytesSendsLargeBodies) {
  Server s(flags());
  ASSERT_TRUE(s.running());
  Client c(s.port());
  ASSERT_TRUE(c.ok());
  // Two large bodies pipelined: both referenced from the one static buffer in one batch, then a small one.
  ASSERT_TRUE(c.send(get("/mix?bytes=65536") + get("/mix?bytes=1000000&sleep_ms=1") + get("/mix?bytes=3")));
  for (size_t size : {size_t{65536}, size_t{1000000}, size_t{3}}) {
    auto r = c.response();
    ASSERT_TRUE(r) << size;
    EXPECT_EQ(r->status, 200);
    EXPECT_TRUE(r->body == std::string(size, 'x')) << size;
  }
}

TEST_P(EchoE2E, PipelinedResponsesComeBackInOrder) {
  Server s(flags());
  ASSERT_TRUE(s.running());
  Client c(s.port());
  ASSERT_TRUE(c.ok());
  const int n = static_cast<int>(tern::test::scaled(64, 8));
  std::string batch;
  for (int i = 0; i < n; i++) {
    switch (i % 4) {
      case 0:
        batch += get("/health");
        break;
      case 1:
        batch += post("/echo", "body-" + std::to_string(i));
        break;
      case 2:
        batch += get("/missing-" + std::to_string(i));
        break;
      case 3:
        batch += get("/sleep?ms=1");
        break;
    }
  }
  batch += get("/health", "Connection: close\r\n");
  ASSERT_TRUE(c.send(batch));
  for (int i = 0; i < n; i++) {
    auto r = c.response();
    ASSERT_TRUE(r) << i;
    switch (i % 4) {
      case 0:
        EXPECT_EQ(r->body, "OK\n") << i;
        break;
      case 1:
        EXPECT_EQ(r->body, "body-" + std::to_string(i)) << i;
        break;
      case 2:
        EXPECT_EQ(r->status, 404) << i;
        break;
      case 3:
        EXPECT_EQ(r->status, 200) << i;
        break;
    }
  }
  auto last = c.response();
  ASSERT_TRUE(last);
  EXPECT_EQ(last->status, 200);
  EXPECT_TRUE(last->has_header("connection: close"));
  EXPECT_TRUE(c.closed_by_peer());
}

TEST_P(EchoE2E, RequestSplitAcrossManyWrites) {
  Server s(flags());
  ASSERT_TRUE(s.running());
  Client c(s.port());
  ASSERT_TRUE(c.ok());
  const std::string req = post("/echo", "split body");
  for (char ch : req) {
    ASSERT_TRUE(c.send(std::string_view(&ch, 1)));
    std::this_thread::sleep_for(1ms);
  }
  auto r = c.response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "split body");
}

TEST_P(EchoE2E, ConnectionCloseAndHttp10) {
  Server s(flags());
  ASSERT_TRUE(s.running());
  {
    Client c(s.port());
    ASSERT_TRUE(c.send(get("/health", "Connection: close\r\n")));
    auto r = c.response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_TRUE(r->has_header("connection: close"));
    EXPECT_TRUE(c.closed_by_peer());
  }
  {
    Client c(s.port());
    ASSERT_TRUE(c.send("GET /health HTTP/1.0\r\n\r\n"));
    auto r = c.response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body, "OK\n");
    EXPECT_TRUE(c.closed_by_peer());
  }
  {
    Client c(s.port());
    for (int i = 0; i < 2; i++) {
      ASSERT_TRUE(c.send("GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
      auto r = c.response();
      ASSERT_TRUE(r) << i;
      EXPECT_TRUE(r->has_header("connection: keep-alive"));
    }
  }
}

TEST_P(EchoE2E, ErrorStatuses) {
  Server s(flags({"--max-body", "1024"}));
  ASSERT_TRUE(s.running());
  struct Case {
    std::string request;
    int status;
    bool closes;
  };
  const std::vector<Case> cases = {
      {"GARBAGE\r\n\r\n", 400, true},
      {"GET /health HTTP/1.1\r\n\r\n", 400, true},  // no Host
      {get("/nowhere"), 404, false},
      {get("/work?us=abc"), 400, false},
      {post("/health", ""), 405, false},
      {post("/echo", std::string(1025, 'x')), 413, true},
      {get("/health", "X-Big: " + std::string(9 << 10, 'h') + "\r\n"), 431, true},
      {"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 501, true},
      {"GET /health HTTP/2.0\r\nHost: t\r\n\r\n", 505, true},
  };
  for (const Case& k : cases) {
    Client c(s.port());
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(c.send(k.request));
    auto r = c.response();
    ASSERT_TRUE(r) << k.status;
    EXPECT_EQ(r->status, k.status) << k.request.substr(0, 40);
    EXPECT_EQ(r->has_header("connection: close"), k.closes) << k.status;
    if (k.closes) {
      EXPECT_TRUE(c.closed_by_peer()) << k.status;
    } else {
      ASSERT_TRUE(c.send(get("/health")));
      auto again = c.response();
      ASSERT_TRUE(again) << k.status;
      EXPECT_EQ(again->status, 200);
    }
  }
  // A body exactly at the limit is fine.
  Client c(s.port());
  ASSERT_TRUE(c.send(post("/echo", std::string(1024, 'y'))));
  auto r = c.response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body.size(), 1024u);
}

TEST_P(EchoE2E, SleepParksOnlyItsOwnConnection) {
  // One processor: if /sleep blocked the thread, /health on another connection would wait for it.
  Server s(flags({"--procs", "1"}));
  ASSERT_TRUE(s.running());
  Client sleeper(s.port());
  Client other(s.port());
  const auto start = Clock::now();
  ASSERT_TRUE(sleeper.send(get("/sleep?ms=300")));
  std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(other.send(get("/health")));
  auto quick = other.response();
  ASSERT_TRUE(quick);
  EXPECT_LT(Clock::now() - start, 250ms);
  auto slow = sleeper.response();
  ASSERT_TRUE(slow);
  EXPECT_EQ(slow->status, 200);
  EXPECT_GE(Clock::now() - start, 300ms);
}

TEST_P(EchoE2E, WorkAndBlock) {
  Server s(flags());
  ASSERT_TRUE(s.running());
  Client c(s.port());
  auto start = Clock::now();
  ASSERT_TRUE(c.send(get("/block?ms=30")));
  auto r = c.response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_GE(Clock::now() - start, 30ms);
  ASSERT_TRUE(c.send(get("/work?us=2000")));
  r = c.response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

// One processor for the server's I/O and one for its CPU pool: /health is answered while /work burns on the pool.
// Without the pool the burn would hold the only processor, and /health would wait for it.
TEST_P(EchoE2E, CpuPoolKeepsHealthAnsweredDuringWork) {
  Server s(flags({"--procs", "1", "--cpu-pool", "1"}));
  ASSERT_TRUE(s.running());
  Client worker(s.port()), other(s.port());
  ASSERT_TRUE(worker.ok() && other.ok());
  // The pool's first fiber makes its first block of fiber records, which under ThreadSanitizer (a fiber context
  // each) took 320 ms on this machine, on the main runtime's only processor: not what is measured here.
  ASSERT_TRUE(worker.send(get("/work?us=1")));
  auto warm = worker.response();
  ASSERT_TRUE(warm);
  ASSERT_EQ(warm->status, 200);
  constexpr auto kBurn = 600ms;
  const auto start = Clock::now();
  ASSERT_TRUE(worker.send(get("/work?us=" + std::to_string(std::chrono::microseconds(kBurn).count()))));
  std::this_thread::sleep_for(50ms);  // the burn has started
  ASSERT_TRUE(other.send(get("/health")));
  auto quick = other.response();
  ASSERT_TRUE(quick);
  EXPECT_EQ(quick->status, 200);
  EXPECT_LT(Clock::now() - start, kBurn / 2) << "/health waited for /work";
  auto slow = worker.response();
  ASSERT_TRUE(slow);
  EXPECT_EQ(slow->status, 200);
  EXPECT_EQ(slow->body, "OK\n");
  // Pipelined: the answers batched before a /work that waits on the pool are sent, and order is kept.
  ASSERT_TRUE(worker.send(get("/health") + get("/work?us=1000") + get("/echo")));
  for (int want : {200, 200, 405}) {
    auto r = worker.response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, want);
  }
}

TEST_P(EchoE2E, ManyConcurrentConnections) {
  Server s(flags());
  ASSERT_TRUE(s.running());
  const int clients = static_cast<int>(tern::test::scaled(100, 10));
  const int requests = static_cast<int>(tern::test::scaled(50, 5));
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  const int kThreads = 4;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&, t] {
      std::vector<std::unique_ptr<Client>> cs;
      for (int i = t; i < clients; i += kThreads) cs.push_back(std::make_unique<Client>(s.port()));
      for (int k = 0; k < requests; k++) {
        for (auto& c : cs) c->send(post("/echo", std::to_string(k)));
        for (auto& c : cs) {
          auto r = c->response();
          if (r && r->body == std::to_string(k)) good++;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), clients * requests);
  EXPECT_TRUE(s.alive());
}

// The common default of 1,024 open files as the soft limit, with a higher hard one: tern raises the soft limit at
// start (runtime/fd_limit.h), so 1,500 idle connections leave the server answering. Before, about 1,000 took it
// offline: accept failed with EMFILE and /health got no answer.
TEST_P(EchoE2E, ManyIdleConnectionsBeyondASoftLimitOf1024) {
  constexpr int kIdle = 1500;
  rlimit mine{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &mine), 0);
  if (mine.rlim_max != RLIM_INFINITY && mine.rlim_max < kIdle + 512) {
    GTEST_SKIP() << "the hard RLIMIT_NOFILE is " << mine.rlim_max << ": too low for " << kIdle << " connections";
  }
  // The server inherits the limits at spawn: a soft limit of 1,024 under the hard one, then ours back as it was.
  rlimit low = mine;
  low.rlim_cur = 1024;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  std::unique_ptr<Server> s = std::make_unique<Server>(flags());
  rlimit raised = mine;
  raised.rlim_cur = mine.rlim_max;  // this process holds the 1,500 client ends
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &raised), 0);
  ASSERT_TRUE(s->running());
  std::vector<int> idle;
  for (int i = 0; i < kIdle; i++) {
    int fd = connect_to(s->port());
    ASSERT_GE(fd, 0) << "connection " << i;
    idle.push_back(fd);
  }
  Client c(s->port());
  ASSERT_TRUE(c.send(get("/health")));
  // The answer comes after the server has taken in the 1,500 connections before it: 0.2 s here, but under
  // ThreadSanitizer each connection's fiber costs milliseconds (a new block of fiber records makes a TSan fiber
  // context per record): the whole test took 10.3-13 s under TSan, and once the reply came after the usual 10 s.
  auto r = c.response(60'000);
  for (int fd : idle) close(fd);
  ASSERT_TRUE(r) << "no answer to /health beside " << kIdle << " idle connections";
  EXPECT_EQ(r->status, 200);
  EXPECT_TRUE(s->alive());
  s.reset();
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &mine), 0);
}

TEST_P(EchoE2E, ClientVanishingMidRequestLeavesTheServerUp) {
  Server s(flags());
  ASSERT_TRUE(s.running());
  {
    Client c(s.port());
    ASSERT_TRUE(c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\npartial"));
  }
  {
    Client c(s.port());
    ASSERT_TRUE(c.send(post("/echo", std::string(200 << 10, 'z'))));
    // Gone without reading the reply.
  }
  Client c(s.port());
  ASSERT_TRUE(c.send(get("/health")));
  auto r = c.response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

// SIGTERM under load: the listener closes, requests in flight finish with their whole answer (saying
// Connection: close), an idle keep-alive connection is closed without a word, and the process exits 0 well within
// --drain-timeout. Before, SIGTERM killed the process in milliseconds with the requests unanswered.
TEST_P(EchoE2E, SigtermDrainsRequestsInFlightAndExitsZero) {
  Server s(flags({"--drain-timeout", "5s"}));
  ASSERT_TRUE(s.running());
  Client idle(s.port());
  ASSERT_TRUE(idle.send(get("/health")));
  ASSERT_TRUE(idle.response());  // now idle between requests
  std::vector<std::unique_ptr<Client>> busy;
  for (int i = 0; i < 8; i++) {
    busy.push_back(std::make_unique<Client>(s.port()));
    ASSERT_TRUE(busy.back()->send(get("/sleep?ms=400")));
  }
  std::this_thread::sleep_for(100ms);  // every request read and sleeping
  std::chrono::milliseconds took{0};
  const int rc = s.signal_and_wait(SIGTERM, 5000ms, &took);
  for (auto& c : busy) {
    auto r = c->response();
    ASSERT_TRUE(r) << "a request in flight lost its answer";
    EXPECT_EQ(r->status, 200);
    EXPECT_TRUE(r->has_header("connection: close")) << r->headers;
    EXPECT_TRUE(c->closed_within(1000ms));
  }
  EXPECT_TRUE(idle.closed_within(1000ms));
  EXPECT_EQ(rc, 0) << s.log();
  EXPECT_LT(took, 2000ms) << s.log();
  EXPECT_NE(s.log().find("drained in"), std::string::npos) << s.log();
  EXPECT_LT(connect_to(s.port()), 0) << "still accepting after the drain";
}

// A request still running at --drain-timeout does not hold the exit: the process exits 0 at the deadline.
TEST_P(EchoE2E, TheDrainTimeoutBoundsTheExit) {
  Server s(flags({"--drain-timeout", "300ms"}));
  ASSERT_TRUE(s.running());
  Client c(s.port());
  ASSERT_TRUE(c.send(get("/sleep?ms=10000")));
  std::this_thread::sleep_for(100ms);
  std::chrono::milliseconds took{0};
  EXPECT_EQ(s.signal_and_wait(SIGTERM, 5000ms, &took), 0) << s.log();
  EXPECT_GE(took, 250ms);
  EXPECT_LT(took, 3000ms);
  EXPECT_NE(s.log().find("drain deadline passed"), std::string::npos) << s.log();
}

// --idle-timeout closes a kept-alive connection that sends nothing more; --header-timeout answers a request whose
// headers stop arriving with 408 and closes. Before, 8,000 silent and 3,000 slowloris connections were held for good.
TEST_P(EchoE2E, IdleAndHeaderTimeoutsCloseWhatStalls) {
  Server s(flags({"--idle-timeout", "300ms", "--header-timeout", "300ms"}));
  ASSERT_TRUE(s.running());
  Client idle(s.port());
  ASSERT_TRUE(idle.send(get("/health")));
  ASSERT_TRUE(idle.response());
  const auto t0 = Clock::now();
  EXPECT_TRUE(idle.closed_within(3000ms));
  EXPECT_GE(Clock::now() - t0, 250ms);
  Client slow(s.port());
  ASSERT_TRUE(slow.send("GET /health HTTP/1.1\r\nHost: t\r\nX-Slow: "));  // and nothing more
  auto r = slow.response();
  ASSERT_TRUE(r) << "no 408";
  EXPECT_EQ(r->status, 408);
  EXPECT_TRUE(slow.closed_within(3000ms));
  Client silent(s.port());  // a connection that never sends: the header timeout runs from the accept
  EXPECT_TRUE(silent.closed_within(3000ms));
  Client fine(s.port());  // the server still answers
  ASSERT_TRUE(fine.send(get("/health")));
  auto ok = fine.response();
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
}

// --max-conns answers connections beyond it 503 and closes them; --max-inflight sheds requests beyond it with 503 and
// Retry-After, keeping the connection.
TEST_P(EchoE2E, ConnectionAndInflightLimitsAnswer503) {
  Server s(flags({"--max-conns", "2", "--max-inflight", "1"}));
  ASSERT_TRUE(s.running());
  // The harness's readiness probe was a connection too: until the server has seen it close, it counts against
  // --max-conns (seen: b refused instead of shed). Its fiber ends as soon as it reads the close.
  std::this_thread::sleep_for(200ms);
  Client a(s.port()), b(s.port());
  ASSERT_TRUE(a.send(get("/sleep?ms=500")));
  std::this_thread::sleep_for(100ms);
  ASSERT_TRUE(b.send(get("/health")));
  auto shed = b.response();
  ASSERT_TRUE(shed);
  EXPECT_EQ(shed->status, 503);
  EXPECT_TRUE(shed->has_header("retry-after: 1")) << shed->headers;
  Client third(s.port());
  ASSERT_TRUE(third.send(get("/health")));
  auto refused = third.response();
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 503);
  EXPECT_TRUE(refused->has_header("connection: close")) << refused->headers;
  auto slow = a.response();
  ASSERT_TRUE(slow);
  EXPECT_EQ(slow->status, 200);
  ASSERT_TRUE(b.send(get("/health")));  // the shed connection is still open, and now admitted
  auto again = b.response();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200);
}

// --max-buffer-memory: a request whose buffer would take the server past it is answered 503 with Retry-After before
// its body is read; small requests never touch the budget; the bytes come back when the request holding them ends.
TEST_P(EchoE2E, ARequestThatWouldPassTheBufferBudgetIsAnswered503) {
  Server s(flags({"--max-body", "256k", "--max-buffer-memory", "300k"}));
  ASSERT_TRUE(s.running());
  const std::string body = pattern(size_t{200} << 10);
  const std::string req = post("/echo", body);
  Client holder(s.port());
  // All but the last byte: its buffer (about 200 KiB) is taken from the budget and held.
  ASSERT_TRUE(holder.send(std::string_view(req).substr(0, req.size() - 1)));
  std::this_thread::sleep_for(300ms);
  Client refused(s.port());
  ASSERT_TRUE(refused.send(req));
  auto r = refused.response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_TRUE(r->has_header("retry-after: 1")) << r->headers;
  EXPECT_TRUE(r->has_header("connection: close")) << r->headers;
  Client small(s.port());
  ASSERT_TRUE(small.send(post("/echo", "hello")));
  auto sm = small.response();
  ASSERT_TRUE(sm);
  EXPECT_EQ(sm->status, 200);
  ASSERT_TRUE(holder.send(std::string_view(req).substr(req.size() - 1)));
  auto h = holder.response();
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  EXPECT_TRUE(h->body == body);
  // Again on the holder's connection: its fiber gives the bytes back after writing the answer, so the client can
  // read that answer first; on another connection the request could still find them held (seen: 503 in 1 of 19).
  ASSERT_TRUE(holder.send(req));
  auto a = holder.response();
  ASSERT_TRUE(a);
  EXPECT_EQ(a->status, 200);
  EXPECT_TRUE(a->body == body);
}

TEST_P(EchoE2E, TcpModeEchoesBytes) {
  Server s(flags({"--mode", "tcp"}));
  ASSERT_TRUE(s.running());
  Client c(s.port());
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.send("hello"));
  auto got = c.bytes(5);
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, "hello");
  // More than the socket buffers hold, written from another thread while this one reads it back.
  const std::string big = pattern(size_t{4} << 20);
  std::thread writer([&] { c.send(big); });
  auto back = c.bytes(big.size());
  writer.join();
  ASSERT_TRUE(back);
  EXPECT_TRUE(*back == big);
  c.shutdown_write();
  EXPECT_TRUE(c.closed_by_peer());
}

INSTANTIATE_TEST_SUITE_P(Pollers, EchoE2E, ::testing::Values("epoll", "uring"),
                         [](const auto& info) { return info.param; });

// Memory pressure: tern-echo in a cgroup with a 128 MiB hard limit, and 200 connections each sending all but the
// last byte of a 1 MiB body (200 MiB held if every one were read in). With --max-buffer-memory off the kernel's OOM
// killer ends the server (measured; the note on issue 20). With the default (auto: a quarter of the cgroup's limit)
// the requests past the budget are answered 503, /health answers meanwhile, the admitted ones complete byte for
// byte, and the server lives throughout.
TEST(EchoMemory, LargeRequestsUnderACgroupMemoryLimitAreRefusedNotKilledFor) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "ThreadSanitizer's shadow memory is several times the server's own (80 MB resident at rest): a "
                  "limit sized for the server would measure the sanitizer";
#endif
  tern::test::MemoryCgroup cg("tern-e2e", size_t{128} << 20);
  if (!cg.skip_reason().empty()) GTEST_SKIP() << cg.skip_reason();
  Server s({"--procs", "2", "--max-body", "1m"}, cg.wrapper());
  ASSERT_TRUE(s.running());
  const std::string body = pattern(size_t{1} << 20);
  const std::string req = post("/echo", body);
  constexpr int kConns = 200;
  std::vector<std::unique_ptr<Client>> cs;
  for (int i = 0; i < kConns; i++) {
    cs.push_back(std::make_unique<Client>(s.port()));
    // A refused connection may be closed before all of it is sent: that is not a failure here.
    (void)cs.back()->send(std::string_view(req).substr(0, req.size() - 1));
  }
  std::this_thread::sleep_for(500ms);
  ASSERT_TRUE(s.alive()) << s.log();
  Client health(s.port());
  ASSERT_TRUE(health.send(get("/health")));
  auto hr = health.response();
  ASSERT_TRUE(hr);
  EXPECT_EQ(hr->status, 200);
  int ok = 0, refused = 0, other = 0;
  for (auto& c : cs) {
    (void)c->send(std::string_view(req).substr(req.size() - 1));
    auto r = c->response();
    if (r && r->status == 200 && r->body == body) {
      ok++;
    } else if (r && r->status == 503) {
      refused++;
    } else {
      other++;
    }
  }
  EXPECT_TRUE(s.alive()) << s.log();
  EXPECT_GT(ok, 0);
  EXPECT_GT(refused, 0);
  EXPECT_EQ(other, 0) << ok << " answered, " << refused << " refused";
  std::printf("%d of %d answered, %d refused; the cgroup's peak %.1f MiB of 128\n", ok, kConns, refused,
              static_cast<double>(cg.peak_bytes()) / (1 << 20));
}

TEST(EchoCli, DryRunPrintsTheResolvedConfiguration) {
  int status = 0;
  std::string out = run_capture({TERN_ECHO_BIN, "--dry-run", "--listen", "127.0.0.1:9999", "--mode", "tcp", "--procs",
                                 "3", "--poller", "epoll", "--max-body", "64k"},
                                {}, status);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << out;
  auto j = nlohmann::json::parse(out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << out;
  EXPECT_EQ(j["listen"], "127.0.0.1:9999");
  EXPECT_EQ(j["mode"], "tcp");
  EXPECT_EQ(j["procs"], 3);
  EXPECT_EQ(j["poller"], "epoll");
  EXPECT_EQ(j["poller_backend"], "epoll");
  EXPECT_EQ(j["max_body"], 64 << 10);
}

TEST(EchoCli, DryRunSaysWhichBackendAutoResolvesTo) {
  int status = 0;
  auto j = nlohmann::json::parse(run_capture({TERN_ECHO_BIN, "--dry-run"}, {}, status), nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_EQ(j["poller"], "auto");
  // auto is epoll (netpoll/netpoll.h); whether io_uring would work is said beside it.
  EXPECT_EQ(j["poller_backend"], "epoll");
  const std::string why = tern::netpoll::uring_unavailable_reason();
  if (why.empty()) {
    EXPECT_FALSE(j.contains("uring_unavailable"));
  } else {
    EXPECT_EQ(j["uring_unavailable"], why);
  }
  EXPECT_EQ(j["uring_park"], true);
}

// Each P's processing unit and node under --numa: compact takes the affinity's PUs in order (one node here, or the
// first node's cores first), none binds nothing.
TEST(EchoCli, DryRunShowsThePlacement) {
  int status = 0;
  auto j = nlohmann::json::parse(
      run_capture({TERN_ECHO_BIN, "--dry-run", "--procs", "3", "--numa", "compact"}, {}, status), nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_EQ(j["numa"], "compact");
  ASSERT_TRUE(j["placement"].is_array()) << j.dump();
  ASSERT_EQ(j["placement"].size(), 3u);
  cpu_set_t set;
  ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  for (int i = 0; i < 3; i++) {
    const auto& e = j["placement"][static_cast<size_t>(i)];
    EXPECT_EQ(e["p"], i);
    ASSERT_TRUE(e["pu"].is_number()) << e.dump();
    EXPECT_TRUE(CPU_ISSET(e["pu"].get<int>(), &set)) << e.dump();
    EXPECT_GE(e["node"].get<int>(), 0);
  }
  j = nlohmann::json::parse(run_capture({TERN_ECHO_BIN, "--dry-run", "--procs", "2"}, {"TERN_NUMA=none"}, status),
                            nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_EQ(j["numa"], "none");
  ASSERT_EQ(j["placement"].size(), 2u);
  EXPECT_TRUE(j["placement"][0]["pu"].is_null());
  run_capture({TERN_ECHO_BIN, "--dry-run", "--numa", "diagonal"}, {}, status);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0);
  run_capture({TERN_ECHO_BIN, "--dry-run"}, {"TERN_NUMA=diagonal"}, status);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0);
}

TEST(EchoCli, FlagsOverrideTheEnvironmentWhichOverridesDefaults) {
  int status = 0;
  auto j = nlohmann::json::parse(run_capture({TERN_ECHO_BIN, "--dry-run"}, {}, status), nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_EQ(j["listen"], "127.0.0.1:8080");
  EXPECT_EQ(j["mode"], "http");
  EXPECT_EQ(j["poller"], "auto");
  EXPECT_EQ(j["max_body"], 1 << 20);

  j = nlohmann::json::parse(run_capture({TERN_ECHO_BIN, "--dry-run"}, {"TERN_PROCS=5", "TERN_POLLER=epoll"}, status),
                            nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_EQ(j["procs"], 5);
  EXPECT_EQ(j["poller"], "epoll");

  j = nlohmann::json::parse(run_capture({TERN_ECHO_BIN, "--dry-run", "--procs", "2", "--poller", "uring"},
                                        {"TERN_PROCS=5", "TERN_POLLER=epoll"}, status),
                            nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_EQ(j["procs"], 2);
  EXPECT_EQ(j["poller"], "uring");
}

TEST(EchoCli, BadFlagsAndEnvironmentAreRejected) {
  int status = 0;
  run_capture({TERN_ECHO_BIN, "--dry-run", "--mode", "udp"}, {}, status);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0);
  run_capture({TERN_ECHO_BIN, "--dry-run", "--procs", "zero"}, {}, status);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0);
  run_capture({TERN_ECHO_BIN, "--dry-run", "--listen", "nohost"}, {}, status);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0);
  run_capture({TERN_ECHO_BIN, "--dry-run"}, {"TERN_POLLER=kqueue"}, status);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0);
}

TEST(EchoCli, CpuPoolIsShownByDryRunAndValidated) {
  int status = 0;
  auto j =
      nlohmann::json::parse(run_capture({TERN_ECHO_BIN, "--dry-run", "--cpu-pool", "3"}, {}, status), nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  ASSERT_TRUE(j["cpu_pool"].is_object()) << j.dump();
  EXPECT_EQ(j["cpu_pool"]["name"], "cpu");
  EXPECT_EQ(j["cpu_pool"]["procs"], 3);
  EXPECT_EQ(j["cpu_pool"]["routes"], nlohmann::json::array({"/work"}));
  EXPECT_EQ(j["name"], "main");
  j = nlohmann::json::parse(run_capture({TERN_ECHO_BIN, "--dry-run"}, {}, status), nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_TRUE(j["cpu_pool"].is_null());
  for (const char* bad : {"0", "auto", "-1", "two", "1025", ""}) {
    tern::test::Child c({TERN_ECHO_BIN, "--dry-run", "--cpu-pool", bad});
    const int st = c.wait();
    ASSERT_TRUE(WIFEXITED(st)) << bad;
    EXPECT_NE(WEXITSTATUS(st), 0) << bad;
    EXPECT_NE(c.output().find("--cpu-pool"), std::string::npos) << bad << ": " << c.output();
  }
  tern::test::Child tcp({TERN_ECHO_BIN, "--dry-run", "--mode", "tcp", "--cpu-pool", "1"});
  const int st = tcp.wait();
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 2) << tcp.output();
  EXPECT_NE(tcp.output().find("--cpu-pool"), std::string::npos) << tcp.output();
}

TEST(EchoCli, PortInUseIsAnError) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  int status = 0;
  run_capture({TERN_ECHO_BIN, "--listen", "127.0.0.1:" + std::to_string(ntohs(a.sin_port))}, {}, status);
  close(fd);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0);
}

}  // namespace
