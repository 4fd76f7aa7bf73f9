// ctest: the shared scan maths (scan_math.h) and the CPU kernel (scan_cpu.cpp) against a plain
// double-precision recurrence written here from the op contract, independently of the kernel.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "scan_cpu.h"
#include "scan_math.h"
#include "test_check.h"

namespace {

using test_check::check;
using test_check::failures;
using test_check::softplus_ref;

void test_elementwise() {
  using namespace remamber::scan;
  check(std::fabs(softplus(0.0f) - std::log(2.0f)) < 1e-7f, "softplus(0) == log 2");
  check(softplus(20.5f) == 20.5f, "softplus is the identity above the threshold 20");
  check(std::fabs(softplus(20.0f) - static_cast<float>(softplus_ref(20.0))) < 1e-5f, "softplus(20) uses log1p(exp)");
  check(std::fabs(softplus(-30.0f) - static_cast<float>(std::exp(-30.0))) < 1e-18f, "softplus underflow side");
  check(step_size(1.0f, 0.5f, false) == 1.5f, "step_size without softplus is delta + bias");
  check(decay(0.0f, -3.0f) == 1.0f, "decay of a zero step is 1");
  check(std::fabs(decay(0.5f, -2.0f) - std::exp(-1.0f)) < 1e-7f, "decay = exp(dt*A)");
  check(state_update(2.0f, 0.5f, 3.0f, 4.0f) == 13.0f, "h = decay*h + dt*u*B");
  // The scan operator: composing maps equals applying them one after the other.
  const ScanPair p{0.5f, 1.0f}, q{0.25f, 2.0f}, r{0.75f, -1.0f};
  const ScanPair pq = scan_combine(p, q);
  const float h = 3.0f;
  check(std::fabs(pq.a * h + pq.b - (q.a * (p.a * h + p.b) + q.b)) < 1e-6f, "combine = apply first then second");
  const ScanPair left = scan_combine(scan_combine(p, q), r), right = scan_combine(p, scan_combine(q, r));
  check(std::fabs(left.a - right.a) < 1e-7f && std::fabs(left.b - right.b) < 1e-6f, "combine is associative");
  const ScanPair id = scan_combine(scan_identity(), p);
  check(id.a == p.a && id.b == p.b, "identity on the left");
  // fp16 / bf16 bit conversions on exactly representable values.
  check(half_bits_to_float(0x3c00) == 1.0f, "half 1.0");
  check(half_bits_to_float(0xc000) == -2.0f, "half -2.0");
  check(half_bits_to_float(0x7bff) == 65504.0f, "half max");
  check(half_bits_to_float(0x0001) == std::ldexp(1.0f, -24), "half smallest subnormal");
  check(half_bits_to_float(0x03ff) == std::ldexp(1023.0f, -24), "half largest subnormal");
  check(std::isinf(half_bits_to_float(0x7c00)), "half inf");
  check(std::isnan(half_bits_to_float(0x7e00)), "half nan");
  check(bf16_bits_to_float(0x3f80) == 1.0f, "bf16 1.0");
}

// Naive contract recurrence in double.
std::vector<double> reference(const remamber::scan::ScanShape& s, const std::vector<float>& u, const std::vector<float>& delta,
                              const std::vector<float>& A, const std::vector<float>& B, const std::vector<float>& C,
                              const float* D, const float* bias, bool softplus_on) {
  const int64_t L = s.length, N = s.nstate, per_group = s.channels / s.groups;
  std::vector<double> y(static_cast<size_t>(s.batch * s.channels * L));
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t c = 0; c < s.channels; ++c) {
      const int64_t g = c / per_group;
      std::vector<double> h(static_cast<size_t>(N), 0.0);
      for (int64_t t = 0; t < L; ++t) {
        const size_t i = static_cast<size_t>((b * s.channels + c) * L + t);
        double dt = delta[i] + (bias ? bias[c] : 0.0);
        if (softplus_on) dt = softplus_ref(dt);
        double acc = 0.0;
        for (int64_t n = 0; n < N; ++n) {
          const size_t k = static_cast<size_t>(((b * s.groups + g) * N + n) * L + t);
          h[n] = std::exp(dt * A[c * N + n]) * h[n] + dt * B[k] * u[i];
          acc += C[k] * h[n];
        }
        y[i] = acc + (D ? D[c] * static_cast<double>(u[i]) : 0.0);
      }
    }
  return y;
}

