// A ring's provided buffers (netpoll/uring_ring.h): the kernel is offered a bounded supply beyond what readers hold,
// the rest wait in a stack whose top goes back first, and buffers that stayed unused through a whole trim period give
// their pages back. With all 2048 buffers in the kernel's ring, the kernel wrote each in turn and all 8 MiB of a ring
// became resident under any steady traffic (io_uring 36 MB against epoll's 19 after a -c1000 run).
#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "netpoll/uring_ring.h"
#include "tests/support/require.h"

namespace tern::netpoll {
namespace {

class UringBuffers : public ::testing::Test {
 protected:
  virtual bool incremental() const { return false; }
  void SetUp() override {
    TERN_SKIP_UNLESS_URING();
    efd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    ASSERT_GE(efd_, 0);
    auto r = Ring::create(efd_, false, incremental());
    ASSERT_TRUE(r) << r.error().message();
    ring_ = std::move(*r);
    if (!ring_->has_buffers()) TERN_SKIP_OR_FAIL(test::io_uring_required(), "no provided-buffer rings (before 5.19)");
  }
  void TearDown() override {
    ring_.reset();
    if (efd_ >= 0) close(efd_);
  }
  Ring::BufferStats stats() {
    std::lock_guard lk(ring_->cq_mu);
    return ring_->buffer_stats();
  }

