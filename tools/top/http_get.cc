// tools/top/http_get.cc: a blocking HTTP GET with one deadline (see http_get.h).
#include "tools/top/http_get.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <strings.h>
#include <cerrno>
#include <chrono>
#include <cstring>

namespace tern::top {
namespace {

using Clock = std::chrono::steady_clock;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

Error timeout(std::string_view what) {
  return {std::make_error_code(std::errc::timed_out), std::string(what) + ": timed out"};
}

// Waits for `events` on fd until the deadline: true when ready.
Result<void> wait(int fd, short events, Clock::time_point deadline, std::string_view what) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return timeout(what);
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, static_cast<int>(left));
    if (n > 0) return {};
    if (n < 0 && errno != EINTR) return errno_error(errno, std::string(what));
  }
}

}  // namespace

Result<std::string> http_get(const net::Address& addr, std::string_view path, int timeout_ms, size_t max_body) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  const std::string where = addr.to_string();
  Fd fd(::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return errno_error(errno, "socket");
  if (::connect(fd.get(), addr.sockaddr_ptr(), addr.size()) != 0) {
    if (errno != EINPROGRESS) return errno_error(errno, "connect " + where);
    if (auto r = wait(fd.get(), POLLOUT, deadline, "connect " + where); !r) return r.error();
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return errno_error(err, "connect " + where);
  }
  const std::string req = "GET " + std::string(path) + " HTTP/1.1\r\nHost: " + where +
                          "\r\nConnection: close\r\nAccept: text/plain\r\nUser-Agent: tern-top\r\n\r\n";
  for (size_t sent = 0; sent < req.size();) {
    const ssize_t n = ::send(fd.get(), req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (auto r = wait(fd.get(), POLLOUT, deadline, "send to " + where); !r) return r.error();
    } else {
      return errno_error(errno, "send to " + where);
    }
  }

  std::string resp;
  size_t header_end = std::string::npos, body_len = std::string::npos;
  const size_t max_total = max_body + (64 << 10);
  for (;;) {
    char buf[16384];
    const ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (auto r = wait(fd.get(), POLLIN, deadline, "read from " + where); !r) return r.error();
      continue;
    }
    if (n < 0) return errno_error(errno, "read from " + where);
    if (n == 0) break;
    resp.append(buf, static_cast<size_t>(n));
    if (resp.size() > max_total)
      return make_error("response from " + where + " is over " + std::to_string(max_body) + " bytes");
    if (header_end == std::string::npos) {
      header_end = resp.find("\r\n\r\n");
      if (header_end == std::string::npos) continue;
      // Headers: the status and the length.
      const std::string_view head(resp.data(), header_end);
      if (head.substr(0, 9) != "HTTP/1.1 " && head.substr(0, 9) != "HTTP/1.0 ")
        return make_error("response from " + where + " is not HTTP/1.x");
      const std::string_view status = head.substr(9, 3);
      if (status != "200") {
        const size_t eol = head.find("\r\n");
        return make_error(where + std::string(path) + ": " + std::string(head.substr(9, eol - 9)));
      }
      size_t at = head.find("\r\n");
      while (at != std::string_view::npos && at < head.size()) {
        const size_t next = head.find("\r\n", at + 2);
        const std::string_view h = head.substr(at + 2, (next == std::string_view::npos ? head.size() : next) - at - 2);
        if (h.size() > 15 && strncasecmp(h.data(), "content-length:", 15) == 0) {
          body_len = std::strtoull(std::string(h.substr(15)).c_str(), nullptr, 10);
          if (body_len > max_body)
            return make_error("response from " + where + " is over " + std::to_string(max_body) + " bytes");
        } else if (h.size() > 18 && strncasecmp(h.data(), "transfer-encoding:", 18) == 0) {
          return make_error("response from " + where + " is chunked, which tern-top does not read");
        }
        at = next;
      }
    }
    if (body_len != std::string::npos && resp.size() - header_end - 4 >= body_len) break;
  }
  if (header_end == std::string::npos) return make_error("response from " + where + " ended inside its headers");
  std::string body = resp.substr(header_end + 4);
  if (body_len != std::string::npos) {
    if (body.size() < body_len) return make_error("response from " + where + " ended before its Content-Length");
    body.resize(body_len);
  }
  return body;
}

}  // namespace tern::top
