// ctest: the CPU scan kernels of both ops on EVERY dispatch path this CPU can run (scalar, vec128, avx2,
// avx512; each forced through the `path` argument), against double-precision loops written here from the
// op contracts (plugins/selectiveScanPlugin/README.md, plugins/ss2dScanPlugin/README.md), independently
// of the kernels; plus the vector maths (scan_math_simd.h) against float64 / the scalar decoders.
// Paths the CPU cannot run are listed as not run (the summary says which ran).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "scan_cpu.h"
#include "scan_math.h"
#include "scan_operands.h"
#include "test_check.h"

#define REMAMBER_SIMD_NS simd_test
#define REMAMBER_SIMD_BYTES 16
#include "scan_math_simd.h"

namespace {

using namespace remamber::scan;

using test_check::check;
using test_check::failures;
using test_check::softplus_ref;

// ---- vector maths --------------------------------------------------------------------------------

template <typename F, typename R>
double max_rel_error(F vec_fn, R ref_fn, float lo, float hi, int count) {
  using simd_test::V;
  double worst = 0.0;
  for (int i = 0; i < count; i += simd_test::kW) {
    float in[simd_test::kW], out[simd_test::kW];
    for (int j = 0; j < simd_test::kW; ++j) in[j] = lo + (hi - lo) * static_cast<float>(i + j) / static_cast<float>(count - 1);
    simd_test::vstore(out, vec_fn(simd_test::vload(in)));
    for (int j = 0; j < simd_test::kW; ++j) {
      const double ref = ref_fn(static_cast<double>(in[j]));
      const double err = std::fabs(out[j] - ref) / std::fmax(std::fabs(ref), 1e-30);
      if (err > worst) worst = err;
    }
  }
  return worst;
}

void test_vector_maths() {
  using simd_test::V;
  char what[200];
  const double exp_err = max_rel_error([](V x) { return simd_test::vexp(x); }, [](double x) { return std::exp(x); },
                                       -87.0f, 88.0f, 200003);
  std::snprintf(what, sizeof(what), "vexp on [-87, 88]: max relative error %.3g vs float64 (bound 1e-6)", exp_err);
  check(exp_err <= 1e-6, what);
  const double sp_err = max_rel_error([](V x) { return simd_test::vsoftplus(x); }, softplus_ref, -60.0f, 40.0f, 200003);
  std::snprintf(what, sizeof(what), "vsoftplus on [-60, 40]: max relative error %.3g vs float64 (bound 1e-6)", sp_err);
  check(sp_err <= 1e-6, what);
  const double sp_small = max_rel_error([](V x) { return simd_test::vsoftplus(x); }, softplus_ref, -1e-3f, 1e-3f, 20003);
  std::snprintf(what, sizeof(what), "vsoftplus near 0: max relative error %.3g (bound 1e-6)", sp_small);
  check(sp_small <= 1e-6, what);
  // exp of very negative arguments (decay of a long step) must be tiny and not negative/NaN.
  float in[simd_test::kW], out[simd_test::kW];
  for (int j = 0; j < simd_test::kW; ++j) in[j] = -200.0f - j;
  simd_test::vstore(out, simd_test::vexp(simd_test::vload(in)));
  bool ok = true;
  for (int j = 0; j < simd_test::kW; ++j) ok = ok && out[j] >= 0.0f && out[j] < 1e-37f;
  check(ok, "vexp underflows to (nearly) zero for x << -87");
  // Every fp16 bit pattern decodes exactly as the scalar decoder of scan_math.h (tested on its own).
  int bad = 0;
  for (uint32_t h = 0; h < 65536; h += simd_test::kW) {
    simd_test::VI bits;
    for (int j = 0; j < simd_test::kW; ++j) bits[j] = static_cast<int32_t>(h + j);
    simd_test::vstore(out, simd_test::vhalf_to_float(bits));
    for (int j = 0; j < simd_test::kW; ++j) {
      const float ref = half_bits_to_float(static_cast<uint16_t>(h + j));
      if (!(std::memcmp(&ref, &out[j], 4) == 0 || (std::isnan(ref) && std::isnan(out[j])))) ++bad;
    }
  }
  std::snprintf(what, sizeof(what), "vector fp16 decode equals the scalar one on all 65536 patterns (%d differ)", bad);
  check(bad == 0, what);
}

// ---- inputs ---------------------------------------------------------------------------------------

// Activations stored in `dtype`; `values` holds what the kernel reads (decoded), for the reference.
struct Act {
  std::vector<float> f32;
  std::vector<uint16_t> bits;
  std::vector<float> values;
  const void* data(ScanDtype d) const { return d == ScanDtype::kFloat32 ? static_cast<const void*>(f32.data()) : bits.data(); }
};

Act make_act(size_t n, ScanDtype dtype, std::mt19937& gen, float scale, float shift, bool positive = false) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Act a;
  a.values.resize(n);
  a.f32.resize(n);
  a.bits.resize(n);
  for (size_t i = 0; i < n; ++i) {
    float x = normal(gen) * scale + shift;
    if (positive) x = std::fabs(x);
    if (dtype == ScanDtype::kFloat16) {
      // round to a half: keep 10 mantissa bits of a float in the normal half range
      uint32_t b;
      std::memcpy(&b, &x, 4);
      const uint32_t sign = (b >> 16) & 0x8000u;
      int e = static_cast<int>((b >> 23) & 0xff) - 127;
      if (x == 0.0f || e < -14) {
        a.bits[i] = static_cast<uint16_t>(sign);
      } else {
        if (e > 15) e = 15;
        a.bits[i] = static_cast<uint16_t>(sign | (static_cast<uint32_t>(e + 15) << 10) | ((b >> 13) & 0x3ffu));
      }
      a.values[i] = half_bits_to_float(a.bits[i]);
    } else if (dtype == ScanDtype::kBFloat16) {
      uint32_t b;
      std::memcpy(&b, &x, 4);
      a.bits[i] = static_cast<uint16_t>(b >> 16);
      a.values[i] = bf16_bits_to_float(a.bits[i]);
    } else {
      a.values[i] = x;
    }
    a.f32[i] = a.values[i];
  }
  return a;
}

