// Argument checks and dtype dispatch of the CUDA selective scan.
#include <stdint.h>

#include "scan_launch.h"

namespace remamber {
namespace scan {

const char* launch_selective_scan(const ScanCudaParams& p, cudaStream_t stream) {
  if (!p.u || !p.delta || !p.A || !p.B || !p.C || !p.y)
    return "a required pointer (u, delta, A, B, C or y) is null";
  if (const char* bad = check_shape(p.shape)) return bad;
  if (p.dtype != ScanDtype::kFloat32 && p.dtype != ScanDtype::kFloat16 && p.dtype != ScanDtype::kBFloat16)
    return "dtype must be 0 (float32), 1 (float16) or 2 (bfloat16)";
  const int64_t rows = p.shape.batch * p.shape.channels;
  if (rows > INT32_MAX) return "batch * channels exceeds 2^31 - 1 (one CUDA block per row)";
  if (rows == 0 || p.shape.length == 0) return nullptr;  // nothing to compute
  cudaError_t err = cudaSuccess;
  switch (p.dtype) {
    case ScanDtype::kFloat32: err = launch_selective_scan_fp32(p, stream); break;
    case ScanDtype::kFloat16: err = launch_selective_scan_fp16(p, stream); break;
    case ScanDtype::kBFloat16: err = launch_selective_scan_bf16(p, stream); break;
  }
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

}  // namespace scan
}  // namespace remamber
