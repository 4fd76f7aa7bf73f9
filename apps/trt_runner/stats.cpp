// See stats.h.
#include "stats.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace remamber {
namespace stats {

double percentile(std::vector<double> sorted, double q) {
  if (sorted.empty()) return 0.0;
  const double pos = q / 100.0 * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - static_cast<double>(lo));
}

Summary summarize(std::vector<double> x) {
  Summary s;
  s.n = x.size();
  if (x.empty()) return s;
  std::sort(x.begin(), x.end());
  s.min = x.front();
  s.max = x.back();
  double sum = 0;
  for (double v : x) sum += v;
  s.mean = sum / static_cast<double>(x.size());
  double var = 0;
  for (double v : x) var += (v - s.mean) * (v - s.mean);
  const double std_dev = std::sqrt(var / static_cast<double>(x.size()));
  s.cv_percent = s.mean > 0 ? 100.0 * std_dev / s.mean : 0.0;
  s.median = percentile(x, 50);
  s.p90 = percentile(x, 90);
  s.p95 = percentile(x, 95);
  s.p99 = percentile(x, 99);
  return s;
}

std::string format(std::string const& label, Summary const& s) {
  char buf[512];
  std::snprintf(buf, sizeof(buf),
                "%s: min = %.5g ms, max = %.5g ms, mean = %.5g ms, median = %.5g ms, percentile(90%%) = %.5g ms, "
                "percentile(95%%) = %.5g ms, percentile(99%%) = %.5g ms",
                label.c_str(), s.min, s.max, s.mean, s.median, s.p90, s.p95, s.p99);
  return buf;
}

}  // namespace stats
}  // namespace remamber
