// C ABI of libremamber_scan_cuda.so (fixed in COMMON.md), for ctypes callers such as the GPU check
// script: all tensors contiguous, device pointers, y float32.
#include <string>

#include "scan_launch.h"

#define REMAMBER_EXPORT extern "C" __attribute__((visibility("default")))

namespace {
thread_local std::string g_last_error;  // message of this thread's last failed call
}

REMAMBER_EXPORT int remamberSelectiveScanForward(const void* u, const void* delta, const float* A, const void* B,
                                                 const void* C, const float* D, const float* delta_bias, float* y,
                                                 int batch, int channels, int length, int groups, int nstate,
                                                 int dtype, int delta_softplus, void* stream) {
  using namespace remamber::scan;
  if (batch < 0 || channels < 0 || length < 0) {
    g_last_error = "remamberSelectiveScanForward: batch, channels and length must be >= 0";
    return 1;
  }
  if (delta_softplus != 0 && delta_softplus != 1) {
    g_last_error = "remamberSelectiveScanForward: delta_softplus must be 0 or 1";
    return 1;
  }
  ScanCudaParams p;
  p.u = u;
  p.delta = delta;
  p.A = A;
  p.B = B;
  p.C = C;
  p.D = D;
  p.delta_bias = delta_bias;
  p.y = y;
  p.shape.batch = batch;
  p.shape.channels = channels;
  p.shape.length = length;
  p.shape.groups = groups;
  p.shape.nstate = nstate;
  p.dtype = static_cast<ScanDtype>(dtype);
  p.delta_softplus = delta_softplus != 0;
  if (const char* err = launch_selective_scan(p, static_cast<cudaStream_t>(stream))) {
    g_last_error = std::string("remamberSelectiveScanForward: ") + err;
    return 1;
  }
  g_last_error.clear();
  return 0;
}

REMAMBER_EXPORT const char* remamberSelectiveScanLastError(void) { return g_last_error.c_str(); }

REMAMBER_EXPORT int remamberSelectiveScanVersion(void) { return 1; }
