// CPU selective scan (used by the ONNX Runtime op): a sequential fp32 scan per (batch, channel) row,
// built on the same per-element maths as the CUDA kernel (scan_math.h).
#pragma once

#include <stdint.h>

#include "scan_types.h"

namespace remamber {
namespace scan {

using ScanCpuArgs = ScanArgs;  // host pointers

// Scans rows [row_begin, row_end) of the batch*channels rows (row = b * channels + c). Rows are
// independent, so callers split them over threads. The shape must have passed check_shape().
void selective_scan_cpu_rows(const ScanCpuArgs& args, int64_t row_begin, int64_t row_end);

}  // namespace scan
}  // namespace remamber
