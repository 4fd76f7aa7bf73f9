// Fused CUDA kernel of remamber::SS2DScan v1 (plugins/ss2dScanPlugin/README.md): the cross-scan (or the
// Twister's bidirectional scan), the selective scan of the four directions and the merge, in one launch.
//
// Layout: one thread block per channel (b, d) of u / y (block = b * dim + d), kThreads threads. The block
// walks the four directions in turn; for each it runs a chunked block-parallel scan over the L = H*W steps
// of that direction (kChunk = kThreads * kItems steps per chunk, fp32 state carried across chunks) and
// reads u, delta, B and C *by index*: step t of direction k sits at spatial position
// ss2d_position(layout, k, t, H, W) (plugins/common/ss2d_types.h), so no permuted copy of any tensor
// exists. Within a chunk, thread j owns steps [chunk + j*kItems, chunk + (j+1)*kItems): it builds the
// affine pairs (exp(dt*A), dt*B*u) of its steps, the block scans the per-thread aggregates (warp shuffles,
// then the per-warp totals through shared memory), and each thread replays its steps from its exclusive
// prefix, accumulating y += C*h. All maths per element comes from plugins/common/scan_math.h.
//
// The merge y = y_0 + y_1 + y_2 + y_3 is deterministic: the block that owns channel (b, d) is the only
// writer of y[b, d, :, :], and it adds the directions in the fixed order 0, 1, 2, 3 (a __syncthreads
// between directions orders the read-modify-writes). No float atomics. Where the accumulator lives:
//  - L * 4 bytes <= kSmemAccumBytes: in shared memory; y is written to global memory once, coalesced,
//    at the end (the contract's compulsory bytes for y);
//  - longer rows: in y itself (global memory, fp32): direction 0 stores, directions 1..3 read-add-store,
//    i.e. 3 extra reads and 3 extra writes of the (b, d) row, mostly served by L2 while the row is hot.
// Why this and not one block per (b, d, k) writing per-direction partials: partials cost 4 writes + 4
// reads of an fp32 row plus a second pass (or a last-block-done counter) to sum them, against 3 + 3 here
// and none at all for the rows that fit shared memory (every SS2D of the model at 480 except stage 0).
//
// Reads: directions that walk the row-major order (cross k = 0, 2; bidi all four) read runs of kItems
// consecutive positions (ascending or descending) with 16-byte vector loads when aligned; the column-major
// directions (cross k = 1, 3) gather with stride W, which the GPU check measures against the copy
// bandwidth. u is read once per direction (4 times per call), delta, B and C once.
//
// Two block shapes: kThreads = 32 (one warp, a 256-step chunk) for L <= 256 (late stages, short bidi
// scans) and kThreads = 128 (1024-step chunks) otherwise.
#pragma once

// REMAMBER_SCAN_HOST_EMULATION: plugins/tests/test_ss2d_kernel_emulation.cpp compiles this header with g++
// and runs each block's threads as std::threads. It supplies the CUDA shims (threadIdx, __syncthreads,
// __shfl_up_sync, __half / __nv_bfloat16 with __half2float / __bfloat162float, uint4, float4) and
// ss2d_dynamic_smem(); only the <<<>>> launchers are left out.
#ifndef REMAMBER_SCAN_HOST_EMULATION
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#endif
#include <stdint.h>
#include <string.h>

#include "scan_math.h"
#include "ss2d_launch.h"
#include "ss2d_types.h"

