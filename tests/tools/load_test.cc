// tests/tools/load_test.cc: tern-load: its histogram's accuracy, the response reader fed a byte at a time and bad
// replies, and, end to end, that latency from the intended send time charges a server's stall to every request it
// delayed while latency from the actual send (a closed-loop tool's) hides it.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/process.h"
#include "tools/load/histogram.h"
#include "tools/load/response.h"

namespace tern::load {
namespace {

TEST(LatencyHistogram, BucketsHoldTheirValuesWithinOnePartIn64) {
  std::mt19937_64 rng(1);
  for (int i = 0; i < 200000; i++) {
    const int64_t v = static_cast<int64_t>(rng() >> (1 + rng() % 63));  // 0 .. 2^63 - 1
    const int b = LatencyHistogram::index(v);
    if (v >= (int64_t{1} << 46)) {  // beyond the range: the last bucket
      ASSERT_EQ(b, (LatencyHistogram::kExponents + 1) * LatencyHistogram::kSubBuckets - 1) << v;
      continue;
    }
    ASSERT_GE(LatencyHistogram::upper(b), v) << v;
    if (b > 0) {
      ASSERT_LT(LatencyHistogram::upper(b - 1), v) << v;
    }
    ASSERT_LE(static_cast<double>(LatencyHistogram::upper(b) - v), static_cast<double>(v) / 64 + 1) << v;
  }
}

TEST(LatencyHistogram, QuantilesMinMaxMeanAndMerge) {
  LatencyHistogram a, b;
  for (int64_t v = 1; v <= 100000; v++) (v % 2 ? a : b).record(v * 1000);  // 1 us .. 100 ms, split in two
  a.merge(b);
  EXPECT_EQ(a.count(), 100000u);
  EXPECT_EQ(a.min(), 1000);
  EXPECT_EQ(a.max(), 100'000'000);
  EXPECT_NEAR(a.mean(), 50'000'500, 1);
  for (double q : {0.5, 0.9, 0.99, 0.999}) {
    const double want = q * 1e8;
    EXPECT_NEAR(static_cast<double>(a.quantile(q)), want, want / 64 + 1000) << q;
  }
  EXPECT_EQ(a.quantile(1.0), a.max());
  LatencyHistogram empty;
  EXPECT_EQ(empty.quantile(0.99), 0);
  empty.record(-5);
  EXPECT_EQ(empty.max(), 0);
}

// Every prefix of a complete response is "need more"; the whole is done at its exact length.
void expect_frames(const std::string& resp, int status, size_t extra = 0) {
  ResponseReader r;
  const std::string buf = resp + std::string(extra, 'x');
  for (size_t n = 0; n < resp.size(); n++) {
    const Frame f = r.frame(buf.data(), n);
    ASSERT_EQ(f.state, Frame::kNeedMore) << "prefix " << n << " of " << resp;
  }
  const Frame f = r.frame(buf.data(), buf.size());
  ASSERT_EQ(f.state, Frame::kDone) << resp << f.error;
  EXPECT_EQ(f.length, resp.size());
  EXPECT_EQ(f.status, status);
}

TEST(ResponseReader, FindsTheEndOfEachKindOfResponse) {
  expect_frames("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, 7);
  expect_frames("HTTP/1.1 404 Not Found\r\ncontent-length:0\r\n\r\n", 404, 3);
  expect_frames("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=1\r\nabc\r\n0\r\n\r\n", 200, 4);
  expect_frames("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nTrailer: 1\r\n\r\n", 200);
  expect_frames("HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", 204, 2);
  ResponseReader r;
  const std::string close = "HTTP/1.0 200 OK\r\nConnection: close\r\n\r\nbody";
  const Frame f = r.frame(close.data(), close.size());
  EXPECT_EQ(f.state, Frame::kUntilClose);
  EXPECT_TRUE(f.close);
}

TEST(ResponseReader, RejectsWhatIsNotAResponseAndBoundsItsBuffers) {
  ResponseReader r(100);
  for (const std::string bad :
       {"SSH-2.0-OpenSSH\r\n\r\n", "HTTP/1.1 2x0 OK\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY"}) {
    const Frame f = r.frame(bad.data(), bad.size());
    EXPECT_EQ(f.state, Frame::kBad) << bad;
    EXPECT_FALSE(f.error.empty());
  }
  const std::string endless(ResponseReader::kMaxHeader + 1, 'a');
  EXPECT_EQ(r.frame(endless.data(), endless.size()).state, Frame::kBad);
}

// The server stops for 150 ms in the middle of a 500 requests/s run on 2 connections. About 75 requests were due in
// the stall: from their intended send times they waited up to 150 ms (5% of the run: the p99 shows it); from their
// actual sends only the 2 in flight did (0.1%: the p99 hides it).
TEST(TernLoad, LatencyFromTheIntendedSendShowsAStallThatClosedLoopHides) {
  const int port = test::free_port();
  test::Child server({TERN_ECHO_BIN, "--listen", "127.0.0.1:" + std::to_string(port), "--procs", "1"});
  ASSERT_TRUE(server.started());
  ASSERT_TRUE(test::wait_for_port(port)) << server.output();
  test::Child load({TERN_LOAD_BIN, "http://127.0.0.1:" + std::to_string(port) + "/health", "--rate", "500", "-c", "2",
                    "-d", "3s", "--procs", "1", "--json"});
  ASSERT_TRUE(load.started());
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  ASSERT_EQ(kill(server.pid(), SIGSTOP), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  ASSERT_EQ(kill(server.pid(), SIGCONT), 0);
  const int status = load.wait();
  const std::string out = load.output();
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << out;
  const auto j = nlohmann::json::parse(out.substr(out.find('{')));
  EXPECT_GE(j["ok"].get<uint64_t>(), 1400u) << out;
  EXPECT_TRUE(j["errors"].empty()) << out;
  const double corrected_p99 = j["latency"]["p99_s"], corrected_max = j["latency"]["max_s"];
  const double uncorrected_p99 = j["latency_uncorrected"]["p99_s"];
  EXPECT_GE(corrected_p99, 0.06) << out;
  EXPECT_GE(corrected_max, 0.12) << out;
  EXPECT_LT(uncorrected_p99, 0.04) << out;
}

// The same stall inside a warm-up is not reported, nor are the warm-up's requests: the measured second and a half at
// 500 requests/s holds about 750 answers, none of them near the stall's 150 ms. The stall comes 2 s into a 4 s
// warm-up: under the sanitizers tern-load takes a good part of a second to start sending (a stall 300 ms after its
// start missed the load under ThreadSanitizer).
TEST(TernLoad, AStallInTheWarmUpIsNotReported) {
  const int port = test::free_port();
  test::Child server({TERN_ECHO_BIN, "--listen", "127.0.0.1:" + std::to_string(port), "--procs", "1"});
  ASSERT_TRUE(server.started());
  ASSERT_TRUE(test::wait_for_port(port)) << server.output();
  test::Child load({TERN_LOAD_BIN, "http://127.0.0.1:" + std::to_string(port) + "/health", "--rate", "500", "-c", "2",
                    "--warmup", "4s", "-d", "1500ms", "--procs", "1", "--json"});
  ASSERT_TRUE(load.started());
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  ASSERT_EQ(kill(server.pid(), SIGSTOP), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  ASSERT_EQ(kill(server.pid(), SIGCONT), 0);
  const int status = load.wait();
  const std::string out = load.output();
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << out;
  const auto j = nlohmann::json::parse(out.substr(out.find('{')));
  EXPECT_GE(j["ok"].get<uint64_t>(), 700u) << out;
  EXPECT_LE(j["sent"].get<uint64_t>(), 760u) << out;
  EXPECT_NEAR(j["elapsed_s"].get<double>(), 1.5, 0.2) << out;
  EXPECT_DOUBLE_EQ(j["warmup_s"].get<double>(), 4.0) << out;
  EXPECT_LT(j["latency"]["max_s"].get<double>(), 0.1) << out;
  // ... and reported apart: the stall is there.
  EXPECT_GE(j["warmup_ok"].get<uint64_t>(), 1500u) << out;
  EXPECT_GE(j["warmup_latency"]["max_s"].get<double>(), 0.12) << out;
}

TEST(TernLoad, BadFlagsAndADeadServerSaySo) {
  {
    test::Child load({TERN_LOAD_BIN, "http://127.0.0.1:1/", "--warmup", "-1s", "-d", "1s"});
    const int status = load.wait();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << load.output();
    EXPECT_NE(load.output().find("--warmup"), std::string::npos) << load.output();
  }
  {
    test::Child load({TERN_LOAD_BIN, "ftp://127.0.0.1:1/"});
    const int status = load.wait();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << load.output();
    EXPECT_NE(load.output().find("http://"), std::string::npos) << load.output();
  }
  {
    test::Child load({TERN_LOAD_BIN, "http://127.0.0.1:1/", "--rate", "-5", "-d", "1s"});
    const int status = load.wait();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << load.output();
    EXPECT_NE(load.output().find("rate"), std::string::npos) << load.output();
  }
  {
    const int port = test::free_port();  // nothing listens: every request is a connect error, counted, not retried hot
    test::Child load({TERN_LOAD_BIN, "http://127.0.0.1:" + std::to_string(port) + "/", "--rate", "100", "-c", "2", "-d",
                      "1s", "--json"});
    const int status = load.wait();
    const std::string out = load.output();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << out;
    const auto j = nlohmann::json::parse(out.substr(out.find('{')));
    EXPECT_EQ(j["ok"].get<uint64_t>(), 0u);
    EXPECT_EQ(j["errors"]["connect"].get<uint64_t>(), j["sent"].get<uint64_t>()) << out;
    EXPECT_LE(j["sent"].get<uint64_t>(), 101u) << out;
  }
}

}  // namespace
}  // namespace tern::load
