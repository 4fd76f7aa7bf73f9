// TensorRT plugin remamber::SelectiveScan, version "1" (IPluginV3: OneCore / OneBuild / OneRuntime).
// Inputs, outputs, attributes and limits: README.md in this folder.
#pragma once

#include <NvInferRuntime.h>

#include <string>
#include <vector>

namespace remamber {
namespace trt {

constexpr char const* kPluginName = "SelectiveScan";
constexpr char const* kPluginVersion = "1";
constexpr char const* kPluginNamespace = "remamber";

// Logs an error through TensorRT's logger (found via setLoggerFinder) or stderr when there is none.
void reportError(std::string const& message) noexcept;
void reportWarning(std::string const& message) noexcept;

// Which input slot holds D and delta_bias, decided from the attributes and the input count.
struct InputLayout {
  int32_t d = -1;          // index of D, -1 when absent
  int32_t deltaBias = -1;  // index of delta_bias, -1 when absent
};

class SelectiveScanPlugin : public nvinfer1::IPluginV3,
                            public nvinfer1::IPluginV3OneCore,
                            public nvinfer1::IPluginV3OneBuild,
                            public nvinfer1::IPluginV3OneRuntime {
 public:
  // hasD / hasDeltaBias: 1 present, 0 absent, -1 infer from the input count (5: neither, 7: both).
  SelectiveScanPlugin(std::string nodeName, int32_t deltaSoftplus, int32_t hasD, int32_t hasDeltaBias);
  ~SelectiveScanPlugin() override = default;

  // IPluginV3
  nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
  nvinfer1::IPluginV3* clone() noexcept override;

  // IPluginV3OneCore
  char const* getPluginName() const noexcept override { return kPluginName; }
  char const* getPluginVersion() const noexcept override { return kPluginVersion; }
  char const* getPluginNamespace() const noexcept override { return kPluginNamespace; }

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
  size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* /*inputs*/, int32_t /*nbInputs*/,
                          nvinfer1::DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept override {
    return 0;  // the kernel keeps its running state in registers and shared memory
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
  bool resolveLayout(int32_t nbInputs, InputLayout& layout) const noexcept;
  // Validates the inputs of configurePlugin / onShapeChange (bounds: the profile's, or nullptr) and
  // remembers the input layout for enqueue. Returns 0 or -1 (after logging the problem).
  int32_t checkInputs(nvinfer1::PluginTensorDesc const* const* in, int32_t nbInputs, int32_t nbOutputs,
                      nvinfer1::DynamicPluginTensorDesc const* bounds) noexcept;
  std::string where() const;

  std::string mNodeName;
  int32_t mDeltaSoftplus;
  int32_t mHasD;
  int32_t mHasDeltaBias;
  InputLayout mLayout{};      // resolved from the input count in configurePlugin / onShapeChange
  bool mLayoutKnown = false;
  std::vector<nvinfer1::PluginField> mSerialFields;
  nvinfer1::PluginFieldCollection mSerialCollection{};
};

class SelectiveScanPluginCreator : public nvinfer1::IPluginCreatorV3One {
 public:
  SelectiveScanPluginCreator();
  ~SelectiveScanPluginCreator() override = default;

  nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
                                    nvinfer1::TensorRTPhase phase) noexcept override;
  nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override { return &mFieldCollection; }
  char const* getPluginName() const noexcept override { return kPluginName; }
  char const* getPluginVersion() const noexcept override { return kPluginVersion; }
  char const* getPluginNamespace() const noexcept override { return kPluginNamespace; }

 private:
  std::vector<nvinfer1::PluginField> mFields;
  nvinfer1::PluginFieldCollection mFieldCollection{};
};

}  // namespace trt
}  // namespace remamber
