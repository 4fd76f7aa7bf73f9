// ctest: the fused CUDA SS2DScan kernel (plugins/cuda/ss2d_kernel.cuh) compiled with g++ and run on the
// CPU, against a float64 loop written straight from the op contract (plugins/ss2dScanPlugin/README.md).
// Each block's threads are real std::threads; __syncthreads and warp shuffles are emulated with barriers,
// __shared__ arrays are shared by the block's threads, the dynamic shared memory is one host buffer.
// This checks the kernel's direction walks (both layouts, odd/even and unequal H/W, H = 1), the chunked
// block scan across chunk boundaries, both accumulator paths (shared memory and y in global memory),
// vector/scalar loads, fp16/bf16 widening and the optional inputs without a GPU. It cannot check
// CUDA-specific behaviour (memory model, codegen): the GPU check does that.
//
// The reference does not use ss2d_position(): it builds each direction's visiting order with its own
// nested loops over (h, w), so a wrong index formula in the shared header fails here.
#define REMAMBER_SCAN_HOST_EMULATION 1

#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "host_half.h"
#include "scan_math.h"

#include "cuda_emulation.h"  // CUDA shims shared with test_kernel_emulation.cpp

namespace emu {
inline std::vector<float> dynamic_smem;  // the kernel's dynamic shared memory (ss2d_dynamic_smem below)
}  // namespace emu

#include "ss2d_kernel.cuh"

namespace remamber {
namespace scan {
namespace ss2d_cuda {
float* ss2d_dynamic_smem() { return emu::dynamic_smem.data(); }
}  // namespace ss2d_cuda
}  // namespace scan
}  // namespace remamber

