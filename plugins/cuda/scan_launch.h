// Host-side entry of the CUDA selective scan (no TensorRT, no ONNX Runtime dependency). Used by the
// C ABI library (scan_c_api.cu) and by the TensorRT plugin's enqueue.
#pragma once

#ifndef REMAMBER_SCAN_HOST_EMULATION
#include <cuda_runtime_api.h>
#endif

#include "scan_types.h"

namespace remamber {
namespace scan {

struct ScanCudaParams {
  const void* u = nullptr;            // (batch, channels, length), dtype
  const void* delta = nullptr;        // (batch, channels, length), dtype
  const float* A = nullptr;           // (channels, nstate)
  const void* B = nullptr;            // (batch, groups, nstate, length), dtype
  const void* C = nullptr;            // (batch, groups, nstate, length), dtype
  const float* D = nullptr;           // (channels,) or nullptr
  const float* delta_bias = nullptr;  // (channels,) or nullptr
  float* y = nullptr;                 // (batch, channels, length), fp32
  ScanShape shape;
  ScanDtype dtype = ScanDtype::kFloat32;
  bool delta_softplus = true;
};

// Validates the parameters, then launches the kernel on `stream`. Returns nullptr on success, else
// a static message naming the problem (a CUDA launch error is reported with cudaGetErrorString).
const char* launch_selective_scan(const ScanCudaParams& params, cudaStream_t stream);

// Per-dtype launchers (one translation unit each, so they compile in parallel).
cudaError_t launch_selective_scan_fp32(const ScanCudaParams& params, cudaStream_t stream);
cudaError_t launch_selective_scan_fp16(const ScanCudaParams& params, cudaStream_t stream);
cudaError_t launch_selective_scan_bf16(const ScanCudaParams& params, cudaStream_t stream);

}  // namespace scan
}  // namespace remamber
