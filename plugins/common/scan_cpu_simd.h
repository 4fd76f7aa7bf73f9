// Entry points of the SIMD CPU scan kernels (scan_simd_kernels.inc), one namespace per instruction set.
// grad_prepass is the backward's transcendental part (scan_cpu_grad.cpp): for x = delta + delta_bias of
// one row's steps, dt = softplus(x) (or x), slope = softplus'(x) (or 1), a[n * a_stride + t] = exp(dt * A[n]).
// Each is compiled in its own translation unit with that instruction set enabled (scan_simd_*.cpp), so
// the rest of the library stays baseline code and scan_cpu.cpp picks one at run time.
#pragma once

#include <stdint.h>

#include "scan_types.h"
#include "ss2d_types.h"

namespace remamber {
namespace scan {

#define REMAMBER_DECLARE_SIMD_PATH(ns)                                                     \
  namespace ns {                                                                           \
  void selective_scan_rows(const ScanArgs& args, int64_t row_begin, int64_t row_end);      \
  void ss2d_channels(const SS2DArgs& args, int64_t chan_begin, int64_t chan_end);          \
  void grad_prepass(const float* x, int64_t len, bool delta_softplus, const float* A,      \
                    int64_t nstate, int64_t a_stride, float* dt, float* slope, float* a);  \
  }

REMAMBER_DECLARE_SIMD_PATH(simd_vec128)
#if defined(__x86_64__) || defined(_M_X64)
#define REMAMBER_HAVE_X86_SIMD 1
REMAMBER_DECLARE_SIMD_PATH(simd_avx2)
REMAMBER_DECLARE_SIMD_PATH(simd_avx512)
#endif

#undef REMAMBER_DECLARE_SIMD_PATH

}  // namespace scan
}  // namespace remamber
