// The CUDA emulation both kernel-emulation ctests share (test_kernel_emulation.cpp: SelectiveScan,
// test_ss2d_kernel_emulation.cpp: SS2DScan): enough of CUDA for g++ to compile a .cuh kernel and run it on
// the CPU. Each block's threads are real std::threads; __syncthreads, __syncwarp and the warp shuffles
// are barriers over per-warp slots, __shared__ arrays are statics shared by the block's threads (blocks
// run one after another), and __half / __nv_bfloat16 are bit containers widened by the project's exact
// host conversions (scan_math.h). Why one header: both tests must emulate the same CUDA semantics; a fix
// to a shim belongs to both. Include it before the kernel header, after defining
// REMAMBER_SCAN_HOST_EMULATION and including scan_math.h.
#pragma once

#include <barrier>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "scan_math.h"

using cudaError_t = int;
using cudaStream_t = void*;
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static  // one copy per kernel instantiation; blocks run one at a time

struct uint2 {
  unsigned x, y;
};
struct uint4 {
  unsigned x, y, z, w;
};
struct float4 {
  float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
// 16-bit storage types with the device conversion intrinsics' names (exact widening on the host).
struct __half {
  uint16_t bits;
};
struct __nv_bfloat16 {
  uint16_t bits;
};
inline float __half2float(__half h) { return remamber::scan::half_bits_to_float(h.bits); }
inline float __bfloat162float(__nv_bfloat16 h) { return remamber::scan::bf16_bits_to_float(h.bits); }

struct Dim {
  unsigned x = 0;
};
inline thread_local Dim threadIdx;
inline thread_local Dim blockIdx;

namespace emu {
constexpr int kMaxWarps = 32;
inline std::barrier<>* block_barrier = nullptr;
inline std::barrier<>* warp_barrier[kMaxWarps] = {};
inline float warp_slots[kMaxWarps][32];
inline int lane() { return static_cast<int>(threadIdx.x) & 31; }
inline int warp() { return static_cast<int>(threadIdx.x) >> 5; }
// Every lane publishes v, the warp meets, each lane reads lane `src(lane)`, the warp meets again
// (so no slot is overwritten before every lane has read it).
template <class Src>
float exchange(float v, Src src) {
  emu::warp_slots[warp()][lane()] = v;
  emu::warp_barrier[warp()]->arrive_and_wait();
  const float r = emu::warp_slots[warp()][src(lane())];
  emu::warp_barrier[warp()]->arrive_and_wait();
  return r;
}

// Runs block `block_index` of a kernel: `threads` (a multiple of 32) std::threads at once, each with its
// threadIdx.x / blockIdx.x, calling body(); returns when all have finished.
template <class Body>
void run_block(int threads, int64_t block_index, Body body) {
  std::barrier<> block(threads);
  std::vector<std::unique_ptr<std::barrier<>>> warps;
  for (int w = 0; w < threads / 32; ++w) {
    warps.push_back(std::make_unique<std::barrier<>>(32));
    warp_barrier[w] = warps.back().get();
  }
  block_barrier = &block;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([t, block_index, &body] {
      threadIdx.x = static_cast<unsigned>(t);
      blockIdx.x = static_cast<unsigned>(block_index);
      body();
    });
  }
  for (auto& th : pool) th.join();
}
}  // namespace emu

inline void __syncthreads() { emu::block_barrier->arrive_and_wait(); }
inline void __syncwarp(unsigned /*mask*/ = 0xffffffffu) { emu::warp_barrier[emu::warp()]->arrive_and_wait(); }
inline float __shfl_up_sync(unsigned /*mask*/, float v, int offset) {
  return emu::exchange(v, [offset](int l) { return l >= offset ? l - offset : l; });
}
inline float __shfl_sync(unsigned /*mask*/, float v, int src_lane) {
  return emu::exchange(v, [src_lane](int) { return src_lane; });
}