std::vector<float> make_f32(size_t n, std::mt19937& gen, float scale, float shift) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(gen) * scale + shift;
  return v;
}

double compare(const std::vector<double>& ref, const std::vector<float>& y, double* scale_out) {
  double scale = 1e-30, err = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    scale = std::fmax(scale, std::fabs(ref[i]));
    const double e = std::fabs(ref[i] - y[i]);
    err = std::isnan(y[i]) ? INFINITY : std::fmax(err, e);
  }
  *scale_out = scale;
  return err;
}

const char* dtype_name(ScanDtype d) { return d == ScanDtype::kFloat32 ? "fp32" : d == ScanDtype::kFloat16 ? "fp16" : "bf16"; }

// ---- SelectiveScan v1 -------------------------------------------------------------------------------

std::vector<CpuPath> g_paths;  // the paths this CPU runs (main fills it)

void test_selective(int64_t batch, int64_t channels, int64_t length, int64_t groups, int64_t nstate,
                    bool with_d, bool with_bias, bool softplus_on, ScanDtype dtype) {
  std::mt19937 gen(static_cast<unsigned>(batch * 131 + channels * 17 + length + nstate * 7 + static_cast<int>(dtype)));
  const size_t io = static_cast<size_t>(batch * channels * length);
  const size_t bc = static_cast<size_t>(batch * groups * nstate * length);
  Act u = make_act(io, dtype, gen, 1.0f, 0.0f);
  Act delta = softplus_on ? make_act(io, dtype, gen, 1.0f, -1.0f) : make_act(io, dtype, gen, 0.1f, 0.0f, true);
  Act B = make_act(bc, dtype, gen, 1.0f, 0.0f), C = make_act(bc, dtype, gen, 1.0f, 0.0f);
  std::vector<float> A = make_f32(static_cast<size_t>(channels * nstate), gen, 0.5f, 0.0f);
  for (auto& a : A) a = -std::exp(a);
  auto D = make_f32(static_cast<size_t>(channels), gen, 1.0f, 0.0f), bias = make_f32(static_cast<size_t>(channels), gen, 0.5f, 0.0f);
  ScanArgs args;
  args.shape.batch = batch;
  args.shape.channels = channels;
  args.shape.length = length;
  args.shape.groups = groups;
  args.shape.nstate = nstate;
  const void* const in[kNumInputs] = {u.data(dtype), delta.data(dtype), A.data(),  B.data(dtype),
                                     C.data(dtype), with_d ? D.data() : nullptr, with_bias ? bias.data() : nullptr};
  set_operands(args, in, nullptr, dtype, softplus_on);  // y: set once allocated below
  std::vector<double> ref(io);
  const int64_t L = length, N = nstate, per_group = channels / groups;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t g = c / per_group;
      std::vector<double> h(static_cast<size_t>(N), 0.0);
      for (int64_t t = 0; t < L; ++t) {
        const size_t i = static_cast<size_t>((b * channels + c) * L + t);
        double dt = static_cast<double>(delta.values[i]) + (with_bias ? bias[c] : 0.0);
        if (softplus_on) dt = softplus_ref(dt);
        double acc = 0.0;
        for (int64_t n = 0; n < N; ++n) {
          const size_t k = static_cast<size_t>(((b * groups + g) * N + n) * L + t);
          h[n] = std::exp(dt * A[c * N + n]) * h[n] + dt * B.values[k] * u.values[i];
          acc += C.values[k] * h[n];
        }
        ref[i] = acc + (with_d ? D[c] * static_cast<double>(u.values[i]) : 0.0);
      }
    }
  for (CpuPath path : g_paths) {
  // Split over an odd row range, as the ORT op's thread pool may.
  std::vector<float> y(io, -7.0f);
  args.y = y.data();
  const int64_t rows = batch * channels, mid = rows / 2 + (rows > 2 ? 1 : 0);
  selective_scan_cpu_rows(args, 0, mid, path);
  selective_scan_cpu_rows(args, mid, rows, path);
  double scale;
  const double err = compare(ref, y, &scale);
  char what[240];
  std::snprintf(what, sizeof(what), "[%s] SelectiveScan %s b=%lld c=%lld L=%lld G=%lld N=%lld D=%d bias=%d softplus=%d: max err %.3g of scale %.3g",
                cpu_path_name(path), dtype_name(dtype), static_cast<long long>(batch), static_cast<long long>(channels),
                static_cast<long long>(length), static_cast<long long>(groups), static_cast<long long>(nstate), with_d,
                with_bias, softplus_on, err, scale);
  check(err <= 1e-5 * scale, what);
  }
}