namespace remamber {
namespace scan {
namespace ss2d_cuda {

constexpr int kItems = 8;                    // consecutive steps of one direction per thread
constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kShortThreads = 32;            // block shape for L <= kShortThreads * kItems
constexpr int kLongThreads = 128;
// Largest fp32 accumulator row kept in shared memory: the dynamic shared memory every block may use
// without an opt-in (48 KiB), i.e. L <= 12,288. Longer rows accumulate in y (global memory).
constexpr int64_t kSmemAccumBytes = 48 * 1024;

// Launch decisions, shared by the launcher and the emulation test.
// Block shape: one warp for short rows, four warps otherwise.
inline int block_threads(int64_t length) {
  return length <= static_cast<int64_t>(kShortThreads) * kItems ? kShortThreads : kLongThreads;
}
// Whether the H*W fp32 accumulator lives in shared memory (else in y itself).
inline bool uses_smem_accumulator(int64_t length) {
  return length * static_cast<int64_t>(sizeof(float)) <= kSmemAccumBytes;
}

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

__device__ __forceinline__ bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

#ifndef REMAMBER_SCAN_HOST_EMULATION
// The block's dynamic shared memory (the fp32 accumulator row when it fits).
__device__ __forceinline__ float* ss2d_dynamic_smem() {
  extern __shared__ float4 ss2d_smem[];
  return reinterpret_cast<float*>(ss2d_smem);
}
#else
float* ss2d_dynamic_smem();  // defined by the emulation test
#endif

// Spatial positions of the steps t0 .. t0+kItems-1 of direction k (-1 for steps at or past L).
// Returns the memory stride of the run: +1 / -1 when the kItems positions are consecutive ascending /
// descending and all inside the row (vector loads possible), 0 otherwise (gather).
// The first position comes from ss2d_position (the contract's table); the rest step from it.
__device__ __forceinline__ int run_positions(SS2DLayout layout, int k, int64_t t0, int32_t height, int32_t width,
                                             int32_t (&pos)[kItems]) {
  const int64_t length = static_cast<int64_t>(height) * width;
  const bool reversed = k >= 2;
  const bool column = layout == SS2DLayout::kCross && (k & 1);
  if (t0 >= length) {
#pragma unroll
    for (int i = 0; i < kItems; ++i) pos[i] = -1;
    return 0;
  }
  const int32_t first = static_cast<int32_t>(ss2d_position(layout, k, t0, height, width));
  if (!column) {
#pragma unroll
    for (int i = 0; i < kItems; ++i) pos[i] = (t0 + i < length) ? (reversed ? first - i : first + i) : -1;
    return (t0 + kItems <= length) ? (reversed ? -1 : 1) : 0;
  }
  // Column-major walk: the next step goes one row down (up when reversed), wrapping to the next
  // (previous) column.
  int32_t h = first / width;
  int32_t w = first - h * width;
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    pos[i] = (t0 + i < length) ? h * width + w : -1;
    if (!reversed) {
      if (++h == height) {
        h = 0;
        ++w;
      }
    } else if (h-- == 0) {
      h = height - 1;
      --w;
    }
  }
  return 0;
}

// out[i] = row[pos[i]] as fp32, `pad` where pos[i] < 0. A contiguous run (stride +-1) whose lowest
// address is 16-byte aligned uses kItems * sizeof(T) / 16 vector loads.
template <typename T>
__device__ __forceinline__ void load_run(const T* __restrict__ row, const int32_t (&pos)[kItems], int stride,
                                         float pad, float (&out)[kItems]) {
  static_assert((kItems * sizeof(T)) % 16 == 0, "a thread's run must be whole 16-byte vectors");
  if (stride != 0) {
    const T* base = row + (stride > 0 ? pos[0] : pos[kItems - 1]);  // lowest address of the run
    if (aligned16(base)) {
      constexpr int kVec = static_cast<int>(kItems * sizeof(T) / 16);
      uint4 raw[kVec];
#pragma unroll
      for (int v = 0; v < kVec; ++v) raw[v] = reinterpret_cast<const uint4*>(base)[v];
      T vals[kItems];
      memcpy(vals, raw, sizeof(raw));  // bit copy without type punning (registers only on the GPU)
      // Two loops with constant indices keep vals in registers (a runtime index would spill it).
      if (stride > 0) {
#pragma unroll
        for (int i = 0; i < kItems; ++i) out[i] = to_float(vals[i]);
      } else {
#pragma unroll
        for (int i = 0; i < kItems; ++i) out[i] = to_float(vals[kItems - 1 - i]);
      }
      return;
    }
  }
#pragma unroll
  for (int i = 0; i < kItems; ++i) out[i] = pos[i] >= 0 ? to_float(row[pos[i]]) : pad;
}

// acc[pos[i]] = v[i] (first direction) or acc[pos[i]] += v[i] (later ones), for pos[i] >= 0; float4
// accesses when the run is contiguous and aligned. acc is the shared-memory row or y's global row.
__device__ __forceinline__ void accumulate_run(float* __restrict__ acc, const int32_t (&pos)[kItems], int stride,
                                               bool first_direction, const float (&v)[kItems]) {
  if (stride != 0) {
    float* base = acc + (stride > 0 ? pos[0] : pos[kItems - 1]);
    if (aligned16(base)) {
      // Element j of vector q is step 4q + j (ascending) or kItems - 1 - (4q + j) (descending); constant
      // indices in both loops keep v in registers.
      float w[kItems];
#pragma unroll
      for (int i = 0; i < kItems; ++i) w[i] = stride > 0 ? v[i] : v[kItems - 1 - i];
#pragma unroll
      for (int q = 0; q < kItems / 4; ++q) {
        float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (!first_direction) x = reinterpret_cast<const float4*>(base)[q];
        x.x += w[4 * q];
        x.y += w[4 * q + 1];
        x.z += w[4 * q + 2];
        x.w += w[4 * q + 3];
        reinterpret_cast<float4*>(base)[q] = x;
      }
      return;
    }
  }
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    if (pos[i] < 0) continue;
    acc[pos[i]] = first_direction ? v[i] : acc[pos[i]] + v[i];
  }
}

__device__ __forceinline__ ScanPair shfl_up_pair(ScanPair v, int offset) {
  return ScanPair{__shfl_up_sync(kFullMask, v.a, offset), __shfl_up_sync(kFullMask, v.b, offset)};
}

// kMaxN: the state capacity of the instantiation (1, 2, 4, 8 or 16); the call's N (<= kMaxN) is
// p.shape.nstate. use_smem: accumulate in dynamic shared memory (H*W floats, allocated by the launch).
template <typename T, int kThreads, int kMaxN>
__global__ void __launch_bounds__(kThreads) ss2d_scan_fwd_kernel(SS2DArgs p, int use_smem) {
  constexpr int kWarps = kThreads / 32;
  constexpr int kChunk = kThreads * kItems;
  const int64_t row = blockIdx.x;  // b * dim + d
  const int64_t dim = p.shape.dim;
  const int32_t height = static_cast<int32_t>(p.shape.height);
  const int32_t width = static_cast<int32_t>(p.shape.width);
  const int64_t length = static_cast<int64_t>(height) * width;
  const int nstate = static_cast<int>(p.shape.nstate);
  const int64_t b = row / dim;
  const int64_t d = row - b * dim;

  const T* u_row = static_cast<const T*>(p.u) + row * length;  // u, y: (batch, dim, H, W)
  float* y_row = p.y + row * length;
  float* acc = use_smem ? ss2d_dynamic_smem() : y_row;

  __shared__ float warp_total_a[kWarps];
  __shared__ float warp_total_b[kWarps];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;

  for (int k = 0; k < kSS2DDirections; ++k) {
    const int64_t c = k * dim + d;  // row of the per-direction parameters
    const T* delta_row = static_cast<const T*>(p.delta) + (b * kSS2DDirections * dim + c) * length;
    // B, C: (batch, 4, N, H, W); state n of direction k at ((b * 4 + k) * N + n) * L.
    const int64_t bc_base = (b * kSS2DDirections + k) * nstate * length;
    const T* B_rows = static_cast<const T*>(p.B) + bc_base;
    const T* C_rows = static_cast<const T*>(p.C) + bc_base;

    // A pre-scaled by log2(e): the decay exp(dt * A) is one exp2 (scan_math.h, decay_exp2).
    float a_log2e[kMaxN];
    float carry[kMaxN];  // state h[n] at the end of the previous chunk
#pragma unroll
    for (int n = 0; n < kMaxN; ++n) {
      a_log2e[n] = n < nstate ? p.A[c * nstate + n] * kLog2e : 0.0f;
      carry[n] = 0.0f;
    }
    const float bias = p.delta_bias ? p.delta_bias[c] : 0.0f;
    const float d_skip = p.D ? p.D[c] : 0.0f;

    for (int64_t chunk = 0; chunk < length; chunk += kChunk) {
      const int64_t t0 = chunk + static_cast<int64_t>(threadIdx.x) * kItems;  // this thread's first step
      int32_t pos[kItems];
      const int stride = run_positions(p.layout, k, t0, height, width, pos);
      float u[kItems], dt[kItems], dt_u[kItems], y[kItems];
      load_run(u_row, pos, stride, 0.0f, u);
      load_run(delta_row, pos, stride, 0.0f, dt);
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        dt[i] = step_size(dt[i], bias, p.delta_softplus);
        dt_u[i] = dt[i] * u[i];
        y[i] = 0.0f;
      }

#pragma unroll
      for (int n = 0; n < kMaxN; ++n) {
        if (n < nstate) {  // uniform across the block
          float bv[kItems], cv[kItems], dA[kItems];
          load_run(B_rows + n * length, pos, stride, 0.0f, bv);
          load_run(C_rows + n * length, pos, stride, 0.0f, cv);
          // 1. this thread's aggregate of its steps; steps past the end are the identity.
          ScanPair agg = scan_identity();
#pragma unroll
          for (int i = 0; i < kItems; ++i) {
            dA[i] = decay_exp2(dt[i], a_log2e[n]);
            const ScanPair step = pos[i] >= 0 ? ScanPair{dA[i], drive(dt_u[i], bv[i])} : scan_identity();
            agg = scan_combine(agg, step);
          }
          // 2a. inclusive scan of the aggregates inside the warp.
          ScanPair incl = agg;
#pragma unroll
          for (int offset = 1; offset < 32; offset <<= 1) {
            const ScanPair before = shfl_up_pair(incl, offset);
            if (lane >= offset) incl = scan_combine(before, incl);
          }
          if (lane == 31) {
            warp_total_a[warp] = incl.a;
            warp_total_b[warp] = incl.b;
          }
          __syncthreads();
          // 2b. exclusive prefix = (warps before) o (lanes before); and the chunk's total.
          ScanPair prefix = scan_identity();
          ScanPair total = scan_identity();
#pragma unroll
          for (int w = 0; w < kWarps; ++w) {
            const ScanPair wt{warp_total_a[w], warp_total_b[w]};
            if (w < warp) prefix = scan_combine(prefix, wt);
            total = scan_combine(total, wt);
          }
          ScanPair lane_before = shfl_up_pair(incl, 1);
          if (lane == 0) lane_before = scan_identity();
          prefix = scan_combine(prefix, lane_before);
          // 3. state entering this thread's first step, then the recurrence over its steps.
          float h = prefix.a * carry[n] + prefix.b;
#pragma unroll
          for (int i = 0; i < kItems; ++i) {
            h = state_update(h, dA[i], dt_u[i], bv[i]);
            y[i] += output_term(cv[i], h);
          }
          // 4. state at the end of this chunk.
          carry[n] = total.a * carry[n] + total.b;
          __syncthreads();  // the warp totals are rewritten by the next state dimension / chunk
        }
      }
#pragma unroll
      for (int i = 0; i < kItems; ++i) y[i] += skip_term(d_skip, u[i]);
      accumulate_run(acc, pos, stride, k == 0, y);
    }
    // Every position of this direction was written by one thread; the next direction adds to it from
    // another thread, so order the two (shared and global writes are visible block-wide after this).
    __syncthreads();
  }
  if (use_smem) {
    for (int64_t q = threadIdx.x; q < length; q += kThreads) y_row[q] = acc[q];
  }
}

