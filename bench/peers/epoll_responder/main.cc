// bench/peers/epoll_responder/main.cc: the no-runtime limit for bench/echo.sh.
//
// One thread per CPU, each with its own SO_REUSEPORT listener and its own edge-triggered epoll set, so threads share
// nothing and the kernel spreads connections over them. Connections are parsed and answered with tern-echo's own
// parser, routes and response batching (tools/echo, library tern_http): the difference between this program and
// tern-echo in a benchmark is the fiber runtime and its netpoller, nothing else. Without fibers it cannot wait
// inside a request, so /sleep and /block are answered 501; /work burns the CPU inline.
//
//   epoll-responder --listen 127.0.0.1:8081 --threads 2
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tools/echo/cpu_burn.h"
#include "tools/echo/echo_routes.h"
#include "tools/echo/http_parser.h"
#include "tools/echo/http_response.h"

namespace {

// The same first read buffer size tern-echo uses: a whole wrk request, or a few dozen pipelined ones, per read.
constexpr size_t kReadBufBytes = 16 << 10;
// Events harvested per epoll_wait.
constexpr int kMaxEvents = 256;
// Listen backlog: the kernel clamps it to net.core.somaxconn; -c1000 connects all at once.
constexpr int kBacklog = 4096;
// writev accepts at most IOV_MAX (1024) iovecs on Linux.
constexpr size_t kMaxIov = 1024;

struct Conn {
  int fd = -1;
  std::vector<char> buf;
  size_t len = 0;        // bytes read into buf
  size_t parsed = 0;     // bytes of buf answered in `out` (kept until `out` is sent: large echo bodies point into buf)
  size_t need = 0;       // bytes the next request needs before parsing again (0: unknown)
  size_t sent = 0;       // bytes of `out` already written
  bool closing = false;  // close once `out` is sent
  tern::http::ResponseBatch out;
};

void close_conn(int ep, Conn* c) {
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, nullptr);
  close(c->fd);
  delete c;
}

// Parses every complete request in buf[parsed, len) and appends its response.
void process(Conn* c, const tern::http::Limits& limits) {
  using tern::http::ParseState;
  while (!c->closing && c->parsed < c->len) {
    if (c->need > c->len) return;
    std::string_view in(c->buf.data() + c->parsed, c->len - c->parsed);
    tern::http::Request req;
    tern::http::ParseResult r = tern::http::parse_request(in, limits, req);
    if (r.state == ParseState::kNeedMore) {
      c->need = r.need == 0 ? 0 : c->parsed + r.need;
      return;
    }
    c->need = 0;
    if (r.state == ParseState::kError) {
      c->out.add_error(r.status);
      c->closing = true;
      return;
    }
    tern::echo::Route route = tern::echo::route(req);
    switch (route.action) {
      case tern::echo::Action::kRespond:
        break;
      case tern::echo::Action::kWork:
        tern::echo::burn_cpu_us(route.amount);
        break;
      case tern::echo::Action::kSleep:
      case tern::echo::Action::kBlock:
      case tern::echo::Action::kMix:  // a wait would stall the one loop; the responder only computes
        route.response.status = 501;
        route.response.body = "Not Implemented\n";
        break;
    }
    c->out.add(route.response, req);
    c->parsed += r.consumed;
    if (!req.keep_alive) c->closing = true;
  }
}

// Writes what is left of `out`. Returns false on a write error; `done` says whether all of it went out.
bool flush(Conn* c, bool& done) {
  done = false;
  while (!c->out.empty()) {
    std::span<const iovec> all = c->out.iovecs();
    iovec iov[kMaxIov];
    size_t n = 0;
    size_t skip = c->sent;
    for (const iovec& v : all) {
      if (skip >= v.iov_len) {
        skip -= v.iov_len;
        continue;
      }
      if (n == kMaxIov) break;
      iov[n++] = iovec{static_cast<char*>(v.iov_base) + skip, v.iov_len - skip};
      skip = 0;
    }
    ssize_t w = writev(c->fd, iov, static_cast<int>(n));
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return true;
      return false;
    }
    c->sent += static_cast<size_t>(w);
    if (c->sent == c->out.bytes()) {
      c->out.clear();
      c->sent = 0;
      // The answered bytes are no longer referenced: move the unparsed rest to the front.
      std::memmove(c->buf.data(), c->buf.data() + c->parsed, c->len - c->parsed);
      c->len -= c->parsed;
      if (c->need != 0) c->need -= c->parsed;
      c->parsed = 0;
    }
  }
  done = true;
  return true;
}

