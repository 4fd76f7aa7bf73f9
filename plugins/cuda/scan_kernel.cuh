// CUDA selective scan: rows of the scan mapped onto warps or blocks by sequence length (kernel traits
// plus a dispatch on L, the mamba-ssm design studied and written anew). Design notes, the traits table
// and the expected effect per model shape: docs/KERNEL_NOTES.md.
//
// A "row" is one (b, c) of u/delta/y (row = b * channels + c). A row is scanned by kThreadsPerRow
// threads (one warp, or a block of several warps) in chunks of kChunk = kThreadsPerRow * kItems time
// steps; thread t of the row owns the kItems consecutive steps [chunk + t*kItems, chunk + (t+1)*kItems).
// Per chunk:
//   0. the next chunk's u, delta, B, C are loaded into registers before this chunk is computed
//      (prefetch; B and C only for the first kPrefetchN state dimensions, to bound registers);
//   1. pass 1, for every state dimension n: one pair (a, b) = (exp2(dt*A*log2 e), dt*B*u) per step
//      (the affine map h -> a*h + b), composed over the thread's kItems steps, then an inclusive scan
//      of those aggregates across the warp with shuffles;
//   2. one __syncthreads per chunk when a row spans several warps: the warp totals of every state
//      dimension go through shared memory, double-buffered by chunk parity so a second barrier is
//      never needed; a warp-per-row shape needs no barrier at all (totals come from lane 31);
//   3. pass 2, for every n: the exclusive prefix applied to the state carried from the previous
//      chunk gives the state entering the thread's first step; the thread walks its steps with the
//      recurrence and accumulates y += C*h; the carry moves over the chunk's total.
// Loads: a row whose u/delta/B/C rows are 16-byte aligned uses vector loads of each thread's own run
// (the even-length fast path); an unaligned row (odd L, or 16-bit types with L % 8 != 0) loads
// warp-striped (lane l reads element l + 32*j of the warp's segment: coalesced) and transposes
// through shared memory. Only the last, partial chunk checks bounds; its padding steps are neither
// loaded nor computed (they stand for the identity map) and never stored.
// State and accumulation are fp32; u/delta/B/C are fp32, fp16 or bf16 and widened on load; y is fp32.
#pragma once

// REMAMBER_SCAN_HOST_EMULATION: plugins/tests/test_kernel_emulation.cpp compiles this kernel with g++,
// running each block's threads as std::threads (shuffles, __syncwarp and __syncthreads emulated with
// barriers; __half / __nv_bfloat16 as bit containers), so the CPU-only CI exercises every launch shape.
// Only the CUDA headers and the <<<>>> launchers are left out there.
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

constexpr unsigned kFullMask = 0xffffffffu;

// Launch shape of one kernel instantiation. Every shape uses 128-thread blocks.
template <int kThreadsPerRow_, int kRowsPerBlock_, int kItems_>
struct ScanTraits {
  static constexpr int kThreadsPerRow = kThreadsPerRow_;  // 32: a warp per row; 128: a block per row
  static constexpr int kRowsPerBlock = kRowsPerBlock_;
  static constexpr int kItems = kItems_;  // consecutive time steps per thread
  static constexpr int kThreads = kThreadsPerRow * kRowsPerBlock;
  static constexpr int kWarps = kThreads / 32;
  static constexpr int kWarpsPerRow = kThreadsPerRow / 32;
  static constexpr int kChunk = kThreadsPerRow * kItems;
  static_assert(kThreadsPerRow % 32 == 0, "rows are whole warps");
  static_assert(kWarpsPerRow == 1 || kRowsPerBlock == 1, "a multi-warp row owns its block");
};

// The shapes chosen by choose_launch_shape (traits table in docs/KERNEL_NOTES.md).
using WarpRowShortTraits = ScanTraits<32, 4, 4>;  // L <= 128: a warp per row, 4 rows per block, chunk 128
using WarpRowTraits = ScanTraits<32, 4, 8>;       // L <= 2048 with many rows: a warp per row, chunk 256
using BlockRowTraits = ScanTraits<128, 1, 8>;     // long L: 4 warps per row, chunk 1024

