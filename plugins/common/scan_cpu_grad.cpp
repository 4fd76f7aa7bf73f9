// Backward of both scan ops on the CPU (scan_cpu_grad.h has the maths and the threading rule). One row
// routine serves both ops: a row is one channel of one direction, and a position functor says which
// element of the row's operands step t reads (t itself for SelectiveScan, the contract's direction
// table for SS2DScan), so the index maths stays that of ss2d_types.h.
#include "scan_cpu_grad.h"

#include <math.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "scan_cpu.h"
#include "scan_cpu_parallel.h"
#include "scan_cpu_simd.h"
#include "scan_math.h"

namespace remamber {
namespace scan {
namespace {

// One row's operands: u/gy/du indexed by position, delta/ddelta by position in the row's own delta
// plane, B/C/dB/dC as [n * L + position] from the row's group base.
struct Row {
  const float* u;
  float* du;
  const float* gy;
  const float* delta;
  float* ddelta;
  const float* B;
  const float* C;
  float* dB;
  float* dC;
  const float* A;  // N values
  float bias;
  float d_skip;
  float* dA;     // N accumulators (this batch item's partial sums)
  float* dD;     // nullable
  float* dbias;  // nullable
};

using Prepass = void (*)(const float*, int64_t, bool, const float*, int64_t, int64_t, float*, float*, float*);

// The backward sweep of row_backward for N = 1, the same formulas with scalars in registers and
// restrict-qualified operands (the general loop keeps gh/dA in memory through aliasing stores).
template <class Pos>
void backward_single_state(const Row& r, int64_t L, Pos pos, const float* __restrict__ h_buf,
                           const float* __restrict__ a_buf, const float* __restrict__ dt_buf,
                           const float* __restrict__ slope_buf) {
  const float* __restrict__ u_row = r.u;
  const float* __restrict__ gy = r.gy;
  const float* __restrict__ Bv = r.B;
  const float* __restrict__ Cv = r.C;
  float* __restrict__ dB = r.dB;
  float* __restrict__ dC = r.dC;
  float* __restrict__ du_row = r.du;
  float* __restrict__ ddelta = r.ddelta;
  const float A = r.A[0];
  float gh = 0.0f, dA = 0.0f, dD = 0.0f, dbias = 0.0f;
  for (int64_t t = L - 1; t >= 0; --t) {
    const int64_t p = pos(t);
    const float g = gy[p], u = u_row[p], dt = dt_buf[t], a = a_buf[t], b = Bv[p];
    const float h_prev = t > 0 ? h_buf[t - 1] : 0.0f;
    dD += g * u;
    dC[p] += g * h_buf[t];
    const float ghn = gh + g * Cv[p];
    const float g_decay = ghn * h_prev * a;
    dA += g_decay * dt;
    const float dx = (g_decay * A + ghn * b * u) * slope_buf[t];
    dB[p] += ghn * dt * u;
    du_row[p] += r.d_skip * g + ghn * dt * b;
    ddelta[p] = dx;
    dbias += dx;
    gh = a * ghn;
  }
  r.dA[0] += dA;
  if (r.dD) *r.dD += dD;
  if (r.dbias) *r.dbias += dbias;
}

template <class Pos>
void row_backward(const Row& r, int64_t L, int64_t N, bool delta_softplus, Pos pos, Prepass prepass,
                  float* scratch) {
  // Forward again, keeping what the backward needs so that it evaluates no transcendental:
  // states h[t * N + n], decays a[n * L + t], dt[t] and softplus'(x_t) slope[t]. The transcendentals
  // run in vector form over the whole row (grad_prepass); the recurrence is sequential.
  float* h_buf = scratch;
  float* a_buf = scratch + L * N;
  float* dt_buf = scratch + 2 * L * N;
  float* slope_buf = dt_buf + L;
  float* x_buf = slope_buf + L;
  for (int64_t t = 0; t < L; ++t) x_buf[t] = r.delta[pos(t)] + r.bias;
  prepass(x_buf, L, delta_softplus, r.A, N, L, dt_buf, slope_buf, a_buf);
  float h[kMaxState] = {0.0f};
  for (int64_t t = 0; t < L; ++t) {
    const int64_t p = pos(t);
    const float dt_u = dt_buf[t] * r.u[p];
    for (int64_t n = 0; n < N; ++n) {
      h[n] = state_update(h[n], a_buf[n * L + t], dt_u, r.B[n * L + p]);
      h_buf[t * N + n] = h[n];
    }
  }
  if (N == 1) {  // both model presets: the state in registers, no inner loop
    backward_single_state(r, L, pos, h_buf, a_buf, dt_buf, slope_buf);
    return;
  }
  // Backwards in time; gh[n] holds a_(t+1)n * gh_(t+1)n on entry to step t.
  float gh[kMaxState] = {0.0f};
  float dA[kMaxState] = {0.0f};
  float dD = 0.0f, dbias = 0.0f;
  for (int64_t t = L - 1; t >= 0; --t) {
    const int64_t p = pos(t);
    const float g = r.gy[p];
    const float u = r.u[p];
    const float dt = dt_buf[t];
    dD += g * u;
    float du = r.d_skip * g;
    float ddt = 0.0f;
    for (int64_t n = 0; n < N; ++n) {
      const int64_t i = n * L + p;
      const float a = a_buf[n * L + t];
      const float h_prev = t > 0 ? h_buf[(t - 1) * N + n] : 0.0f;
      r.dC[i] += g * h_buf[t * N + n];
      const float ghn = gh[n] + g * r.C[i];
      const float b = r.B[i];
      const float g_decay = ghn * h_prev * a;  // dLoss/d(dt*A) through the decay
      dA[n] += g_decay * dt;
      ddt += g_decay * r.A[n] + ghn * b * u;
      r.dB[i] += ghn * dt * u;
      du += ghn * dt * b;
      gh[n] = a * ghn;
    }
    r.du[p] += du;
    const float dx = ddt * slope_buf[t];
    r.ddelta[p] = dx;
    dbias += dx;
  }
  for (int64_t n = 0; n < N; ++n) r.dA[n] += dA[n];
  if (r.dD) *r.dD += dD;
  if (r.dbias) *r.dbias += dbias;
}

// Runs body(b, scratch) for every batch item over up to `threads` threads (contiguous batch ranges),
// each thread with its own scratch of 2 * L * N + 3 * L floats (row_backward's buffers).
template <class Body>
void for_each_batch(int64_t batch, int64_t L, int64_t N, int threads, Body body) {
  parallel_ranges(batch, threads, [&](int64_t b0, int64_t b1) {
    std::vector<float> scratch(static_cast<size_t>(std::max<int64_t>(1, 2 * L * N + 3 * L)));
    for (int64_t b = b0; b < b1; ++b) body(b, scratch.data());
  });
}

// Per-batch partial sums of the per-channel gradients, reduced in batch order into the outputs.
struct ChannelSums {
  std::vector<float> dA, dD, dbias;
  ChannelSums(int64_t batch, int64_t rows, int64_t N, bool want_d, bool want_bias)
      : dA(static_cast<size_t>(batch * rows * N), 0.0f),
        dD(want_d ? static_cast<size_t>(batch * rows) : 0, 0.0f),
        dbias(want_bias ? static_cast<size_t>(batch * rows) : 0, 0.0f) {}
  void reduce(int64_t batch, int64_t rows, int64_t N, const ScanGrads& g) const {
    std::fill(g.dA, g.dA + rows * N, 0.0f);
    if (g.dD) std::fill(g.dD, g.dD + rows, 0.0f);
    if (g.d_delta_bias) std::fill(g.d_delta_bias, g.d_delta_bias + rows, 0.0f);
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t i = 0; i < rows * N; ++i) g.dA[i] += dA[b * rows * N + i];
      for (int64_t i = 0; g.dD && i < rows; ++i) g.dD[i] += dD[b * rows + i];
      for (int64_t i = 0; g.d_delta_bias && i < rows; ++i) g.d_delta_bias[i] += dbias[b * rows + i];
    }
  }
};

// The vector pre-pass of the path the forward kernels would take (REMAMBER_SCAN_CPU_PATH applies);
// the scalar path runs the 128-bit one, which is always built.
Prepass choose_prepass() {
  switch (resolve_cpu_path(CpuPath::kAuto)) {
#ifdef REMAMBER_HAVE_X86_SIMD
    case CpuPath::kAVX2: return simd_avx2::grad_prepass;
    case CpuPath::kAVX512: return simd_avx512::grad_prepass;
#endif
    default: return simd_vec128::grad_prepass;
  }
}

const char* check_grads(ScanDtype dtype, const float* grad_y, const ScanGrads& g, const float* D,
                        const float* delta_bias) {
  if (dtype != ScanDtype::kFloat32) return "the backward takes float32 inputs only";
  if (!grad_y || !g.du || !g.ddelta || !g.dA || !g.dB || !g.dC) return "grad_y and du, ddelta, dA, dB, dC are required";
  if (g.dD && !D) return "dD requested but D is absent";
  if (g.d_delta_bias && !delta_bias) return "d_delta_bias requested but delta_bias is absent";
  return nullptr;
}

}  // namespace

