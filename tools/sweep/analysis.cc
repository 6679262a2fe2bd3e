// tools/sweep/analysis.cc: peak, knees, the USL fit and the recommendation (see analysis.h).
#include "tools/sweep/analysis.h"

#include <fmt/core.h>

#include <algorithm>
#include <array>
#include <limits>
#include <set>

namespace tern::sweep {

uint64_t Step::error_count() const {
  uint64_t n = 0;
  for (const auto& [k, v] : errors) n += v;
  return n;
}

double Step::error_ratio() const {
  const double e = static_cast<double>(error_count());
  const double all = e + static_cast<double>(ok);
  return all > 0 ? e / all : 0;
}

namespace {

using Params = std::array<double, 3>;  // λ, σ, κ

double model(const Params& p, double n) {
  return p[0] * n / (1 + p[1] * (n - 1) + p[2] * n * (n - 1));
}

double sse(const Params& p, const std::vector<std::pair<double, double>>& pts) {
  double s = 0;
  for (const auto& [n, x] : pts) {
    const double r = x - model(p, n);
    s += r * r;
  }
  return s;
}

// For fixed σ and κ the model is linear in λ: the least-squares λ in closed form.
double best_lambda(double sigma, double kappa, const std::vector<std::pair<double, double>>& pts) {
  double num = 0, den = 0;
  for (const auto& [n, x] : pts) {
    const double g = n / (1 + sigma * (n - 1) + kappa * n * (n - 1));
    num += x * g;
    den += g * g;
  }
  return den > 0 ? std::max(num / den, 0.0) : 0;
}

// Solves the 3x3 system a·x = b by Gaussian elimination with partial pivoting; false when singular.
bool solve3(std::array<std::array<double, 3>, 3> a, std::array<double, 3> b, std::array<double, 3>* x) {
  for (int c = 0; c < 3; c++) {
    int piv = c;
    for (int r = c + 1; r < 3; r++)
      if (std::fabs(a[r][c]) > std::fabs(a[piv][c])) piv = r;
    if (!(std::fabs(a[piv][c]) > 0)) return false;
    std::swap(a[c], a[piv]);
    std::swap(b[c], b[piv]);
    for (int r = c + 1; r < 3; r++) {
      const double f = a[r][c] / a[c][c];
      for (int k = c; k < 3; k++) a[r][k] -= f * a[c][k];
      b[r] -= f * b[c];
    }
  }
  for (int c = 2; c >= 0; c--) {
    double s = b[c];
    for (int k = c + 1; k < 3; k++) s -= a[c][k] * (*x)[k];
    (*x)[c] = s / a[c][c];
  }
  return std::isfinite((*x)[0]) && std::isfinite((*x)[1]) && std::isfinite((*x)[2]);
}

// Levenberg–Marquardt with Marquardt's scaling (diag(JᵀJ), so that λ in the thousands and κ in the millionths are
// stepped alike), σ and κ projected onto >= 0 after each step.
Params levenberg_marquardt(Params p, const std::vector<std::pair<double, double>>& pts) {
  double mu = 1e-3;
  double cur = sse(p, pts);
  for (int iter = 0; iter < 500 && cur > 0; iter++) {
    std::array<std::array<double, 3>, 3> jtj{};
    std::array<double, 3> jtr{};
    for (const auto& [n, x] : pts) {
      const double d = 1 + p[1] * (n - 1) + p[2] * n * (n - 1);
      const double f = p[0] * n / d;
      const std::array<double, 3> j = {n / d, -p[0] * n * (n - 1) / (d * d), -p[0] * n * n * (n - 1) / (d * d)};
      const double r = x - f;
      for (int a = 0; a < 3; a++) {
        jtr[a] += j[a] * r;
        for (int b = 0; b < 3; b++) jtj[a][b] += j[a] * j[b];
      }
    }
    bool improved = false;
    for (int tries = 0; tries < 30 && !improved; tries++) {
      auto m = jtj;
      for (int a = 0; a < 3; a++) m[a][a] += mu * (jtj[a][a] > 0 ? jtj[a][a] : 1e-12);
      std::array<double, 3> delta{};
      if (!solve3(m, jtr, &delta)) {
        mu *= 10;
        continue;
      }
      Params q = {std::max(p[0] + delta[0], 1e-300), std::max(p[1] + delta[1], 0.0), std::max(p[2] + delta[2], 0.0)};
      const double next = sse(q, pts);
      if (std::isfinite(next) && next < cur) {
        const double gain = cur - next;
        p = q;
        improved = true;
        mu = std::max(mu / 3, 1e-12);
        if (gain <= cur * 1e-14) return p;
        cur = next;
      } else {
        mu *= 4;
      }
    }
    if (!improved) break;
  }
  return p;
}

}  // namespace

Result<UslFit> fit_usl(const std::vector<std::pair<double, double>>& points) {
  std::vector<std::pair<double, double>> pts;
  std::set<double> ns;
  double xmax = 0;
  for (const auto& [n, x] : points) {
    if (!std::isfinite(n) || !std::isfinite(x))
      return make_error(fmt::format("USL fit: a point is not finite (N {}, X {})", n, x));
    if (n < 1) return make_error(fmt::format("USL fit: concurrency {} is below 1", n));
    if (x < 0) return make_error(fmt::format("USL fit: throughput {} is negative", x));
    pts.emplace_back(n, x);
    ns.insert(n);
    xmax = std::max(xmax, x);
  }
  if (ns.size() < 3)
    return make_error(
        fmt::format("USL fit: needs at least 3 distinct concurrencies with a measured throughput, has {}", ns.size()));
  if (!(xmax > 0)) return make_error("USL fit: every throughput is zero");

  // The grid: σ over 0 and 1e-5..10, κ over 0 and 1e-10..1, log-spaced; λ solved for each.
  std::vector<double> sigmas = {0}, kappas = {0};
  for (int i = 0; i <= 48; i++) sigmas.push_back(std::pow(10.0, -5 + 6.0 * i / 48));
  for (int i = 0; i <= 60; i++) kappas.push_back(std::pow(10.0, -10 + 10.0 * i / 60));
  Params best = {0, 0, 0};
  double best_sse = std::numeric_limits<double>::infinity();
  for (double s : sigmas) {
    for (double k : kappas) {
      const Params p = {best_lambda(s, k, pts), s, k};
      const double e = sse(p, pts);
      if (e < best_sse) best_sse = e, best = p;
    }
  }
  // The low-N slope as a second start: λ ≈ X/N at the smallest N, no contention.
  const auto low = *std::min_element(pts.begin(), pts.end());
  Params p = levenberg_marquardt(best, pts);
  const Params q = levenberg_marquardt({std::max(low.second / low.first, 1e-9), 0, 0}, pts);
  if (sse(q, pts) < sse(p, pts)) p = q;

  // A κ whose term stays below a millionth of the denominator over the whole ladder is noise in the last digits of the
  // fit, not coherency: taken as 0, so that N* is not a huge number made of rounding.
  const double nmax = *ns.rbegin();
  if (p[2] > 0 && p[2] * nmax * (nmax - 1) < 1e-6 * (1 + p[1] * (nmax - 1))) {
    p[2] = 0;
    p[0] = best_lambda(p[1], 0, pts);
  }

  UslFit f;
  f.lambda = p[0];
  f.sigma = p[1];
  f.kappa = p[2];
  f.points = static_cast<int>(pts.size());
  double mean = 0;
  for (const auto& pt : pts) mean += pt.second;
  mean /= static_cast<double>(pts.size());
  double tot = 0;
  for (const auto& pt : pts) tot += (pt.second - mean) * (pt.second - mean);
  const double res = sse(p, pts);
  f.r2 = tot > 0 ? 1 - res / tot : (res == 0 ? 1 : 0);
  if (f.kappa <= 0) {
    f.n_star_note = "none: κ = 0, so throughput rises toward λ/σ without a peak (no retrograde region)";
  } else if (f.sigma >= 1) {
    f.n_star_note = "undefined: σ >= 1";
  } else {
    f.n_star = std::sqrt((1 - f.sigma) / f.kappa);
    f.n_star_note = "sqrt((1 − σ) / κ): throughput peaks there and falls beyond it";
  }
  return f;
}

Knee knee_slo(const std::vector<Step>& steps, double peak, double slo_s) {
  Knee k;
  for (const Step& s : steps) {
    if (s.throughput >= kPeakFraction * peak && std::isfinite(s.p99_s) && s.p99_s <= slo_s &&
        s.error_ratio() <= kSloMaxErrorRatio) {
      k.found = true;
      k.concurrency = s.concurrency;
    }
  }
  if (k.found) {
    k.how = fmt::format(
        "the highest concurrency with p99 <= {:g} ms, errors <= {:g}% and throughput >= {:g}% of the "
        "peak",
        slo_s * 1e3, kSloMaxErrorRatio * 100, kPeakFraction * 100);
  } else {
    k.how = fmt::format("no step has p99 <= {:g} ms (with errors <= {:g}%) and throughput >= {:g}% of the peak",
                        slo_s * 1e3, kSloMaxErrorRatio * 100, kPeakFraction * 100);
  }
  return k;
}

Knee knee_95(const std::vector<Step>& steps, double peak) {
  Knee k;
  const double line = kPeakFraction * peak;
  for (size_t i = 0; i < steps.size(); i++) {
    if (steps[i].throughput < line) continue;
    k.found = true;
    k.concurrency = steps[i].concurrency;
    if (i == 0) {
      k.interpolated = steps[i].concurrency;
      k.how = fmt::format("the ladder's first step already reaches {:g}% of the peak: the knee is at or below it",
                          kPeakFraction * 100);
    } else {
      const Step& a = steps[i - 1];
      const Step& b = steps[i];
      const double t = (line - a.throughput) / (b.throughput - a.throughput);
      k.interpolated = a.concurrency + t * (b.concurrency - a.concurrency);
      k.how = fmt::format(
          "the smallest step reaching {:g}% of the peak ({:.0f}/s); interpolated linearly between N={} ({:.0f}/s) and "
          "N={} ({:.0f}/s): {:.1f}",
          kPeakFraction * 100, line, a.concurrency, a.throughput, b.concurrency, b.throughput, k.interpolated);
    }
    return k;
  }
  k.how = "no step reaches 95% of the peak";  // only with a zero peak, which analyze rejects
  return k;
}

Result<Ladder> analyze(std::vector<Step> steps, double slo_s) {
  if (!(slo_s > 0) || !std::isfinite(slo_s))
    return make_error(fmt::format("SLO {} s: must be a positive number", slo_s));
  if (steps.empty()) return make_error("no steps to analyze");
  Ladder l;
  l.procs = steps.front().procs;
  std::vector<Step> kept;
  std::string failed;
  for (Step& s : steps) {
    if (s.concurrency < 1 || !std::isfinite(s.throughput) || s.throughput < 0) {
      l.problems.push_back(
          fmt::format("step N={}: throughput {} is not a finite number >= 0: left out", s.concurrency, s.throughput));
      continue;
    }
    if (s.throughput == 0) {
      std::string why;
      for (const auto& [k, v] : s.errors) why += fmt::format("{}{} {}", why.empty() ? "" : ", ", k, v);
      if (!s.note.empty()) why += (why.empty() ? "" : "; ") + s.note;
      l.problems.push_back(
          fmt::format("step N={}: no request succeeded ({})", s.concurrency, why.empty() ? "no errors recorded" : why));
      failed += fmt::format("{}N={}", failed.empty() ? "" : ", ", s.concurrency);
    }
    kept.push_back(std::move(s));
  }
  std::sort(kept.begin(), kept.end(), [](const Step& a, const Step& b) { return a.concurrency < b.concurrency; });
  for (size_t i = 1; i < kept.size(); i++) {
    if (kept[i].concurrency == kept[i - 1].concurrency)
      return make_error(fmt::format("two steps at concurrency {}", kept[i].concurrency));
  }
  l.steps = std::move(kept);
  for (const Step& s : l.steps) {
    if (s.throughput > l.peak_throughput) {
      l.peak_throughput = s.throughput;
      l.peak_concurrency = s.concurrency;
    }
  }
  if (l.steps.empty()) return make_error("no step has a finite throughput");
  if (!(l.peak_throughput > 0))
    return make_error(fmt::format("procs {}: every step failed ({}): no throughput to analyze", l.procs, failed));
  if (l.steps.size() == 1)
    l.problems.push_back("one step only: its throughput is the peak by definition; the knee is not located");
  else if (l.peak_concurrency == l.steps.back().concurrency &&
           l.steps.back().throughput > (1 + kPlateau) * l.steps[l.steps.size() - 2].throughput)
    l.peak_at_end = true, l.problems.push_back(fmt::format(
                              "throughput is highest at the ladder's last step (N={}): the peak may lie beyond "
                              "it, so both knees are lower bounds of what a longer ladder would find",
                              l.peak_concurrency));
  l.knee_slo = knee_slo(l.steps, l.peak_throughput, slo_s);
  l.knee_95 = knee_95(l.steps, l.peak_throughput);
  std::vector<std::pair<double, double>> pts;
  for (const Step& s : l.steps) pts.emplace_back(s.concurrency, s.throughput);
  l.usl = fit_usl(pts);
  return l;
}

std::vector<int> refine_points(const Ladder& l, int extra) {
  std::vector<int> out;
  if (!l.knee_95.found || l.peak_at_end || extra <= 0) return out;  // still rising: the knee is not in the ladder
  const auto it = std::find_if(l.steps.begin(), l.steps.end(),
                               [&](const Step& s) { return s.concurrency == l.knee_95.concurrency; });
  if (it == l.steps.begin() || it == l.steps.end()) return out;
  const int lo = std::prev(it)->concurrency, hi = it->concurrency;
  for (int i = 1; i <= extra; i++) {
    const int n = lo + static_cast<int>(std::lround(static_cast<double>(hi - lo) * i / (extra + 1)));
    if (n > lo && n < hi && (out.empty() || out.back() != n)) out.push_back(n);
  }
  return out;
}

Bounds closed_bounds(double n, double r0_s, double x_max, double measured) {
  Bounds b;
  if (!(n >= 1) || !(r0_s > 0) || !(x_max > 0) || !std::isfinite(r0_s) || !std::isfinite(x_max)) return b;
  const double d = 1 / x_max;
  b.optimistic = std::min(n / r0_s, x_max);
  b.pessimistic = n / (r0_s + (n - 1) * d);
  if (b.optimistic - b.pessimistic > 1e-9 * b.optimistic && std::isfinite(measured))
    b.position = (measured - b.pessimistic) / (b.optimistic - b.pessimistic);
  return b;
}

Recommendation recommend(const std::vector<Ladder>& ladders) {
  Recommendation r;
  double best = 0;
  for (const Ladder& l : ladders) best = std::max(best, l.peak_throughput);
  if (!(best > 0)) {
    r.how = "no processor count has a throughput";
    return r;
  }
  double per = -1;
  std::string considered;
  for (const Ladder& l : ladders) {
    if (l.peak_throughput < kPeakFraction * best || l.procs < 1) continue;
    const double x = l.peak_throughput / l.procs;
    considered += fmt::format("{}procs {}: {:.0f}/s, {:.0f}/s per processor", considered.empty() ? "" : "; ", l.procs,
                              l.peak_throughput, x);
    if (x > per || (x == per && l.procs < r.procs)) {
      per = x;
      r.found = true;
      r.procs = l.procs;
    }
  }
  if (ladders.size() == 1) {
    r.how = fmt::format("one processor count measured ({}): nothing to compare it with", r.procs);
  } else {
    r.how = fmt::format(
        "of the processor counts whose peak is within {:g}% of the best ({:.0f}/s), the one with the highest peak per "
        "processor ({})",
        kPeakFraction * 100, best, considered);
  }
  return r;
}

}  // namespace tern::sweep