enum class LaunchShape { kWarpRowShort, kWarpRow, kBlockRow };

// Rows below which a warp per row would leave most of a large GPU idle (132 SMs x ~2 warps).
constexpr int64_t kMinRowsForWarpRow = 256;

// Host-side choice of the launch shape (also used by the CPU emulation test, which runs every branch).
inline LaunchShape choose_launch_shape(int64_t length, int64_t rows) {
  if (length <= 128) return LaunchShape::kWarpRowShort;
  if (length <= 2048 && rows >= kMinRowsForWarpRow) return LaunchShape::kWarpRow;
  return LaunchShape::kBlockRow;
}

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

__device__ __forceinline__ bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

__device__ __forceinline__ ScanPair shfl_up_pair(ScanPair v, int offset) {
  return ScanPair{__shfl_up_sync(kFullMask, v.a, offset), __shfl_up_sync(kFullMask, v.b, offset)};
}
__device__ __forceinline__ ScanPair shfl_pair(ScanPair v, int src_lane) {
  return ScanPair{__shfl_sync(kFullMask, v.a, src_lane), __shfl_sync(kFullMask, v.b, src_lane)};
}

// Raw registers of one thread's kItems steps of one tensor, as loaded (not yet widened), so a
// prefetch does not wait for its data: vectors of the thread's own run on an aligned row, or the
// lane's warp-striped scalars on an unaligned row.
template <typename T, int kItems, bool kAligned>
struct RawItems;
// The widest vector a thread's run is made of: 16-byte vectors, or one 8-byte vector for a run of
// four 16-bit values (the short-row shape).
template <int kBytes>
struct RunVector {
  static_assert(kBytes % 16 == 0, "a thread's run must be whole 16-byte vectors (or exactly 8 bytes)");
  using type = uint4;
};
template <>
struct RunVector<8> {
  using type = uint2;
};
template <typename T, int kItems>
struct RawItems<T, kItems, true> {
  using Vec = typename RunVector<static_cast<int>(kItems * sizeof(T))>::type;
  static constexpr int kVec = static_cast<int>(kItems * sizeof(T) / sizeof(Vec));
  Vec v[kVec];
};
template <typename T, int kItems>
struct RawItems<T, kItems, false> {
  T v[kItems];
};

// Per-warp shared-memory tile used to transpose between warp-striped and per-thread order. Padding
// one word per 32 keeps both the striped (l + 32 j) and the per-thread (l * kItems + i) access
// free of bank conflicts.
template <int kItems>
struct StageTile {
  float v[32 * kItems + kItems];
  __device__ __forceinline__ static int at(int idx) { return idx + idx / 32; }
};

// One row's view for the loads and stores of a chunk.
template <class Tr, typename T>
struct RowIO {
  static constexpr int kItems = Tr::kItems;
  int tid;   // thread within the row
  int lane;  // lane within the warp
  StageTile<kItems>* tile;  // this warp's tile

