// runtime/metrics/debug_server.cc: the debug endpoint's thread: accept, the strict request reader, routing, admin
// authorization, and writing the response.
#include "runtime/metrics/debug_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

namespace tern::metrics {

namespace {

// How long one epoll wait may last while connections are open and none has an earlier deadline (the stop flag is
// signalled by the eventfd, so this only bounds how late a rest after an accept failure ends).
constexpr int kMaxWaitMs = 100;
// How long the listener rests after an accept failure such as EMFILE (the peers wait in the backlog meanwhile).
constexpr int kAcceptRetryMs = 100;
constexpr size_t kMaxTargetBytes = 2048;
constexpr size_t kMaxHeaders = 64;
constexpr size_t kMaxMethodBytes = 16;

int64_t mono_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

const char* reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Status";
  }
}

bool is_loopback(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
  }
  if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    if (IN6_IS_ADDR_LOOPBACK(&a->sin6_addr)) return true;
    return IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) && a->sin6_addr.s6_addr[12] == 127;
  }
  return false;
}

bool tchar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decoding of a query component ('+' is a space); false on a malformed escape or a NUL.
bool decode(std::string_view in, std::string& out) {
  out.clear();
  for (size_t i = 0; i < in.size(); i++) {
    char c = in[i];
    if (c == '+') {
      c = ' ';
    } else if (c == '%') {
      if (i + 2 >= in.size()) return false;
      const int hi = hexval(in[i + 1]), lo = hexval(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    }
    if (c == '\0') return false;
    out += c;
  }
  return true;
}

bool parse_query(std::string_view q, std::map<std::string, std::string>& out) {
  while (!q.empty()) {
    const size_t amp = q.find('&');
    const std::string_view part = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    if (part.empty()) continue;
    const size_t eq = part.find('=');
    std::string k, v;
    if (!decode(part.substr(0, eq), k)) return false;
    if (eq != std::string_view::npos && !decode(part.substr(eq + 1), v)) return false;
    if (k.empty() || out.count(k) != 0) return false;  // a repeated parameter is ambiguous
    out.emplace(std::move(k), std::move(v));
  }
  return true;
}

// Equal strings, in time that depends on the length of `given` only, not on where it first differs from `secret`.
bool constant_time_equal(const std::string& given, const std::string& secret) {
  unsigned char diff = given.size() == secret.size() ? 0 : 1;
  for (size_t i = 0; i < given.size(); i++) {
    const char s = secret.empty() ? 0 : secret[i % secret.size()];
    diff |= static_cast<unsigned char>(given[i] ^ s);
  }
  return diff == 0;
}

}  // namespace

struct DebugServer::Conn {
  int fd = -1;
  bool loopback = false;
  int64_t deadline_ms = 0;
  std::string in;
  size_t header_end = 0;  // just past the blank line, once found
  size_t body_len = 0;
  std::string authorization;
  HttpRequest req;
  std::string out;  // the response, once there is one
  size_t sent = 0;
  bool gone = false;  // the peer closed before sending a whole request
};

Result<std::pair<std::string, uint16_t>> DebugServer::parse_listen(const std::string& listen) {
  std::string host, port;
  if (!listen.empty() && listen[0] == '[') {
    const size_t close = listen.find(']');
    if (close == std::string::npos || close + 1 >= listen.size() || listen[close + 1] != ':')
      return make_error("metrics address '" + listen + "': expected [IPv6]:PORT");
    host = listen.substr(1, close - 1);
    port = listen.substr(close + 2);
  } else {
    const size_t colon = listen.rfind(':');
    if (colon == std::string::npos) return make_error("metrics address '" + listen + "': expected HOST:PORT");
    host = listen.substr(0, colon);
    port = listen.substr(colon + 1);
  }
  if (host.empty()) return make_error("metrics address '" + listen + "': the host is missing (0.0.0.0 for all)");
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return make_error("metrics address '" + listen + "': the port must be a number in [0, 65535]");
  const int p = std::stoi(port);
  if (p > 65535) return make_error("metrics address '" + listen + "': the port must be a number in [0, 65535]");
  return std::pair{host, static_cast<uint16_t>(p)};
}

