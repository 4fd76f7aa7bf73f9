// ctest: the CUDA selective-scan kernel (plugins/cuda/scan_kernel.cuh) compiled with g++ and run on
// the CPU. Each block's kThreads threads are real std::threads; __syncthreads and warp shuffles are
// emulated with barriers, __shared__ arrays are shared by the block's threads. The result is compared
// with the CPU kernel (scan_cpu.cpp) and a double-precision recurrence. This checks the kernel's own
// index maths, vector/scalar load paths, tails and the block-wide scan without a GPU; it cannot check
// CUDA-specific behaviour (memory model, codegen), which the GPU check script covers.
#define REMAMBER_SCAN_HOST_EMULATION 1

#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <thread>
#include <vector>

// ---- CUDA shims ------------------------------------------------------------------------------------
using cudaError_t = int;
using cudaStream_t = void*;
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __shared__ static  // one copy per kernel instantiation; blocks run one at a time

struct uint4 {
  unsigned x, y, z, w;
};
struct float4 {
  float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
struct Dim {
  unsigned x = 0;
};
thread_local Dim threadIdx;
thread_local Dim blockIdx;

namespace emu {
constexpr int kThreadsPerBlock = 128;  // must match cuda_detail::kThreads (checked below)
std::barrier<>* block_barrier = nullptr;
std::barrier<>* warp_barrier[kThreadsPerBlock / 32] = {};
float warp_slots[kThreadsPerBlock / 32][32];
}  // namespace emu

inline void __syncthreads() { emu::block_barrier->arrive_and_wait(); }

inline float __shfl_up_sync(unsigned /*mask*/, float v, int offset) {
  const int lane = static_cast<int>(threadIdx.x) & 31, warp = static_cast<int>(threadIdx.x) >> 5;
  emu::warp_slots[warp][lane] = v;
  emu::warp_barrier[warp]->arrive_and_wait();
  const float r = lane >= offset ? emu::warp_slots[warp][lane - offset] : v;
  emu::warp_barrier[warp]->arrive_and_wait();  // nobody overwrites a slot before everyone has read
  return r;
}

#include "scan_cpu.h"
#include "scan_kernel.cuh"

namespace {

using remamber::scan::ScanCudaParams;
namespace cd = remamber::scan::cuda_detail;
static_assert(cd::kThreads == emu::kThreadsPerBlock, "emulation block size");

template <int kMaxN>
void run_emulated(const ScanCudaParams& p) {
  const int64_t rows = p.shape.batch * p.shape.channels;
  for (int64_t row = 0; row < rows; ++row) {
    std::barrier<> block(cd::kThreads);
    std::vector<std::unique_ptr<std::barrier<>>> warps;
    for (int w = 0; w < cd::kWarps; ++w) {
      warps.push_back(std::make_unique<std::barrier<>>(32));
      emu::warp_barrier[w] = warps.back().get();
    }
    emu::block_barrier = &block;
    std::vector<std::thread> threads;
    for (int t = 0; t < cd::kThreads; ++t) {
      threads.emplace_back([t, row, &p] {
        threadIdx.x = static_cast<unsigned>(t);
        blockIdx.x = static_cast<unsigned>(row);
        cd::selective_scan_fwd_kernel<float, kMaxN>(p);
      });
    }
    for (auto& th : threads) th.join();
  }
}

void run_dispatch(const ScanCudaParams& p) {
  const int64_t n = p.shape.nstate;  // same capacity choice as cuda_detail::launch_typed
  if (n <= 1) return run_emulated<1>(p);
  if (n <= 2) return run_emulated<2>(p);
  if (n <= 4) return run_emulated<4>(p);
  if (n <= 8) return run_emulated<8>(p);
  return run_emulated<16>(p);
}

int failures = 0;

void check_case(int64_t batch, int64_t channels, int64_t length, int64_t groups, int64_t nstate, bool with_d,
                bool with_bias, size_t misalign) {
  std::mt19937 gen(static_cast<unsigned>(length * 7 + nstate * 3 + groups + misalign));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const size_t io = static_cast<size_t>(batch * channels * length);
  const size_t bc = static_cast<size_t>(batch * groups * nstate * length);
  // `misalign` floats of padding in front shift every tensor off 16-byte alignment (scalar paths).
  std::vector<float> ubuf(io + misalign), dbuf(io + misalign), Bbuf(bc + misalign), Cbuf(bc + misalign);
  float *u = ubuf.data() + misalign, *delta = dbuf.data() + misalign, *B = Bbuf.data() + misalign,
        *C = Cbuf.data() + misalign;
  for (size_t i = 0; i < io; ++i) {
    u[i] = normal(gen);
    delta[i] = 0.5f * normal(gen) - 1.0f;
  }
  for (size_t i = 0; i < bc; ++i) {
    B[i] = normal(gen);
    C[i] = normal(gen);
  }
  std::vector<float> A(static_cast<size_t>(channels * nstate)), D(static_cast<size_t>(channels)),
      bias(static_cast<size_t>(channels));
  for (auto& a : A) a = -std::exp(0.5f * normal(gen));
  for (auto& d : D) d = normal(gen);
  for (auto& b : bias) b = 0.5f * normal(gen);
  std::vector<float> y_kernel(io, -99.0f), y_cpu(io, -77.0f);

  ScanCudaParams p;
  p.u = u;
  p.delta = delta;
  p.A = A.data();
  p.B = B;
  p.C = C;
  p.D = with_d ? D.data() : nullptr;
  p.delta_bias = with_bias ? bias.data() : nullptr;
  p.y = y_kernel.data();
  p.shape.batch = batch;
  p.shape.channels = channels;
  p.shape.length = length;
  p.shape.groups = groups;
  p.shape.nstate = nstate;
  run_dispatch(p);

  remamber::scan::ScanCpuArgs a;
  a.u = u;
  a.delta = delta;
  a.A = A.data();
  a.B = B;
  a.C = C;
  a.D = p.D;
  a.delta_bias = p.delta_bias;
  a.y = y_cpu.data();
  a.shape = p.shape;
  remamber::scan::selective_scan_cpu_rows(a, 0, batch * channels);

  double scale = 1e-30, err = 0.0;
  for (size_t i = 0; i < io; ++i) {
    scale = std::fmax(scale, std::fabs(y_cpu[i]));
    err = std::fmax(err, std::fabs(static_cast<double>(y_kernel[i]) - y_cpu[i]));
  }
  const bool ok = err <= 1e-5 * scale;
  std::printf("%s kernel vs CPU: b=%lld c=%lld L=%lld G=%lld N=%lld D=%d bias=%d misalign=%zu  max err %.3g (scale %.3g)\n",
              ok ? "ok  " : "FAIL", static_cast<long long>(batch), static_cast<long long>(channels),
              static_cast<long long>(length), static_cast<long long>(groups), static_cast<long long>(nstate), with_d,
              with_bias, misalign, err, scale);
  if (!ok) ++failures;
}

}  // namespace

int main() {
  // Aligned rows with whole chunks (vector loads), several chunks: L = 2048.
  check_case(1, 4, 2048, 2, 1, true, true, 0);
  // Tails and misaligned rows: L not a multiple of 4/8, odd padding in front.
  check_case(2, 2, 1037, 1, 3, true, false, 1);
  // One step, N = 16, grouped, no optional inputs.
  check_case(1, 4, 1, 4, 16, false, false, 0);
  // Several chunks with a partial last chunk, N = 2, delta_bias only.
  check_case(1, 2, 2500, 2, 2, false, true, 2);
  // Short row inside one warp's range.
  check_case(3, 1, 37, 1, 8, true, true, 0);
  if (failures) {
    std::fprintf(stderr, "%d emulated kernel case(s) failed\n", failures);
    return 1;
  }
  std::printf("emulated CUDA kernel matches the CPU kernel\n");
  return 0;
}
