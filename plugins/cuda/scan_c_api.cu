// C ABI of libremamber_scan_cuda.so (fixed in COMMON.md), for ctypes callers such as the GPU check
// script: all tensors contiguous, device pointers, y float32. The conventions shared with the SS2DScan
// entry points (return codes, last error, operand wiring) live in c_api_common.h.
#include <string>

#include "c_api_common.h"
#include "scan_launch.h"

namespace {
thread_local std::string g_last_error;  // message of this thread's last failed call
}

REMAMBER_EXPORT int remamberSelectiveScanForward(const void* u, const void* delta, const float* A, const void* B,
                                                 const void* C, const float* D, const float* delta_bias, float* y,
                                                 int batch, int channels, int length, int groups, int nstate,
                                                 int dtype, int delta_softplus, void* stream) {
  using namespace remamber::scan;
  ScanCudaParams p;
  p.shape.batch = batch;
  p.shape.channels = channels;
  p.shape.length = length;
  p.shape.groups = groups;
  p.shape.nstate = nstate;
  const char* bad_dims =
      batch < 0 || channels < 0 || length < 0 ? "batch, channels and length must be >= 0" : nullptr;
  return capi::forward_call(g_last_error, "remamberSelectiveScanForward", bad_dims, p, u, delta, A, B, C, D,
                            delta_bias, y, dtype, delta_softplus, stream, launch_selective_scan);
}

REMAMBER_EXPORT const char* remamberSelectiveScanLastError(void) { return g_last_error.c_str(); }

REMAMBER_EXPORT int remamberSelectiveScanVersion(void) { return 1; }
