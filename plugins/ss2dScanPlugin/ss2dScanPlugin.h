// TensorRT plugin remamber::SS2DScan, version "1" (IPluginV3: OneCore / OneBuild / OneRuntime): the fused
// cross-scan + selective scan + cross-merge of one SS2D call. Inputs, outputs, attributes, formats and
// limits: README.md in this folder. Built into the same library as SelectiveScan
// (libremamber_trt_plugin.so, whose getCreators lists both creators); the kernel is plugins/cuda/ss2d_*.
// The IPluginV3 machinery it shares with SelectiveScan (field parsing, serialization, try/catch in every
// noexcept method) is plugins/common/trt_scan_plugin.h; this header describes what is SS2DScan's own.
#pragma once

#include <NvInferRuntime.h>

#include <string>

#include "scan_types.h"
#include "scan_validate.h"
#include "trt_scan_plugin.h"

namespace remamber {
namespace trt {

constexpr char const* kSS2DPluginName = "SS2DScan";
constexpr char const* kSS2DPluginVersion = "1";

// What ScanPlugin<Op> needs to know of SS2DScan (see trt_scan_plugin.h).
struct SS2DScanOp {
  static constexpr char const* kName = kSS2DPluginName;
  static constexpr char const* kVersion = kSS2DPluginVersion;
  static constexpr int kNumAttrs = 4;
  // layout: 0 cross, 1 bidi. has_D / has_delta_bias: 1 present, 0 absent, -1 infer from the input count.
  static constexpr char const* kAttrNames[kNumAttrs] = {"layout", "delta_softplus", "has_D", "has_delta_bias"};
  static constexpr int64_t kAttrDefaults[kNumAttrs] = {0, 1, -1, -1};
  static constexpr int kLayout = 0, kDeltaSoftplus = 1, kHasD = 2, kHasDeltaBias = 3;
  static constexpr char const* kAccepted =
      "SS2DScan v1 accepts layout (int), delta_softplus (int), has_D (int), has_delta_bias (int), "
      "plugin_namespace and plugin_version (strings)";

  static std::string validateAttributes(int64_t const (&values)[kNumAttrs]);
  static std::string validateShapes(scan::TensorDesc const (&in)[scan::kNumInputs]);
  static std::string validateInputs(scan::TensorDesc const (&in)[scan::kNumInputs],
                                    nvinfer1::DynamicPluginTensorDesc const* bounds);
  static char const* launch(int32_t const (&attrs)[kNumAttrs], nvinfer1::PluginTensorDesc const* inputDesc,
                            void const* const (&in)[scan::kNumInputs], float* y, scan::ScanDtype dtype,
                            cudaStream_t stream);
};

using SS2DScanPlugin = ScanPlugin<SS2DScanOp>;
using SS2DScanPluginCreator = ScanPluginCreator<SS2DScanOp>;
extern template class ScanPlugin<SS2DScanOp>;  // instantiated in ss2dScanPlugin.cpp
extern template class ScanPluginCreator<SS2DScanOp>;

}  // namespace trt
}  // namespace remamber