  int efd_ = -1;
  std::unique_ptr<Ring> ring_;
};

// The ring's thread may have at most kIowqMaxWorkers io-wq workers of each kind (reading the limits back: zeros ask
// without changing them).
TEST_F(UringBuffers, IoWorkersAreCapped) {
  unsigned vals[2] = {0, 0};
  ASSERT_EQ(io_uring_register_iowq_max_workers(ring_->uring(), vals), 0);
  EXPECT_EQ(vals[0], Ring::kIowqMaxWorkers);
  EXPECT_EQ(vals[1], Ring::kIowqMaxWorkers);
}

TEST_F(UringBuffers, TheKernelIsOfferedTheSupplyAndTheRestWait) {
  const Ring::BufferStats s = stats();
  EXPECT_EQ(s.offered, Ring::kInitialSupply);
  EXPECT_EQ(s.supply, Ring::kInitialSupply);
  EXPECT_EQ(s.spare, Ring::kBufCount - Ring::kInitialSupply);
  EXPECT_EQ(s.returned, s.spare);  // never used: nothing to give back
  std::lock_guard lk(ring_->cq_mu);
  // A receive that found none doubles the supply, up to every buffer.
  ring_->out_of_buffers();
  EXPECT_EQ(ring_->buffer_stats().offered, 2 * Ring::kInitialSupply);
  for (int i = 0; i < 8; i++) ring_->out_of_buffers();
  EXPECT_EQ(ring_->buffer_stats().supply, Ring::kBufCount);
  EXPECT_EQ(ring_->buffer_stats().offered, Ring::kBufCount);
  EXPECT_EQ(ring_->buffer_stats().spare, 0u);
  // A trim period with no receive short halves the supply; what the kernel already holds stays offered (it may write
  // into those at any moment) until it takes them.
  const int64_t t0 = Ring::kTrimPeriodNs * 10;
  ring_->trim_idle_buffers(t0);  // the period that just ended had receives short: no change
  EXPECT_EQ(ring_->buffer_stats().supply, Ring::kBufCount);
  ring_->trim_idle_buffers(t0 + Ring::kTrimPeriodNs);
  EXPECT_EQ(ring_->buffer_stats().supply, Ring::kBufCount / 2);
  EXPECT_EQ(ring_->buffer_stats().offered, Ring::kBufCount);
  for (int i = 2; i < 12; i++) ring_->trim_idle_buffers(t0 + i * Ring::kTrimPeriodNs);
  EXPECT_EQ(ring_->buffer_stats().supply, Ring::kInitialSupply);  // never below the initial supply
}

// One connection's multishot receive takes 600 buffers (2.4 MB in 4 KiB pieces) before any goes back: the supply is
// topped up from the stack as completions are reaped (and doubled if a burst outran it). Once all have been read and
// recycled, they sit in the stack; a trim period later with nothing used, their pages are handed back (the data
// reads as zeros), and the kernel is still offered its supply.
TEST_F(UringBuffers, BuffersABurstHeldAreToppedUpAndLaterGiveTheirPagesBack) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  constexpr size_t kBytes = 600 * Ring::kBufSize;
  io_uring* u = ring_->uring();
  auto arm = [&] {
    io_uring_sqe* sqe = io_uring_get_sqe(u);
    ASSERT_NE(sqe, nullptr);
    io_uring_prep_recv_multishot(sqe, sv[0], nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = Ring::kBufGroup;
    io_uring_sqe_set_data64(sqe, 1);
    ASSERT_EQ(io_uring_submit(u), 1);
  };
  arm();
  std::thread writer([&] {
    const std::string chunk(Ring::kBufSize, 'x');
    for (size_t sent = 0; sent < kBytes;) {
      ssize_t n = write(sv[1], chunk.data(), std::min(chunk.size(), kBytes - sent));
      ASSERT_GT(n, 0);
      sent += static_cast<size_t>(n);
    }
  });
  std::vector<unsigned> held;
  size_t got = 0;
  while (got < kBytes) {
    io_uring_cqe* cqe = nullptr;
    ASSERT_EQ(io_uring_wait_cqe(u, &cqe), 0);
    if (cqe->res == -ENOBUFS) {
      // The kernel received a burst larger than the supply before this thread reaped (the writer runs on another
      // CPU): as the poller does, the supply doubles and the receive is armed again.
      io_uring_cqe_seen(u, cqe);
      {
        std::lock_guard lk(ring_->cq_mu);
        ring_->out_of_buffers();
      }
      arm();
      continue;
    }
    ASSERT_GT(cqe->res, 0) << "the receive ended: " << strerror(-cqe->res);
    ASSERT_TRUE(cqe->flags & IORING_CQE_F_BUFFER);
    const bool more = cqe->flags & IORING_CQE_F_MORE;
    {
      std::lock_guard lk(ring_->cq_mu);
      ring_->taken();
    }
    held.push_back(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
    got += static_cast<size_t>(cqe->res);
    io_uring_cqe_seen(u, cqe);
    if (!more && got < kBytes) arm();
  }
  writer.join();
  ASSERT_GE(held.size(), 600u);  // at most a buffer's worth each
  {
    std::lock_guard lk(ring_->cq_mu);
    const Ring::BufferStats s = ring_->buffer_stats();
    EXPECT_GE(s.supply, Ring::kInitialSupply);
    EXPECT_EQ(s.offered, s.supply) << "the supply was topped up as buffers were taken";
    EXPECT_EQ(s.spare + s.offered + held.size(), Ring::kBufCount);
    for (unsigned bid : held) {
      EXPECT_EQ(ring_->buffer(bid)[0], 'x');
      ring_->recycle(bid);
    }
    EXPECT_EQ(ring_->buffer_stats().spare, Ring::kBufCount - s.supply);
    // The first look starts a period; what was unused through it goes back at the next.
    const int64_t t0 = Ring::kTrimPeriodNs * 10;
    EXPECT_EQ(ring_->trim_idle_buffers(t0), 0u);
    EXPECT_EQ(ring_->trim_idle_buffers(t0 + Ring::kTrimPeriodNs / 2), 0u) << "trimmed within a period";
    EXPECT_EQ(ring_->trim_idle_buffers(t0 + Ring::kTrimPeriodNs), held.size());
    EXPECT_EQ(ring_->buffer_stats().returned, ring_->buffer_stats().spare);
    EXPECT_EQ(ring_->trim_idle_buffers(t0 + 2 * Ring::kTrimPeriodNs), 0u) << "nothing left to give back";
  }
  for (unsigned bid : held) ASSERT_EQ(ring_->buffer(bid)[0], 0) << "buffer " << bid << " kept its page";
  // Cancel the receive (its final completion may carry ECANCELED) before the ring goes.
  io_uring_sqe* c = io_uring_get_sqe(u);
  io_uring_prep_cancel64(c, 1, 0);
  io_uring_submit(u);
  close(sv[0]);
  close(sv[1]);
}

// Incremental consumption (Linux 6.12+): small messages from many connections share one buffer, each piece at the
// offset where the previous one ended, and a buffer goes back to the stack only once the kernel has moved past it and
// every piece of it has been recycled.
class UringBuffersInc : public UringBuffers {
 protected:
  bool incremental() const override { return true; }
};

TEST_F(UringBuffersInc, SmallMessagesOfManyConnectionsShareABuffer) {
  if (!ring_->incremental()) GTEST_SKIP() << "this kernel consumes provided buffers whole (before 6.12)";
  EXPECT_EQ(stats().offered, Ring::kInitialSupply);
  constexpr int kConns = 20;
  constexpr size_t kMsg = 40;
  int sv[kConns][2];
  io_uring* u = ring_->uring();
  for (int i = 0; i < kConns; i++) {
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv[i]), 0);
    io_uring_sqe* sqe = io_uring_get_sqe(u);
    ASSERT_NE(sqe, nullptr);
    io_uring_prep_recv_multishot(sqe, sv[i][0], nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = Ring::kBufGroup;
    io_uring_sqe_set_data64(sqe, static_cast<uint64_t>(i) + 1);
  }
  ASSERT_EQ(io_uring_submit(u), kConns);
  struct Got {
    int conn;
    Ring::Piece piece;
    int len;
  };
  // Sends `rounds` messages on every connection, message m of connection c all bytes 'A' + (c + m) % 26; reaps their
  // pieces.
  auto exchange = [&](int rounds, int first_round, std::vector<Got>& got) {
    size_t want = 0;
    for (int m = first_round; m < first_round + rounds; m++) {
      for (int c = 0; c < kConns; c++) {
        const std::string msg(kMsg, static_cast<char>('A' + (c + m) % 26));
        ASSERT_EQ(write(sv[c][1], msg.data(), msg.size()), static_cast<ssize_t>(msg.size()));
        want += kMsg;
      }
    }
    size_t have = 0;
    while (have < want) {
      io_uring_cqe* cqe = nullptr;
      ASSERT_EQ(io_uring_wait_cqe(u, &cqe), 0);
      ASSERT_GT(cqe->res, 0) << strerror(-cqe->res);
      ASSERT_TRUE(cqe->flags & IORING_CQE_F_BUFFER);
      ASSERT_TRUE(cqe->flags & IORING_CQE_F_MORE);
      std::lock_guard lk(ring_->cq_mu);
      const Ring::Piece p = ring_->delivered(cqe->flags, cqe->res);
      ASSERT_TRUE(p.data);
      got.push_back({static_cast<int>(cqe->user_data) - 1, p, cqe->res});
      have += static_cast<size_t>(cqe->res);
      io_uring_cqe_seen(u, cqe);
    }
  };
  std::vector<Got> got;
  exchange(1, 0, got);
  ASSERT_EQ(got.size(), static_cast<size_t>(kConns));
  // One buffer, pieces back to back in completion order, each holding its own connection's bytes.
  uint32_t next = 0;
  for (const Got& g : got) {
    EXPECT_EQ(g.piece.bid, got[0].piece.bid);
    EXPECT_EQ(g.piece.start, next);
    next += static_cast<uint32_t>(g.len);
    const std::string data(ring_->buffer(g.piece.bid) + g.piece.start, static_cast<size_t>(g.len));
    EXPECT_EQ(data, std::string(kMsg, static_cast<char>('A' + g.conn % 26)));
  }
  {
    std::lock_guard lk(ring_->cq_mu);
    EXPECT_EQ(ring_->buffer_stats().filling, 1u);
    const unsigned spare = ring_->buffer_stats().spare;
    for (const Got& g : got) ring_->recycle(g.piece.bid);
    EXPECT_EQ(ring_->buffer_stats().spare, spare) << "the kernel is still filling it: it stays offered";
    EXPECT_EQ(ring_->buffer_stats().offered, Ring::kInitialSupply);
  }
  // Past the first buffer's end: the kernel moves on (the message that straddles the boundary comes in two pieces),
  // and the first buffer goes back once its last piece is recycled, not before.
  const unsigned first = got[0].piece.bid;
  got.clear();
  const int rounds = static_cast<int>(Ring::kBufSize / (kConns * kMsg)) + 2;
  exchange(rounds, 1, got);
  std::vector<std::string> stream(kConns);
  for (const Got& g : got) stream[g.conn] += std::string(ring_->buffer(g.piece.bid) + g.piece.start, g.len);
  for (int c = 0; c < kConns; c++) {
    std::string expect;
    for (int m = 1; m <= rounds; m++) expect += std::string(kMsg, static_cast<char>('A' + (c + m) % 26));
    EXPECT_EQ(stream[c], expect) << "connection " << c;
  }
  {
    std::lock_guard lk(ring_->cq_mu);
    const unsigned spare = ring_->buffer_stats().spare;
    size_t last_of_first = 0;
    for (size_t i = 0; i < got.size(); i++) {
      if (got[i].piece.bid == first) last_of_first = i;
    }
    ASSERT_LT(last_of_first + 1, got.size()) << "the messages did not reach a second buffer";
    for (size_t i = 0; i < got.size(); i++) {
      if (i != last_of_first) ring_->recycle(got[i].piece.bid);
    }
    EXPECT_EQ(ring_->buffer_stats().spare, spare) << "a piece of the first buffer is still unread";
    ring_->recycle(got[last_of_first].piece.bid);
    EXPECT_EQ(ring_->buffer_stats().spare, spare + 1) << "moved past and all read: back in the stack";
    EXPECT_EQ(ring_->buffer_stats().offered, Ring::kInitialSupply);
  }
  for (int i = 0; i < kConns; i++) {
    io_uring_sqe* c = io_uring_get_sqe(u);
    io_uring_prep_cancel64(c, static_cast<uint64_t>(i) + 1, 0);
  }
  io_uring_submit(u);
  for (auto& p : sv) {
    close(p[0]);
    close(p[1]);
  }
}

}  // namespace
}  // namespace tern::netpoll
