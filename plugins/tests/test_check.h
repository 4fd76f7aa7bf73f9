// What the ctest executables share (test_scan_math, test_scan_simd, test_plugin_fields): check(), which
// prints a failed expectation and counts it in `failures` (main returns non-zero when any failed), and
// the float64 softplus of the op contract (threshold 20) that the reference loops use.
#pragma once

#include <cmath>
#include <cstdio>

namespace test_check {

inline int failures = 0;

inline void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what);
    ++failures;
  }
}

inline double softplus_ref(double x) { return x <= 20.0 ? std::log1p(std::exp(x)) : x; }

}  // namespace test_check
