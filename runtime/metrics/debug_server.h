// runtime/metrics/debug_server.h: the debug endpoint (TERN_METRICS=HOST:PORT, tern-echo --metrics): GET /metrics,
// GET /debug/sched, and the admin routes POST /debug/procs and /debug/policy, which a Runtime adds (runtime.cc).
//
//   auto srv = tern::metrics::DebugServer::start("127.0.0.1:9090", /*admin_token=*/"");
//   (*srv)->handle("GET", "/debug/hello", [](const tern::metrics::HttpRequest&) {
//     return tern::metrics::HttpResponse{200, "text/plain", "hello\n"};
//   });
//
// It is the tool for diagnosing a saturated server, so it must not queue behind the fibers it reports on: it runs on
// an OS thread of its own with plain non-blocking sockets and an epoll instance of its own, never the runtime's
// netpoller or fibers. Rejected: serving it from a fiber (with every P busy on CPU-bound fibers it would answer only
// when one of them yields).
//
// The request reader is small and strict, because an admin route changes the runtime: HTTP/1.0 or 1.1, one request
// per connection (Connection: close), the request line and headers within kMaxHeaderBytes, a body (ignored) within
// kMaxBodyBytes and only with Content-Length (Transfer-Encoding is refused), the whole request within
// kRequestTimeoutMs of the accept, at most kMaxConnections at once (more are closed at accept). A request that breaks
// a rule gets 400 and the connection is closed; nothing is called.
//
// Admin routes (handle(..., admin = true)): allowed from a loopback peer when no admin token is configured; with a
// token, only with `Authorization: Bearer TOKEN` from anyone, compared in constant time. A refused request gets 403
// and its handler is not called.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "base/result.h"

namespace tern::metrics {

inline constexpr size_t kMaxHeaderBytes = 8192;
inline constexpr size_t kMaxBodyBytes = 4096;
inline constexpr int kRequestTimeoutMs = 2000;
inline constexpr int kMaxConnections = 64;

struct HttpRequest {
  std::string method, path;
  std::map<std::string, std::string> query;  // decoded ?a=b&c=d
  bool loopback = false;                     // the peer's address is a loopback one
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

using Handler = std::function<HttpResponse(const HttpRequest&)>;

class DebugServer {
 public:
  // Binds HOST:PORT (an IPv4 address, [IPv6] or a name resolving to one; port 0 picks one: port()) and starts the
  // thread. admin_token: empty for loopback-only admin routes.
  static Result<std::unique_ptr<DebugServer>> start(const std::string& listen, std::string admin_token);
  ~DebugServer();  // stops and joins the thread; connections in progress are closed
  DebugServer(const DebugServer&) = delete;
  DebugServer& operator=(const DebugServer&) = delete;

  // Adds (or replaces) the route method + path. Handlers run on the server's thread, one at a time: they must not
  // block for long (every other request waits), and must not wait for a fiber.
  void handle(const std::string& method, const std::string& path, Handler h, bool admin = false);
  uint16_t port() const { return port_; }

  // Parses HOST:PORT for start() and Config::validate(): a missing port or an out-of-range one is an error.
  static Result<std::pair<std::string, uint16_t>> parse_listen(const std::string& listen);

 private:
  struct Route {
    Handler handler;
    bool admin = false;
  };
  struct Conn;
  DebugServer(int listen_fd, int epoll_fd, int wake_fd, uint16_t port, std::string token);
  void main();
  void on_readable(Conn& c);
  void respond(Conn& c, int status, const std::string& content_type, const std::string& body);
  void dispatch(Conn& c);
  bool authorized(const Conn& c, const std::string& authorization) const;

  int listen_fd_, epoll_fd_, wake_fd_;
  uint16_t port_;
  std::string token_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;  // routes_
  std::map<std::pair<std::string, std::string>, Route> routes_;
  std::thread thread_;
};

}  // namespace tern::metrics