  // Full chunk at `chunk` (no bounds): aligned row, vector loads of the thread's own run.
  __device__ __forceinline__ void load(const T* __restrict__ row, int64_t chunk, RawItems<T, kItems, true>& r) const {
    using Vec = typename RawItems<T, kItems, true>::Vec;
    const Vec* src = reinterpret_cast<const Vec*>(row + chunk + static_cast<int64_t>(tid) * kItems);
#pragma unroll
    for (int q = 0; q < RawItems<T, kItems, true>::kVec; ++q) r.v[q] = src[q];
  }
  // Full chunk, unaligned row: lane-strided scalar loads over the warp's segment (coalesced).
  __device__ __forceinline__ void load(const T* __restrict__ row, int64_t chunk, RawItems<T, kItems, false>& r) const {
    const T* src = row + chunk + static_cast<int64_t>(tid - lane) * kItems + lane;
#pragma unroll
    for (int j = 0; j < kItems; ++j) r.v[j] = src[32 * j];
  }
  __device__ __forceinline__ void widen(const RawItems<T, kItems, true>& r, float (&out)[kItems]) const {
    const T* vals = reinterpret_cast<const T*>(r.v);
#pragma unroll
    for (int i = 0; i < kItems; ++i) out[i] = to_float(vals[i]);
  }
  __device__ __forceinline__ void widen(const RawItems<T, kItems, false>& r, float (&out)[kItems]) const {
    float striped[kItems];
#pragma unroll
    for (int j = 0; j < kItems; ++j) striped[j] = to_float(r.v[j]);
    to_thread_order(striped, out);
  }
  // Warp-striped values (lane l holds element l + 32 j of the warp's segment) -> the thread's own run.
  __device__ __forceinline__ void to_thread_order(const float (&striped)[kItems], float (&out)[kItems]) const {
#pragma unroll
    for (int j = 0; j < kItems; ++j) tile->v[StageTile<kItems>::at(lane + 32 * j)] = striped[j];
    __syncwarp();
#pragma unroll
    for (int i = 0; i < kItems; ++i) out[i] = tile->v[StageTile<kItems>::at(lane * kItems + i)];
    __syncwarp();  // the tile is rewritten by the next transpose
  }
  // Last, partial chunk: striped loads of the elements before `length` (coalesced, any alignment).
  __device__ __forceinline__ void load_tail(const T* __restrict__ row, int64_t chunk, int64_t length,
                                            float (&out)[kItems]) const {
    const int64_t seg = chunk + static_cast<int64_t>(tid - lane) * kItems;
    float striped[kItems];
#pragma unroll
    for (int j = 0; j < kItems; ++j) {
      const int64_t t = seg + lane + 32 * j;
      striped[j] = t < length ? to_float(row[t]) : 0.0f;
    }
    to_thread_order(striped, out);
  }
  // y: float4 stores of the thread's own run (full chunk, aligned y row), else transposed back to
  // warp-striped order and stored with lane-strided (coalesced) stores, checked in the last chunk.
  template <bool kTail>
  __device__ __forceinline__ void store(float* __restrict__ row, int64_t chunk, int64_t length, bool y_aligned,
                                        const float (&y)[kItems]) const {
    if (!kTail && y_aligned) {
      float4* dst = reinterpret_cast<float4*>(row + chunk + static_cast<int64_t>(tid) * kItems);
#pragma unroll
      for (int q = 0; q < kItems / 4; ++q) dst[q] = make_float4(y[4 * q], y[4 * q + 1], y[4 * q + 2], y[4 * q + 3]);
      return;
    }
#pragma unroll
    for (int i = 0; i < kItems; ++i) tile->v[StageTile<kItems>::at(lane * kItems + i)] = y[i];
    __syncwarp();
    const int64_t seg = chunk + static_cast<int64_t>(tid - lane) * kItems;
#pragma unroll
    for (int j = 0; j < kItems; ++j) {
      const int64_t t = seg + lane + 32 * j;
      if (!kTail || t < length) row[t] = tile->v[StageTile<kItems>::at(lane + 32 * j)];
    }
    __syncwarp();
  }
};

// Everything one row needs across chunks.
template <class Tr, typename T, int kMaxN>
struct RowState {
  const T* u;
  const T* delta;
  const T* B;  // B[b, g, 0, 0]; state dimension n at B + n * length
  const T* C;
  float* y;
  int64_t length;
  int nstate;
  float bias;
  float d_skip;
  bool softplus;
  bool y_aligned;
};

// The per-state-dimension values of a row, apart from RowState: for N > 2 the loops over n stay rolled
// and these arrays are indexed at run time (thread-local memory); kept apart, the rest of the row's
// state (pointers, sizes) stays in registers.
template <int kMaxN>
struct RowPerN {
  float a_log2e[kMaxN];  // A[c, n] * log2(e)
  float carry[kMaxN];    // state h[n] at the end of the previous chunk
};

// B and C of the first kPrefetchN state dimensions are prefetched and kept in registers between the
// two passes; larger N reloads them per pass (L1-resident), which keeps N = 16 free of spills.
template <int kMaxN>
struct PrefetchPolicy {
  static constexpr int kPrefetchN = kMaxN <= 2 ? kMaxN : 0;
};

