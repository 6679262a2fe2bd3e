// tools/capacity/conn_cost.cc: the measured cost of a connection (see conn_cost.h).
#include "tools/capacity/conn_cost.h"

#include <fmt/core.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <vector>

#include "tools/load/response.h"
#include "tools/top/exposition.h"
#include "tools/top/http_get.h"

namespace tern::capacity {
namespace {

constexpr int kTimeoutMs = 5000;

// Closes every descriptor it holds, whatever path leaves connection_cost.
struct Sockets {
  std::vector<int> fds;
  ~Sockets() {
    for (int fd : fds) ::close(fd);
  }
};

Result<int> connect_one(const net::Address& addr) {
  const int fd = ::socket(addr.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return make_error(fmt::format("socket: {}", std::strerror(errno)));
  timeval tv{kTimeoutMs / 1000, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);  // bounds connect() and send()
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, addr.sockaddr_ptr(), addr.size()) != 0) {
    int e = errno;
    if (e == EINTR) {
      // Interrupted, the connection goes on in the kernel: wait for it and take its outcome. (Blocking calls here
      // do see EINTR: io_uring task work left by the probe's runtime on this thread interrupts them, and a socket
      // with SO_RCVTIMEO/SO_SNDTIMEO returns EINTR rather than restarting.)
      pollfd p{fd, POLLOUT, 0};
      int r;
      do r = ::poll(&p, 1, kTimeoutMs);
      while (r < 0 && errno == EINTR);
      socklen_t len = sizeof e;
      e = r == 0 ? ETIMEDOUT : r < 0 ? errno : (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) == 0 ? e : errno);
    }
    if (e != 0) {
      ::close(fd);
      return make_error(fmt::format("connect {}: {}", addr.to_string(), std::strerror(e)));
    }
  }
  return fd;
}

// All of buf on fd, through interruptions and partial sends.
bool send_all(int fd, const std::string& buf) {
  size_t off = 0;
  while (off < buf.size()) {
    const ssize_t n = ::send(fd, buf.data() + off, buf.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// Reads one reply on fd; an error unless it is complete and 2xx.
Result<void> read_reply(int fd) {
  load::ResponseReader reader;
  std::string buf;
  char chunk[16 << 10];
  for (;;) {
    const load::Frame f = reader.frame(buf.data(), buf.size());
    if (f.state == load::Frame::kDone) {
      if (f.status < 200 || f.status > 299) return make_error(fmt::format("status {}", f.status));
      return {};
    }
    if (f.state == load::Frame::kBad) return make_error("bad reply: " + f.error);
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) return make_error("the server closed the connection before replying");
    if (n < 0) return make_error(fmt::format("read: {}", errno == EAGAIN ? "timed out" : std::strerror(errno)));
    buf.append(chunk, static_cast<size_t>(n));
  }
}

double proc_rss(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtod(line.c_str() + 6, nullptr) * 1024;  // "VmRSS:  1234 kB"
  }
  return NAN;
}

struct Reading {
  double conns = NAN, fds = NAN, fds_limit = NAN, rss = NAN;
  std::string rss_source;
};

Result<Reading> read_server(const net::Address& metrics, pid_t pid) {
  auto body = top::http_get(metrics, "/metrics", kTimeoutMs);
  if (!body) return body.error().wrap("metrics " + metrics.to_string());
  auto s = top::parse_exposition(*body);
  if (!s) return s.error().wrap("metrics " + metrics.to_string());
  Reading r;
  r.conns = s->value("tern_connections_open");
  r.fds = s->value("tern_fds_open");
  r.fds_limit = s->value("tern_fds_limit");
  if (!std::isfinite(r.conns) || !std::isfinite(r.fds))
    return make_error("metrics " + metrics.to_string() + " show no tern_connections_open or tern_fds_open");
  r.rss = s->value("process_resident_memory_bytes");
  r.rss_source = "process_resident_memory_bytes";
  if (!std::isfinite(r.rss) && pid > 0) {
    r.rss = proc_rss(pid);
    r.rss_source = fmt::format("/proc/{}/status VmRSS", pid);
  }
  return r;
}

// The reading with the fewest descriptors of kReadings scrapes kReadingGapMs apart. A scrape also counts descriptors
// that are only passing: a connection its peer has just closed and the server has not yet (the probe's, an earlier
// scrape's). They only ever add, one or two at a time, and the per-connection figure is a difference of two readings
// over n connections: one such descriptor in the second reading alone made 64 held connections read 1.016 descriptors
// each, and the fds term at 1024 descriptors 16 connections low.
constexpr int kReadings = 3;
constexpr int kReadingGapMs = 20;

Result<Reading> read_settled(const net::Address& metrics, pid_t pid) {
  std::optional<Reading> best;
  for (int i = 0; i < kReadings; i++) {
    if (i > 0) ::usleep(kReadingGapMs * 1000);
    auto r = read_server(metrics, pid);
    if (!r) return r.error();
    if (!best || r->fds < best->fds) best = *r;
  }
  return *best;
}

}  // namespace

Result<ConnectionCost> connection_cost(const net::Address& server, const std::string& hostport, const std::string& path,
                                       const net::Address& metrics, pid_t pid, int n) {
  if (n < 1) return make_error(fmt::format("connections to hold must be >= 1, not {}", n));
  auto before = read_settled(metrics, pid);
  if (!before) return before.error();
  // Never take more than half of the server's free descriptors: the point is to measure it, not to exhaust it.
  if (std::isfinite(before->fds_limit))
    n = std::max(1, std::min(n, static_cast<int>((before->fds_limit - before->fds) / 2)));
  Sockets held;
  const std::string req = fmt::format("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", path, hostport);
  // All requests go out before any reply is read, so a path that sleeps costs its sleep once, not n times.
  for (int i = 0; i < n; i++) {
    auto fd = connect_one(server);
    if (!fd) return fd.error().wrap(fmt::format("connection {} of {}", i + 1, n));
    held.fds.push_back(*fd);
    if (!send_all(*fd, req))
      return make_error(fmt::format("connection {} of {}: send: {}", i + 1, n, std::strerror(errno)));
  }
  for (size_t i = 0; i < held.fds.size(); i++) {
    if (auto r = read_reply(held.fds[i]); !r) return r.error().wrap(fmt::format("connection {} of {}", i + 1, n));
  }
  auto during = read_settled(metrics, pid);
  if (!during) return during.error();
  ConnectionCost c;
  c.held = n;
  c.conns_before = before->conns;
  c.conns_during = during->conns;
  c.fds_before = before->fds;
  c.fds_during = during->fds;
  if (before->rss_source == during->rss_source) {
    c.rss_before = before->rss;
    c.rss_during = during->rss;
    c.rss_source = before->rss_source;
  }
  if (!(c.added() >= 1))
    return make_error(
        fmt::format("the server's tern_connections_open went from {} to {} while {} were held: is "
                    "{} the metrics of the server at {}?",
                    c.conns_before, c.conns_during, n, metrics.to_string(), server.to_string()));
  return c;
}

}  // namespace tern::capacity
