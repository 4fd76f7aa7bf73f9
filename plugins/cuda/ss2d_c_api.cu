// C ABI of the fused SS2DScan kernel in libremamber_scan_cuda.so, for ctypes callers (the PyTorch "cuda"
// backend of remamber.ops.ss2d_scan, the GPU check script): all tensors contiguous, device pointers,
// y float32, layout 0 = cross / 1 = bidi (plugins/ss2dScanPlugin/README.md).
#include <string>

#include "ss2d_launch.h"

#define REMAMBER_EXPORT extern "C" __attribute__((visibility("default")))

namespace {
thread_local std::string g_ss2d_last_error;  // message of this thread's last failed SS2DScan call
}

// Returns 0 on success, 1 on bad arguments or a failed launch (message: remamberSS2DScanLastError()).
// The kernel is queued on `stream` (a cudaStream_t; nullptr = the legacy default stream).
REMAMBER_EXPORT int remamberSS2DScanForward(const void* u, const void* delta, const float* A, const void* B,
                                            const void* C, const float* D, const float* delta_bias, float* y,
                                            int batch, int dim, int height, int width, int nstate, int layout,
                                            int dtype, int delta_softplus, void* stream) {
  using namespace remamber::scan;
  if (batch < 0 || dim < 0 || height < 0 || width < 0) {
    g_ss2d_last_error = "remamberSS2DScanForward: batch, dim, height and width must be >= 0";
    return 1;
  }
  if (delta_softplus != 0 && delta_softplus != 1) {
    g_ss2d_last_error = "remamberSS2DScanForward: delta_softplus must be 0 or 1";
    return 1;
  }
  SS2DArgs p;
  p.u = u;
  p.delta = delta;
  p.A = A;
  p.B = B;
  p.C = C;
  p.D = D;
  p.delta_bias = delta_bias;
  p.y = y;
  p.shape.batch = batch;
  p.shape.dim = dim;
  p.shape.height = height;
  p.shape.width = width;
  p.shape.nstate = nstate;
  p.layout = static_cast<SS2DLayout>(layout);
  p.dtype = static_cast<ScanDtype>(dtype);
  p.delta_softplus = delta_softplus != 0;
  if (const char* err = launch_ss2d_scan(p, static_cast<cudaStream_t>(stream))) {
    g_ss2d_last_error = std::string("remamberSS2DScanForward: ") + err;
    return 1;
  }
  g_ss2d_last_error.clear();
  return 0;
}

REMAMBER_EXPORT const char* remamberSS2DScanLastError(void) { return g_ss2d_last_error.c_str(); }

// Version of the SS2DScan entry points' ABI (bumped if the signature above ever changes).
REMAMBER_EXPORT int remamberSS2DScanVersion(void) { return 1; }
