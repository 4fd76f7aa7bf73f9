// Backward (vector-Jacobian product) of both scan ops on the CPU, fp32: what PyTorch training needs
// from remamber::selective_scan and remamber::ss2d_scan (issue 16). Why native: the PyTorch reference
// backward walks the recurrence in Python-level chunks and materialises a dozen (batch, 4*D, L)
// temporaries per call; on the tiny model's Twister channel scans that was 85% of a training step.
//
// Per row (one channel of one direction), with x_t = delta_t + delta_bias, dt_t = softplus(x_t) (or x_t),
// a_tn = exp(dt_t A_n), h_tn = a_tn h_(t-1)n + dt_t B_tn u_t, y_t = sum_n C_tn h_tn + D u_t, and
// g_t = dLoss/dy_t, the adjoint state gh_tn = C_tn g_t + a_(t+1)n gh_(t+1)n runs backwards in time and
//   dC_tn += g_t h_tn           dB_tn += gh_tn dt_t u_t        du_t += D g_t + sum_n gh_tn dt_t B_tn
//   dA_n  += gh_tn h_(t-1)n a_tn dt_t                          dD   += g_t u_t
//   ddt_t  = sum_n (gh_tn h_(t-1)n a_tn A_n + gh_tn B_tn u_t)  ddelta_t = ddt_t softplus'(x_t), dbias += ddelta_t
// The forward states are recomputed per row into a scratch buffer (L * N floats), not saved by the op.
//
// Threads split the batch: dB/dC/du of one batch item are written by one thread, and the per-channel
// sums (dA, dD, ddelta_bias) are accumulated per batch item and reduced in batch order afterwards, so
// the result does not depend on the thread count.
#pragma once

#include <stdint.h>

#include "scan_types.h"
#include "ss2d_types.h"

namespace remamber {
namespace scan {

// Gradient outputs, fp32, contiguous, shaped like the inputs they belong to. Every one is overwritten
// (the kernels zero what they accumulate). dD and d_delta_bias may be nullptr when not wanted (and must
// be when D / delta_bias are absent).
struct ScanGrads {
  float* du = nullptr;
  float* ddelta = nullptr;
  float* dA = nullptr;
  float* dB = nullptr;
  float* dC = nullptr;
  float* dD = nullptr;
  float* d_delta_bias = nullptr;
};

// SelectiveScan v1 backward. `args` as for the forward with dtype kFloat32 (args.y unused); grad_y is
// (batch, channels, length). Returns nullptr or a static message naming the problem.
const char* selective_scan_cpu_backward(const ScanArgs& args, const float* grad_y, const ScanGrads& grads,
                                        int threads);

// SS2DScan v1 backward. grad_y is (batch, dim, H, W); grads shaped like u, delta, A, B, C, D, delta_bias.
const char* ss2d_scan_cpu_backward(const SS2DArgs& args, const float* grad_y, const ScanGrads& grads,
                                   int threads);

}  // namespace scan
}  // namespace remamber
