// Signature checks of remamber::SelectiveScan v1, shared by the ONNX Runtime op and the TensorRT
// plugin so both refuse a malformed node with the same message. Dimensions may be unknown (-1:
// dynamic, checked again once known); a check involving an unknown dimension is skipped.
#pragma once

#include <stdint.h>

#include <string>
#include <vector>

namespace remamber {
namespace scan {

// Input slots of the node (ONNX order).
enum ScanInput : int { kU = 0, kDelta = 1, kA = 2, kB = 3, kC = 4, kD = 5, kDeltaBias = 6, kNumInputs = 7 };

inline const char* input_name(int i) {
  static const char* const names[kNumInputs] = {"u", "delta", "A", "B", "C", "D", "delta_bias"};
  return (i >= 0 && i < kNumInputs) ? names[i] : "?";
}

// Element type as the checks see it (each runtime maps its own enum onto this).
enum class ElemType : int { kFloat32, kFloat16, kBFloat16, kOther };

inline const char* elem_type_name(ElemType t) {
  switch (t) {
    case ElemType::kFloat32: return "float32";
    case ElemType::kFloat16: return "float16";
    case ElemType::kBFloat16: return "bfloat16";
    default: return "an unsupported type";
  }
}

struct TensorDesc {
  bool present = false;
  ElemType type = ElemType::kOther;
  std::vector<int64_t> dims;  // -1 = unknown
};

inline std::string dims_str(const std::vector<int64_t>& d) {
  std::string s = "(";
  for (size_t i = 0; i < d.size(); ++i) {
    if (i) s += ", ";
    s += d[i] < 0 ? std::string("?") : std::to_string(d[i]);
  }
  return s + ")";
}

// Each check returns "" when the inputs satisfy the contract as far as the known dimensions tell,
// else a message naming the input, what was expected and what was found.

// Required inputs present, every present input of rank ranks[i] (layouts[i] names its axes). Shared
// by both ops' rank checks (validate_ranks below, validate_ss2d_ranks in ss2d_validate.h).
inline std::string validate_ranks_as(const TensorDesc (&in)[kNumInputs], const int (&ranks)[kNumInputs],
                                     const char* const (&layouts)[kNumInputs]) {
  for (int i = 0; i < kNumInputs; ++i) {
    if (!in[i].present) {
      if (i < kD) return std::string("required input ") + input_name(i) + " is missing";
      continue;
    }
    if (static_cast<int>(in[i].dims.size()) != ranks[i])
      return std::string("input ") + input_name(i) + " must have rank " + std::to_string(ranks[i]) + " " + layouts[i] +
             ", got rank " + std::to_string(in[i].dims.size()) + " " + dims_str(in[i].dims);
  }
  return "";
}

// SelectiveScan's ranks.
inline std::string validate_ranks(const TensorDesc (&in)[kNumInputs]) {
  static const int ranks[kNumInputs] = {3, 3, 2, 4, 4, 1, 1};
  static const char* const layouts[kNumInputs] = {"(batch, G*D, L)", "(batch, G*D, L)", "(G*D, N)", "(batch, G, N, L)",
                                                  "(batch, G, N, L)", "(G*D,)", "(G*D,)"};
  return validate_ranks_as(in, ranks, layouts);
}

// u/delta/B/C share one activation type; A, D, delta_bias are float32.
inline std::string validate_types(const TensorDesc (&in)[kNumInputs], bool allow_bfloat16 = true) {
  const ElemType act = in[kU].type;
  const bool act_ok = act == ElemType::kFloat32 || act == ElemType::kFloat16 || (allow_bfloat16 && act == ElemType::kBFloat16);
  if (!act_ok)
    return std::string("input u has type ") + elem_type_name(act) + "; expected float32 or float16" +
           (allow_bfloat16 ? " or bfloat16" : "");
  for (int i : {kDelta, kB, kC}) {
    if (in[i].type != act)
      return std::string("input ") + input_name(i) + " has type " + elem_type_name(in[i].type) + " but u has " +
             elem_type_name(act) + "; u, delta, B and C must share one type";
  }
  for (int i : {kA, kD, kDeltaBias}) {
    if (in[i].present && in[i].type != ElemType::kFloat32)
      return std::string("input ") + input_name(i) + " must be float32, got " + elem_type_name(in[i].type);
  }
  return "";
}

inline std::string dim_str(int64_t v) { return v < 0 ? std::string("?") : std::to_string(v); }

// Dimensions agree with each other (ranks must already be valid); unknown dimensions are skipped.
inline std::string validate_dims(const TensorDesc (&in)[kNumInputs]) {
  const auto& u = in[kU].dims;
  const auto& A = in[kA].dims;
  const auto& B = in[kB].dims;
  const auto known = [](int64_t v) { return v >= 0; };
  const auto mismatch = [&](int64_t a, int64_t b) { return known(a) && known(b) && a != b; };
  const int64_t nstate = A[1];
  if (known(nstate) && (nstate < 1 || nstate > 16))
    return "state size N = " + std::to_string(nstate) + " (A.shape[1], A is " + dims_str(A) +
           ") is outside the supported 1..16";
  for (int k = 0; k < 3; ++k) {
    if (mismatch(in[kDelta].dims[k], u[k]))
      return "input delta " + dims_str(in[kDelta].dims) + " must have the shape of u " + dims_str(u);
  }
  if (mismatch(A[0], u[1]))
    return "input A " + dims_str(A) + " must be (G*D, N) with G*D = u.shape[1] = " + dim_str(u[1]);
  for (int i : {kB, kC}) {
    const auto& t = in[i].dims;
    if (mismatch(t[0], u[0]) || mismatch(t[2], nstate) || mismatch(t[3], u[2]) || mismatch(t[1], B[1]))
      return std::string("input ") + input_name(i) + " " + dims_str(t) + " must be (batch, G, N, L) = (" + dim_str(u[0]) +
             ", G, " + dim_str(nstate) + ", " + dim_str(u[2]) + ") (u is " + dims_str(u) + ", A is " + dims_str(A) + ")";
  }
  const int64_t groups = B[1];
  if (groups == 0 || (known(groups) && known(u[1]) && u[1] % groups != 0))
    return "the group count G = " + std::to_string(groups) + " (B.shape[1]) must divide the channel count " +
           dim_str(u[1]) + " (u.shape[1])";
  for (int i : {kD, kDeltaBias}) {
    if (in[i].present && mismatch(in[i].dims[0], u[1]))
      return std::string("input ") + input_name(i) + " " + dims_str(in[i].dims) + " must be (G*D,) = (" + dim_str(u[1]) +
             ",)";
  }
  return "";
}

// All three checks, in the order ranks, types, dimensions.
inline std::string validate_signature(const TensorDesc (&in)[kNumInputs], bool allow_bfloat16 = true) {
  std::string problem = validate_ranks(in);
  if (problem.empty()) problem = validate_types(in, allow_bfloat16);
  if (problem.empty()) problem = validate_dims(in);
  return problem;
}

// The int attributes both ops share: delta_softplus in {0, 1}, has_D / has_delta_bias in {-1, 0, 1}
// (-1: not given, inferred from the input count).
inline std::string validate_scan_attributes(int64_t delta_softplus, int64_t has_d, int64_t has_delta_bias) {
  if (delta_softplus != 0 && delta_softplus != 1)
    return "attribute delta_softplus must be 0 or 1, got " + std::to_string(delta_softplus);
  if (has_d < -1 || has_d > 1) return "attribute has_D must be 0 or 1, got " + std::to_string(has_d);
  if (has_delta_bias < -1 || has_delta_bias > 1)
    return "attribute has_delta_bias must be 0 or 1, got " + std::to_string(has_delta_bias);
  return "";
}

// Where the optional inputs sit in a node's input list. Two ONNX conventions are accepted:
//  - compacted (required by the TensorRT ONNX parser, which cannot pass an empty-name input): only the
//    present optional inputs follow C, D before delta_bias; without attributes a 6th input is D (its
//    ONNX position), so "delta_bias without D" must say so with has_D=0 (or has_delta_bias=1);
//  - positional with empty names (ONNX Runtime only): slot 5 is D, slot 6 is delta_bias, "" = absent.
// has_d / has_delta_bias: 1 present, 0 absent, -1 not given. Returns "" and fills d_slot / bias_slot
// (-1 when absent) for the compacted form, given the number of inputs.
inline std::string resolve_optional_slots(int num_inputs, int has_d, int has_delta_bias, int& d_slot, int& bias_slot) {
  d_slot = bias_slot = -1;
  if (num_inputs < 5 || num_inputs > 7)
    return "expects 5 to 7 inputs (u, delta, A, B, C, [D], [delta_bias]), got " + std::to_string(num_inputs);
  const int extra = num_inputs - 5;
  int hd = has_d, hb = has_delta_bias;
  if (hd < 0 && hb < 0) {
    // No attributes: ONNX positional meaning, the 6th input is D, the 7th delta_bias.
    hd = extra >= 1 ? 1 : 0;
    hb = extra == 2 ? 1 : 0;
  } else if (hd < 0) {
    hd = extra - hb;
  } else if (hb < 0) {
    hb = extra - hd;
  }
  if (hd < 0 || hd > 1 || hb < 0 || hb > 1 || hd + hb != extra)
    return "attributes has_D=" + std::to_string(has_d) + " has_delta_bias=" + std::to_string(has_delta_bias) +
           " do not match the node's " + std::to_string(num_inputs) + " inputs (5 required + " + std::to_string(extra) +
           " optional)";
  d_slot = hd ? 5 : -1;
  bias_slot = hb ? 5 + hd : -1;
  return "";
}

}  // namespace scan
}  // namespace remamber
