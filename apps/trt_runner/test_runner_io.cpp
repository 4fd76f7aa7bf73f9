// ctest for the runner's .npy and statistics code (no TensorRT, no GPU; runs under qemu-aarch64 too).
// Expected values are hand-computed; the pytest side (tests/test_runner.py) checks the .npy files
// against NumPy itself.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "npy.h"
#include "stats.h"

namespace {

int failures = 0;

void check(bool ok, std::string const& what) {
  if (!ok) {
    std::printf("FAIL: %s\n", what.c_str());
    ++failures;
  }
}

bool near(double a, double b) { return std::fabs(a - b) <= 1e-9 * std::max(1.0, std::fabs(b)); }

template <typename F>
bool throws_with(F&& f, char const* text) {
  try {
    f();
  } catch (remamber::npy::Error const& e) {
    return std::strstr(e.what(), text) != nullptr;
  }
  return false;
}

}  // namespace

int main() {
  using namespace remamber;
  // percentiles as numpy.percentile(method="linear"): 1..10 -> p50 5.5, p90 9.1, p99 9.91
  std::vector<double> x;
  for (int i = 10; i >= 1; --i) x.push_back(i);
  const stats::Summary s = stats::summarize(x);
  check(s.n == 10 && near(s.min, 1) && near(s.max, 10) && near(s.mean, 5.5), "min/max/mean of 1..10");
  check(near(s.median, 5.5) && near(s.p90, 9.1) && near(s.p95, 9.55) && near(s.p99, 9.91), "percentiles of 1..10");
  // population std of 1..10 = sqrt(8.25); CV = 100 * 2.8722813 / 5.5
  check(near(s.cv_percent, 100.0 * std::sqrt(8.25) / 5.5), "coefficient of variation");
  check(stats::summarize({4.0}).p99 == 4.0 && stats::summarize({}).n == 0, "one sample / no sample");
  check(stats::format("GPU Compute Time", s).find("percentile(90%) = 9.1 ms") != std::string::npos, "trtexec-style line");

  // .npy round trip of a (2, 3) float32 array, 1-D and 0-d shapes, 64-byte aligned data
  npy::Array a;
  a.descr = "<f4";
  a.shape = {2, 3};
  const float values[6] = {1.5f, -2.0f, 0.0f, 3.25f, 1e-8f, -7.0f};
  a.data.assign(reinterpret_cast<uint8_t const*>(values), reinterpret_cast<uint8_t const*>(values) + sizeof(values));
  const std::vector<uint8_t> bytes = npy::serialize(a);
  check((bytes.size() - sizeof(values)) % 64 == 0, "data offset is a multiple of 64");
  const std::string header(bytes.begin() + 10, bytes.end() - sizeof(values));
  check(header.find("'shape': (2, 3)") != std::string::npos && header.back() == '\n', "header text");
  const npy::Array b = npy::parse(bytes, "roundtrip");
  check(b.descr == "<f4" && b.shape == a.shape && b.data == a.data, "float32 round trip");
  npy::Array v;
  v.descr = "<i8";
  v.shape = {5};
  v.data.assign(40, 7);
  const std::vector<uint8_t> vbytes = npy::serialize(v);
  check(std::string(vbytes.begin(), vbytes.end()).find("'shape': (5,)") != std::string::npos, "1-D shape (5,)");
  check(npy::parse(npy::serialize(v), "v").shape == std::vector<int64_t>{5}, "1-D round trip");
  npy::Array z;
  z.descr = "|b1";
  z.data.assign(1, 1);
  check(npy::parse(npy::serialize(z), "z").shape.empty(), "0-d round trip");

  // refusals name the problem
  std::vector<uint8_t> fortran = bytes;
  const size_t pos = std::string(fortran.begin(), fortran.end()).find("False");
  std::memcpy(fortran.data() + pos, "True ", 5);
  check(throws_with([&] { npy::parse(fortran, "f"); }, "Fortran-order"), "Fortran order refused");
  std::vector<uint8_t> bad = bytes;
  bad[1] = 'X';
  check(throws_with([&] { npy::parse(bad, "m"); }, "not a .npy file"), "bad magic refused");
  std::vector<uint8_t> cut(bytes.begin(), bytes.end() - 4);
  check(throws_with([&] { npy::parse(cut, "c"); }, "data bytes"), "truncated data refused");
  npy::Array big;
  big.descr = ">f4";
  check(throws_with([&] { npy::serialize(big); }, "cannot write dtype"), "big-endian refused");

  if (failures == 0) std::printf("runner .npy and statistics: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
