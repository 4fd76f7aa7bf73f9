// ctest: the CUDA selective-scan kernel (plugins/cuda/scan_kernel.cuh) compiled with g++ and run on
// the CPU, for every launch shape (warp per row, short rows, block per row), every input dtype
// (fp32, fp16, bf16) and both load paths (aligned vectors, warp-striped + shared-memory transpose).
// Each block's threads are real std::threads; __syncthreads, __syncwarp and the warp shuffles are
// emulated with barriers, __shared__ arrays are shared by the block's threads, and __half /
// __nv_bfloat16 are bit containers widened by the project's exact host conversions. Results are
// compared with a float64 recurrence written here (the op contract) and with the CPU kernel
// (scan_cpu.cpp), both to 1e-5 of the output scale; y is NaN-poisoned first and
// guarded on both sides, so an unwritten or out-of-row store fails. This checks the kernel's index
// maths, chunk carries, tails and block/warp scans without a GPU; it cannot check CUDA-specific
// behaviour (memory model, codegen), which bench/gpu_check.py covers on a GPU.
#define REMAMBER_SCAN_HOST_EMULATION 1

#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "host_half.h"
#include "scan_math.h"

#include "cuda_emulation.h"  // CUDA shims shared with test_ss2d_kernel_emulation.cpp

#include "scan_cpu.h"
#include "scan_kernel.cuh"

namespace {

using remamber::scan::ScanCudaParams;
using remamber::scan::ScanDtype;
namespace cd = remamber::scan::cuda_detail;

// Runs the grid of one kernel instantiation: blocks one after the other, each block's threads at once.
template <class Tr, typename T, int kMaxN>
void run_grid(const ScanCudaParams& p) {
  static_assert(Tr::kWarps <= emu::kMaxWarps, "emulation warp slots");
  const int64_t rows = p.shape.batch * p.shape.channels;
  const int64_t blocks = (rows + Tr::kRowsPerBlock - 1) / Tr::kRowsPerBlock;
  for (int64_t blk = 0; blk < blocks; ++blk)
    emu::run_block(Tr::kThreads, blk, [&p] { cd::selective_scan_fwd_kernel<Tr, T, kMaxN>(p); });
}

// Same capacity choice as cuda_detail::launch_with_traits.
template <class Tr, typename T>
void run_traits(const ScanCudaParams& p) {
  const int64_t n = p.shape.nstate;
  if (n <= 1) return run_grid<Tr, T, 1>(p);
  if (n <= 2) return run_grid<Tr, T, 2>(p);
  return run_grid<Tr, T, 16>(p);
}

template <typename T>
void run_shape(cd::LaunchShape shape, const ScanCudaParams& p) {
  switch (shape) {
    case cd::LaunchShape::kWarpRowShort: return run_traits<cd::WarpRowShortTraits, T>(p);
    case cd::LaunchShape::kWarpRow: return run_traits<cd::WarpRowTraits, T>(p);
    case cd::LaunchShape::kBlockRow: return run_traits<cd::BlockRowTraits, T>(p);
  }
}

void run(cd::LaunchShape shape, const ScanCudaParams& p) {
  switch (p.dtype) {
    case ScanDtype::kFloat32: return run_shape<float>(shape, p);
    case ScanDtype::kFloat16: return run_shape<__half>(shape, p);
    case ScanDtype::kBFloat16: return run_shape<__nv_bfloat16>(shape, p);
  }
}

const char* shape_name(cd::LaunchShape s) {
  switch (s) {
    case cd::LaunchShape::kWarpRowShort: return "warp-row-short";
    case cd::LaunchShape::kWarpRow: return "warp-row";
    case cd::LaunchShape::kBlockRow: return "block-row";
  }
  return "?";
}
const char* dtype_name(ScanDtype d) {
  return d == ScanDtype::kFloat32 ? "fp32" : d == ScanDtype::kFloat16 ? "fp16" : "bf16";
}

// fp32 -> the 16-bit encodings (round to nearest even), so the kernel and the float64 loop read
// exactly the same values.
uint16_t to_half_bits(float f) {
  const host_half h = static_cast<host_half>(f);
  uint16_t bits;
  std::memcpy(&bits, &h, sizeof(bits));
  return bits;
}
uint16_t to_bf16_bits(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof(x));
  x += 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>(x >> 16);
}

