// Shapes, layouts and arguments of remamber::SS2DScan v1 (plugins/ss2dScanPlugin/README.md), shared by
// every backend (CPU kernel, CUDA launcher, ONNX Runtime op, TensorRT plugin) so that the contract's
// index maths lives in one place.
#pragma once

#include <stdint.h>

#include "scan_types.h"

#if defined(__CUDACC__)
#define REMAMBER_SS2D_HD __host__ __device__ __forceinline__
#else
#define REMAMBER_SS2D_HD inline
#endif

namespace remamber {
namespace scan {

constexpr int kSS2DDirections = 4;

// The `layout` attribute: how each of the four directions walks the H x W positions.
enum class SS2DLayout : int {
  kCross = 0,  // VMamba CrossScan: row-major, column-major, and both reversed
  kBidi = 1,   // csm_triton getCSM(2): forward, forward, reversed, reversed over the row-major order
};

// u, y: (batch, dim, height, width); delta: (batch, 4*dim, height, width); A: (4*dim, nstate);
// B, C: (batch, 4, nstate, height, width); D, delta_bias: (4*dim,). All contiguous.
struct SS2DShape {
  int64_t batch = 0;
  int64_t dim = 0;  // D: channels of u and y; the per-direction parameters have 4*D rows
  int64_t height = 0;
  int64_t width = 0;
  int64_t nstate = 0;
  int64_t length() const { return height * width; }
};

// The pointers and shape of one SS2DScan call (host pointers for the CPU kernel, device pointers for the
// CUDA launcher), mirroring ScanArgs.
struct SS2DArgs {
  const void* u = nullptr;            // (batch, dim, H, W), dtype
  const void* delta = nullptr;        // (batch, 4*dim, H, W), dtype
  const float* A = nullptr;           // (4*dim, nstate)
  const void* B = nullptr;            // (batch, 4, nstate, H, W), dtype
  const void* C = nullptr;            // (batch, 4, nstate, H, W), dtype
  const float* D = nullptr;           // (4*dim,) or nullptr
  const float* delta_bias = nullptr;  // (4*dim,) or nullptr
  float* y = nullptr;                 // (batch, dim, H, W), fp32: the sum of the four directions
  SS2DShape shape;
  SS2DLayout layout = SS2DLayout::kCross;
  ScanDtype dtype = ScanDtype::kFloat32;
  bool delta_softplus = true;
};

// Spatial (row-major) position visited at step t of direction k (0 <= t < H*W). The contract's table.
REMAMBER_SS2D_HD int64_t ss2d_position(SS2DLayout layout, int k, int64_t t, int64_t height, int64_t width) {
  const int64_t length = height * width;
  const int64_t s = (k >= 2) ? (length - 1 - t) : t;  // directions 2 and 3 walk backwards
  if (layout == SS2DLayout::kCross && (k & 1)) {
    // column-major step s visits column w = s / H, row h = s % H
    const int64_t w = s / height;
    const int64_t h = s - w * height;
    return h * width + w;
  }
  return s;
}

// Returns nullptr when the shape is supported, else a static message naming the problem.
inline const char* check_ss2d_shape(const SS2DShape& s, int layout) {
  if (s.batch < 0 || s.dim < 0 || s.height < 0 || s.width < 0) return "negative dimension";
  if (s.nstate < 1 || s.nstate > 16) return "state size N (A.shape[1]) must be in 1..16";
  if (layout != static_cast<int>(SS2DLayout::kCross) && layout != static_cast<int>(SS2DLayout::kBidi))
    return "layout must be 0 (cross) or 1 (bidi)";
  return nullptr;
}

}  // namespace scan
}  // namespace remamber
