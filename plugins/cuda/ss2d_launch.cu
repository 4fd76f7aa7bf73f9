// Argument checks and dtype dispatch of the fused CUDA SS2DScan kernel (ss2d_kernel.cuh).
#include <stdint.h>

#include "ss2d_launch.h"

namespace remamber {
namespace scan {

const char* launch_ss2d_scan(const SS2DArgs& p, cudaStream_t stream) {
  if (!p.u || !p.delta || !p.A || !p.B || !p.C || !p.y)
    return "a required pointer (u, delta, A, B, C or y) is null";
  if (const char* bad = check_ss2d_shape(p.shape, static_cast<int>(p.layout))) return bad;
  if (p.dtype != ScanDtype::kFloat32 && p.dtype != ScanDtype::kFloat16 && p.dtype != ScanDtype::kBFloat16)
    return "dtype must be 0 (float32), 1 (float16) or 2 (bfloat16)";
  const int64_t rows = p.shape.batch * p.shape.dim;
  if (rows > INT32_MAX) return "batch * D exceeds 2^31 - 1 (one CUDA block per channel)";
  // Positions inside a channel are 32-bit in the kernel.
  if (p.shape.height > INT32_MAX || p.shape.width > INT32_MAX || p.shape.height * p.shape.width > INT32_MAX)
    return "H * W exceeds 2^31 - 1";
  if (rows == 0 || p.shape.height == 0 || p.shape.width == 0) return nullptr;  // nothing to compute
  cudaError_t err = cudaSuccess;
  switch (p.dtype) {
    case ScanDtype::kFloat32: err = launch_ss2d_scan_fp32(p, stream); break;
    case ScanDtype::kFloat16: err = launch_ss2d_scan_fp16(p, stream); break;
    case ScanDtype::kBFloat16: err = launch_ss2d_scan_bf16(p, stream); break;
  }
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

}  // namespace scan
}  // namespace remamber
