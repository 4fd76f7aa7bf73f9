// Shapes and dtype codes of remamber::SelectiveScan v1, shared by every backend (CPU, CUDA, plugins).
#pragma once

#include <stdint.h>

namespace remamber {
namespace scan {

// Activation dtype of u, delta, B and C (the codes of the C ABI's `dtype` argument).
enum class ScanDtype : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

// u, delta, y: (batch, channels, length); A: (channels, nstate); B, C: (batch, groups, nstate, length);
// D, delta_bias: (channels,). Channel c reads group c / (channels / groups). All tensors contiguous.
struct ScanShape {
  int64_t batch = 0;
  int64_t channels = 0;
  int64_t length = 0;
  int64_t groups = 0;
  int64_t nstate = 0;
};

// The pointers and shape of one scan call; the CPU kernel and the CUDA launcher take the same struct
// (pointers into host memory for the CPU kernel, device memory for the CUDA launcher).
struct ScanArgs {
  const void* u = nullptr;            // (batch, channels, length), dtype
  const void* delta = nullptr;        // (batch, channels, length), dtype
  const float* A = nullptr;           // (channels, nstate)
  const void* B = nullptr;            // (batch, groups, nstate, length), dtype
  const void* C = nullptr;            // (batch, groups, nstate, length), dtype
  const float* D = nullptr;           // (channels,) or nullptr
  const float* delta_bias = nullptr;  // (channels,) or nullptr
  float* y = nullptr;                 // (batch, channels, length), fp32
  ScanShape shape;
  ScanDtype dtype = ScanDtype::kFloat32;
  bool delta_softplus = true;
};

// Returns nullptr when the shape is supported, else a static message naming the problem.
inline const char* check_shape(const ScanShape& s) {
  if (s.batch < 0 || s.channels < 0 || s.length < 0) return "negative dimension";
  if (s.nstate < 1 || s.nstate > 16) return "state size N (A.shape[1]) must be in 1..16";
  if (s.groups < 1) return "group count G (B.shape[1]) must be >= 1";
  if (s.channels % s.groups != 0) return "group count G (B.shape[1]) must divide the channel count (u.shape[1])";
  return nullptr;
}

}  // namespace scan
}  // namespace remamber
