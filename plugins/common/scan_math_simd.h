// Vector forms of the per-element maths of scan_math.h, for the SIMD CPU scan (scan_simd_kernels.inc).
//
// Written once with GCC/Clang vector extensions over a vector type V of W floats, so the same source
// becomes SSE2/NEON (16-byte V), AVX2 (32-byte) or AVX-512 (64-byte) code depending on the flags of the
// translation unit that includes it. Each function is the vector counterpart of one scalar function of
// scan_math.h and evaluates the same formula:
//   vsoftplus   <-> softplus      log1p(exp(x)) for x <= 20, x above
//   vstep_size  <-> step_size     softplus(delta + delta_bias) or delta + delta_bias
//   vdecay      <-> decay         exp(dt * a)
// exp and log are Cephes-style polynomial approximations (range reduction + degree-5/8 polynomials,
// about 1-2 ulp in fp32); log1p(y) is evaluated as log(1 + y) * y / ((1 + y) - 1), which cancels the
// rounding of 1 + y (Goldberg's trick), and as y when 1 + y rounds to 1. plugins/tests/test_scan_simd.cpp
// checks each against float64 over the ranges the scan meets.
//
// Everything lives in the namespace the including translation unit names (REMAMBER_SIMD_NS), so the
// copies compiled with different instruction sets never meet at link time.
#pragma once

#include <stdint.h>

#ifndef REMAMBER_SIMD_NS
#error "define REMAMBER_SIMD_NS and REMAMBER_SIMD_BYTES before including scan_math_simd.h"
#endif

namespace remamber {
namespace scan {
namespace REMAMBER_SIMD_NS {

constexpr int kVecBytes = REMAMBER_SIMD_BYTES;
constexpr int kW = kVecBytes / 4;  // floats per vector
typedef float V __attribute__((vector_size(kVecBytes)));
typedef int32_t VI __attribute__((vector_size(kVecBytes)));
// The same vectors at 4-byte alignment: loads and stores at any float address.
typedef float VUnaligned __attribute__((vector_size(kVecBytes), aligned(4), may_alias));

static inline V vset(float x) { return V{} + x; }
static inline V vload(const float* p) { return *reinterpret_cast<const VUnaligned*>(p); }
static inline void vstore(float* p, V v) { *reinterpret_cast<VUnaligned*>(p) = v; }
// Bit reinterpretation between float and int32 lanes (a register move, no memory round trip).
static inline V vbits(VI i) { return reinterpret_cast<V>(i); }
static inline VI vint_bits(V v) { return reinterpret_cast<VI>(v); }
static inline V vmin(V a, V b) { return a < b ? a : b; }
static inline V vmax(V a, V b) { return a > b ? a : b; }

// exp(x), Cephes expf: x = n*ln2 + r, |r| <= ln2/2, exp(r) by a degree-5 polynomial, times 2^n.
static inline V vexp(V x) {
  x = vmin(x, vset(88.3762626647949f));
  x = vmax(x, vset(-87.3365447505531f));  // exp(-87.34) = FLT_MIN: no subnormal 2^n below
  V fx = x * vset(1.44269504088896341f) + vset(0.5f);
  VI n = __builtin_convertvector(fx, VI);  // truncation toward zero
  V fn = __builtin_convertvector(n, V);
  const VI gt = fn > fx;                    // floor for negative fx
  n = n + gt;                               // gt is -1 where fn > fx
  fn = __builtin_convertvector(n, V);
  x = x - fn * vset(0.693359375f) - fn * vset(-2.12194440e-4f);
  const V z = x * x;
  V y = vset(1.9875691500e-4f);
  y = y * x + vset(1.3981999507e-3f);
  y = y * x + vset(8.3334519073e-3f);
  y = y * x + vset(4.1665795894e-2f);
  y = y * x + vset(1.6666665459e-1f);
  y = y * x + vset(5.0000001201e-1f);
  y = y * z + x + vset(1.0f);
  return y * vbits((n + 127) << 23);
}

// log(x) for x >= FLT_MIN (normal, positive), Cephes logf.
static inline V vlog(V x) {
  VI bits = vint_bits(x);
  VI e = ((bits >> 23) & 0xff) - 126;  // x = m * 2^e, m in [0.5, 1)
  V m = vbits((bits & 0x007fffff) | 0x3f000000);
  const VI small = m < vset(0.707106781186547524f);  // -1 where m < sqrt(1/2)
  e = e + small;
  const V mm = m + m - vset(1.0f);
  m = small ? mm : m - vset(1.0f);
  const V fe = __builtin_convertvector(e, V);
  const V z = m * m;
  V y = vset(7.0376836292e-2f);
  y = y * m + vset(-1.1514610310e-1f);
  y = y * m + vset(1.1676998740e-1f);
  y = y * m + vset(-1.2420140846e-1f);
  y = y * m + vset(1.4249322787e-1f);
  y = y * m + vset(-1.6668057665e-1f);
  y = y * m + vset(2.0000714765e-1f);
  y = y * m + vset(-2.4999993993e-1f);
  y = y * m + vset(3.3333331174e-1f);
  y = y * m * z;
  y = y + fe * vset(-2.12194440e-4f);
  y = y - vset(0.5f) * z;
  return m + y + fe * vset(0.693359375f);
}

// log1p(y) for y >= 0: log(1 + y) * y / ((1 + y) - 1); y itself where 1 + y rounds to 1.
static inline V vlog1p_nonneg(V y) {
  const V u = y + vset(1.0f);
  const V den = u - vset(1.0f);
  const VI tiny = den == vset(0.0f);
  const V safe_den = tiny ? vset(1.0f) : den;
  const V r = vlog(u) * (y / safe_den);
  return tiny ? y : r;
}

// softplus with the kernels' threshold 20 (scan_math.h kSoftplusThreshold).
static inline V vsoftplus(V x) {
  const VI above = x > vset(20.0f);
  const V r = vlog1p_nonneg(vexp(vmin(x, vset(20.0f))));
  return above ? x : r;
}

static inline V vstep_size(V delta, V delta_bias, bool delta_softplus) {
  const V x = delta + delta_bias;
  return delta_softplus ? vsoftplus(x) : x;
}

static inline V vdecay(V dt, V a) { return vexp(dt * a); }

// IEEE binary16 bits (zero-extended to 32) -> fp32, exact for every value: the 15 low bits shifted into
// an fp32 exponent/mantissa field and scaled by 2^112 rebias normals and normalise subnormals at once;
// exponent 31 (inf / NaN) is rebuilt; the sign is copied.
static inline V vhalf_to_float(VI h) {
  const VI mag = (h & 0x7fff) << 13;
  V f = vbits(mag) * vset(5.192296858534828e+33f);  // 2^112
  const VI infnan = (h & 0x7c00) == 0x7c00;
  f = infnan ? vbits(mag | 0x7f800000) : f;
  return vbits(vint_bits(f) | ((h & 0x8000) << 16));
}

static inline V vbf16_to_float(VI h) { return vbits(h << 16); }

}  // namespace REMAMBER_SIMD_NS
}  // namespace scan
}  // namespace remamber
