// The argument checks and dtype dispatch both CUDA launchers share (scan_launch.cu: SelectiveScan,
// ss2d_launch.cu: SS2DScan), so the two report a null pointer or a bad dtype code with the same message
// and pick the per-dtype kernel the same way. Each launcher keeps its own shape and size limits, checked
// between these steps in the order pointers, shape, dtype, sizes.
#pragma once

#include <cuda_runtime_api.h>

#include "scan_types.h"

namespace remamber {
namespace scan {

// Args: ScanArgs or SS2DArgs (device pointers). nullptr when every required pointer is set.
template <class Args>
const char* check_required_pointers(const Args& p) {
  if (!p.u || !p.delta || !p.A || !p.B || !p.C || !p.y) return "a required pointer (u, delta, A, B, C or y) is null";
  return nullptr;
}

inline const char* check_dtype(ScanDtype dtype) {
  if (dtype != ScanDtype::kFloat32 && dtype != ScanDtype::kFloat16 && dtype != ScanDtype::kBFloat16)
    return "dtype must be 0 (float32), 1 (float16) or 2 (bfloat16)";
  return nullptr;
}

// Runs the launcher of p.dtype (a valid code: check_dtype first); nullptr or the CUDA error's message.
template <class Args>
const char* launch_by_dtype(const Args& p, cudaStream_t stream, cudaError_t (*fp32)(const Args&, cudaStream_t),
                            cudaError_t (*fp16)(const Args&, cudaStream_t),
                            cudaError_t (*bf16)(const Args&, cudaStream_t)) {
  cudaError_t err = cudaSuccess;
  switch (p.dtype) {
    case ScanDtype::kFloat32: err = fp32(p, stream); break;
    case ScanDtype::kFloat16: err = fp16(p, stream); break;
    case ScanDtype::kBFloat16: err = bf16(p, stream); break;
  }
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

}  // namespace scan
}  // namespace remamber
