// The SIMD CPU scan kernels (scan_simd_kernels.inc) for vec128: 16-byte vectors.
// No target flags: SSE2 on x86-64, NEON on aarch64 (both baseline), GCC's generic vector lowering elsewhere; always built, the portable SIMD path.

#define REMAMBER_SIMD_NS simd_vec128
#define REMAMBER_SIMD_BYTES 16
#include "scan_cpu_simd.h"
#include "scan_simd_kernels.inc"

