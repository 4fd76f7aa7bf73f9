// Host-side entry of the CUDA selective scan (no TensorRT, no ONNX Runtime dependency). Used by the
// C ABI library (scan_c_api.cu) and by the TensorRT plugin's enqueue.
#pragma once

#ifndef REMAMBER_SCAN_HOST_EMULATION
#include <cuda_runtime_api.h>
#endif

#include "scan_types.h"

namespace remamber {
namespace scan {

using ScanCudaParams = ScanArgs;  // device pointers

// Validates the parameters, then launches the kernel on `stream`. Returns nullptr on success, else
// a static message naming the problem (a CUDA launch error is reported with cudaGetErrorString).
const char* launch_selective_scan(const ScanCudaParams& params, cudaStream_t stream);

// Per-dtype launchers (one translation unit each, so they compile in parallel).
cudaError_t launch_selective_scan_fp32(const ScanCudaParams& params, cudaStream_t stream);
cudaError_t launch_selective_scan_fp16(const ScanCudaParams& params, cudaStream_t stream);
cudaError_t launch_selective_scan_bf16(const ScanCudaParams& params, cudaStream_t stream);

}  // namespace scan
}  // namespace remamber
