// The SIMD CPU scan kernels (scan_simd_kernels.inc) for avx512: 64-byte vectors.
// CMake compiles this file with the instruction set's flags (x86-64 only); scan_cpu.cpp calls it only when __builtin_cpu_supports says the CPU has it.
#if defined(__x86_64__) || defined(_M_X64)
#define REMAMBER_SIMD_NS simd_avx512
#define REMAMBER_SIMD_BYTES 64
#include "scan_cpu_simd.h"
#include "scan_simd_kernels.inc"
#endif
