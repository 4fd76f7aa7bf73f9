// The ONNX Runtime side of remamber::SS2DScan v1 that does not depend on where the kernel runs: what the
// shared custom-op machinery (ort_scan_op.h: node attributes and input slots, kernel creation with the
// node checks, input/output types, shape inference) needs to know of SS2DScan. The CPU kernel
// (ort_ss2d_scan.cpp) and the CUDA EP kernel (ort_ss2d_scan_cuda.cpp) each derive their kernel from
// ScanKernel<SS2DScanOrt, ...>, add only Run and name their execution provider, so both refuse a
// malformed node with the same message (plugins/common/ss2d_validate.h, shared with the TensorRT plugin).
#pragma once

#include <string>

#include "ort_scan_op.h"
#include "scan_validate.h"
#include "ss2d_types.h"
#include "ss2d_validate.h"

namespace remamber {
namespace ort {

struct SS2DScanOrt {
  static constexpr const char* kName = "SS2DScan";
  using Args = scan::SS2DArgs;
  static constexpr int kNumAttrs = 4;
  static constexpr const char* kAttrNames[kNumAttrs] = {"layout", "delta_softplus", "has_D", "has_delta_bias"};
  static constexpr int64_t kAttrDefaults[kNumAttrs] = {0, 1, -1, -1};
  static constexpr int kLayout = 0, kDeltaSoftplus = 1, kHasD = 2, kHasDeltaBias = 3;
  static constexpr size_t kRank = 4;
  static constexpr const char* kULayout = "(batch, D, H, W)";

  static std::string validate_attributes(const int64_t (&v)[kNumAttrs]) {
    return scan::validate_ss2d_attributes(v[kLayout], v[kDeltaSoftplus], v[kHasD], v[kHasDeltaBias]);
  }
  static std::string validate_signature(const scan::TensorDesc (&in)[scan::kNumInputs]) {
    return scan::validate_ss2d_signature(in);
  }
  static const char* set_shape(Args& args, const scan::TensorDesc (&in)[scan::kNumInputs],
                               const int64_t (&attrs)[kNumAttrs]) {
    args.shape = scan::ss2d_shape_of(in);
    args.layout = static_cast<scan::SS2DLayout>(attrs[kLayout]);
    return scan::check_ss2d_shape(args.shape, static_cast<int>(attrs[kLayout]));
  }
};

}  // namespace ort
}  // namespace remamber