Result<std::unique_ptr<DebugServer>> DebugServer::start(const std::string& listen, std::string admin_token) {
  auto hp = parse_listen(listen);
  if (!hp) return hp.error();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(hp->second);
  if (int rc = getaddrinfo(hp->first.c_str(), port.c_str(), &hints, &res); rc != 0)
    return make_error("metrics address '" + listen + "': " + gai_strerror(rc));
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    freeaddrinfo(res);
    return errno_error(errno, "metrics: socket");
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || ::listen(fd, 64) < 0) {
    const int err = errno;
    freeaddrinfo(res);
    close(fd);
    return errno_error(err, "metrics: listen " + listen);
  }
  freeaddrinfo(res);
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  const uint16_t bound = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                                        : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  const int wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (ep < 0 || wake < 0) {
    const int err = errno;
    close(fd);
    if (ep >= 0) close(ep);
    if (wake >= 0) close(wake);
    return errno_error(err, "metrics: epoll");
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  ev.data.fd = wake;
  epoll_ctl(ep, EPOLL_CTL_ADD, wake, &ev);
  std::unique_ptr<DebugServer> s(new DebugServer(fd, ep, wake, bound, std::move(admin_token)));
  return s;
}

DebugServer::DebugServer(int listen_fd, int epoll_fd, int wake_fd, uint16_t port, std::string token)
    : listen_fd_(listen_fd), epoll_fd_(epoll_fd), wake_fd_(wake_fd), port_(port), token_(std::move(token)) {
  thread_ = std::thread([this] { main(); });
  pthread_setname_np(thread_.native_handle(), "tern-debug");
}

DebugServer::~DebugServer() {
  stop_.store(true);
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof one);
  thread_.join();
  close(listen_fd_);
  close(epoll_fd_);
  close(wake_fd_);
}

void DebugServer::handle(const std::string& method, const std::string& path, Handler h, bool admin) {
  std::lock_guard lk(mu_);
  routes_[{method, path}] = Route{std::move(h), admin};
}

void DebugServer::main() {
  std::map<int, std::unique_ptr<Conn>> conns;
  auto drop = [&](int fd) {
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    close(fd);
    conns.erase(fd);
  };
  epoll_event events[32];
  // After an accept failure that is not EAGAIN (EMFILE, ENFILE, ENOMEM) the listener stays readable: it leaves the
  // epoll set until then, or the loop would spin on it.
  int64_t accept_resume_ms = 0;
  while (!stop_.load()) {
    int64_t now = mono_ms();
    // Idle (no connection, listener not resting), the thread sleeps until a connection or the stop's eventfd: an
    // endpoint nobody scrapes costs no wakeups.
    int timeout = conns.empty() && accept_resume_ms == 0 ? -1 : kMaxWaitMs;
    if (accept_resume_ms != 0 && now >= accept_resume_ms) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.fd = listen_fd_;
      epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
      accept_resume_ms = 0;
    }
    for (const auto& [fd, c] : conns) timeout = static_cast<int>(std::clamp<int64_t>(c->deadline_ms - now, 0, timeout));
    const int n = epoll_wait(epoll_fd_, events, 32, timeout);
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < n; i++) {
      const int fd = events[i].data.fd;
      if (fd == wake_fd_) continue;
      if (fd == listen_fd_) {
        for (;;) {
          sockaddr_storage ss{};
          socklen_t len = sizeof ss;
          const int cfd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (cfd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED) {
              epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
              accept_resume_ms = mono_ms() + kAcceptRetryMs;
            }
            break;
          }
          if (conns.size() >= static_cast<size_t>(kMaxConnections)) {
            close(cfd);
            continue;
          }
          auto c = std::make_unique<Conn>();
          c->fd = cfd;
          c->loopback = is_loopback(ss);
          c->deadline_ms = mono_ms() + kRequestTimeoutMs;
          epoll_event ev{};
          ev.events = EPOLLIN | EPOLLRDHUP;
          ev.data.fd = cfd;
          if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, cfd, &ev) < 0) {
            close(cfd);
            continue;
          }
          conns.emplace(cfd, std::move(c));
        }
        continue;
      }
      auto it = conns.find(fd);
      if (it == conns.end()) continue;
      Conn& c = *it->second;
      if (c.out.empty()) {
        on_readable(c);
      }
      if (!c.out.empty()) {
        while (c.sent < c.out.size()) {
          const ssize_t w = send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
          if (w <= 0) break;
          c.sent += static_cast<size_t>(w);
        }
        if (c.sent < c.out.size() && (errno == EAGAIN || errno == EWOULDBLOCK)) {
          epoll_event ev{};
          ev.events = EPOLLOUT;
          ev.data.fd = c.fd;
          epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
          continue;
        }
        shutdown(c.fd, SHUT_WR);
        drop(fd);
      } else if (c.gone) {
        drop(fd);
      }
    }
    now = mono_ms();
    std::vector<int> late;
    for (const auto& [fd, c] : conns)
      if (c->deadline_ms <= now) late.push_back(fd);
    for (int fd : late) {
      Conn& c = *conns[fd];
      if (c.out.empty()) {
        // Best effort: a peer too slow to send its request in time is likely too slow to read much either.
        respond(c, 408, "text/plain; charset=utf-8", "request timeout\n");
        [[maybe_unused]] ssize_t w = send(fd, c.out.data(), c.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      }
      drop(fd);
    }
  }
  for (auto& [fd, c] : conns) close(fd);
}

