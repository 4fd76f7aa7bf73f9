// Host-side entry of the fused CUDA SS2DScan kernel (remamber::SS2DScan v1), with no TensorRT or ONNX
// Runtime dependency. Used by the C ABI (ss2d_c_api.cu), the TensorRT SS2DScan plugin's enqueue and the
// ONNX Runtime CUDA EP kernel (plugins/ort/ort_ss2d_scan_cuda.cpp).
#pragma once

#ifndef REMAMBER_SCAN_HOST_EMULATION
#include <cuda_runtime_api.h>
#endif

#include "ss2d_types.h"

namespace remamber {
namespace scan {

// Validates the arguments (device pointers, shape, layout, dtype), then launches one kernel on `stream`.
// Returns nullptr on success (also for an empty tensor: nothing is launched), else a static message
// naming the problem (a CUDA launch error is reported with cudaGetErrorString).
const char* launch_ss2d_scan(const SS2DArgs& args, cudaStream_t stream);

// Per-dtype launchers (one translation unit each, so they compile in parallel).
cudaError_t launch_ss2d_scan_fp32(const SS2DArgs& args, cudaStream_t stream);
cudaError_t launch_ss2d_scan_fp16(const SS2DArgs& args, cudaStream_t stream);
cudaError_t launch_ss2d_scan_bf16(const SS2DArgs& args, cudaStream_t stream);

}  // namespace scan
}  // namespace remamber