// Reads until the socket is drained (edge-triggered), answering as it goes. Returns false when the connection is done.
bool on_ready(Conn* c, const tern::http::Limits& limits) {
  for (;;) {
    bool flushed = false;
    if (!flush(c, flushed)) return false;
    if (!flushed) return true;  // EPOLLOUT will call again
    if (c->closing) return false;
    if (c->len == c->buf.size()) {
      size_t want = std::max(c->need, c->buf.size() * 2);
      c->buf.resize(std::min(want, limits.max_header_bytes + limits.max_body_bytes));
      if (c->len == c->buf.size()) return false;
    }
    ssize_t n = read(c->fd, c->buf.data() + c->len, c->buf.size() - c->len);
    if (n == 0) return false;
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN;
    }
    c->len += static_cast<size_t>(n);
    process(c, limits);
  }
}

int listen_on(const sockaddr_in& addr) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, kBacklog) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

void serve(int lfd, tern::http::Limits limits) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  epoll_event lev{};
  lev.events = EPOLLIN | EPOLLET;
  lev.data.ptr = nullptr;  // the listener
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
  epoll_event events[kMaxEvents];
  for (;;) {
    int n = epoll_wait(ep, events, kMaxEvents, -1);
    for (int i = 0; i < n; i++) {
      auto* c = static_cast<Conn*>(events[i].data.ptr);
      if (c == nullptr) {
        for (;;) {
          int fd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) break;
          int one = 1;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          auto* nc = new Conn;
          nc->fd = fd;
          nc->buf.resize(kReadBufBytes);
          epoll_event ev{};
          ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
          ev.data.ptr = nc;
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        }
        continue;
      }
      if ((events[i].events & EPOLLERR) != 0 || !on_ready(c, limits)) close_conn(ep, c);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"epoll-responder: a minimal one-thread-per-CPU epoll HTTP server, the no-runtime peer of tern-echo"};
  std::string listen = "127.0.0.1:8081";
  int threads = 0;
  size_t max_body = tern::http::kDefaultMaxBodyBytes;
  app.add_option("--listen", listen, "HOST:PORT (IPv4)");
  app.add_option("--threads", threads, "threads (default: the CPUs this process may run on)");
  app.add_option("--max-body", max_body, "largest request body in bytes");
  CLI11_PARSE(app, argc, argv);

  size_t colon = listen.rfind(':');
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  if (colon == std::string::npos || inet_pton(AF_INET, listen.substr(0, colon).c_str(), &addr.sin_addr) != 1) {
    std::fprintf(stderr, "epoll-responder: bad --listen %s\n", listen.c_str());
    return 2;
  }
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(listen.substr(colon + 1))));
  if (threads <= 0) {
    cpu_set_t set;
    threads = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
  }
  signal(SIGPIPE, SIG_IGN);

  tern::http::Limits limits;
  limits.max_body_bytes = max_body;
  std::vector<int> listeners;
  for (int i = 0; i < threads; i++) {
    int fd = listen_on(addr);
    if (fd < 0) {
      std::fprintf(stderr, "epoll-responder: listen %s: %s\n", listen.c_str(), std::strerror(errno));
      return 1;
    }
    listeners.push_back(fd);
  }
  std::vector<std::thread> workers;
  for (int fd : listeners) workers.emplace_back(serve, fd, limits);
  for (auto& t : workers) t.join();
}
