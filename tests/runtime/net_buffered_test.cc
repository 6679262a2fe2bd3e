// BufReader and BufWriter (runtime/net/buffered.h) over real loopback streams, on both netpoll backends: lines split
// across reads, LF and CRLF, the end of the stream inside a line, a line over the maximum size, peeks beyond the
// buffer's size, reads through the buffer, a read deadline in the middle of a line, and the writer's flush and sticky
// errors. The line-based key-value server built on them: net_kv_example_test.cc.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/go.h"
#include "runtime/net/net.h"
#include "runtime/runtime.h"
#include "tests/support/net.h"

namespace tern::net {
namespace {

using namespace std::chrono_literals;
using test::NetTest;

// Sends `text` in pieces of 1 to 5 bytes with a yield between, so that the reader's lines arrive split across reads.
void send_in_pieces(Stream& s, std::string_view text) {
  size_t step = 1;
  for (size_t at = 0; at < text.size(); at += step, step = step % 5 + 1) {
    size_t n = std::min(step, text.size() - at);
    ASSERT_TRUE(s.write_all(text.data() + at, n));
    yield();
  }
}

struct Conn {
  std::vector<Stream> clients, servers;
  Stream& c() { return clients[0]; }
  Stream& s() { return servers[0]; }
};

TEST_P(NetTest, ReadLineAcrossReadsWithLfAndCrlf) {
  Runtime rt(config());
  rt.run([] {
    Conn k;
    test::connect_loopback_pair(k.clients, k.servers);
    const std::string line3(100, 'x');  // longer than the reader's starting buffer: it grows
    auto sender = spawn([&] {
      send_in_pieces(k.c(), "SET alpha 1\r\nGET alpha\n" + line3 + "\r\n\n\r\nlast\n");
      k.c().shutdown(Shutdown::write);
    });
    BufReader in(k.s(), /*size=*/BufReader::kMinSize, /*max_size=*/256);
    std::vector<std::string> want = {"SET alpha 1", "GET alpha", line3, "", "", "last"};
    for (const std::string& w : want) {
      BufResult r = in.read_line();
      ASSERT_TRUE(r) << r.ec.message();
      EXPECT_EQ(r.data, w);
    }
    BufResult end = in.read_line();
    EXPECT_EQ(end.ec, Errc::eof);
    EXPECT_TRUE(end.data.empty());
    sender.join();
  });
}

TEST_P(NetTest, ReadUntilKeepsTheDelimiter) {
  Runtime rt(config());
  rt.run([] {
    Conn k;
    test::connect_loopback_pair(k.clients, k.servers);
    ASSERT_TRUE(k.c().write_all("a,bb,,ccc", 9));
    k.c().shutdown(Shutdown::write);
    BufReader in(k.s());
    EXPECT_EQ(in.read_until(',').data, "a,");
    EXPECT_EQ(in.read_until(',').data, "bb,");
    EXPECT_EQ(in.read_until(',').data, ",");
    BufResult r = in.read_until(',');
    EXPECT_EQ(r.ec, Errc::eof);
    EXPECT_EQ(r.data, "ccc");
  });
}

TEST_P(NetTest, EndOfStreamInsideALineGivesThePartialLineWithEof) {
  Runtime rt(config());
  rt.run([] {
    Conn k;
    test::connect_loopback_pair(k.clients, k.servers);
    ASSERT_TRUE(k.c().write_all("abc\nde", 6));
    k.c().shutdown(Shutdown::write);
    BufReader in(k.s());
    BufResult r = in.read_line();
    ASSERT_TRUE(r);
    EXPECT_EQ(r.data, "abc");
    r = in.read_line();
    EXPECT_EQ(r.ec, Errc::eof);
    EXPECT_EQ(r.data, "de");  // not a line: the caller decides whether an unterminated last line counts
    r = in.read_line();
    EXPECT_EQ(r.ec, Errc::eof);
    EXPECT_TRUE(r.data.empty());
  });
}

TEST_P(NetTest, LineLongerThanTheMaximumIsTooLongAndStaysBuffered) {
  Runtime rt(config());
  rt.run([] {
    Conn k;
    test::connect_loopback_pair(k.clients, k.servers);
    constexpr size_t kMax = 64;
    const std::string huge(1 << 20, 'h');  // a peer that never ends its line
    auto sender = spawn([&] { return k.c().write_all(huge.data(), huge.size(), 10s); });
    BufReader in(k.s(), BufReader::kMinSize, kMax);
    BufResult r = in.read_line();
    EXPECT_EQ(r.ec, Errc::too_long);
    EXPECT_EQ(r.ec.message(), "longer than the buffered reader's maximum size");
    EXPECT_EQ(in.buffered(), kMax);  // nothing beyond the maximum was read
    EXPECT_EQ(in.read_line().ec, Errc::too_long);
    // The bytes are still there for read(); draining them lets reading go on.
    char buf[kMax];
    IoResult got = in.read(buf, sizeof buf);
    ASSERT_TRUE(got);
    EXPECT_EQ(got.n, kMax);
    EXPECT_EQ(std::string(buf, got.n), std::string(kMax, 'h'));
    k.s().close();  // how a server answers such a peer; the sender's write ends, or all of it fitted in the buffers
    (void)sender.join();
  });
}

TEST_P(NetTest, PeekBeyondTheBufferGrowsItUpToTheMaximum) {
  Runtime rt(config());
  rt.run([] {
    Conn k;
    test::connect_loopback_pair(k.clients, k.servers);
    const std::string text = "0123456789abcdefghijklmnopqrstuvwxyz0123\n";  // 41 bytes
    auto sender = spawn([&] {
      send_in_pieces(k.c(), text);
      k.c().shutdown(Shutdown::write);
    });
    BufReader in(k.s(), BufReader::kMinSize, 64);
    BufResult p = in.peek(40);  // more than the 16-byte buffer holds: waits for 40 bytes
    ASSERT_TRUE(p) << p.ec.message();
    EXPECT_EQ(p.data, text.substr(0, 40));
    EXPECT_EQ(in.peek(65).ec, Errc::too_long);
    EXPECT_EQ(in.peek(3).data, "012");  // peeks consume nothing
    BufResult line = in.read_line();
    ASSERT_TRUE(line);
    EXPECT_EQ(line.data, text.substr(0, 40));
    BufResult end = in.peek(1);
    EXPECT_EQ(end.ec, Errc::eof);
    EXPECT_TRUE(end.data.empty());
    sender.join();
  });
}

TEST_P(NetTest, PeekAtTheEndGivesWhatThereIs) {
  Runtime rt(config());
  rt.run([] {
    Conn k;
    test::connect_loopback_pair(k.clients, k.servers);
    ASSERT_TRUE(k.c().write_all("abc", 3));
    k.c().shutdown(Shutdown::write);
    BufReader in(k.s());
    BufResult p = in.peek(10);
    EXPECT_EQ(p.ec, Errc::eof);
    EXPECT_EQ(p.data, "abc");
  });
}

TEST_P(NetTest, BufferedReadTakesTheBufferFirstThenTheStream) {
  Runtime rt(config());
  rt.run([] {
    Conn k;
    test::connect_loopback_pair(k.clients, k.servers);
    std::string big(64 << 10, 'b');
    auto sender = spawn([&] {
      EXPECT_TRUE(k.c().write_all("HEAD 5\r\nabcde", 13));
      sleep_for(5ms);  // a separate arrival: the large read below finds the buffer empty
      EXPECT_TRUE(k.c().write_all(big.data(), big.size()));
      k.c().shutdown(Shutdown::write);
    });
    BufReader in(k.s());
    BufResult h = in.read_line();
    ASSERT_TRUE(h);
    EXPECT_EQ(h.data, "HEAD 5");
    char body[5];
    IoResult r = in.read(body, sizeof body);  // what came with the line, from the buffer
    ASSERT_TRUE(r);
    EXPECT_EQ(std::string(body, r.n), "abcde");
    EXPECT_EQ(in.buffered(), 0u);
    std::string got(big.size(), 0);
    size_t have = 0;
    while (have < got.size()) {
      IoResult n = in.read(got.data() + have, got.size() - have);
      ASSERT_TRUE(n) << n.ec.message();
      ASSERT_GT(n.n, 0u);
      have += n.n;
    }
    EXPECT_EQ(got, big);
    char one;
    IoResult end = in.read(&one, 1);
    EXPECT_TRUE(end);
    EXPECT_EQ(end.n, 0u);  // end of stream, as Stream::read says it
    sender.join();
  });
}

TEST_P(NetTest, ReadLineTimeoutConsumesNothing) {
  Runtime rt(config());
  rt.run([] {
    Conn k;
    test::connect_loopback_pair(k.clients, k.servers);
    ASSERT_TRUE(k.c().write_all("half a ", 7));
    BufReader in(k.s());
    k.s().set_read_deadline(Clock::now() + 30ms);
    EXPECT_EQ(in.read_line().ec, std::errc::timed_out);
    EXPECT_EQ(in.buffered(), 7u);
    k.s().set_read_deadline(Clock::time_point::max());
    ASSERT_TRUE(k.c().write_all("line\n", 5));
    BufResult r = in.read_line();
    ASSERT_TRUE(r);
    EXPECT_EQ(r.data, "half a line");
  });
}

TEST_P(NetTest, WriterSendsNothingUntilFlushAndKeepsOrder) {
  Runtime rt(config());
  rt.run([] {
    Conn k;
    test::connect_loopback_pair(k.clients, k.servers);
    BufWriter out(k.c(), 64);
    std::string want;
    for (int i = 0; i < 5; i++) {
      std::string piece = "piece " + std::to_string(i) + "\n";
      IoResult w = out.write(piece);
      ASSERT_TRUE(w);
      EXPECT_EQ(w.n, piece.size());
      want += piece;
    }
    EXPECT_EQ(out.buffered(), want.size());
    char b[256];
    EXPECT_EQ(k.s().read(b, sizeof b, 30ms).ec, std::errc::timed_out);  // all of it still buffered
    // A write that does not fit goes out behind what is buffered, in one gathered send.
    std::string big(1000, 'B');
    IoResult w = out.write(big);
    ASSERT_TRUE(w);
    EXPECT_EQ(w.n, big.size());
    EXPECT_EQ(out.buffered(), 0u);
    ASSERT_TRUE(out.write("tail\n"));
    EXPECT_FALSE(out.flush());
    EXPECT_FALSE(out.flush());  // nothing left: a no-op
    want += big + "tail\n";
    std::string got(want.size(), 0);
    ASSERT_TRUE(k.s().read_full(got.data(), got.size(), 10s));
    EXPECT_EQ(got, want);
  });
}

TEST_P(NetTest, WriterErrorsAreSticky) {
  Runtime rt(config());
  rt.run([] {
    Conn k;
    test::connect_loopback_pair(k.clients, k.servers);
    BufWriter out(k.c());
    ASSERT_TRUE(out.write("lost\n"));
    k.c().close();
    EXPECT_EQ(out.flush(), Errc::closed);
    EXPECT_EQ(out.error(), Errc::closed);
    EXPECT_EQ(out.write("x").ec, Errc::closed);
    EXPECT_EQ(out.write(std::string(10000, 'y')).ec, Errc::closed);
    EXPECT_EQ(out.flush(), Errc::closed);
  });
}

TEST_P(NetTest, WriterReportsAResetPeer) {
  Runtime rt(config());
  rt.run([] {
    Conn k;
    test::connect_loopback_pair(k.clients, k.servers);
    linger lg{1, 0};  // close with a reset
    ASSERT_EQ(setsockopt(k.s().fd(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    k.s().close();
    BufWriter out(k.c(), 64);
    std::error_code ec;
    // The first sends may still be taken by the kernel before the reset arrives; a flush soon fails.
    for (int i = 0; i < 1000 && !ec; i++) {
      if (IoResult w = out.write("0123456789abcdef0123456789abcdef"); !w) ec = w.ec;
      if (!ec) ec = out.flush();
      if (!ec) sleep_for(1ms);
    }
    EXPECT_TRUE(ec == std::errc::connection_reset || ec == std::errc::broken_pipe) << ec.message();
    EXPECT_EQ(out.flush(), ec);
  });
}

INSTANTIATE_TEST_SUITE_P(Backends, NetTest, ::testing::Values("epoll", "uring", "uring_defer"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace tern::net