namespace {

using remamber::scan::SS2DArgs;
using remamber::scan::SS2DLayout;
using remamber::scan::ScanDtype;
namespace sc = remamber::scan::ss2d_cuda;
static_assert(sc::kLongThreads <= emu::kMaxWarps * 32, "emulation block size");

template <typename T, int kThreads, int kMaxN>
void run_emulated(const SS2DArgs& p, bool use_smem) {
  const int64_t rows = p.shape.batch * p.shape.dim;
  const int64_t length = p.shape.height * p.shape.width;
  for (int64_t row = 0; row < rows; ++row) {
    // Poison the shared accumulator: the kernel must overwrite it in direction 0.
    emu::dynamic_smem.assign(use_smem ? static_cast<size_t>(length) : 0, -1234.5f);
    emu::run_block(kThreads, row,
                   [&p, use_smem] { sc::ss2d_scan_fwd_kernel<T, kThreads, kMaxN>(p, use_smem ? 1 : 0); });
  }
}

// Same choices as ss2d_cuda::launch_typed / launch_capacity (block shape from block_threads()).
template <typename T, int kMaxN>
void run_shape(const SS2DArgs& p, bool use_smem) {
  if (sc::block_threads(p.shape.height * p.shape.width) == sc::kShortThreads)
    return run_emulated<T, sc::kShortThreads, kMaxN>(p, use_smem);
  return run_emulated<T, sc::kLongThreads, kMaxN>(p, use_smem);
}

template <typename T>
void run_dispatch(const SS2DArgs& p, bool use_smem) {
  const int64_t n = p.shape.nstate;
  if (n <= 1) return run_shape<T, 1>(p, use_smem);
  if (n <= 2) return run_shape<T, 2>(p, use_smem);
  if (n <= 4) return run_shape<T, 4>(p, use_smem);
  if (n <= 8) return run_shape<T, 8>(p, use_smem);
  return run_shape<T, 16>(p, use_smem);
}

// Activations stored in the kernel's dtype; `value` holds the exact stored values widened to double.
struct Activation {
  std::vector<uint8_t> bytes;
  std::vector<double> value;
};

Activation make_activation(ScanDtype dtype, const std::vector<float>& x, size_t misalign_elems) {
  Activation a;
  const size_t elem = dtype == ScanDtype::kFloat32 ? 4 : 2;
  a.bytes.assign((x.size() + misalign_elems) * elem + 16, 0);
  a.value.resize(x.size());
  // Start at a 16-byte aligned address inside the buffer, then shift by misalign_elems elements.
  uint8_t* base = a.bytes.data();
  base += (16 - reinterpret_cast<uintptr_t>(base) % 16) % 16;
  base += misalign_elems * elem;
  for (size_t i = 0; i < x.size(); ++i) {
    if (dtype == ScanDtype::kFloat32) {
      std::memcpy(base + 4 * i, &x[i], 4);
      a.value[i] = x[i];
    } else if (dtype == ScanDtype::kFloat16) {
      const host_half h = static_cast<host_half>(x[i]);  // round to nearest even
      std::memcpy(base + 2 * i, &h, 2);
      a.value[i] = static_cast<double>(h);
    } else {
      uint32_t bits;
      std::memcpy(&bits, &x[i], 4);
      const uint16_t top = static_cast<uint16_t>(bits >> 16);  // truncation: any bf16 value will do
      std::memcpy(base + 2 * i, &top, 2);
      const uint32_t widened = static_cast<uint32_t>(top) << 16;
      float f;
      std::memcpy(&f, &widened, 4);
      a.value[i] = f;
    }
  }
  a.bytes.resize(a.bytes.size());  // (no reallocation: `base` stays valid)
  return a;
}

const void* data_of(const Activation& a, ScanDtype dtype, size_t misalign_elems) {
  const size_t elem = dtype == ScanDtype::kFloat32 ? 4 : 2;
  const uint8_t* base = a.bytes.data();
  base += (16 - reinterpret_cast<uintptr_t>(base) % 16) % 16;
  return base + misalign_elems * elem;
}

// Direction k's visiting order over the H x W positions, from the contract's table.
std::vector<int64_t> visiting_order(int layout, int k, int64_t H, int64_t W) {
  std::vector<int64_t> order;
  if (layout == 0 && (k == 1 || k == 3)) {
    for (int64_t w = 0; w < W; ++w)
      for (int64_t h = 0; h < H; ++h) order.push_back(h * W + w);  // column-major
  } else {
    for (int64_t h = 0; h < H; ++h)
      for (int64_t w = 0; w < W; ++w) order.push_back(h * W + w);  // row-major
  }
  if (k >= 2) std::vector<int64_t>(order.rbegin(), order.rend()).swap(order);
  return order;
}

double softplus64(double x) { return x <= 20.0 ? std::log1p(std::exp(x)) : x; }

int failures = 0;

struct Case {
  int64_t batch, dim, H, W, nstate;
  int layout;
  ScanDtype dtype;
  bool with_d, with_bias, softplus;
  size_t misalign = 0;  // elements of offset in front of every activation (scalar-load paths)
};

void check_case(const Case& cs) {
  const int64_t L = cs.H * cs.W, K = 4, Dm = cs.dim, N = cs.nstate;
  std::mt19937 gen(static_cast<unsigned>(cs.batch * 131 + cs.dim * 17 + cs.H * 7 + cs.W * 3 + N + cs.layout));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> u(cs.batch * Dm * L), delta(cs.batch * K * Dm * L), B(cs.batch * K * N * L),
      C(cs.batch * K * N * L), A(K * Dm * N), Dv(K * Dm), bias(K * Dm);
  for (auto& x : u) x = normal(gen);
  // softplus(delta) is ~0.2; without softplus, dt = delta + bias must stay positive (decays below 1).
  for (auto& x : delta) x = cs.softplus ? 0.5f * normal(gen) - 1.5f : 0.05f + 0.1f * std::fabs(normal(gen));
  for (auto& x : B) x = normal(gen);
  for (auto& x : C) x = normal(gen);
  for (auto& x : A) x = -std::exp(0.5f * normal(gen));
  for (auto& x : Dv) x = normal(gen);
  for (auto& x : bias) x = cs.softplus ? 0.5f * normal(gen) : 0.1f * std::fabs(normal(gen));
  const Activation au = make_activation(cs.dtype, u, cs.misalign), ad = make_activation(cs.dtype, delta, cs.misalign),
                   aB = make_activation(cs.dtype, B, cs.misalign), aC = make_activation(cs.dtype, C, cs.misalign);

  // float64 reference straight from the contract.
  std::vector<double> ref(cs.batch * Dm * L, 0.0);
  for (int k = 0; k < K; ++k) {
    const std::vector<int64_t> order = visiting_order(cs.layout, k, cs.H, cs.W);
    for (int64_t b = 0; b < cs.batch; ++b) {
      for (int64_t d = 0; d < Dm; ++d) {
        const int64_t c = k * Dm + d;
        std::vector<double> h(N, 0.0);
        for (int64_t t = 0; t < L; ++t) {
          const int64_t p = order[t];
          const double x = ad.value[(b * K * Dm + c) * L + p] + (cs.with_bias ? bias[c] : 0.0);
          const double dt = cs.softplus ? softplus64(x) : x;
          const double uu = au.value[(b * Dm + d) * L + p];
          double y = cs.with_d ? Dv[c] * uu : 0.0;
          for (int64_t n = 0; n < N; ++n) {
            const int64_t bc = ((b * K + k) * N + n) * L + p;
            h[n] = std::exp(dt * A[c * N + n]) * h[n] + dt * aB.value[bc] * uu;
            y += aC.value[bc] * h[n];
          }
          ref[(b * Dm + d) * L + p] += y;
        }
      }
    }
  }
  double scale = 1e-30;
  for (double r : ref) scale = std::fmax(scale, std::fabs(r));

  for (bool use_smem : {true, false}) {
    std::vector<float> y(ref.size(), -99.0f);  // poisoned: direction 0 must store every position
    SS2DArgs p;
    p.u = data_of(au, cs.dtype, cs.misalign);
    p.delta = data_of(ad, cs.dtype, cs.misalign);
    p.A = A.data();
    p.B = data_of(aB, cs.dtype, cs.misalign);
    p.C = data_of(aC, cs.dtype, cs.misalign);
    p.D = cs.with_d ? Dv.data() : nullptr;
    p.delta_bias = cs.with_bias ? bias.data() : nullptr;
    p.y = y.data();
    p.shape.batch = cs.batch;
    p.shape.dim = Dm;
    p.shape.height = cs.H;
    p.shape.width = cs.W;
    p.shape.nstate = N;
    p.layout = static_cast<SS2DLayout>(cs.layout);
    p.dtype = cs.dtype;
    p.delta_softplus = cs.softplus;
    switch (cs.dtype) {
      case ScanDtype::kFloat32: run_dispatch<float>(p, use_smem); break;
      case ScanDtype::kFloat16: run_dispatch<__half>(p, use_smem); break;
      case ScanDtype::kBFloat16: run_dispatch<__nv_bfloat16>(p, use_smem); break;
    }
    double err = 0.0;
    for (size_t i = 0; i < ref.size(); ++i) {
      const double e = std::fabs(static_cast<double>(y[i]) - ref[i]);
      err = std::isnan(e) ? INFINITY : std::fmax(err, e);
    }
    // fp32 state and accumulation against float64: a few ulps of the output scale per chunk level.
    const bool ok = std::isfinite(scale) && std::isfinite(err) && err <= 2e-5 * scale;
    static const char* const dtypes[] = {"fp32", "fp16", "bf16"};
    std::printf("%s layout=%s b=%lld D=%lld H=%lld W=%lld (L=%lld, %d threads) N=%lld %s D=%d bias=%d softplus=%d "
                "misalign=%zu acc=%s  max err %.3g (scale %.3g)\n",
                ok ? "ok  " : "FAIL", cs.layout == 0 ? "cross" : "bidi", static_cast<long long>(cs.batch),
                static_cast<long long>(Dm), static_cast<long long>(cs.H), static_cast<long long>(cs.W),
                static_cast<long long>(L), sc::block_threads(L), static_cast<long long>(N),
                dtypes[static_cast<int>(cs.dtype)], cs.with_d, cs.with_bias, cs.softplus, cs.misalign,
                use_smem ? "shared" : "global", err, scale);
    if (!ok) ++failures;
  }
}

}  // namespace