void DebugServer::respond(Conn& c, int status, const std::string& content_type, const std::string& body) {
  c.out = "HTTP/1.1 " + std::to_string(status) + " " + reason(status) + "\r\nContent-Type: " + content_type +
          "\r\nContent-Length: " + std::to_string(body.size()) +
          "\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n";
  if (c.req.method != "HEAD") c.out += body;
  c.sent = 0;
}

// Reads what arrived; once the request is whole, parses and dispatches it (c.out holds the response). A peer that
// closed before sending a whole request is marked gone, for the caller to drop.
void DebugServer::on_readable(Conn& c) {
  char buf[4096];
  bool eof = false;
  for (;;) {
    const ssize_t r = recv(c.fd, buf, sizeof buf, 0);
    if (r > 0) {
      c.in.append(buf, static_cast<size_t>(r));
      if (c.in.size() > kMaxHeaderBytes + kMaxBodyBytes) break;
      continue;
    }
    if (r == 0) eof = true;
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) eof = true;
    break;
  }
  auto bad = [&](const std::string& why) {
    respond(c, 400, "text/plain; charset=utf-8", "bad request: " + why + "\n");
  };
  if (c.header_end == 0) {
    const size_t end = c.in.find("\r\n\r\n");
    if (end == std::string::npos) {
      if (c.in.size() > kMaxHeaderBytes)
        return bad("request line and headers exceed " + std::to_string(kMaxHeaderBytes) + " bytes");
      c.gone = eof;
      return;
    }
    if (end + 4 > kMaxHeaderBytes)
      return bad("request line and headers exceed " + std::to_string(kMaxHeaderBytes) + " bytes");
    c.header_end = end + 4;
    // The request line: METHOD SP target SP HTTP/1.x
    const std::string_view head(c.in.data(), end);
    size_t line_end = head.find("\r\n");
    const std::string_view line = head.substr(0, line_end);
    const size_t sp1 = line.find(' ');
    const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
      return bad("malformed request line");
    const std::string_view method = line.substr(0, sp1), target = line.substr(sp1 + 1, sp2 - sp1 - 1),
                           version = line.substr(sp2 + 1);
    if (method.empty() || method.size() > kMaxMethodBytes ||
        !std::all_of(method.begin(), method.end(), [](char ch) { return ch >= 'A' && ch <= 'Z'; }))
      return bad("malformed method");
    if (version != "HTTP/1.1" && version != "HTTP/1.0") return bad("unsupported HTTP version");
    if (target.empty() || target[0] != '/' || target.size() > kMaxTargetBytes ||
        !std::all_of(target.begin(), target.end(), [](char ch) { return ch > 0x20 && ch < 0x7f; }))
      return bad("malformed target");
    c.req.method = std::string(method);
    const size_t q = target.find('?');
    c.req.path = std::string(target.substr(0, q));
    if (q != std::string_view::npos && !parse_query(target.substr(q + 1), c.req.query)) return bad("malformed query");
    c.req.loopback = c.loopback;
    // Headers: name ":" value, no folding; only Content-Length, Transfer-Encoding and Authorization matter here.
    bool have_length = false, have_auth = false;
    size_t nheaders = 0;
    while (line_end != std::string_view::npos) {
      const size_t start = line_end + 2;
      line_end = head.find("\r\n", start);
      const std::string_view h = head.substr(start, line_end == std::string_view::npos ? head.npos : line_end - start);
      if (++nheaders > kMaxHeaders) return bad("too many headers");
      const size_t colon = h.find(':');
      if (colon == 0 || colon == std::string_view::npos ||
          !std::all_of(h.begin(), h.begin() + static_cast<ptrdiff_t>(colon), tchar))
        return bad("malformed header");
      std::string name(h.substr(0, colon));
      std::transform(name.begin(), name.end(), name.begin(), [](char ch) { return std::tolower(ch); });
      std::string_view value = h.substr(colon + 1);
      if (std::any_of(value.begin(), value.end(),
                      [](char ch) { return (static_cast<unsigned char>(ch) < 0x20 && ch != '\t') || ch == 0x7f; }))
        return bad("control character in a header");
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
      while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
      if (name == "transfer-encoding") return bad("Transfer-Encoding is not accepted");
      if (name == "content-length") {
        if (have_length || value.empty() || value.size() > 6 ||
            !std::all_of(value.begin(), value.end(), [](char ch) { return ch >= '0' && ch <= '9'; }))
          return bad("malformed Content-Length");
        have_length = true;
        c.body_len = std::stoul(std::string(value));
        if (c.body_len > kMaxBodyBytes) return bad("body exceeds " + std::to_string(kMaxBodyBytes) + " bytes");
      } else if (name == "authorization") {
        if (have_auth) return bad("repeated Authorization");
        have_auth = true;
        c.authorization = std::string(value);
      }
    }
  }
  if (c.in.size() < c.header_end + c.body_len) {
    c.gone = eof;
    return;
  }
  dispatch(c);
}

