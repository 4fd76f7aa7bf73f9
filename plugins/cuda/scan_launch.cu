// Argument checks and dtype dispatch of the CUDA selective scan (the checks and dispatch it shares with
// the SS2DScan launcher: launch_common.h).
#include <stdint.h>

#include "launch_common.h"
#include "scan_launch.h"

namespace remamber {
namespace scan {

const char* launch_selective_scan(const ScanCudaParams& p, cudaStream_t stream) {
  if (const char* bad = check_required_pointers(p)) return bad;
  if (const char* bad = check_shape(p.shape)) return bad;
  if (const char* bad = check_dtype(p.dtype)) return bad;
  const int64_t rows = p.shape.batch * p.shape.channels;
  if (rows > INT32_MAX) return "batch * channels exceeds 2^31 - 1 (one CUDA block per row)";
  if (rows == 0 || p.shape.length == 0) return nullptr;  // nothing to compute
  return launch_by_dtype(p, stream, launch_selective_scan_fp32, launch_selective_scan_fp16, launch_selective_scan_bf16);
}

}  // namespace scan
}  // namespace remamber
