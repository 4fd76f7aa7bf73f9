// Signature checks of remamber::SS2DScan v1 (plugins/ss2dScanPlugin/README.md, "Validation"), shared by
// the ONNX Runtime op (CPU and CUDA EP) and the TensorRT plugin so every runtime refuses a malformed node
// with the same message. Same conventions as scan_validate.h (whose TensorDesc / ElemType / input slots
// and optional-input resolution it reuses): dimensions may be unknown (-1) and checks that involve one
// are skipped until it is known.
#pragma once

#include <stdint.h>

#include <string>

#include "scan_validate.h"
#include "ss2d_types.h"

namespace remamber {
namespace scan {

// Required inputs present, every present input of the right rank.
inline std::string validate_ss2d_ranks(const TensorDesc (&in)[kNumInputs]) {
  static const int ranks[kNumInputs] = {4, 4, 2, 5, 5, 1, 1};
  static const char* const layouts[kNumInputs] = {"(batch, D, H, W)",    "(batch, 4*D, H, W)", "(4*D, N)",
                                                  "(batch, 4, N, H, W)", "(batch, 4, N, H, W)", "(4*D,)",
                                                  "(4*D,)"};
  return validate_ranks_as(in, ranks, layouts);
}

// Dimensions agree with each other (ranks must already be valid); unknown dimensions are skipped.
inline std::string validate_ss2d_dims(const TensorDesc (&in)[kNumInputs]) {
  const auto& u = in[kU].dims;
  const auto& A = in[kA].dims;
  const auto known = [](int64_t v) { return v >= 0; };
  const auto mismatch = [&](int64_t a, int64_t b) { return known(a) && known(b) && a != b; };
  const int64_t k = kSS2DDirections;
  const int64_t dim4 = known(u[1]) ? k * u[1] : -1;  // 4*D
  const int64_t nstate = A[1];
  if (known(nstate) && (nstate < 1 || nstate > 16))
    return "state size N = " + std::to_string(nstate) + " (A.shape[1], A is " + dims_str(A) +
           ") is outside the supported 1..16";
  const auto& delta = in[kDelta].dims;
  if (mismatch(delta[0], u[0]) || mismatch(delta[1], dim4) || mismatch(delta[2], u[2]) || mismatch(delta[3], u[3]))
    return "input delta " + dims_str(delta) + " must be (batch, 4*D, H, W) = (" + dim_str(u[0]) + ", " + dim_str(dim4) +
           ", " + dim_str(u[2]) + ", " + dim_str(u[3]) + ") (u is " + dims_str(u) + ")";
  if (mismatch(A[0], dim4))
    return "input A " + dims_str(A) + " must be (4*D, N) with 4*D = 4 * u.shape[1] = " + dim_str(dim4);
  for (int i : {kB, kC}) {
    const auto& t = in[i].dims;
    if (mismatch(t[0], u[0]) || mismatch(t[1], k) || mismatch(t[2], nstate) || mismatch(t[3], u[2]) ||
        mismatch(t[4], u[3]))
      return std::string("input ") + input_name(i) + " " + dims_str(t) + " must be (batch, 4, N, H, W) = (" +
             dim_str(u[0]) + ", 4, " + dim_str(nstate) + ", " + dim_str(u[2]) + ", " + dim_str(u[3]) + ") (u is " +
             dims_str(u) + ", A is " + dims_str(A) + ")";
  }
  for (int i : {kD, kDeltaBias}) {
    if (in[i].present && mismatch(in[i].dims[0], dim4))
      return std::string("input ") + input_name(i) + " " + dims_str(in[i].dims) + " must be (4*D,) = (" +
             dim_str(dim4) + ",)";
  }
  return "";
}

// Ranks, types (shared with v1: u/delta/B/C one activation type, A/D/delta_bias float32), dimensions.
inline std::string validate_ss2d_signature(const TensorDesc (&in)[kNumInputs], bool allow_bfloat16 = true) {
  std::string problem = validate_ss2d_ranks(in);
  if (problem.empty()) problem = validate_types(in, allow_bfloat16);
  if (problem.empty()) problem = validate_ss2d_dims(in);
  return problem;
}

// The int attributes: layout in {0, 1}, then the ones shared with v1 (scan_validate.h): delta_softplus in
// {0, 1}, has_D / has_delta_bias in {-1, 0, 1}.
inline std::string validate_ss2d_attributes(int64_t layout, int64_t delta_softplus, int64_t has_d,
                                            int64_t has_delta_bias) {
  if (layout != 0 && layout != 1)
    return "attribute layout must be 0 (cross) or 1 (bidi), got " + std::to_string(layout);
  return validate_scan_attributes(delta_softplus, has_d, has_delta_bias);
}

// The SS2DShape of validated inputs (every dimension known).
inline SS2DShape ss2d_shape_of(const TensorDesc (&in)[kNumInputs]) {
  SS2DShape s;
  s.batch = in[kU].dims[0];
  s.dim = in[kU].dims[1];
  s.height = in[kU].dims[2];
  s.width = in[kU].dims[3];
  s.nstate = in[kA].dims[1];
  return s;
}

}  // namespace scan
}  // namespace remamber