bool DebugServer::authorized(const Conn& c, const std::string& authorization) const {
  if (token_.empty()) return c.loopback;
  constexpr std::string_view kBearer = "bearer ";
  if (authorization.size() < kBearer.size()) return false;
  for (size_t i = 0; i < kBearer.size(); i++)
    if (std::tolower(static_cast<unsigned char>(authorization[i])) != kBearer[i]) return false;
  return constant_time_equal(authorization.substr(kBearer.size()), token_);
}

void DebugServer::dispatch(Conn& c) {
  Route route;
  bool path_known = false;
  {
    std::lock_guard lk(mu_);
    auto it = routes_.find({c.req.method == "HEAD" ? std::string("GET") : c.req.method, c.req.path});
    if (it != routes_.end()) {
      route = it->second;
    } else {
      for (const auto& [key, r] : routes_) path_known |= key.second == c.req.path;
    }
  }
  if (!route.handler) {
    if (path_known) return respond(c, 405, "text/plain; charset=utf-8", "method not allowed\n");
    return respond(c, 404, "text/plain; charset=utf-8", "not found\n");
  }
  if (route.admin && !authorized(c, c.authorization)) {
    return respond(c, 403, "text/plain; charset=utf-8",
                   token_.empty() ? "forbidden: admin routes answer loopback peers only (or set an admin token)\n"
                                  : "forbidden: admin routes need Authorization: Bearer <admin token>\n");
  }
  HttpResponse r;
  try {
    r = route.handler(c.req);
  } catch (const std::exception& e) {
    r = HttpResponse{500, "text/plain; charset=utf-8", std::string("internal error: ") + e.what() + "\n"};
  }
  respond(c, r.status, r.content_type, r.body);
}

}  // namespace tern::metrics