// One tensor in the kernel's dtype, `misalign` elements after a 16-byte aligned start, plus its
// exact fp32 values for the reference.
struct Tensor {
  std::vector<uint8_t> storage;
  void* data = nullptr;
  std::vector<float> values;
  Tensor(const std::vector<float>& v, ScanDtype dtype, size_t misalign) {
    const size_t elem = dtype == ScanDtype::kFloat32 ? 4 : 2;
    storage.resize((v.size() + misalign) * elem + 32);
    uint8_t* base = storage.data();
    base += (16 - reinterpret_cast<uintptr_t>(base) % 16) % 16;
    data = base + misalign * elem;
    values.resize(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      if (dtype == ScanDtype::kFloat32) {
        std::memcpy(static_cast<uint8_t*>(data) + 4 * i, &v[i], 4);
        values[i] = v[i];
      } else {
        const uint16_t bits = dtype == ScanDtype::kFloat16 ? to_half_bits(v[i]) : to_bf16_bits(v[i]);
        std::memcpy(static_cast<uint8_t*>(data) + 2 * i, &bits, 2);
        values[i] = dtype == ScanDtype::kFloat16 ? remamber::scan::half_bits_to_float(bits)
                                                 : remamber::scan::bf16_bits_to_float(bits);
      }
    }
  }
};

// The op contract in float64 (DESIGN.md): dt = softplus(delta + bias) (identity above 20),
// h = exp(dt A) h + dt B u, y = sum_n C h + D u.
std::vector<double> reference(const std::vector<float>& u, const std::vector<float>& delta, const std::vector<float>& A,
                              const std::vector<float>& B, const std::vector<float>& C, const float* D,
                              const float* bias, int64_t batch, int64_t channels, int64_t L, int64_t G, int64_t N,
                              bool softplus) {
  std::vector<double> y(static_cast<size_t>(batch * channels * L));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t g = c / (channels / G);
      std::vector<double> h(static_cast<size_t>(N), 0.0);
      for (int64_t t = 0; t < L; ++t) {
        const size_t io = static_cast<size_t>((b * channels + c) * L + t);
        double x = static_cast<double>(delta[io]) + (bias ? bias[c] : 0.0);
        const double dt = softplus ? (x <= 20.0 ? std::log1p(std::exp(x)) : x) : x;
        double acc = 0.0;
        for (int64_t n = 0; n < N; ++n) {
          const size_t bc = static_cast<size_t>(((b * G + g) * N + n) * L + t);
          h[n] = std::exp(dt * A[c * N + n]) * h[n] + dt * B[bc] * u[io];
          acc += C[bc] * h[n];
        }
        y[io] = acc + (D ? static_cast<double>(D[c]) * u[io] : 0.0);
      }
    }
  return y;
}

int failures = 0;
int cases = 0;

struct Case {
  int64_t batch, channels, length, groups, nstate;
  bool with_d, with_bias, softplus;
  size_t misalign;  // elements of offset in front of u, delta, B, C and y (0: 16-byte aligned)
};

