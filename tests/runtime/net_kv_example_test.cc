// A line-based key-value server as a new user would write it on tern (issue 18's motivating case: without a buffered
// reader it needed hand-written framing), over real sockets on both netpoll backends.
//
// Protocol, one command per line (LF or CRLF):  SET key value  ->  OK
//                                                GET key        ->  VALUE value  |  NOT_FOUND
//                                                anything else  ->  ERR <why>
// A line over the server's limit gets "ERR line too long" and the connection is closed. Clients pipeline: they write
// several commands, flush once, then read the answers. The server flushes only when it has answered everything it
// has received, so a pipelined batch goes back in one send.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <string>
#include <string_view>

#include "runtime/go.h"
#include "runtime/net/net.h"
#include "runtime/runtime.h"
#include "runtime/sync/mutex.h"
#include "runtime/sync/wait_group.h"
#include "tests/scale.h"
#include "tests/support/net.h"

namespace tern::net {
namespace {

using namespace std::chrono_literals;
using test::NetTest;

// The server's line limit: small, so the test can exceed it cheaply.
constexpr size_t kMaxLine = 256;

class KvStore {
 public:
  void set(std::string_view k, std::string_view v) {
    mu_.lock();
    map_[std::string(k)] = std::string(v);
    mu_.unlock();
  }
  bool get(std::string_view k, std::string& v) {
    mu_.lock();
    auto it = map_.find(std::string(k));
    bool found = it != map_.end();
    if (found) v = it->second;
    mu_.unlock();
    return found;
  }

 private:
  Mutex mu_;
  std::map<std::string, std::string> map_;
};

// One connection: read a line, answer it, flush when nothing more is buffered.
void serve(Stream conn, KvStore& store) {
  BufReader in(conn, kMaxLine, kMaxLine);
  BufWriter out(conn);
  for (;;) {
    BufResult line = in.read_line();
    if (line.ec == Errc::too_long) {
      (void)out.write("ERR line too long\n");
      (void)out.flush();
      return;
    }
    if (!line) return;  // the client is gone (eof, a reset, or the test's close)
    std::string_view cmd = line.data;
    std::string value;
    if (cmd.starts_with("SET ")) {
      std::string_view rest = cmd.substr(4);
      size_t sp = rest.find(' ');
      if (sp == std::string_view::npos || sp == 0) {
        (void)out.write("ERR usage: SET key value\n");
      } else {
        store.set(rest.substr(0, sp), rest.substr(sp + 1));
        (void)out.write("OK\n");
      }
    } else if (cmd.starts_with("GET ")) {
      if (store.get(cmd.substr(4), value)) {
        (void)out.write("VALUE ");
        (void)out.write(value);
        (void)out.write("\n");
      } else {
        (void)out.write("NOT_FOUND\n");
      }
    } else {
      (void)out.write("ERR unknown command\n");
    }
    // write() errors are sticky, so checking the flush is enough.
    if (in.buffered() == 0 && out.flush()) return;
  }
}

// Accepts until the listener is closed.
void run_server(Listener& l, KvStore& store, WaitGroup& conns) {
  for (;;) {
    auto s = l.accept();
    if (!s) {
      EXPECT_EQ(s.error(), Errc::closed) << s.error().message();
      return;
    }
    conns.add(1);
    go([s = std::move(*s), &store, &conns]() mutable {
      serve(std::move(s), store);
      conns.done();
    });
  }
}

TEST_P(NetTest, KeyValueServerOverBufferedIo) {
  Runtime rt(config());
  const int clients = static_cast<int>(test::scaled(50, 5));
  constexpr int kKeysEach = 20;
  std::atomic<int> answered{0};
  rt.run([&] {
    auto l = listen("127.0.0.1:0");
    ASSERT_TRUE(l);
    KvStore store;
    WaitGroup conns;
    auto server = spawn([&] { run_server(*l, store, conns); });
    WaitGroup done;
    for (int c = 0; c < clients; c++) {
      done.add(1);
      go([&, c] {
        auto s = dial(l->local_addr(), 10s);
        ASSERT_TRUE(s) << s.error().message();
        s->set_deadline(Clock::now() + 30s);
        BufReader in(*s);
        BufWriter out(*s);
        // Pipelined: every SET, then every GET (and one miss), each batch flushed once; CRLF and LF mixed.
        for (int i = 0; i < kKeysEach; i++) {
          std::string key = "k" + std::to_string(c) + "_" + std::to_string(i);
          ASSERT_TRUE(out.write("SET " + key + " value of " + key + (i % 2 ? "\r\n" : "\n")));
        }
        ASSERT_FALSE(out.flush());
        for (int i = 0; i < kKeysEach; i++) {
          BufResult r = in.read_line();
          ASSERT_TRUE(r) << r.ec.message();
          ASSERT_EQ(r.data, "OK");
        }
        for (int i = 0; i < kKeysEach; i++) {
          std::string key = "k" + std::to_string(c) + "_" + std::to_string(i);
          ASSERT_TRUE(out.write("GET " + key + "\n"));
        }
        ASSERT_TRUE(out.write("GET nobody\nSET novalue\nDEL k\n"));
        ASSERT_FALSE(out.flush());
        for (int i = 0; i < kKeysEach; i++) {
          std::string key = "k" + std::to_string(c) + "_" + std::to_string(i);
          BufResult r = in.read_line();
          ASSERT_TRUE(r) << r.ec.message();
          ASSERT_EQ(r.data, "VALUE value of " + key);
        }
        EXPECT_EQ(in.read_line().data, "NOT_FOUND");
        EXPECT_EQ(in.read_line().data, "ERR usage: SET key value");
        EXPECT_EQ(in.read_line().data, "ERR unknown command");
        answered.fetch_add(1);
        done.done();
      });
    }
    done.wait();
    l->close();  // ends the accept loop with Errc::closed
    server.join();
    conns.wait();  // each server fiber ended at its client's end of stream
  });
  EXPECT_EQ(answered.load(), clients);
}

TEST_P(NetTest, KeyValueServerRejectsALineOverItsLimit) {
  Runtime rt(config());
  rt.run([] {
    auto l = listen("127.0.0.1:0");
    ASSERT_TRUE(l);
    KvStore store;
    WaitGroup conns;
    auto server = spawn([&] { run_server(*l, store, conns); });
    auto s = dial(l->local_addr(), 10s);
    ASSERT_TRUE(s);
    BufReader in(*s);
    BufWriter out(*s);
    ASSERT_TRUE(out.write("SET small 1\nSET big " + std::string(kMaxLine, 'v') + "\n"));
    ASSERT_FALSE(out.flush());
    s->set_read_deadline(Clock::now() + 10s);
    EXPECT_EQ(in.read_line().data, "OK");
    EXPECT_EQ(in.read_line().data, "ERR line too long");
    // And the server hung up: with a FIN, or a reset if the rest of the long line was still unread when it closed.
    std::error_code end = in.read_line().ec;
    EXPECT_TRUE(end == Errc::eof || end == std::errc::connection_reset) << end.message();
    std::string v;
    EXPECT_TRUE(store.get("small", v));
    EXPECT_FALSE(store.get("big", v));
    l->close();
    server.join();
    conns.wait();
  });
}

INSTANTIATE_TEST_SUITE_P(Backends, NetTest, ::testing::Values("epoll", "uring", "uring_defer"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace tern::net
