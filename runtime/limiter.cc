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
    : adaptive_(adaptive), opts_(opts), limit_(limit), limit_f_(limit) {}

Limiter::Limiter(Limiter&& o) noexcept
    : adaptive_(o.adaptive_), opts_(o.opts_), limit_(o.limit_.load()), limit_f_(o.limit_f_) {}

Limiter Limiter::fixed(int limit) {
  return Limiter(std::max(1, limit), false, {});
}

Limiter Limiter::adaptive() {
  return adaptive(AdaptiveOptions{});
}

Limiter Limiter::adaptive(AdaptiveOptions opts) {
  opts.min_limit = std::max(1, opts.min_limit);
  opts.max_limit = std::max(opts.min_limit, opts.max_limit);
  return Limiter(std::clamp(opts.initial_limit, opts.min_limit, opts.max_limit), true, opts);
}

std::optional<Limiter::Token> Limiter::try_acquire(std::chrono::nanoseconds queued) {
  const int64_t now = adaptive_ ? mono_ns() : 0;
  const int64_t q = std::max<int64_t>(queued.count(), 0);
  if (adaptive_ && opts_.queue_target.count() > 0) {
    // CoDel: the least queueing over each interval says whether a queue stands.
    int64_t m = q_min_ns_.load(std::memory_order_relaxed);
    while (q < m && !q_min_ns_.compare_exchange_weak(m, q, std::memory_order_relaxed)) {
    }
    int64_t start = q_start_ns_.load(std::memory_order_relaxed);
    if (start == 0) {
      q_start_ns_.compare_exchange_strong(start, now, std::memory_order_relaxed);
    } else if (now - start >= opts_.queue_interval.count() &&
               q_start_ns_.compare_exchange_strong(start, now, std::memory_order_relaxed)) {
      q_standing_.store(q_min_ns_.exchange(INT64_MAX, std::memory_order_relaxed) > opts_.queue_target.count(),
                        std::memory_order_relaxed);
    }
    const int64_t allowed =
        q_standing_.load(std::memory_order_relaxed) ? opts_.queue_target.count() : opts_.queue_interval.count();
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
