// Argument checks and dtype dispatch of the fused CUDA SS2DScan kernel (ss2d_kernel.cuh); the checks and
// dispatch it shares with the SelectiveScan launcher are in launch_common.h.
#include <stdint.h>

#include "launch_common.h"
#include "ss2d_launch.h"

namespace remamber {
namespace scan {

const char* launch_ss2d_scan(const SS2DArgs& p, cudaStream_t stream) {
  if (const char* bad = check_required_pointers(p)) return bad;
  if (const char* bad = check_ss2d_shape(p.shape, static_cast<int>(p.layout))) return bad;
  if (const char* bad = check_dtype(p.dtype)) return bad;
  const int64_t rows = p.shape.batch * p.shape.dim;
  if (rows > INT32_MAX) return "batch * D exceeds 2^31 - 1 (one CUDA block per channel)";
  // Positions inside a channel are 32-bit in the kernel.
  if (p.shape.height > INT32_MAX || p.shape.width > INT32_MAX || p.shape.height * p.shape.width > INT32_MAX)
    return "H * W exceeds 2^31 - 1";
  if (rows == 0 || p.shape.height == 0 || p.shape.width == 0) return nullptr;  // nothing to compute
  return launch_by_dtype(p, stream, launch_ss2d_scan_fp32, launch_ss2d_scan_fp16, launch_ss2d_scan_bf16);
}

}  // namespace scan
}  // namespace remamber