// Prefetched raw registers of one chunk.
template <class Tr, typename T, int kMaxN, bool kAligned>
struct ChunkRegs {
  static constexpr int kPN = PrefetchPolicy<kMaxN>::kPrefetchN;
  RawItems<T, Tr::kItems, kAligned> u, delta;
  RawItems<T, Tr::kItems, kAligned> B[kPN > 0 ? kPN : 1], C[kPN > 0 ? kPN : 1];
};

template <class Tr, typename T, int kMaxN, bool kAligned>
__device__ __forceinline__ void prefetch_chunk(const RowIO<Tr, T>& io, const RowState<Tr, T, kMaxN>& s, int64_t chunk,
                                               ChunkRegs<Tr, T, kMaxN, kAligned>& r) {
  io.load(s.u, chunk, r.u);
  io.load(s.delta, chunk, r.delta);
#pragma unroll
  for (int n = 0; n < ChunkRegs<Tr, T, kMaxN, kAligned>::kPN; ++n) {
    if (n < s.nstate) {
      io.load(s.B + n * s.length, chunk, r.B[n]);
      io.load(s.C + n * s.length, chunk, r.C[n]);
    }
  }
}

// One chunk of a row. kTail: the last chunk, shorter than kChunk (bounds-checked, padding skipped).
// `regs` holds the chunk's prefetched inputs (nullptr for the tail, which loads its own: the tail is
// the same code for aligned and unaligned rows, so it is instantiated once).
// `buf`: chunk parity, selects the shared warp-total buffer (multi-warp rows).
template <class Tr, typename T, int kMaxN, bool kAligned, bool kTail>
__device__ __forceinline__ void scan_chunk(const RowIO<Tr, T>& io, const RowState<Tr, T, kMaxN>& s, RowPerN<kMaxN>& sn,
                                           int64_t chunk,
                                           const ChunkRegs<Tr, T, kMaxN, kAligned>* regs,
                                           ScanPair (*warp_totals)[Tr::kWarpsPerRow][kMaxN], int buf) {
  constexpr int kItems = Tr::kItems;
  constexpr int kPN = ChunkRegs<Tr, T, kMaxN, kAligned>::kPN;
  constexpr int kUnrollN = kMaxN <= 2 ? kMaxN : 1;
  (void)kUnrollN;  // read only by #pragma unroll, which host compilers (the emulation test) ignore
  // Loop bound over the state dimensions: the constant capacity when unrolled, the row's N when rolled.
  const int n_end = kUnrollN == kMaxN ? kMaxN : s.nstate;
  const int lane = io.lane;
  const int64_t start = chunk + static_cast<int64_t>(io.tid) * kItems;  // this thread's first step
  // Steps of this thread inside the row: kItems in every full chunk.
  const int valid = kTail ? static_cast<int>(s.length - start < 0 ? 0 : (s.length - start < kItems ? s.length - start : kItems))
                          : kItems;

  float u[kItems], dt[kItems], dt_u[kItems], y[kItems];
  if (kTail) {
    io.load_tail(s.u, chunk, s.length, u);
    io.load_tail(s.delta, chunk, s.length, dt);
  } else {
    io.widen(regs->u, u);
    io.widen(regs->delta, dt);
  }
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    if (!kTail || i < valid) dt[i] = step_size(dt[i], s.bias, s.softplus);
    dt_u[i] = dt[i] * u[i];
    y[i] = skip_term(s.d_skip, u[i]);  // D * u first: u is then dead, one register array fewer
  }

  // Values of B and C kept between the passes for the prefetched state dimensions. On an aligned
  // full chunk pass 2 widens them again from the raw registers instead (free for fp32, one convert
  // for 16-bit), which saves 2 * kItems registers.
  constexpr bool kRewiden = kAligned && !kTail;
  // Zero-initialised only to keep host compilers' -Wmaybe-uninitialized quiet (a row with nstate < kPN
  // never reads the unused slots); the stores are dead and removed.
  float bv_keep[kPN > 0 ? kPN : 1][kItems] = {};
  float cv_keep[kPN > 0 ? kPN : 1][kItems] = {};
  ScanPair incl[kMaxN];  // inclusive warp scan of the thread aggregates, per state dimension

  // ---- pass 1: thread aggregates and the warp-level scan -------------------------------------
  // Loops over n are unrolled for N <= 2 (the model's N = 1); for larger N they stay rolled, which
  // bounds the code size and build time (the per-n arrays then live in the thread's local memory).
