// Per-element maths of remamber::SelectiveScan v1, shared by the CUDA kernel and the CPU kernel.
//
// Everything here is a __host__ __device__ inline function on fp32 values, so the ORT CPU op
// (built with plain g++) and the CUDA kernel (nvcc) evaluate exactly the same formulas and the
// CPU tests exercise the maths the GPU runs. Contract (DESIGN.md, "The op contract"):
//   dt = softplus(delta + delta_bias)          (threshold 20: identity above it)
//   h  = exp(dt * A) * h + dt * B * u          (h starts at 0, fp32)
//   y  = sum_n C[n] * h[n] + D * u
#pragma once

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define REMAMBER_HD __host__ __device__ __forceinline__
#else
#define REMAMBER_HD inline
#endif

namespace remamber {
namespace scan {

// The CUDA kernels' softplus threshold (mamba-ssm, VMamba): above it softplus(x) == x in fp32.
constexpr float kSoftplusThreshold = 20.0f;
// Largest supported state size N (A is (channels, N)).
constexpr int kMaxState = 16;

// softplus with threshold: log1p(exp(x)) for x <= 20, x above (exp would only add rounding noise).
REMAMBER_HD float softplus(float x) { return x <= kSoftplusThreshold ? log1pf(expf(x)) : x; }

// The step size dt of one element: delta + delta_bias, through softplus when the attribute says so.
REMAMBER_HD float step_size(float delta, float delta_bias, bool delta_softplus) {
  const float x = delta + delta_bias;
  return delta_softplus ? softplus(x) : x;
}

// Decay of the state over one step: exp(dt * A). A <= 0 in Mamba, so the decay is in (0, 1].
REMAMBER_HD float decay(float dt, float a) { return expf(dt * a); }

// log2(e): the CUDA kernel stores A * log2(e) once per channel and evaluates the decay as
// exp2(dt * A * log2(e)), a single hardware ex2 instead of expf's range reduction. The extra
// rounding of A * log2(e) and of the product is a relative error of about 1.2e-7 * |dt * A| in the
// exponent, i.e. below 2.4e-6 relative on any decay above exp(-20) (docs/KERNEL_NOTES.md).
constexpr float kLog2e = 1.4426950408889634f;

// Decay of the state over one step from A pre-scaled by log2(e): exp2(dt * a_log2e) == exp(dt * A).
REMAMBER_HD float decay_exp2(float dt, float a_log2e) { return exp2f(dt * a_log2e); }

// One step of the recurrence for one state dimension: h = decay * h + dt * B * u.
// dt_u is dt * u, computed once per element and shared by all N state dimensions.
REMAMBER_HD float state_update(float h, float decay_value, float dt_u, float b) { return decay_value * h + dt_u * b; }

// The drive term of the recurrence, dt * B * u (the "value" half of a scan pair).
REMAMBER_HD float drive(float dt_u, float b) { return dt_u * b; }

// One state dimension's contribution to the output: C * h.
REMAMBER_HD float output_term(float c, float h) { return c * h; }

// The skip connection D * u (D absent means 0).
REMAMBER_HD float skip_term(float d, float u) { return d * u; }

// A pair (a, b) stands for the affine map h -> a * h + b. Composing "first, then second" gives
// (a1, b1) o (a2, b2) = (a1 * a2, a2 * b1 + b2): associative, identity (1, 0). The block-parallel
// scan combines pairs with this operator; applying a pair to h = 0 yields its b.
struct ScanPair {
  float a;
  float b;
};

REMAMBER_HD ScanPair scan_identity() { return ScanPair{1.0f, 0.0f}; }

REMAMBER_HD ScanPair scan_combine(ScanPair first, ScanPair second) {
  return ScanPair{first.a * second.a, second.a * first.b + second.b};
}

// IEEE binary16 -> fp32 on any host (the CUDA kernel uses __half2float instead). Exact for all
// values: normals, subnormals, infinities and NaN.
inline float half_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0x1fu) {  // inf / nan
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {  // normal: rebias 15 -> 127
    bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {  // signed zero
    bits = sign;
  } else {  // subnormal half: normalise the mantissa
    exponent = 113u;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --exponent;
    }
    bits = sign | (exponent << 23) | ((mantissa & 0x3ffu) << 13);
  }
  float out;
  __builtin_memcpy(&out, &bits, sizeof(out));
  return out;
}

// bfloat16 -> fp32: bf16 is the upper half of an fp32 bit pattern.
inline float bf16_bits_to_float(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float out;
  __builtin_memcpy(&out, &bits, sizeof(out));
  return out;
}

}  // namespace scan
}  // namespace remamber
