// CUDA selective scan: chunked block-parallel scan along L (the mamba-ssm design, written anew).
//
// Layout: one thread block per row (b, c) of u/delta/y (row = b * channels + c), kThreads threads.
// The row is walked in chunks of kChunk = kThreads * kItems time steps. In a chunk, thread t owns the
// kItems consecutive steps [chunk + t*kItems, chunk + (t+1)*kItems): it loads them with 16-byte
// vector loads (when the run is complete and aligned), then for every state dimension n:
//   1. builds one pair (a, b) = (exp(dt*A), dt*B*u) per step (the map h -> a*h + b) and composes its
//      kItems pairs sequentially into one aggregate;
//   2. scans the aggregates across the block: warp shuffles inside each warp, then the per-warp totals
//      through shared memory, giving every thread the composition of all steps before its own (its
//      exclusive prefix) and the chunk's total;
//   3. applies the prefix to the state carried from the previous chunk to get the state entering its
//      first step, walks its steps with the recurrence and accumulates y += C*h;
//   4. carries the state across the chunk: carry = total.a * carry + total.b.
// State and accumulation are fp32; u/delta/B/C are fp32, fp16 or bf16 and widened on load; y is fp32.
// Steps past the end of the row are identity pairs (1, 0) and are never stored.
#pragma once

// REMAMBER_SCAN_HOST_EMULATION: plugins/tests/test_kernel_emulation.cpp compiles this kernel with g++,
// running each block's threads as std::threads (shuffles and __syncthreads emulated with barriers),
// so the CPU-only CI exercises the kernel's index maths and block scan. Only the CUDA headers and the
// <<<>>> launchers are left out there.
#ifndef REMAMBER_SCAN_HOST_EMULATION
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#endif
#include <stdint.h>

#include "scan_launch.h"
#include "scan_math.h"

