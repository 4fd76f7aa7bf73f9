// The host compiler's native half-precision type, for tests that round values to fp16 exactly as the
// kernels' inputs would be. x86-64 g++ spells it _Float16; Debian's aarch64 g++ 12 has no _Float16 in C++
// but has the ARM __fp16 storage type (IEEE binary16, round to nearest even on conversion).
#pragma once

#if defined(__aarch64__)
using host_half = __fp16;
#else
using host_half = _Float16;
#endif