void test_cpu_kernel(int64_t batch, int64_t channels, int64_t length, int64_t groups, int64_t nstate, bool with_d,
                     bool with_bias, bool softplus_on) {
  remamber::scan::ScanShape s;
  s.batch = batch;
  s.channels = channels;
  s.length = length;
  s.groups = groups;
  s.nstate = nstate;
  std::mt19937 gen(static_cast<unsigned>(batch * 131 + channels * 17 + length + nstate));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto fill = [&](size_t n, float scale, float shift) {
    std::vector<float> v(n);
    for (auto& x : v) x = normal(gen) * scale + shift;
    return v;
  };
  const size_t io = static_cast<size_t>(batch * channels * length);
  const size_t bc = static_cast<size_t>(batch * groups * nstate * length);
  auto u = fill(io, 1.0f, 0.0f), delta = fill(io, 1.0f, -1.0f), B = fill(bc, 1.0f, 0.0f), C = fill(bc, 1.0f, 0.0f);
  // Without softplus dt is delta itself: keep it positive so the decay stays below 1.
  if (!softplus_on)
    for (auto& d : delta) d = 0.1f * std::fabs(d);
  std::vector<float> A = fill(static_cast<size_t>(channels * nstate), 0.5f, 0.0f);
  for (auto& a : A) a = -std::exp(a);
  auto D = fill(static_cast<size_t>(channels), 1.0f, 0.0f), bias = fill(static_cast<size_t>(channels), 0.5f, 0.0f);
  std::vector<float> y(io, -7.0f);

  remamber::scan::ScanCpuArgs args;
  args.u = u.data();
  args.delta = delta.data();
  args.A = A.data();
  args.B = B.data();
  args.C = C.data();
  args.D = with_d ? D.data() : nullptr;
  args.delta_bias = with_bias ? bias.data() : nullptr;
  args.y = y.data();
  args.shape = s;
  args.delta_softplus = softplus_on;
  check(remamber::scan::check_shape(s) == nullptr, "shape accepted");
  // Two calls over a split row range, as the ORT op's thread pool does.
  const int64_t rows = batch * channels;
  remamber::scan::selective_scan_cpu_rows(args, 0, rows / 2);
  remamber::scan::selective_scan_cpu_rows(args, rows / 2, rows);
  const auto ref = reference(s, u, delta, A, B, C, args.D, args.delta_bias, softplus_on);
  double scale = 1e-30, err = 0.0;
  for (size_t i = 0; i < io; ++i) {
    scale = std::fmax(scale, std::fabs(ref[i]));
    err = std::fmax(err, std::fabs(ref[i] - y[i]));
  }
  char what[200];
  std::snprintf(what, sizeof(what), "cpu kernel b=%lld c=%lld L=%lld G=%lld N=%lld D=%d bias=%d softplus=%d: max err %.3g of scale %.3g",
                static_cast<long long>(batch), static_cast<long long>(channels), static_cast<long long>(length),
                static_cast<long long>(groups), static_cast<long long>(nstate), with_d, with_bias, softplus_on, err, scale);
  check(err <= 1e-5 * scale, what);
}

void test_shape_checks() {
  remamber::scan::ScanShape s;
  s.batch = 1;
  s.channels = 6;
  s.length = 4;
  s.groups = 4;
  s.nstate = 1;
  check(remamber::scan::check_shape(s) != nullptr, "G=4 does not divide 6 channels");
  s.groups = 3;
  s.nstate = 17;
  check(remamber::scan::check_shape(s) != nullptr, "N=17 refused");
  s.nstate = 0;
  check(remamber::scan::check_shape(s) != nullptr, "N=0 refused");
}

}  // namespace

int main() {
  test_elementwise();
  test_shape_checks();
  test_cpu_kernel(1, 4, 1, 1, 1, true, true, true);
  test_cpu_kernel(2, 8, 1500, 4, 1, true, true, true);   // crosses the 512-step tiles, grouped B/C
  test_cpu_kernel(1, 6, 777, 2, 3, false, true, true);   // N not a power of two
  test_cpu_kernel(3, 4, 100, 2, 16, true, false, false); // N = 16, no softplus
  test_cpu_kernel(1, 2, 0, 1, 4, true, true, true);      // empty sequence
  if (failures) {
    std::fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("scan maths and CPU kernel: all checks passed\n");
  return 0;
}
