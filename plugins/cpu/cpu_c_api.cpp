// C ABI of libremamber_cpu_ops.so: both scan ops' CPU kernels, forward (the SIMD kernels the ONNX
// Runtime ops run) and backward (scan_cpu_grad.h), for ctypes callers: the PyTorch "cpu" backend of
// remamber.ops (training, issue 16). Host pointers, all tensors contiguous, y and gradients float32.
// Conventions as libremamber_scan_cuda.so: 0 on success, 1 with a message in
// remamberCpuScanLastError() (per thread), "<entry point>: <problem>".
#include <stdint.h>

#include <string>

#include "c_api_status.h"
#include "scan_cpu.h"
#include "scan_cpu_grad.h"
#include "scan_cpu_parallel.h"
#include "scan_operands.h"

namespace {

using remamber::scan::ScanDtype;

thread_local std::string g_last_error;

int finish(const char* entry, const char* problem) { return remamber::scan::capi::finish(g_last_error, entry, problem); }

const char* check_common(int dtype, int delta_softplus, int threads) {
  if (dtype < 0 || dtype > 2) return "dtype must be 0 (float32), 1 (float16) or 2 (bfloat16)";
  if (delta_softplus != 0 && delta_softplus != 1) return "delta_softplus must be 0 or 1";
  if (threads < 1) return "threads must be >= 1";
  return nullptr;
}

// Pointers, dtype and delta_softplus of either op's argument struct, through the wiring every C ABI
// and runtime op shares (scan_operands.h); y is nullptr for the backward.
template <class Args>
Args with_operands(const void* u, const void* delta, const float* A, const void* B, const void* C, const float* D,
                   const float* delta_bias, float* y, int dtype, int delta_softplus) {
  Args p;
  const void* const in[remamber::scan::kNumInputs] = {u, delta, A, B, C, D, delta_bias};
  remamber::scan::set_operands(p, in, y, static_cast<ScanDtype>(dtype), delta_softplus != 0);
  return p;
}

remamber::scan::ScanArgs scan_args(const void* u, const void* delta, const float* A, const void* B, const void* C,
                                   const float* D, const float* delta_bias, float* y, int batch, int channels,
                                   int length, int groups, int nstate, int dtype, int delta_softplus) {
  auto p = with_operands<remamber::scan::ScanArgs>(u, delta, A, B, C, D, delta_bias, y, dtype, delta_softplus);
  p.shape.batch = batch;
  p.shape.channels = channels;
  p.shape.length = length;
  p.shape.groups = groups;
  p.shape.nstate = nstate;
  return p;
}

remamber::scan::SS2DArgs ss2d_args(const void* u, const void* delta, const float* A, const void* B, const void* C,
                                   const float* D, const float* delta_bias, float* y, int batch, int dim, int height,
                                   int width, int nstate, int layout, int dtype, int delta_softplus) {
  auto p = with_operands<remamber::scan::SS2DArgs>(u, delta, A, B, C, D, delta_bias, y, dtype, delta_softplus);
  p.shape.batch = batch;
  p.shape.dim = dim;
  p.shape.height = height;
  p.shape.width = width;
  p.shape.nstate = nstate;
  p.layout = static_cast<remamber::scan::SS2DLayout>(layout);
  return p;
}

}  // namespace

REMAMBER_EXPORT int remamberCpuSelectiveScanForward(const void* u, const void* delta, const float* A, const void* B,
                                                    const void* C, const float* D, const float* delta_bias, float* y,
                                                    int batch, int channels, int length, int groups, int nstate,
                                                    int dtype, int delta_softplus, int threads) {
  using namespace remamber::scan;
  const char* entry = "remamberCpuSelectiveScanForward";
  if (const char* bad = check_common(dtype, delta_softplus, threads)) return finish(entry, bad);
  const ScanArgs p = scan_args(u, delta, A, B, C, D, delta_bias, y, batch, channels, length, groups, nstate, dtype,
                               delta_softplus);
  if (const char* bad = check_shape(p.shape)) return finish(entry, bad);
  parallel_ranges(int64_t{batch} * channels, threads,
                  [&p](int64_t b, int64_t e) { selective_scan_cpu_rows(p, b, e); });
  return finish(entry, nullptr);
}

REMAMBER_EXPORT int remamberCpuSelectiveScanBackward(const float* u, const float* delta, const float* A,
                                                     const float* B, const float* C, const float* D,
                                                     const float* delta_bias, const float* grad_y, float* du,
                                                     float* ddelta, float* dA, float* dB, float* dC, float* dD,
                                                     float* d_delta_bias, int batch, int channels, int length,
                                                     int groups, int nstate, int delta_softplus, int threads) {
  using namespace remamber::scan;
  const char* entry = "remamberCpuSelectiveScanBackward";
  if (const char* bad = check_common(0, delta_softplus, threads)) return finish(entry, bad);
  const ScanArgs p = scan_args(u, delta, A, B, C, D, delta_bias, nullptr, batch, channels, length, groups, nstate, 0,
                               delta_softplus);
  const ScanGrads g{du, ddelta, dA, dB, dC, dD, d_delta_bias};
  return finish(entry, selective_scan_cpu_backward(p, grad_y, g, threads));
}

REMAMBER_EXPORT int remamberCpuSS2DScanForward(const void* u, const void* delta, const float* A, const void* B,
                                               const void* C, const float* D, const float* delta_bias, float* y,
                                               int batch, int dim, int height, int width, int nstate, int layout,
                                               int dtype, int delta_softplus, int threads) {
  using namespace remamber::scan;
  const char* entry = "remamberCpuSS2DScanForward";
  if (const char* bad = check_common(dtype, delta_softplus, threads)) return finish(entry, bad);
  const SS2DArgs p = ss2d_args(u, delta, A, B, C, D, delta_bias, y, batch, dim, height, width, nstate, layout, dtype,
                               delta_softplus);
  if (const char* bad = check_ss2d_shape(p.shape, layout)) return finish(entry, bad);
  parallel_ranges(int64_t{batch} * dim, threads, [&p](int64_t b, int64_t e) { ss2d_scan_cpu_channels(p, b, e); });
  return finish(entry, nullptr);
}

REMAMBER_EXPORT int remamberCpuSS2DScanBackward(const float* u, const float* delta, const float* A, const float* B,
                                                const float* C, const float* D, const float* delta_bias,
                                                const float* grad_y, float* du, float* ddelta, float* dA, float* dB,
                                                float* dC, float* dD, float* d_delta_bias, int batch, int dim,
                                                int height, int width, int nstate, int layout, int delta_softplus,
                                                int threads) {
  using namespace remamber::scan;
  const char* entry = "remamberCpuSS2DScanBackward";
  if (const char* bad = check_common(0, delta_softplus, threads)) return finish(entry, bad);
  if (layout != 0 && layout != 1) return finish(entry, "layout must be 0 (cross) or 1 (bidi)");
  const SS2DArgs p = ss2d_args(u, delta, A, B, C, D, delta_bias, nullptr, batch, dim, height, width, nstate, layout,
                               0, delta_softplus);
  const ScanGrads g{du, ddelta, dA, dB, dC, dD, d_delta_bias};
  return finish(entry, ss2d_scan_cpu_backward(p, grad_y, g, threads));
}

REMAMBER_EXPORT const char* remamberCpuScanLastError(void) { return g_last_error.c_str(); }

// Version of this ABI (bumped if a signature above ever changes).
REMAMBER_EXPORT int remamberCpuScanVersion(void) { return 1; }