#ifndef REMAMBER_SCAN_HOST_EMULATION
template <typename T, int kThreads, int kMaxN>
cudaError_t launch_shape(const SS2DArgs& p, cudaStream_t stream) {
  const int64_t rows = p.shape.batch * p.shape.dim;  // checked <= INT32_MAX by the caller
  const int64_t length = p.shape.height * p.shape.width;
  const bool use_smem = uses_smem_accumulator(length);
  const size_t smem_bytes = use_smem ? static_cast<size_t>(length) * sizeof(float) : 0;
  ss2d_scan_fwd_kernel<T, kThreads, kMaxN>
      <<<dim3(static_cast<unsigned>(rows)), dim3(kThreads), smem_bytes, stream>>>(p, use_smem ? 1 : 0);
  return cudaGetLastError();
}

template <typename T, int kMaxN>
cudaError_t launch_capacity(const SS2DArgs& p, cudaStream_t stream) {
  const int64_t length = p.shape.height * p.shape.width;
  if (block_threads(length) == kShortThreads) return launch_shape<T, kShortThreads, kMaxN>(p, stream);
  return launch_shape<T, kLongThreads, kMaxN>(p, stream);
}

// N in 1..16 -> the smallest instantiated capacity that holds it.
template <typename T>
cudaError_t launch_typed(const SS2DArgs& p, cudaStream_t stream) {
  const int64_t n = p.shape.nstate;
  if (n <= 1) return launch_capacity<T, 1>(p, stream);
  if (n <= 2) return launch_capacity<T, 2>(p, stream);
  if (n <= 4) return launch_capacity<T, 4>(p, stream);
  if (n <= 8) return launch_capacity<T, 8>(p, stream);
  return launch_capacity<T, 16>(p, stream);
}
#endif  // REMAMBER_SCAN_HOST_EMULATION

}  // namespace ss2d_cuda
}  // namespace scan
}  // namespace remamber
