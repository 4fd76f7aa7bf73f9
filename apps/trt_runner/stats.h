// Latency statistics in trtexec's vocabulary (min, max, mean, median, p90/p95/p99, coefficient of
// variation), computed as bench/latency.py does: linear-interpolated percentiles (NumPy's default,
// type 7) and the population standard deviation, so the runner's numbers read like the bench's.
#pragma once

#include <string>
#include <vector>

namespace remamber {
namespace stats {

struct Summary {
  size_t n = 0;
  double min = 0, max = 0, mean = 0, median = 0, p90 = 0, p95 = 0, p99 = 0, cv_percent = 0;
};

constexpr double kCvWarnPercent = 2.5;  // trtexec warns about unstable timing above this

double percentile(std::vector<double> sorted, double q);  // q in [0, 100]; sorted ascending
Summary summarize(std::vector<double> samples_ms);
// "<label>: min = ... ms, max = ..., mean = ..., median = ..., percentile(90%) = ..., ... " (trtexec style)
std::string format(std::string const& label, Summary const& s);

}  // namespace stats
}  // namespace remamber
