// runtime/limiter.h: tern::Limiter, admission control for a server past its knee.
//
// Past the knee, a closed system's throughput stays flat while its latency grows with every request admitted (the
// queue is all that grows). A limiter caps the requests in flight: the ones above the cap are refused at once (HTTP
// 503 with Retry-After), so the admitted ones keep the latency of a server at its knee.
//
//   tern::Limiter lim = tern::Limiter::adaptive();      // or Limiter::fixed(200), e.g. tern-capacity's N
//   if (auto t = lim.try_acquire()) {
//     serve(request);
//     t->done();                                        // measures the latency; a dropped token counts as done
//   } else {
//     refuse(request);                                  // 503, Retry-After
//   }
//
// The adaptive limit follows measured latency the way TCP Vegas follows round-trip times (Netflix's concurrency-limits
// "vegas" limiter): requests' latencies are gathered in windows (kWindowSamples, and at least min_window long). The
// unloaded latency is the least single latency seen since the last probe (a queue never makes the fastest request
// faster); the requests queued in the server are estimated as limit x (1 - unloaded / the window's mean). Up to
// alpha = 3 log10(limit) queued (at least 3), and only when the window reached the limit, the limit grows by
// log10(limit) + 1: an idle server does not grow a limit it never tested. Beyond beta = 6 log10(limit) queued (at
// least 6) it drops to limit x unloaded / mean (at most halving in one window) plus beta: past the knee, the knee plus
// a small queue, in one step. Every kProbeEvery windows one window runs at half the limit, and its least latency
// becomes the unloaded latency: a server that became slower for good is re-learned, not read as queued forever.
// Clamped to [min_limit, max_limit].
//
// Beside the in-flight limit, the adaptive limiter refuses by queueing (AdaptiveOptions::queue_target, CoDel): where
// the queue is not requests in flight but work waiting to run (a CPU-bound server: its requests wait as runnable
// fibers, one at a time in flight), the in-flight count cannot see it, and the time each request sat queued can.
//
// Cost: try_acquire is one compare-and-swap on the in-flight count (and, adaptive, a clock read and two loads); done()
// adds to the window under a spin lock (a few dozen instructions), and the window's end computes the new limit there.
// Thread- and fiber-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>

#include "runtime/sync/spin_lock.h"

namespace tern {

class Limiter {
 public:
  struct AdaptiveOptions {
    int initial_limit = 20;
    int min_limit = 4;
    int max_limit = 10'000;
    std::chrono::nanoseconds min_window{std::chrono::milliseconds(20)};
    // Queueing, CoDel as Facebook's servers apply it to their request queues ("Fail at Scale", 2015): a request that
    // sat queued longer than queue_interval is refused; once nearly every request (9 in 10) of a whole queue_interval
    // waited longer than the target (a queue that stands rather than passes), every request queued longer than the
    // target is refused, until an interval's mean queueing falls under half the target (Limiter::observe_queueing in
    // limiter.cc says why these rules and not CoDel's exact ones). Zero queue_target: off.
    std::chrono::nanoseconds queue_target{std::chrono::milliseconds(5)};
    std::chrono::nanoseconds queue_interval{std::chrono::milliseconds(100)};
    // The target applied follows the server: twice its unloaded latency (the adaptive limit's), within
    // [queue_target_floor, queue_target]. A server whose requests take 200 us then keeps a queue of about 1 ms
    // rather than 5, so admitted requests stay within a few times their unloaded latency; the floor keeps a fast
    // server's ordinary scheduling jitter from reading as a queue. queue_target_floor >= queue_target: a fixed target.
    std::chrono::nanoseconds queue_target_floor{std::chrono::milliseconds(1)};
  };
  static constexpr int kWindowSamples = 64;
  static constexpr int kProbeEvery = 200;  // windows between probes of the unloaded latency