void check(cd::LaunchShape shape, ScanDtype dtype, const Case& k) {
  ++cases;
  std::mt19937 gen(static_cast<unsigned>(k.length * 7919 + k.nstate * 31 + k.groups * 7 + k.misalign * 3 +
                                         static_cast<int>(dtype) * 101 + static_cast<int>(shape) * 1009));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const size_t io = static_cast<size_t>(k.batch * k.channels * k.length);
  const size_t bc = static_cast<size_t>(k.batch * k.groups * k.nstate * k.length);
  std::vector<float> u(io), delta(io), B(bc), C(bc);
  for (size_t i = 0; i < io; ++i) {
    u[i] = normal(gen);
    delta[i] = k.softplus ? 0.5f * normal(gen) - 1.0f : 0.25f * std::fabs(normal(gen)) + 0.01f;  // raw dt > 0
  }
  for (size_t i = 0; i < bc; ++i) {
    B[i] = normal(gen);
    C[i] = normal(gen);
  }
  std::vector<float> A(static_cast<size_t>(k.channels * k.nstate)), D(static_cast<size_t>(k.channels)),
      bias(static_cast<size_t>(k.channels));
  for (auto& a : A) a = -std::exp(0.5f * normal(gen));
  for (auto& d : D) d = normal(gen);
  for (auto& b : bias) b = k.softplus ? 0.5f * normal(gen) : 0.1f * std::fabs(normal(gen));  // dt > 0 either way
  Tensor tu(u, dtype, k.misalign), tdelta(delta, dtype, k.misalign), tB(B, dtype, k.misalign), tC(C, dtype, k.misalign);

  // y: NaN-poisoned, with guard values on both sides that must survive.
  constexpr size_t kGuard = 64;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> ybuf(io + 2 * kGuard + k.misalign + 4, -12345.0f);
  float* y = ybuf.data();
  y += (16 - reinterpret_cast<uintptr_t>(y) % 16) % 16 / sizeof(float);
  y += kGuard + k.misalign;
  for (size_t i = 0; i < io; ++i) y[i] = nan;

  ScanCudaParams p;
  p.u = tu.data;
  p.delta = tdelta.data;
  p.A = A.data();
  p.B = tB.data;
  p.C = tC.data;
  p.D = k.with_d ? D.data() : nullptr;
  p.delta_bias = k.with_bias ? bias.data() : nullptr;
  p.y = y;
  p.shape.batch = k.batch;
  p.shape.channels = k.channels;
  p.shape.length = k.length;
  p.shape.groups = k.groups;
  p.shape.nstate = k.nstate;
  p.dtype = dtype;
  p.delta_softplus = k.softplus;
  run(shape, p);

  // The project's CPU kernel (scan_cpu.cpp) on the same inputs: a second, independent implementation.
  std::vector<float> y_cpu(io, nan);
  remamber::scan::ScanCpuArgs cpu_args = p;
  cpu_args.y = y_cpu.data();
  remamber::scan::selective_scan_cpu_rows(cpu_args, 0, k.batch * k.channels);

  const std::vector<double> ref = reference(tu.values, tdelta.values, A, tB.values, tC.values, p.D, p.delta_bias,
                                            k.batch, k.channels, k.length, k.groups, k.nstate, k.softplus);
  double scale = 1e-30, err = 0.0, err_cpu = 0.0;
  bool finite = true;
  for (size_t i = 0; i < io; ++i) {
    scale = std::fmax(scale, std::fabs(ref[i]));
    if (!std::isfinite(y[i])) finite = false;
    err = std::fmax(err, std::fabs(static_cast<double>(y[i]) - ref[i]));
    err_cpu = std::fmax(err_cpu, std::fabs(static_cast<double>(y[i]) - y_cpu[i]));
  }
  bool guards = true;
  for (size_t i = 0; i < kGuard; ++i) guards = guards && y[-1 - static_cast<int64_t>(i)] == -12345.0f && y[io + i] == -12345.0f;
  const double rel = err / scale, rel_cpu = err_cpu / scale;
  const bool ok = finite && guards && rel <= 1e-5 && rel_cpu <= 1e-5;
  std::printf("%s %-14s %s b=%lld c=%lld L=%lld G=%lld N=%lld D=%d bias=%d softplus=%d misalign=%zu  max err/scale %.3g (vs CPU kernel %.3g)%s%s\n",
              ok ? "ok  " : "FAIL", shape_name(shape), dtype_name(dtype), static_cast<long long>(k.batch),
              static_cast<long long>(k.channels), static_cast<long long>(k.length), static_cast<long long>(k.groups),
              static_cast<long long>(k.nstate), k.with_d, k.with_bias, k.softplus, k.misalign, rel, rel_cpu,
              finite ? "" : "  (non-finite output: an element was never written)",
              guards ? "" : "  (a guard value was overwritten: store outside the row)");
  if (!ok) ++failures;
}