#pragma unroll(kUnrollN)
  for (int n = 0; n < n_end; ++n) {
    if (n < s.nstate) {  // uniform across the block
      float bv[kItems];
      if (kTail) {
        io.load_tail(s.B + n * s.length, chunk, s.length, bv);
      } else if (n < kPN) {
        io.widen(regs->B[n < kPN ? n : 0], bv);
      } else {
        RawItems<T, kItems, kAligned> raw;
        io.load(s.B + n * s.length, chunk, raw);
        io.widen(raw, bv);
      }
      ScanPair agg = scan_identity();
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        if (!kTail || i < valid)  // padding steps are the identity map: not computed
          agg = scan_combine(agg, ScanPair{decay_exp2(dt[i], sn.a_log2e[n]), drive(dt_u[i], bv[i])});
      }
      if (n < kPN && !kRewiden) {
#pragma unroll
        for (int i = 0; i < kItems; ++i) bv_keep[n < kPN ? n : 0][i] = bv[i];
        if (kTail) {
          io.load_tail(s.C + n * s.length, chunk, s.length, cv_keep[n < kPN ? n : 0]);
        } else {
          io.widen(regs->C[n < kPN ? n : 0], cv_keep[n < kPN ? n : 0]);
        }
      }
      // Inclusive scan of the aggregates over the lanes (Hillis-Steele, 5 shuffle rounds).
      ScanPair x = agg;
#pragma unroll
      for (int offset = 1; offset < 32; offset <<= 1) {
        const ScanPair before = shfl_up_pair(x, offset);
        if (lane >= offset) x = scan_combine(before, x);
      }
      incl[n] = x;
      if (Tr::kWarpsPerRow > 1 && lane == 31) warp_totals[buf][io.tid >> 5][n] = x;
    } else {
      incl[n] = scan_identity();
    }
  }
  if (Tr::kWarpsPerRow > 1) __syncthreads();  // the one barrier of the chunk

  // ---- pass 2: prefixes, the recurrence over the thread's steps, the carry --------------------
#pragma unroll(kUnrollN)
  for (int n = 0; n < n_end; ++n) {
    if (n < s.nstate) {
      ScanPair lane_before = shfl_up_pair(incl[n], 1);
      if (lane == 0) lane_before = scan_identity();
      ScanPair prefix = scan_identity();
      ScanPair total;
      if (Tr::kWarpsPerRow > 1) {
        const int wrow = io.tid >> 5;
        total = scan_identity();
#pragma unroll
        for (int w = 0; w < Tr::kWarpsPerRow; ++w) {
          const ScanPair wt = warp_totals[buf][w][n];
          if (w < wrow) prefix = scan_combine(prefix, wt);
          total = scan_combine(total, wt);
        }
      } else {
        total = shfl_pair(incl[n], 31);
      }
      prefix = scan_combine(prefix, lane_before);
      float bv[kItems], cv[kItems];
      if (n < kPN && kRewiden) {
        io.widen(regs->B[n < kPN ? n : 0], bv);
        io.widen(regs->C[n < kPN ? n : 0], cv);
      } else if (n < kPN) {
#pragma unroll
        for (int i = 0; i < kItems; ++i) {
          bv[i] = bv_keep[n < kPN ? n : 0][i];
          cv[i] = cv_keep[n < kPN ? n : 0][i];
        }
      } else {
        if (kTail) {
          io.load_tail(s.B + n * s.length, chunk, s.length, bv);
          io.load_tail(s.C + n * s.length, chunk, s.length, cv);
        } else {
          RawItems<T, kItems, kAligned> rb, rc;
          io.load(s.B + n * s.length, chunk, rb);
          io.load(s.C + n * s.length, chunk, rc);
          io.widen(rb, bv);
          io.widen(rc, cv);
        }
      }
      // State entering this thread's first step, then the recurrence over its steps.
      float h = prefix.a * sn.carry[n] + prefix.b;
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        if (!kTail || i < valid) {
          // The decay is recomputed (one ex2) rather than kept from pass 1: registers matter more.
          h = state_update(h, decay_exp2(dt[i], sn.a_log2e[n]), dt_u[i], bv[i]);
          y[i] += output_term(cv[i], h);
        }
      }
      sn.carry[n] = total.a * sn.carry[n] + total.b;
    }
  }
  io.template store<kTail>(s.y, chunk, s.length, s.y_aligned, y);
}

