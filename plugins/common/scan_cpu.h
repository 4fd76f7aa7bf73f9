// CPU selective scan (used by the ONNX Runtime op): a sequential fp32 scan per (batch, channel) row,
// built on the same per-element maths as the CUDA kernel (scan_math.h).
#pragma once

#include <stdint.h>

#include "scan_types.h"

namespace remamber {
namespace scan {

struct ScanCpuArgs {
  const void* u = nullptr;           // (batch, channels, length), dtype
  const void* delta = nullptr;       // (batch, channels, length), dtype
  const float* A = nullptr;          // (channels, nstate)
  const void* B = nullptr;           // (batch, groups, nstate, length), dtype
  const void* C = nullptr;           // (batch, groups, nstate, length), dtype
  const float* D = nullptr;          // (channels,) or nullptr
  const float* delta_bias = nullptr; // (channels,) or nullptr
  float* y = nullptr;                // (batch, channels, length), fp32
  ScanShape shape;
  ScanDtype dtype = ScanDtype::kFloat32;
  bool delta_softplus = true;
};

// Scans rows [row_begin, row_end) of the batch*channels rows (row = b * channels + c). Rows are
// independent, so callers split them over threads. The shape must have passed check_shape().
void selective_scan_cpu_rows(const ScanCpuArgs& args, int64_t row_begin, int64_t row_end);

}  // namespace scan
}  // namespace remamber