int main() {
  const ScanDtype f32 = ScanDtype::kFloat32, f16 = ScanDtype::kFloat16, bf16 = ScanDtype::kBFloat16;
  // Odd H and W, H != W, short row (one-warp block), batch 2, N = 1.
  check_case({2, 2, 7, 5, 1, 0, f32, true, true, true});
  // L = 1320: more than one 1024-step chunk and not a multiple of it; N = 16; H != W, even W.
  check_case({1, 1, 33, 40, 16, 0, f32, true, true, true});
  // Three chunks (L = 2070), odd H, even W, fp16, no optional inputs.
  check_case({1, 2, 45, 46, 3, 0, f16, false, false, true});
  // Even square, exactly one short chunk (L = 256), bf16, D only, batch 2.
  check_case({2, 1, 16, 16, 4, 0, bf16, true, false, true});
  // H = 1 in the cross layout (the column walk degenerates to the row walk); delta_bias only.
  check_case({1, 2, 1, 37, 8, 0, f32, false, true, true});
  // Misaligned tensors (scalar loads everywhere) across chunk boundaries, softplus off.
  check_case({1, 1, 31, 37, 2, 0, f32, true, true, false, 1});
  // Bidi layout as the Twister uses it (H = 1), two chunks with a tail, fp16, batch 2.
  check_case({2, 1, 1, 1100, 4, 1, f16, true, true, true});
  // Bidi with H > 1 (row-major order whatever H), bf16, N = 1, short rows.
  check_case({1, 3, 3, 50, 1, 1, bf16, true, true, true});
  // A single position.
  check_case({2, 1, 1, 1, 2, 0, f32, true, true, true});
  if (failures) {
    std::fprintf(stderr, "%d emulated SS2DScan kernel case(s) failed\n", failures);
    return 1;
  }
  std::printf("emulated fused SS2DScan kernel matches the float64 contract loop\n");
  return 0;
}