// The full chunks of one row, each with the next one prefetched (the partial last chunk follows).
template <class Tr, typename T, int kMaxN, bool kAligned>
__device__ __forceinline__ void scan_full_chunks(const RowIO<Tr, T>& io, const RowState<Tr, T, kMaxN>& s,
                                                 RowPerN<kMaxN>& sn,
                                                 int64_t full_chunks, ScanPair (*warp_totals)[Tr::kWarpsPerRow][kMaxN]) {
  ChunkRegs<Tr, T, kMaxN, kAligned> next{};  // zeroed: B/C slots past nstate are never loaded
  prefetch_chunk(io, s, 0, next);
  for (int64_t k = 0; k < full_chunks; ++k) {
    const ChunkRegs<Tr, T, kMaxN, kAligned> cur = next;  // waits for the loads issued one chunk ago
    if (k + 1 < full_chunks) prefetch_chunk(io, s, (k + 1) * Tr::kChunk, next);
    scan_chunk<Tr, T, kMaxN, kAligned, false>(io, s, sn, k * Tr::kChunk, &cur, warp_totals, static_cast<int>(k & 1));
  }
}

// kMaxN: the template's state capacity (1, 2 or 16); the row's actual N (<= kMaxN) is
// p.shape.nstate, so any N in 1..16 runs on the next larger instantiation.
// __launch_bounds__(..., 1): with no minimum-blocks hint ptxas picked 72 registers for the short-row
// fp32 N=1 kernel and spilled; with it every instantiation is spill-free (scripts/cuda_resource_report.py).
template <class Tr, typename T, int kMaxN>
__global__ void __launch_bounds__(Tr::kThreads, 1) selective_scan_fwd_kernel(ScanCudaParams p) {
  __shared__ StageTile<Tr::kItems> tiles[Tr::kWarps];
  __shared__ ScanPair warp_totals[2][Tr::kWarpsPerRow][kMaxN];

  const int64_t channels = p.shape.channels;
  const int64_t length = p.shape.length;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * Tr::kRowsPerBlock + threadIdx.x / Tr::kThreadsPerRow;
  // A row is whole warps, so a whole warp leaves here; multi-warp rows fill the grid exactly.
  if (row >= p.shape.batch * channels) return;

  RowIO<Tr, T> io;
  io.tid = static_cast<int>(threadIdx.x % Tr::kThreadsPerRow);
  io.lane = static_cast<int>(threadIdx.x & 31);
  io.tile = &tiles[threadIdx.x >> 5];

  const int nstate = static_cast<int>(p.shape.nstate);
  // 32-bit division (rows <= INT32_MAX is checked by the launcher): a 64-bit one is a subroutine
  // call in SASS, whose register saves ptxas reports as spills.
  const uint32_t row32 = static_cast<uint32_t>(row), channels32 = static_cast<uint32_t>(channels);
  const int64_t b = row32 / channels32;
  const int64_t c = row32 % channels32;
  const int64_t g = static_cast<uint32_t>(c) / (channels32 / static_cast<uint32_t>(p.shape.groups));  // group of c
  RowState<Tr, T, kMaxN> s;
  RowPerN<kMaxN> sn;
  s.u = static_cast<const T*>(p.u) + row * length;
  s.delta = static_cast<const T*>(p.delta) + row * length;
  const int64_t bc_base = (b * p.shape.groups + g) * nstate * length;  // B[b, g, 0, 0]
  s.B = static_cast<const T*>(p.B) + bc_base;
  s.C = static_cast<const T*>(p.C) + bc_base;
  s.y = p.y + row * length;
  s.length = length;
  s.nstate = nstate;
#pragma unroll
  for (int n = 0; n < kMaxN; ++n) {
    sn.a_log2e[n] = n < nstate ? p.A[c * nstate + n] * kLog2e : 0.0f;
    sn.carry[n] = 0.0f;
  }
  s.bias = p.delta_bias ? p.delta_bias[c] : 0.0f;
  s.d_skip = p.D ? p.D[c] : 0.0f;
  s.softplus = p.delta_softplus;
  s.y_aligned = aligned16(s.y) && (length % 4) == 0;
  // Every row of B/C dimension n starts 16-byte aligned only when length * sizeof(T) is a multiple of 16.
  const bool aligned = aligned16(s.u) && aligned16(s.delta) && aligned16(s.B) && aligned16(s.C) &&
                       (length * static_cast<int64_t>(sizeof(T))) % 16 == 0;
  const int64_t full_chunks = length / Tr::kChunk;
  if (full_chunks > 0) {
    if (aligned)
      scan_full_chunks<Tr, T, kMaxN, true>(io, s, sn, full_chunks, warp_totals);
    else
      scan_full_chunks<Tr, T, kMaxN, false>(io, s, sn, full_chunks, warp_totals);
  }
  if (full_chunks * Tr::kChunk < length)
    scan_chunk<Tr, T, kMaxN, false, true>(io, s, sn, full_chunks * Tr::kChunk, nullptr, warp_totals,
                                          static_cast<int>(full_chunks & 1));
}

