// CPU kernels of both scan ops (used by the ONNX Runtime ops): remamber::SelectiveScan v1 (rows of
// (batch, channels, L)) and remamber::SS2DScan v1 (channels of spatial (batch, D, H, W) planes, four
// directions each), on the per-element maths of scan_math.h.
//
// Each op has a scalar path (the original kernel: one row at a time, scalar expf/log1pf) and SIMD paths
// (scan_cpu_simd.h): the transcendental-bound part (softplus, exp(dt*A)) runs in vector form on tiles of
// time steps, and the sequential recurrence runs several rows' chains interleaved. The path is chosen at
// run time from what the CPU supports (AVX-512 > AVX2 > 128-bit vectors), overridable with the
// environment variable REMAMBER_SCAN_CPU_PATH=scalar|vec128|avx2|avx512 or the `path` argument (tests,
// benchmarks).
#pragma once

#include <stdint.h>

#include "scan_types.h"
#include "ss2d_types.h"

namespace remamber {
namespace scan {

using ScanCpuArgs = ScanArgs;  // host pointers

enum class CpuPath : int {
  kAuto = 0,    // the best supported path (or REMAMBER_SCAN_CPU_PATH)
  kScalar = 1,  // the original scalar kernel
  kVec128 = 2,  // 128-bit vectors: SSE2 on x86-64, NEON on aarch64, plain C++ elsewhere (always built)
  kAVX2 = 3,    // 256-bit AVX2 (+FMA CPUs), x86-64 only
  kAVX512 = 4,  // 512-bit AVX-512F, x86-64 only
};

// "auto", "scalar", "vec128", "avx2", "avx512".
const char* cpu_path_name(CpuPath path);
// Whether this build and this CPU can run `path` (kAuto, kScalar and kVec128 always can).
bool cpu_path_supported(CpuPath path);
// kAuto -> REMAMBER_SCAN_CPU_PATH when set (read at every call; an unknown or unsupported value falls
// back to the best path, cpu_path_note() says why), else the best supported path; others unchanged.
CpuPath resolve_cpu_path(CpuPath path);
// Why REMAMBER_SCAN_CPU_PATH was not followed (nullptr when it was, or is unset).
const char* cpu_path_note();
// Parses a path name; returns false for an unknown name.
bool parse_cpu_path(const char* name, CpuPath* out);

// Scans rows [row_begin, row_end) of the batch*channels rows (row = b * channels + c). Rows are
// independent, so callers split them over threads. The shape must have passed check_shape().
void selective_scan_cpu_rows(const ScanCpuArgs& args, int64_t row_begin, int64_t row_end,
                             CpuPath path = CpuPath::kAuto);

// SS2DScan for channels [chan_begin, chan_end) of the batch*dim channels (chan = b * dim + d): each
// writes y[b, d, :, :] completely (the four directions summed in the order k = 0, 1, 2, 3), so callers
// split channels over threads and the result does not depend on the split. The shape must have passed
// check_ss2d_shape().
void ss2d_scan_cpu_channels(const SS2DArgs& args, int64_t chan_begin, int64_t chan_end,
                            CpuPath path = CpuPath::kAuto);

}  // namespace scan
}  // namespace remamber