// ---- SS2DScan v1 -------------------------------------------------------------------------------------

// The contract's table, written out here (not ss2d_position()).
int64_t contract_position(int layout, int k, int64_t t, int64_t H, int64_t W) {
  const int64_t L = H * W;
  if (k >= 2) return contract_position(layout, k - 2, L - 1 - t, H, W);
  if (layout == 1 || k == 0) return t;
  const int64_t h = t % H, w = t / H;  // column-major step t = w * H + h
  return h * W + w;
}

void test_ss2d(int layout, int64_t batch, int64_t dim, int64_t H, int64_t W, int64_t nstate, bool with_d,
               bool with_bias, bool softplus_on, ScanDtype dtype) {
  std::mt19937 gen(static_cast<unsigned>(batch * 7 + dim * 13 + H * 101 + W * 3 + nstate * 17 + layout + static_cast<int>(dtype)));
  const int64_t L = H * W, K = 4, N = nstate;
  const size_t nu = static_cast<size_t>(batch * dim * L);
  const size_t nbc = static_cast<size_t>(batch * K * N * L);
  Act u = make_act(nu, dtype, gen, 1.0f, 0.0f);
  Act delta = softplus_on ? make_act(nu * K, dtype, gen, 1.0f, -1.0f) : make_act(nu * K, dtype, gen, 0.1f, 0.0f, true);
  Act B = make_act(nbc, dtype, gen, 1.0f, 0.0f), C = make_act(nbc, dtype, gen, 1.0f, 0.0f);
  std::vector<float> A = make_f32(static_cast<size_t>(K * dim * N), gen, 0.5f, 0.0f);
  for (auto& a : A) a = -std::exp(a);
  auto D = make_f32(static_cast<size_t>(K * dim), gen, 1.0f, 0.0f), bias = make_f32(static_cast<size_t>(K * dim), gen, 0.5f, 0.0f);
  SS2DArgs args;
  args.shape.batch = batch;
  args.shape.dim = dim;
  args.shape.height = H;
  args.shape.width = W;
  args.shape.nstate = nstate;
  args.layout = static_cast<SS2DLayout>(layout);
  const void* const in[kNumInputs] = {u.data(dtype), delta.data(dtype), A.data(),  B.data(dtype),
                                     C.data(dtype), with_d ? D.data() : nullptr, with_bias ? bias.data() : nullptr};
  set_operands(args, in, nullptr, dtype, softplus_on);  // y: set once allocated below
  check(check_ss2d_shape(args.shape, layout) == nullptr, "ss2d shape accepted");
  std::vector<double> ref(nu, 0.0);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t d = 0; d < dim; ++d)
      for (int k = 0; k < K; ++k) {
        const int64_t c = k * dim + d;
        std::vector<double> h(static_cast<size_t>(N), 0.0);
        for (int64_t t = 0; t < L; ++t) {
          const int64_t p = contract_position(layout, k, t, H, W);
          const double uu = u.values[static_cast<size_t>((b * dim + d) * L + p)];
          double dt = static_cast<double>(delta.values[static_cast<size_t>((b * K * dim + c) * L + p)]) + (with_bias ? bias[c] : 0.0);
          if (softplus_on) dt = softplus_ref(dt);
          double acc = 0.0;
          for (int64_t n = 0; n < N; ++n) {
            const size_t q = static_cast<size_t>(((b * K + k) * N + n) * L + p);
            h[n] = std::exp(dt * A[c * N + n]) * h[n] + dt * B.values[q] * uu;
            acc += C.values[q] * h[n];
          }
          ref[static_cast<size_t>((b * dim + d) * L + p)] += acc + (with_d ? D[c] * uu : 0.0);
        }
      }
  for (CpuPath path : g_paths) {
  std::vector<float> y(nu, -7.0f);
  args.y = y.data();
  const int64_t chans = batch * dim, mid = chans / 2 + (chans > 2 ? 1 : 0);
  ss2d_scan_cpu_channels(args, 0, mid, path);
  ss2d_scan_cpu_channels(args, mid, chans, path);
  double scale;
  const double err = compare(ref, y, &scale);
  char what[240];
  std::snprintf(what, sizeof(what), "[%s] SS2DScan %s layout=%d b=%lld D=%lld H=%lld W=%lld N=%lld D=%d bias=%d softplus=%d: max err %.3g of scale %.3g",
                cpu_path_name(path), dtype_name(dtype), layout, static_cast<long long>(batch), static_cast<long long>(dim),
                static_cast<long long>(H), static_cast<long long>(W), static_cast<long long>(nstate), with_d, with_bias,
                softplus_on, err, scale);
  check(err <= 1e-5 * scale, what);
  }
}

}  // namespace