namespace remamber {
namespace scan {
namespace cuda_detail {

constexpr int kThreads = 128;               // 4 warps
constexpr int kItems = 8;                   // consecutive time steps per thread
constexpr int kChunk = kThreads * kItems;   // 1024 time steps per chunk
constexpr int kWarps = kThreads / 32;
constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float to_float(float x) { return x; }
#ifndef REMAMBER_SCAN_HOST_EMULATION
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
#endif

__device__ __forceinline__ bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// out[i] = row[start + i] as fp32 for i < kItems; positions at or past `length` read as `pad`.
// A complete, 16-byte aligned run uses kItems*sizeof(T)/16 vector loads (2 for fp32, 1 for 16-bit
// types); rows whose length is not a multiple of the vector width fall back to scalar loads.
template <typename T>
__device__ __forceinline__ void load_items(const T* __restrict__ row, int64_t start, int64_t length, float pad,
                                           float (&out)[kItems]) {
  static_assert((kItems * sizeof(T)) % 16 == 0, "a thread's run must be whole 16-byte vectors");
  const T* p = row + start;
  if (start + kItems <= length && aligned16(p)) {
    constexpr int kVec = static_cast<int>(kItems * sizeof(T) / 16);
    uint4 raw[kVec];
#pragma unroll
    for (int v = 0; v < kVec; ++v) raw[v] = reinterpret_cast<const uint4*>(p)[v];
    const T* vals = reinterpret_cast<const T*>(raw);
#pragma unroll
    for (int i = 0; i < kItems; ++i) out[i] = to_float(vals[i]);
  } else {
#pragma unroll
    for (int i = 0; i < kItems; ++i) out[i] = (start + i < length) ? to_float(p[i]) : pad;
  }
}

// row[start + i] = v[i] for the positions inside the row; float4 stores when complete and aligned.
__device__ __forceinline__ void store_items(float* __restrict__ row, int64_t start, int64_t length,
                                            const float (&v)[kItems]) {
  float* p = row + start;
  if (start + kItems <= length && aligned16(p)) {
#pragma unroll
    for (int q = 0; q < kItems / 4; ++q)
      reinterpret_cast<float4*>(p)[q] = make_float4(v[4 * q], v[4 * q + 1], v[4 * q + 2], v[4 * q + 3]);
  } else {
#pragma unroll
    for (int i = 0; i < kItems; ++i)
      if (start + i < length) p[i] = v[i];
  }
}

__device__ __forceinline__ ScanPair shfl_up_pair(ScanPair v, int offset) {
  return ScanPair{__shfl_up_sync(kFullMask, v.a, offset), __shfl_up_sync(kFullMask, v.b, offset)};
}

// kMaxN: the template's state capacity (1, 2, 4, 8 or 16); the row's actual N (<= kMaxN) is
// p.shape.nstate, so any N in 1..16 runs on the next larger instantiation.
template <typename T, int kMaxN>
__global__ void __launch_bounds__(kThreads) selective_scan_fwd_kernel(ScanCudaParams p) {
  const int64_t row = blockIdx.x;  // b * channels + c
  const int64_t channels = p.shape.channels;
  const int64_t length = p.shape.length;
  const int nstate = static_cast<int>(p.shape.nstate);
  const int64_t b = row / channels;
  const int64_t c = row % channels;
  const int64_t g = c / (channels / p.shape.groups);  // group of channel c

  // u, delta, y: element (b, c, t) at row * length + t.
  const T* u_row = static_cast<const T*>(p.u) + row * length;
  const T* delta_row = static_cast<const T*>(p.delta) + row * length;
  float* y_row = p.y + row * length;
  // B, C: element (b, g, n, t) at ((b * groups + g) * nstate + n) * length + t.
  const int64_t bc_base = (b * p.shape.groups + g) * nstate * length;
  const T* B_rows = static_cast<const T*>(p.B) + bc_base;
  const T* C_rows = static_cast<const T*>(p.C) + bc_base;

  float a_val[kMaxN];
  float carry[kMaxN];  // state h[n] at the end of the previous chunk
#pragma unroll
  for (int n = 0; n < kMaxN; ++n) {
    a_val[n] = n < nstate ? p.A[c * nstate + n] : 0.0f;
    carry[n] = 0.0f;
  }
  const float bias = p.delta_bias ? p.delta_bias[c] : 0.0f;
  const float d_skip = p.D ? p.D[c] : 0.0f;

  __shared__ float warp_total_a[kWarps];
  __shared__ float warp_total_b[kWarps];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;

  for (int64_t chunk = 0; chunk < length; chunk += kChunk) {
    const int64_t start = chunk + static_cast<int64_t>(threadIdx.x) * kItems;  // this thread's first step
    float u[kItems], dt[kItems], dt_u[kItems], y[kItems];
    load_items(u_row, start, length, 0.0f, u);
    load_items(delta_row, start, length, 0.0f, dt);
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      dt[i] = step_size(dt[i], bias, p.delta_softplus);
      dt_u[i] = dt[i] * u[i];
      y[i] = 0.0f;
    }

#pragma unroll
    for (int n = 0; n < kMaxN; ++n) {
      if (n < nstate) {  // uniform across the block: every thread takes the same branch
        float bv[kItems], cv[kItems], dA[kItems];
        load_items(B_rows + n * length, start, length, 0.0f, bv);
        load_items(C_rows + n * length, start, length, 0.0f, cv);
        // 1. this thread's aggregate of its steps; steps past the row end are the identity.
        ScanPair agg = scan_identity();
#pragma unroll
        for (int i = 0; i < kItems; ++i) {
          const bool inside = start + i < length;
          dA[i] = decay(dt[i], a_val[n]);
          const ScanPair step = inside ? ScanPair{dA[i], drive(dt_u[i], bv[i])} : scan_identity();
          agg = scan_combine(agg, step);
        }
        // 2a. inclusive scan of the aggregates inside the warp (Hillis-Steele over the lanes).
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
        // 2b. exclusive prefix = (totals of the warps before) o (lanes before in this warp); total of the chunk.
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
    store_items(y_row, start, length, y);
  }
}

#ifndef REMAMBER_SCAN_HOST_EMULATION
template <typename T, int kMaxN>
cudaError_t launch_with_capacity(const ScanCudaParams& p, cudaStream_t stream) {
  const int64_t rows = p.shape.batch * p.shape.channels;  // checked <= INT32_MAX by the caller
  selective_scan_fwd_kernel<T, kMaxN><<<dim3(static_cast<unsigned>(rows)), dim3(kThreads), 0, stream>>>(p);
  return cudaGetLastError();
}

// N in 1..16 -> the smallest instantiated capacity that holds it.
template <typename T>
cudaError_t launch_typed(const ScanCudaParams& p, cudaStream_t stream) {
  const int64_t n = p.shape.nstate;
  if (n <= 1) return launch_with_capacity<T, 1>(p, stream);
  if (n <= 2) return launch_with_capacity<T, 2>(p, stream);
  if (n <= 4) return launch_with_capacity<T, 4>(p, stream);
  if (n <= 8) return launch_with_capacity<T, 8>(p, stream);
  return launch_with_capacity<T, 16>(p, stream);
}
#endif  // REMAMBER_SCAN_HOST_EMULATION

}  // namespace cuda_detail
}  // namespace scan
}  // namespace remamber
