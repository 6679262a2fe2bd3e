// tools/top/main.cc: tern-top, a live terminal view of a tern program, read from its metrics endpoint.
//
//   tern-echo --metrics 127.0.0.1:9100 &
//   tern-top 127.0.0.1:9100              # refreshed every second; q quits
//   tern-top 127.0.0.1:9100 --once       # one frame on stdout (two scrapes --interval apart), for scripts
//
// It shows processors and their utilization, run queues, scheduling latency p50/p99, the controller's target, shadow
// and decisions, throttling, connections and the work rate (tern::count_work). The live view uses ncurses; a scrape
// that fails is shown in the view and retried on the next refresh. --once exits 1 when a scrape fails.
#include <curses.h>
#include <poll.h>
#include <unistd.h>

#include <fmt/core.h>
#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "runtime/net/address.h"
#include "tools/top/exposition.h"
#include "tools/top/frame.h"
#include "tools/top/http_get.h"

namespace {

constexpr int kExitUsage = 2;

struct Scraper {
  tern::net::Address addr;
  std::string path;
  int timeout_ms;
  tern::Result<tern::top::Scrape> get() const {
    auto body = tern::top::http_get(addr, path, timeout_ms);
    if (!body) return body.error();
    auto s = tern::top::parse_exposition(*body);
    if (!s) return s.error().wrap(path);
    return s;
  }
};

int once(const Scraper& sc, const std::string& source, double interval) {
  auto a = sc.get();
  if (!a) {
    fmt::print(stderr, "tern-top: {}\n", a.error().message());
    return 1;
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(interval));
  auto b = sc.get();
  if (!b) {
    fmt::print(stderr, "tern-top: {}\n", b.error().message());
    return 1;
  }
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (const auto& line : tern::top::render(tern::top::make_frame(&*a, *b, dt), source, 0)) fmt::print("{}\n", line);
  return 0;
}

int live(const Scraper& sc, const std::string& source, double interval) {
  if (!isatty(STDOUT_FILENO)) {
    fmt::print(stderr, "tern-top: stdout is not a terminal; use --once for a frame on stdout\n");
    return kExitUsage;
  }
  initscr();
  cbreak();
  noecho();
  curs_set(0);
  keypad(stdscr, TRUE);
  nodelay(stdscr, TRUE);
  std::optional<tern::top::Scrape> prev;
  auto prev_at = std::chrono::steady_clock::now();
  std::string error;
  for (;;) {
    auto cur = sc.get();
    const auto now = std::chrono::steady_clock::now();
    std::vector<std::string> lines;
    if (cur) {
      const double dt = std::chrono::duration<double>(now - prev_at).count();
      lines = tern::top::render(tern::top::make_frame(prev ? &*prev : nullptr, *cur, dt), source, COLS);
      prev = std::move(*cur);
      prev_at = now;
      error.clear();
    } else {
      error = cur.error().message();
    }
    erase();
    int row = 0;
    for (const auto& l : lines) {
      if (row >= LINES - 2) break;
      mvaddnstr(row++, 0, l.c_str(), COLS);
    }
    if (!error.empty()) {
      attron(A_BOLD);
      mvaddnstr(LINES - 2, 0, ("scrape failed (retrying): " + error).c_str(), COLS);
      attroff(A_BOLD);
    }
    mvaddnstr(LINES - 1, 0, "q: quit", COLS);
    refresh();
    // Wait for the next refresh, or a key.
    const auto until = now + std::chrono::duration<double>(interval);
    for (;;) {
      const int ch = getch();
      if (ch == 'q' || ch == 'Q') {
        endwin();
        return 0;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{STDIN_FILENO, POLLIN, 0};
      ::poll(&p, 1, static_cast<int>(std::min<long>(left.count(), 100)));
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tern-top: a live view of a tern program's processors, queues, latency and controller"};
  std::string target;
  bool one = false;
  double interval = 1.0;
  std::string path = "/metrics";
  int timeout_ms = 2000;
  app.add_option("target", target, "HOST:PORT of the program's metrics endpoint (tern-echo --metrics, TERN_METRICS)")
      ->required();
  app.add_flag("--once", one, "print one frame (two scrapes --interval apart) on stdout and exit");
  app.add_option("--interval", interval, "seconds between refreshes (default 1)")->check(CLI::Range(0.05, 3600.0));
  app.add_option("--path", path, "the metrics path (default /metrics)");
  app.add_option("--timeout-ms", timeout_ms, "per-scrape time limit (default 2000)")->check(CLI::Range(1, 600000));
  CLI11_PARSE(app, argc, argv);
  auto addr = tern::net::Address::parse(target);
  if (!addr) {
    fmt::print(stderr, "tern-top: {}\n", addr.error().wrap(target).message());
    return kExitUsage;
  }
  if (path.empty() || path[0] != '/' || path.find_first_of(" \r\n") != std::string::npos) {
    fmt::print(stderr, "tern-top: --path must start with '/' and hold no spaces or line breaks\n");
    return kExitUsage;
  }
  const Scraper sc{*addr, path, timeout_ms};
  return one ? once(sc, target, interval) : live(sc, target, interval);
}