int main() {
  test_vector_maths();
  for (CpuPath path : {CpuPath::kScalar, CpuPath::kVec128, CpuPath::kAVX2, CpuPath::kAVX512}) {
    std::printf("path %s: %s\n", cpu_path_name(path), cpu_path_supported(path) ? "run" : "not run (this CPU or build lacks it)");
    if (cpu_path_supported(path)) g_paths.push_back(path);
  }
  const int ran = static_cast<int>(g_paths.size());
  // Each case computes its float64 reference once and checks every path against it.
  for (ScanDtype dt : {ScanDtype::kFloat32, ScanDtype::kFloat16, ScanDtype::kBFloat16}) {
    test_selective(2, 8, 1500, 4, 1, true, true, true, dt);  // several tiles, grouped B/C, odd row split
    test_selective(1, 6, 777, 2, 3, false, true, true, dt);  // N not a power of two, groups of 3 rows
    test_selective(3, 4, 100, 2, 16, true, false, false, dt); // N = 16, no softplus
    test_ss2d(0, 2, 5, 7, 9, 1, true, true, true, dt);        // cross, odd H != W, batch 2
    test_ss2d(0, 1, 3, 24, 13, 16, false, true, true, dt);    // N = 16, L > one tile, no D
    test_ss2d(1, 2, 6, 1, 300, 1, true, false, true, dt);     // bidi (H = 1), no bias
    test_ss2d(0, 1, 4, 6, 6, 2, true, true, false, dt);       // square, no softplus
    test_ss2d(1, 1, 2, 3, 5, 4, false, false, true, dt);      // bidi with H > 1 walks row-major
  }
  test_selective(1, 2, 0, 1, 4, true, true, true, ScanDtype::kFloat32);        // empty sequence
  test_selective(1, 1, 1, 1, 1, true, true, true, ScanDtype::kFloat32);        // one step
  test_selective(1, 1, 65536, 1, 1, true, true, true, ScanDtype::kFloat32);    // L = 65,536
  test_ss2d(0, 1, 1, 256, 256, 1, true, true, true, ScanDtype::kFloat16);      // L = 65,536 spatial
  test_ss2d(1, 1, 1, 1, 65536, 2, true, true, true, ScanDtype::kFloat32);      // L = 65,536 bidi
  std::printf("paths run: %d\n", ran);
  std::printf("auto path on this CPU: %s\n", cpu_path_name(resolve_cpu_path(CpuPath::kAuto)));
  if (ran < 2) {
    std::fprintf(stderr, "FAIL: fewer than two paths ran (scalar and vec128 always build)\n");
    ++failures;
  }
  if (failures) {
    std::fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("SIMD and scalar CPU scans: all checks passed\n");
  return 0;
}
