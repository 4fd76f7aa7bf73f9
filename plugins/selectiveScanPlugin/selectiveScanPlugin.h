// TensorRT plugin remamber::SelectiveScan, version "1" (IPluginV3: OneCore / OneBuild / OneRuntime).
// Inputs, outputs, attributes and limits: README.md in this folder. The IPluginV3 machinery it shares
// with remamber::SS2DScan (field parsing, serialization, try/catch in every noexcept method) is
// plugins/common/trt_scan_plugin.h; this header describes what is SelectiveScan's own.
#pragma once

#include <NvInferRuntime.h>

#include <string>

#include "scan_types.h"
#include "scan_validate.h"
#include "trt_scan_plugin.h"

namespace remamber {
namespace trt {

constexpr char const* kPluginName = "SelectiveScan";
constexpr char const* kPluginVersion = "1";

// What ScanPlugin<Op> needs to know of SelectiveScan (see trt_scan_plugin.h).
struct SelectiveScanOp {
  static constexpr char const* kName = kPluginName;
  static constexpr char const* kVersion = kPluginVersion;
  static constexpr int kNumAttrs = 3;
  static constexpr char const* kAttrNames[kNumAttrs] = {"delta_softplus", "has_D", "has_delta_bias"};
  static constexpr int64_t kAttrDefaults[kNumAttrs] = {1, -1, -1};
  static constexpr int kDeltaSoftplus = 0, kHasD = 1, kHasDeltaBias = 2;
  static constexpr char const* kAccepted =
      "SelectiveScan v1 accepts delta_softplus (int), has_D (int), has_delta_bias (int), "
      "plugin_namespace and plugin_version (strings)";

  static std::string validateAttributes(int64_t const (&values)[kNumAttrs]);
  static std::string validateShapes(scan::TensorDesc const (&in)[scan::kNumInputs]);
  static std::string validateInputs(scan::TensorDesc const (&in)[scan::kNumInputs],
                                    nvinfer1::DynamicPluginTensorDesc const* bounds);
  static char const* launch(int32_t const (&attrs)[kNumAttrs], nvinfer1::PluginTensorDesc const* inputDesc,
                            void const* const (&in)[scan::kNumInputs], float* y, scan::ScanDtype dtype,
                            cudaStream_t stream);
};

using SelectiveScanPlugin = ScanPlugin<SelectiveScanOp>;
using SelectiveScanPluginCreator = ScanPluginCreator<SelectiveScanOp>;
extern template class ScanPlugin<SelectiveScanOp>;  // instantiated in selectiveScanPlugin.cpp
extern template class ScanPluginCreator<SelectiveScanOp>;

}  // namespace trt
}  // namespace remamber