const char* selective_scan_cpu_backward(const ScanArgs& a, const float* grad_y, const ScanGrads& g, int threads) {
  const ScanShape& s = a.shape;
  if (const char* bad = check_shape(s)) return bad;
  if (const char* bad = check_grads(a.dtype, grad_y, g, a.D, a.delta_bias)) return bad;
  const int64_t L = s.length, N = s.nstate, per_group = s.groups ? s.channels / s.groups : 1;
  const auto* u = static_cast<const float*>(a.u);
  const auto* delta = static_cast<const float*>(a.delta);
  const auto* B = static_cast<const float*>(a.B);
  const auto* C = static_cast<const float*>(a.C);
  std::fill(g.du, g.du + s.batch * s.channels * L, 0.0f);
  std::fill(g.dB, g.dB + s.batch * s.groups * N * L, 0.0f);
  std::fill(g.dC, g.dC + s.batch * s.groups * N * L, 0.0f);
  ChannelSums sums(s.batch, s.channels, N, g.dD != nullptr, g.d_delta_bias != nullptr);
  const Prepass prepass = choose_prepass();
  for_each_batch(s.batch, L, N, threads, [&](int64_t b, float* scratch) {
    for (int64_t c = 0; c < s.channels; ++c) {
      const int64_t io = (b * s.channels + c) * L;
      const int64_t bc = (b * s.groups + c / per_group) * N * L;
      const int64_t k = b * s.channels + c;  // this batch item's partial-sum slot
      Row r{u + io, g.du + io, grad_y + io, delta + io, g.ddelta + io, B + bc, C + bc, g.dB + bc, g.dC + bc,
            a.A + c * N, a.delta_bias ? a.delta_bias[c] : 0.0f, a.D ? a.D[c] : 0.0f, sums.dA.data() + k * N,
            g.dD ? sums.dD.data() + k : nullptr, g.d_delta_bias ? sums.dbias.data() + k : nullptr};
      row_backward(r, L, N, a.delta_softplus, [](int64_t t) { return t; }, prepass, scratch);
    }
  });
  sums.reduce(s.batch, s.channels, N, g);
  return nullptr;
}

