// C ABI of the fused SS2DScan kernel in libremamber_scan_cuda.so, for ctypes callers (the PyTorch "cuda"
// backend of remamber.ops.ss2d_scan, the GPU check script): all tensors contiguous, device pointers,
// y float32, layout 0 = cross / 1 = bidi (plugins/ss2dScanPlugin/README.md). The conventions shared with
// the SelectiveScan entry points (return codes, last error, operand wiring) live in c_api_common.h.
#include <string>

#include "c_api_common.h"
#include "ss2d_launch.h"

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
  SS2DArgs p;
  p.shape.batch = batch;
  p.shape.dim = dim;
  p.shape.height = height;
  p.shape.width = width;
  p.shape.nstate = nstate;
  p.layout = static_cast<SS2DLayout>(layout);
  const char* bad_dims = batch < 0 || dim < 0 || height < 0 || width < 0
                             ? "batch, dim, height and width must be >= 0"
                             : nullptr;
  return capi::forward_call(g_ss2d_last_error, "remamberSS2DScanForward", bad_dims, p, u, delta, A, B, C, D,
                            delta_bias, y, dtype, delta_softplus, stream, launch_ss2d_scan);
}

REMAMBER_EXPORT const char* remamberSS2DScanLastError(void) { return g_ss2d_last_error.c_str(); }

// Version of the SS2DScan entry points' ABI (bumped if the signature above ever changes).
REMAMBER_EXPORT int remamberSS2DScanVersion(void) { return 1; }
