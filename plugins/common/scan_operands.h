// The operands both scan ops take in the same contract order (u, delta, A, B, C, D, delta_bias -> y),
// filled into either op's argument struct (ScanArgs of SelectiveScan, SS2DArgs of SS2DScan) in one
// place. Why: the C ABI, the ONNX Runtime kernels and the TensorRT plugins of both ops all end with the
// same pointer and dtype wiring; only the shape differs per op. Host code only (no kernel includes it).
#pragma once

#include "scan_types.h"
#include "scan_validate.h"

namespace remamber {
namespace scan {

// The activation dtype code of an element type, or false when it is not one the kernels take.
inline bool scan_dtype_of(ElemType t, ScanDtype& dtype) {
  switch (t) {
    case ElemType::kFloat32: dtype = ScanDtype::kFloat32; return true;
    case ElemType::kFloat16: dtype = ScanDtype::kFloat16; return true;
    case ElemType::kBFloat16: dtype = ScanDtype::kBFloat16; return true;
    default: return false;
  }
}

// Sets the pointers, dtype and delta_softplus of `args` (ScanArgs or SS2DArgs: the fields they share).
// in[i] is contract input i (kU .. kDeltaBias), nullptr for an absent optional input.
template <class Args>
void set_operands(Args& args, const void* const (&in)[kNumInputs], float* y, ScanDtype dtype, bool delta_softplus) {
  args.u = in[kU];
  args.delta = in[kDelta];
  args.A = static_cast<const float*>(in[kA]);
  args.B = in[kB];
  args.C = in[kC];
  args.D = static_cast<const float*>(in[kD]);
  args.delta_bias = static_cast<const float*>(in[kDeltaBias]);
  args.y = y;
  args.dtype = dtype;
  args.delta_softplus = delta_softplus;
}

}  // namespace scan
}  // namespace remamber