#ifndef REMAMBER_SCAN_HOST_EMULATION
template <class Tr, typename T, int kMaxN>
cudaError_t launch_shape(const ScanCudaParams& p, cudaStream_t stream) {
  const int64_t rows = p.shape.batch * p.shape.channels;  // checked <= INT32_MAX by the caller
  const int64_t blocks = (rows + Tr::kRowsPerBlock - 1) / Tr::kRowsPerBlock;
  selective_scan_fwd_kernel<Tr, T, kMaxN><<<dim3(static_cast<unsigned>(blocks)), dim3(Tr::kThreads), 0, stream>>>(p);
  return cudaGetLastError();
}

// N in 1..16 -> the instantiated capacity: 1 and 2 fully unrolled in registers (the model's N = 1),
// 3..16 on the capacity-16 kernel, whose loops over n are rolled and bounded by the row's N (capacities
// 4 and 8 would generate the same loop with smaller arrays: not worth their build time).
template <class Tr, typename T>
cudaError_t launch_with_traits(const ScanCudaParams& p, cudaStream_t stream) {
  const int64_t n = p.shape.nstate;
  if (n <= 1) return launch_shape<Tr, T, 1>(p, stream);
  if (n <= 2) return launch_shape<Tr, T, 2>(p, stream);
  return launch_shape<Tr, T, kMaxState>(p, stream);
}

template <typename T>
cudaError_t launch_typed(const ScanCudaParams& p, cudaStream_t stream) {
  switch (choose_launch_shape(p.shape.length, p.shape.batch * p.shape.channels)) {
    case LaunchShape::kWarpRowShort: return launch_with_traits<WarpRowShortTraits, T>(p, stream);
    case LaunchShape::kWarpRow: return launch_with_traits<WarpRowTraits, T>(p, stream);
    case LaunchShape::kBlockRow: break;
  }
  return launch_with_traits<BlockRowTraits, T>(p, stream);
}
#endif  // REMAMBER_SCAN_HOST_EMULATION

}  // namespace cuda_detail
}  // namespace scan
}  // namespace remamber