// Hand-stated expectations of the dispatch on the model's shapes (batch x K*D x L, docs/KERNEL_NOTES.md).
void check_dispatch() {
  struct Expect {
    int64_t length, rows;
    cd::LaunchShape shape;
  };
  const Expect expect[] = {
      {1, 1, cd::LaunchShape::kWarpRowShort},        {128, 4, cd::LaunchShape::kWarpRowShort},
      {129, 8192, cd::LaunchShape::kWarpRow},        {225, 8192, cd::LaunchShape::kWarpRow},
      {384, 2048, cd::LaunchShape::kWarpRow},        {900, 4096, cd::LaunchShape::kWarpRow},
      {1536, 2048, cd::LaunchShape::kWarpRow},       {2048, 256, cd::LaunchShape::kWarpRow},
      {2048, 255, cd::LaunchShape::kBlockRow},       {2049, 8192, cd::LaunchShape::kBlockRow},
      {3600, 2048, cd::LaunchShape::kBlockRow},      {14400, 1024, cd::LaunchShape::kBlockRow},
      {65536, 1024, cd::LaunchShape::kBlockRow},     {1000, 4, cd::LaunchShape::kBlockRow},
  };
  for (const Expect& e : expect) {
    const cd::LaunchShape got = cd::choose_launch_shape(e.length, e.rows);
    if (got != e.shape) {
      std::printf("FAIL dispatch L=%lld rows=%lld -> %s, expected %s\n", static_cast<long long>(e.length),
                  static_cast<long long>(e.rows), shape_name(got), shape_name(e.shape));
      ++failures;
    }
  }
}

}  // namespace

int main() {
  using S = cd::LaunchShape;
  check_dispatch();
  const S all_shapes[] = {S::kWarpRowShort, S::kWarpRow, S::kBlockRow};
  const ScanDtype all_dtypes[] = {ScanDtype::kFloat32, ScanDtype::kFloat16, ScanDtype::kBFloat16};
  // Every shape x dtype on cases that reach each load path and chunk kind of that shape:
  //   L = 1 (tail only), L = 20 (< a warp), odd L (unaligned rows: striped loads, partial chunk),
  //   whole chunks of every shape (128, 256, 1024 -> L = 1024), N = 16 (reload path), batch > 1, groups.
  const Case common[] = {
      {1, 4, 1, 4, 16, false, false, true, 0},    // one step, N = 16, grouped, no optional inputs
      {2, 3, 20, 1, 3, true, true, true, 0},      // L shorter than a warp, batch 2, N = 3
      {2, 4, 257, 2, 1, true, true, true, 0},     // odd L: every row unaligned, chunks + tail
      {1, 2, 1024, 2, 2, true, false, true, 0},   // aligned, whole chunks of every shape, N = 2 prefetched
      {1, 2, 1280, 1, 1, false, true, true, 1},   // even L but the tensors start off alignment
      {2, 2, 392, 2, 8, true, true, false, 0},    // N = 8 (reloaded B/C), no softplus; fp16 rows 784 B: aligned
      {1, 2, 300, 1, 16, true, true, false, 0},   // N = 16 without softplus; 16-bit rows unaligned (600 B)
  };
  for (S shape : all_shapes)
    for (ScanDtype dtype : all_dtypes)
      for (const Case& k : common) check(shape, dtype, k);
  // Multi-chunk long row of the block shape (several 1024-step chunks + tail), N = 1 as in the model.
  for (ScanDtype dtype : all_dtypes) check(S::kBlockRow, dtype, Case{1, 1, 3300, 1, 1, true, true, true, 0});
  // Many rows through the dispatch itself (the warp-row branch needs >= 256 rows), model-like G = 4.
  {
    const Case k{1, 256, 225, 4, 1, true, true, true, 0};
    check(cd::choose_launch_shape(k.length, k.batch * k.channels), ScanDtype::kFloat16, k);
  }
  if (failures) {
    std::fprintf(stderr, "%d of %d emulated kernel check(s) failed\n", failures, cases);
    return 1;
  }
  std::printf("emulated CUDA kernel matches the CPU kernel and the float64 loop in all %d cases "
              "(every launch shape and dtype)\n", cases);
  return 0;
}
