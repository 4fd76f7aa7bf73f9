// TensorRT plugin remamber::SS2DScan, version "1" (IPluginV3: OneCore / OneBuild / OneRuntime): the fused
// cross-scan + selective scan + cross-merge of one SS2D call. Inputs, outputs, attributes, formats and
// limits: README.md in this folder. Built into the same library as SelectiveScan
// (libremamber_trt_plugin.so, whose getCreators lists both creators); the kernel is plugins/cuda/ss2d_*.
#pragma once

#include <NvInferRuntime.h>

#include <string>
#include <vector>

namespace remamber {
namespace trt {

constexpr char const* kSS2DPluginName = "SS2DScan";
constexpr char const* kSS2DPluginVersion = "1";
constexpr char const* kSS2DPluginNamespace = "remamber";

// Logging through TensorRT's logger (defined in plugins/selectiveScanPlugin/pluginRegistration.cpp).
void reportError(std::string const& message) noexcept;

// Where the optional inputs sit (input slot, -1 when absent), resolved from has_D / has_delta_bias and
// the input count.
struct SS2DInputSlots {
  int32_t d = -1;
  int32_t deltaBias = -1;
};

class SS2DScanPlugin : public nvinfer1::IPluginV3,
                       public nvinfer1::IPluginV3OneCore,
                       public nvinfer1::IPluginV3OneBuild,
                       public nvinfer1::IPluginV3OneRuntime {
 public:
  // layout: 0 cross, 1 bidi. hasD / hasDeltaBias: 1 present, 0 absent, -1 infer from the input count.
  SS2DScanPlugin(std::string nodeName, int32_t layout, int32_t deltaSoftplus, int32_t hasD, int32_t hasDeltaBias);
  ~SS2DScanPlugin() override = default;

  // IPluginV3
  nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
  nvinfer1::IPluginV3* clone() noexcept override;

  // IPluginV3OneCore
  char const* getPluginName() const noexcept override { return kSS2DPluginName; }
  char const* getPluginVersion() const noexcept override { return kSS2DPluginVersion; }
  char const* getPluginNamespace() const noexcept override { return kSS2DPluginNamespace; }

  // IPluginV3OneBuild
  int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
                          nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
  int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs, nvinfer1::DataType const* inputTypes,
                             int32_t nbInputs) const noexcept override;
  int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
                          int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                          nvinfer1::IExprBuilder& exprBuilder) noexcept override;
  bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                 int32_t nbOutputs) noexcept override;
  int32_t getNbOutputs() const noexcept override { return 1; }
  // The kernel keeps its state in registers and its accumulator in shared memory or in y itself.
  size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* /*inputs*/, int32_t /*nbInputs*/,
                          nvinfer1::DynamicPluginTensorDesc const* /*outputs*/,
                          int32_t /*nbOutputs*/) const noexcept override {
    return 0;
  }

  // IPluginV3OneRuntime
  int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
                        int32_t nbOutputs) noexcept override;
  int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
                  void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
  nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
  nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

 private:
  // Maps nbInputs onto input slots, or logs why it cannot and returns false.
  bool resolveSlots(int32_t nbInputs, SS2DInputSlots& slots) const noexcept;
  // Validates configurePlugin / onShapeChange inputs and remembers the slots for enqueue; 0 or -1.
  int32_t checkInputs(nvinfer1::PluginTensorDesc const* const* in, int32_t nbInputs, int32_t nbOutputs) noexcept;
  std::string where() const;

  std::string mNodeName;
  int32_t mLayout;
  int32_t mDeltaSoftplus;
  int32_t mHasD;
  int32_t mHasDeltaBias;
  SS2DInputSlots mSlots{};  // resolved in configurePlugin / onShapeChange
  bool mSlotsKnown = false;
  std::vector<nvinfer1::PluginField> mSerialFields;
  nvinfer1::PluginFieldCollection mSerialCollection{};
};

class SS2DScanPluginCreator : public nvinfer1::IPluginCreatorV3One {
 public:
  SS2DScanPluginCreator();
  ~SS2DScanPluginCreator() override = default;

  nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
                                    nvinfer1::TensorRTPhase phase) noexcept override;
  nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override { return &mFieldCollection; }
  char const* getPluginName() const noexcept override { return kSS2DPluginName; }
  char const* getPluginVersion() const noexcept override { return kSS2DPluginVersion; }
  char const* getPluginNamespace() const noexcept override { return kSS2DPluginNamespace; }

 private:
  std::vector<nvinfer1::PluginField> mFields;
  nvinfer1::PluginFieldCollection mFieldCollection{};
};

}  // namespace trt
}  // namespace remamber