const char* ss2d_scan_cpu_backward(const SS2DArgs& a, const float* grad_y, const ScanGrads& g, int threads) {
  const SS2DShape& s = a.shape;
  if (const char* bad = check_ss2d_shape(s, static_cast<int>(a.layout))) return bad;
  if (const char* bad = check_grads(a.dtype, grad_y, g, a.D, a.delta_bias)) return bad;
  const int64_t L = s.length(), N = s.nstate, dim = s.dim, K = kSS2DDirections, rows = K * dim;
  const auto* u = static_cast<const float*>(a.u);
  const auto* delta = static_cast<const float*>(a.delta);
  const auto* B = static_cast<const float*>(a.B);
  const auto* C = static_cast<const float*>(a.C);
  std::fill(g.du, g.du + s.batch * dim * L, 0.0f);
  std::fill(g.dB, g.dB + s.batch * K * N * L, 0.0f);
  std::fill(g.dC, g.dC + s.batch * K * N * L, 0.0f);
  ChannelSums sums(s.batch, rows, N, g.dD != nullptr, g.d_delta_bias != nullptr);
  const Prepass prepass = choose_prepass();
  for_each_batch(s.batch, L, N, threads, [&](int64_t b, float* scratch) {
    for (int k = 0; k < K; ++k) {
      const int64_t bc = (b * K + k) * N * L;
      auto pos = [&a, &s, k](int64_t t) { return ss2d_position(a.layout, k, t, s.height, s.width); };
      for (int64_t d = 0; d < dim; ++d) {
        const int64_t c = k * dim + d;
        const int64_t io = (b * dim + d) * L;
        const int64_t delta_off = (b * rows + c) * L;
        const int64_t slot = b * rows + c;
        Row r{u + io, g.du + io, grad_y + io, delta + delta_off, g.ddelta + delta_off, B + bc, C + bc, g.dB + bc,
              g.dC + bc, a.A + c * N, a.delta_bias ? a.delta_bias[c] : 0.0f, a.D ? a.D[c] : 0.0f,
              sums.dA.data() + slot * N, g.dD ? sums.dD.data() + slot : nullptr,
              g.d_delta_bias ? sums.dbias.data() + slot : nullptr};
        row_backward(r, L, N, a.delta_softplus, pos, prepass, scratch);
      }
    }
  });
  sums.reduce(s.batch, rows, N, g);
  return nullptr;
}

}  // namespace scan
}  // namespace remamber
