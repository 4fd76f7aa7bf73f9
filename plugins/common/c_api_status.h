// The status conventions every C ABI of this project follows (libremamber_scan_cuda.so,
// libremamber_cpu_ops.so): exported with default visibility, 0 on success, 1 on failure with
// "<entry point>: <problem>" kept in a per-thread last-error string. Host-only and CUDA-free, so the
// CPU library shares it with the CUDA one (plugins/cuda/c_api_common.h builds on it).
#pragma once

#include <string>

#define REMAMBER_EXPORT extern "C" __attribute__((visibility("default")))

namespace remamber {
namespace scan {
namespace capi {

// Records the outcome of one call in the entry point's last-error string; returns the C status.
inline int finish(std::string& last_error, const char* entry, const char* problem) {
  if (problem != nullptr) {
    last_error = std::string(entry) + ": " + problem;
    return 1;
  }
  last_error.clear();
  return 0;
}

}  // namespace capi
}  // namespace scan
}  // namespace remamber
