// runtime/limiter.cc: see limiter.h.
#include "runtime/limiter.h"

#include <time.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <utility>

namespace tern {

namespace {

int64_t mono_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace

Limiter::Limiter(int limit, bool adaptive, AdaptiveOptions opts)
    : adaptive_(adaptive),
      opts_(opts),
      limit_(limit),
      q_target_ns_(adaptive ? std::max<int64_t>(opts.queue_target.count(), 0) : 0),
      limit_f_(limit) {}

Limiter::Limiter(Limiter&& o) noexcept
    : adaptive_(o.adaptive_),
      opts_(o.opts_),
      limit_(o.limit_.load()),
      q_target_ns_(o.q_target_ns_.load()),
      limit_f_(o.limit_f_) {}

Limiter Limiter::fixed(int limit) {
  return Limiter(std::max(1, limit), false, {});
}

Limiter Limiter::adaptive() {
  return adaptive(AdaptiveOptions{});
}

Limiter Limiter::adaptive(AdaptiveOptions opts) {
  opts.min_limit = std::max(1, opts.min_limit);
  opts.max_limit = std::max(opts.min_limit, opts.max_limit);
  opts.queue_target = std::max(opts.queue_target, std::chrono::nanoseconds(0));
  opts.queue_target_floor = std::clamp(opts.queue_target_floor, std::chrono::nanoseconds(0), opts.queue_target);
  return Limiter(std::clamp(opts.initial_limit, opts.min_limit, opts.max_limit), true, opts);
}

std::optional<Limiter::Token> Limiter::try_acquire(std::chrono::nanoseconds queued) {
  const int64_t now = adaptive_ ? mono_ns() : 0;
  const int64_t q = std::max<int64_t>(queued.count(), 0);
  const int64_t target = q_target_ns_.load(std::memory_order_relaxed);
  if (target > 0) {
    // q == 0 is a wait the scheduler did not time (this_fiber::queued): no evidence either way.
    if (q > 0) observe_queueing(q, now, target);
    const int64_t allowed = q_standing_.load(std::memory_order_relaxed) ? target : opts_.queue_interval.count();
    if (q > allowed) {
      rejected_.fetch_add(1, std::memory_order_relaxed);
      rejected_queued_.fetch_add(1, std::memory_order_relaxed);
      return std::nullopt;
    }
  }
  int cur = inflight_.load(std::memory_order_relaxed);
  do {
    if (cur >= limit_.load(std::memory_order_relaxed)) {
      rejected_.fetch_add(1, std::memory_order_relaxed);
      return std::nullopt;
    }
  } while (!inflight_.compare_exchange_weak(cur, cur + 1, std::memory_order_relaxed));
  admitted_.fetch_add(1, std::memory_order_relaxed);
  return Token(this, adaptive_ ? now - q : 0);  // its latency includes the time it sat queued
}

// The queueing rule's verdict, from windows of the requests' queueing. Without a standing queue the windows are a
// quarter interval long, and a window is "above" when at least 9 in 10 of its requests waited longer than the target;
// four in a row (a whole interval) declare the queue standing: a burst passes within an interval, a standing queue
// does not. CoDel itself (and Facebook's servers) ask every request of the interval to have waited that long, but a
// fiber's queueing is not strictly first in, first out (a newly accepted connection's fiber runs next, a P's own
// queue comes before the global one), and the few that skip ahead each restarted the interval: at twice the peak the
// verdict came after 270 ms rather than 100. With a standing queue the windows are an interval long, and one whose
// mean queueing fell under half the target ends it. Not the first request under the target: shedding at the target
// holds the queue's head near it, and right after a run of refusals a request or two find a short queue, so nearly
// every interval of a sustained overload has some; ended by them, every other interval admitted everything queued up
// to queue_interval (bench/overload.sh at twice the peak: admitted p50 39 ms against a 5 ms target).
void Limiter::observe_queueing(int64_t q, int64_t now, int64_t target) {
  const bool standing = q_standing_.load(std::memory_order_relaxed);
  q_sum_ns_.fetch_add(q, std::memory_order_relaxed);
  const int64_t n = q_count_.fetch_add(1, std::memory_order_relaxed) + 1;
  if (q > target) q_above_.fetch_add(1, std::memory_order_relaxed);
  const int64_t window = standing ? opts_.queue_interval.count() : opts_.queue_interval.count() / 4;
  int64_t start = q_start_ns_.load(std::memory_order_relaxed);
  if (start == 0) {
    q_start_ns_.compare_exchange_strong(start, now, std::memory_order_relaxed);
    return;
  }
  if (now - start < window || !q_start_ns_.compare_exchange_strong(start, now, std::memory_order_relaxed)) return;
  // This request ends the window (others may still add to it meanwhile: the counts are close, not exact).
  const int64_t sum = q_sum_ns_.exchange(0, std::memory_order_relaxed);
  const int64_t above = q_above_.exchange(0, std::memory_order_relaxed);
  const int64_t count = std::max<int64_t>(q_count_.exchange(0, std::memory_order_relaxed), n);
  if (standing) {
    if (2 * (sum / count) < target) {
      q_streak_.store(0, std::memory_order_relaxed);
      q_standing_.store(false, std::memory_order_relaxed);
    }
  } else if (10 * above >= 9 * count) {
    if (q_streak_.fetch_add(1, std::memory_order_relaxed) + 1 >= 4) q_standing_.store(true, std::memory_order_relaxed);
  } else {
    q_streak_.store(0, std::memory_order_relaxed);
  }
}

void Limiter::Token::done() {
  if (l_ == nullptr) return;
  Limiter* l = std::exchange(l_, nullptr);
  l->finish(l->adaptive_ ? mono_ns() - start_ns_ : 0, true);
}

void Limiter::Token::drop() {
  if (l_ == nullptr) return;
  std::exchange(l_, nullptr)->finish(0, false);
}

void Limiter::Token::done_after(std::chrono::nanoseconds latency) {
  if (l_ == nullptr) return;
  std::exchange(l_, nullptr)->finish(latency.count(), true);
}

void Limiter::finish(int64_t latency_ns, bool record) {
  const int was = inflight_.fetch_sub(1, std::memory_order_relaxed);
  if (!adaptive_ || !record) return;
  std::lock_guard lk(mu_);
  const int64_t now = mono_ns();
  if (window_start_ns_ == 0) window_start_ns_ = now;
  window_sum_ns_ += std::max<int64_t>(latency_ns, 0);
  window_min_ns_ = std::min(window_min_ns_, std::max<int64_t>(latency_ns, 0));
  window_samples_++;
  window_peak_inflight_ = std::max(window_peak_inflight_, was);
  if (window_samples_ >= kWindowSamples && now - window_start_ns_ >= opts_.min_window.count()) end_window_locked(now);
}

void Limiter::end_window_locked(int64_t now_ns) {
  short_ns_ = static_cast<double>(window_sum_ns_) / window_samples_;
  const bool probed = probing_;
  if (probed || long_ns_ == 0) {
    // A probe window ran at half the limit: its least latency is the unloaded latency now, whatever it was before.
    long_ns_ = static_cast<double>(std::max<int64_t>(window_min_ns_, 1));
    probing_ = false;
  } else {
    long_ns_ = std::min(long_ns_, static_cast<double>(std::max<int64_t>(window_min_ns_, 1)));
  }
  if (opts_.queue_target.count() > 0) {
    const double t = std::clamp(2 * long_ns_, static_cast<double>(opts_.queue_target_floor.count()),
                                static_cast<double>(opts_.queue_target.count()));
    q_target_ns_.store(static_cast<int64_t>(t), std::memory_order_relaxed);
  }
  if (!probed) {
    const double log_limit = std::log10(std::max(limit_f_, 1.0));
    const double alpha = std::max(3.0, 3 * log_limit), beta = std::max(6.0, 6 * log_limit);
    // Requests queued in the server, as TCP Vegas estimates packets queued in the network: limit x (1 - unloaded/now).
    const double ratio = long_ns_ / std::max(short_ns_, 1.0);
    const double queued = limit_f_ * (1 - ratio);
    const bool reached = window_peak_inflight_ >= static_cast<int>(limit_f_) - 1;
    if (queued > beta) {
      // Too much queueing: the concurrency the server runs without queueing (limit x unloaded/now, at most halving in
      // one window), plus the queue allowed.
      limit_f_ = std::min(limit_f_ * std::max(0.5, ratio) + beta, limit_f_ - 1);
    } else if (queued <= alpha && reached) {
      limit_f_ += log_limit + 1;  // latency holds at a limit the window reached: try more
    }
    limit_f_ = std::clamp(limit_f_, double(opts_.min_limit), double(opts_.max_limit));
  }
  int applied = static_cast<int>(limit_f_);
  if (++windows_ % kProbeEvery == 0) {
    // Re-learn the unloaded latency: one window at half the limit, where a server at its knee has no queue. Without it
    // the reference only ever falls, and a server that became slower for good would look queued forever.
    probing_ = true;
    applied = std::max(opts_.min_limit, applied / 2);
  }
  limit_.store(applied, std::memory_order_relaxed);
  window_start_ns_ = now_ns;
  window_sum_ns_ = 0;
  window_min_ns_ = INT64_MAX;
  window_samples_ = 0;
  window_peak_inflight_ = 0;
}

double Limiter::long_latency_s() const {
  std::lock_guard lk(const_cast<SpinLock&>(mu_));
  return long_ns_ * 1e-9;
}

double Limiter::short_latency_s() const {
  std::lock_guard lk(const_cast<SpinLock&>(mu_));
  return short_ns_ * 1e-9;
}

}  // namespace tern