  // A request admitted. done() (or destruction) returns its slot and records its latency; drop() returns the slot
  // and records nothing (a request that failed for its own reasons says nothing about the server's latency).
  class Token {
   public:
    Token(Token&& o) noexcept : l_(o.l_), start_ns_(o.start_ns_) { o.l_ = nullptr; }
    Token& operator=(Token&&) = delete;
    Token(const Token&) = delete;
    ~Token() { done(); }
    void done();
    void drop();
    // For tests and replays: finish with this latency rather than the time since acquire.
    void done_after(std::chrono::nanoseconds latency);

   private:
    friend class Limiter;
    Token(Limiter* l, int64_t start_ns) : l_(l), start_ns_(start_ns) {}
    Limiter* l_;
    int64_t start_ns_;
  };

  static Limiter fixed(int limit);
  static Limiter adaptive();
  static Limiter adaptive(AdaptiveOptions opts);
  Limiter(Limiter&& o) noexcept;
  Limiter& operator=(Limiter&&) = delete;

  // A slot, or nullopt when the requests in flight are at the limit or (adaptive) the request sat queued too long
  // (both counted as rejected). `queued`: how long the request waited in the server before this call, which its
  // latency then includes; a fiber that just read it passes tern::this_fiber::queued().
  std::optional<Token> try_acquire(std::chrono::nanoseconds queued = std::chrono::nanoseconds(0));

  int limit() const { return limit_.load(std::memory_order_relaxed); }
  int inflight() const { return inflight_.load(std::memory_order_relaxed); }
  uint64_t admitted() const { return admitted_.load(std::memory_order_relaxed); }
  uint64_t rejected() const { return rejected_.load(std::memory_order_relaxed); }
  uint64_t rejected_for_queueing() const { return rejected_queued_.load(std::memory_order_relaxed); }
  // Whether the queueing rule sees a standing queue now (requests queued beyond the target are refused).
  bool standing_queue() const { return q_standing_.load(std::memory_order_relaxed); }
  // The queueing target applied now (AdaptiveOptions::queue_target_floor), in seconds; 0 when the rule is off.
  double queue_target_s() const { return q_target_ns_.load(std::memory_order_relaxed) * 1e-9; }
  bool is_adaptive() const { return adaptive_; }
  // The adaptive limit's unloaded latency and its last window's mean latency, in seconds (0 before the first window).
  double long_latency_s() const;
  double short_latency_s() const;

 private:
  Limiter(int limit, bool adaptive, AdaptiveOptions opts);
  void finish(int64_t latency_ns, bool record);
  void observe_queueing(int64_t q, int64_t now, int64_t target);
  void end_window_locked(int64_t now_ns);

  const bool adaptive_;
  const AdaptiveOptions opts_;
  std::atomic<int> limit_;
  std::atomic<int> inflight_{0};
  std::atomic<uint64_t> admitted_{0}, rejected_{0}, rejected_queued_{0};
  // The queueing rule (observe_queueing): the target applied, the verdict, the current window's start (0: none yet),
  // its requests, their queueing summed and those above the target, and the "above" windows in a row.
  std::atomic<int64_t> q_target_ns_;
  std::atomic<bool> q_standing_{false};
  std::atomic<int64_t> q_start_ns_{0};
  std::atomic<int64_t> q_count_{0};
  std::atomic<int64_t> q_sum_ns_{0};
  std::atomic<int64_t> q_above_{0};
  std::atomic<int> q_streak_{0};

  // The window, under mu_.
  SpinLock mu_;
  double limit_f_;               // the unrounded limit
  int64_t window_start_ns_ = 0;  // 0: no window yet
  int64_t window_sum_ns_ = 0;
  int window_samples_ = 0;
  int window_peak_inflight_ = 0;  // the most in flight at a sample's end: did the window reach the limit?
  int64_t window_min_ns_ = INT64_MAX;
  uint64_t windows_ = 0;
  bool probing_ = false;  // this window runs at half the limit to measure the unloaded latency
  double long_ns_ = 0;    // the unloaded latency; 0 until the first window
  double short_ns_ = 0;
};

}  // namespace tern
