// tests/support/process.h: a program of the build run as a child process, for end-to-end tests of the tools: started
// with posix_spawn, its stdout and stderr captured to a file, stopped (SIGTERM, then SIGKILL) when destroyed.
//
//   test::Child echo({TERN_ECHO_BIN, "--listen", "127.0.0.1:" + std::to_string(port)});
//   ASSERT_TRUE(test::wait_for_port(port));
//   test::Child load({TERN_LOAD_BIN, url, "--json"});
//   int status = load.wait();  std::string out = load.output();
//
// The child gets this process's environment without its TERN_ variables (a test's own settings must not leak into
// the program under test) plus `env`.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace tern::test {

// A loopback port free a moment ago (bind port 0, read it, close): another process may take it in between.
inline int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// A blocking TCP connection to 127.0.0.1:port with TCP_NODELAY (requests are small and must not wait for Nagle);
// -1 when nothing accepts.
inline int connect_loopback(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// True once something accepts connections on 127.0.0.1:port, within `limit`.
inline bool wait_for_port(int port, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (const int fd = connect_loopback(port); fd >= 0) {
      close(fd);
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

class Child {
 public:
  explicit Child(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
    char path[] = "/tmp/tern-test-child.XXXXXX";
    const int out = mkstemp(path);
    log_ = path;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out, STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, out, STDERR_FILENO);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::vector<std::string> envs(env);
    for (char** e = environ; *e != nullptr; e++)
      if (std::strncmp(*e, "TERN_", 5) != 0) envs.emplace_back(*e);
    std::vector<char*> envp;
    for (auto& e : envs) envp.push_back(e.data());
    envp.push_back(nullptr);
    if (posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), envp.data()) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
    close(out);
  }
  ~Child() {
    stop();
    unlink(log_.c_str());
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  bool started() const { return pid_ > 0; }
  // Waits for it to exit; its wait status (-1 if it never started).
  int wait() {
    if (pid_ <= 0) return status_;
    waitpid(pid_, &status_, 0);
    pid_ = -1;
    return status_;
  }
  // SIGTERM, up to 2 s to exit, then SIGKILL.
  void stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    for (int i = 0; i < 100; i++) {
      if (waitpid(pid_, &status_, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, &status_, 0);
    pid_ = -1;
  }
  // What it wrote to stdout and stderr so far.
  std::string output() const {
    std::string s;
    const int fd = open(log_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return s;
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) s.append(buf, static_cast<size_t>(n));
    close(fd);
    return s;
  }

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  std::string log_;
};

}  // namespace tern::test
