// The TensorRT IPluginV3 machinery the remamber scan plugins share (remamber::SelectiveScan in
// plugins/selectiveScanPlugin/, remamber::SS2DScan in plugins/ss2dScanPlugin/): the plugin class
// ScanPlugin<Op> (OneCore / OneBuild / OneRuntime) and its creator ScanPluginCreator<Op>.
//
// Why a template over an op description: both plugins take the same seven inputs (u, delta, A, B, C and
// the optional D / delta_bias, compacted with has_D / has_delta_bias), give one float32 output of u's
// shape, read int attributes from PluginFields, serialize them back as kINT32 fields, and follow the
// TensorRT OSS discipline that no exception leaves a noexcept method (each wraps its body in try/catch
// and reports what it caught through the logger, then returns its failure value). Only the checks, the
// attribute list and the kernel launch differ, and those are what `Op` supplies:
//
//   struct Op {
//     static constexpr char const* kName;      // plugin name ("SelectiveScan"), version in kVersion
//     static constexpr char const* kVersion;
//     static constexpr int kNumAttrs;          // int attributes, in field / serialization order:
//     static constexpr char const* kAttrNames[kNumAttrs];
//     static constexpr int64_t kAttrDefaults[kNumAttrs];
//     static constexpr int kDeltaSoftplus, kHasD, kHasDeltaBias;  // their indices in that list
//     static constexpr char const* kAccepted;  // the unknown-attribute message's list of what is accepted
//     // "" or the problem, without the node prefix:
//     static std::string validateAttributes(int64_t const (&values)[kNumAttrs]);
//     static std::string validateShapes(scan::TensorDesc const (&in)[scan::kNumInputs]);  // ranks, known dims
//     static std::string validateInputs(scan::TensorDesc const (&in)[scan::kNumInputs],
//                                       nvinfer1::DynamicPluginTensorDesc const* bounds);  // full signature
//     // nullptr or the launcher's message; in[] in contract order (nullptr = absent optional input):
//     static char const* launch(int32_t const (&attrs)[kNumAttrs], nvinfer1::PluginTensorDesc const* inputDesc,
//                               void const* const (&in)[scan::kNumInputs], float* y, scan::ScanDtype dtype,
//                               cudaStream_t stream);
//   };
//
// Each plugin's .cpp defines its Op and instantiates the templates once (`template class ...`); its
// header declares them `extern template`, so pluginRegistration.cpp and the tests reuse that instance.
#pragma once

#include <NvInferRuntime.h>

#include <cstdio>
#include <exception>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "scan_operands.h"
#include "scan_validate.h"

namespace remamber {
namespace trt {

constexpr char const* kPluginNamespace = "remamber";  // both plugins' namespace (the ONNX domain)

// Logs through TensorRT's logger (found via setLoggerFinder) or stderr when there is none; defined in
// plugins/selectiveScanPlugin/pluginRegistration.cpp.
void reportError(std::string const& message) noexcept;
void reportWarning(std::string const& message) noexcept;

// Which input slot holds D and delta_bias, decided from has_D / has_delta_bias and the input count.
struct InputLayout {
  int32_t d = -1;          // index of D, -1 when absent
  int32_t deltaBias = -1;  // index of delta_bias, -1 when absent
};

namespace detail {

inline scan::ElemType toElemType(nvinfer1::DataType t) {
  switch (t) {
    case nvinfer1::DataType::kFLOAT: return scan::ElemType::kFloat32;
    case nvinfer1::DataType::kHALF: return scan::ElemType::kFloat16;
    case nvinfer1::DataType::kBF16: return scan::ElemType::kBFloat16;
    default: return scan::ElemType::kOther;
  }
}

inline std::vector<int64_t> toDims(nvinfer1::Dims const& d) {
  return std::vector<int64_t>(d.d, d.d + (d.nbDims > 0 ? d.nbDims : 0));
}

// Slot of each contract input (u, delta, A, B, C, D, delta_bias) in the plugin's input list, -1 if absent.
inline void slotsOf(InputLayout const& layout, int32_t (&slot)[scan::kNumInputs]) {
  for (int i = 0; i < scan::kD; ++i) slot[i] = i;
  slot[scan::kD] = layout.d;
  slot[scan::kDeltaBias] = layout.deltaBias;
}

// "remamber::<name> node '<node>': ", the prefix of every message a plugin logs.
inline std::string whereOf(char const* pluginName, std::string const& node) {
  return std::string(kPluginNamespace) + "::" + pluginName + " node '" + node + "': ";
}

// Called inside a catch block of a noexcept method: logs what was caught, naming the node and method.
inline void reportCaught(char const* pluginName, std::string const& node, char const* method) noexcept {
  try {
    try {
      throw;
    } catch (std::exception const& e) {
      reportError(whereOf(pluginName, node) + method + " failed: " + e.what());
    } catch (...) {
      reportError(whereOf(pluginName, node) + method + " failed: unknown exception");
    }
  } catch (...) {
    // Building the message itself failed (out of memory): say so without allocating.
    std::fprintf(stderr, "[E] %s::%s: exception while reporting an exception\n", kPluginNamespace, pluginName);
  }
}

// Reads one integer field (the ONNX parser passes int attributes as kINT32; accept the other int widths).
inline bool readInt(nvinfer1::PluginField const& f, int64_t& value) {
  using nvinfer1::PluginFieldType;
  if (f.data == nullptr || f.length != 1) return false;
  switch (f.type) {
    case PluginFieldType::kINT8: value = *static_cast<int8_t const*>(f.data); return true;
    case PluginFieldType::kINT16: value = *static_cast<int16_t const*>(f.data); return true;
    case PluginFieldType::kINT32: value = *static_cast<int32_t const*>(f.data); return true;
    case PluginFieldType::kINT64: value = *static_cast<int64_t const*>(f.data); return true;
    default: return false;
  }
}

// Reads a string field (kCHAR, TensorRT's encoding of ONNX string attributes; length counts the bytes,
// a trailing NUL optional).
inline bool readString(nvinfer1::PluginField const& f, std::string& value) {
  if (f.type != nvinfer1::PluginFieldType::kCHAR || f.length < 0 || (f.length > 0 && f.data == nullptr)) return false;
  value.assign(static_cast<char const*>(f.data), static_cast<size_t>(f.length));
  while (!value.empty() && value.back() == '\0') value.pop_back();
  return true;
}

}  // namespace detail

template <class Op>
class ScanPlugin : public nvinfer1::IPluginV3,
                   public nvinfer1::IPluginV3OneCore,
                   public nvinfer1::IPluginV3OneBuild,
                   public nvinfer1::IPluginV3OneRuntime {
 public:
  static constexpr int kNumAttrs = Op::kNumAttrs;
  // attrs: the int attributes in Op::kAttrNames order, already validated (has_D / has_delta_bias:
  // 1 present, 0 absent, -1 infer from the input count).
  ScanPlugin(std::string nodeName, int32_t const (&attrs)[kNumAttrs]);
  ~ScanPlugin() override = default;

  // IPluginV3
  nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
  nvinfer1::IPluginV3* clone() noexcept override;

  // IPluginV3OneCore
  char const* getPluginName() const noexcept override { return Op::kName; }
  char const* getPluginVersion() const noexcept override { return Op::kVersion; }
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
  // Both kernels keep their running state in registers and shared memory (SS2DScan's accumulator in
  // shared memory or in y itself).
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
  bool resolveLayout(int32_t nbInputs, InputLayout& layout) const noexcept;
  // Resolves the layout, marks each present contract input in desc and lets fill(desc[i], slot) read
  // its type or dimensions from input `slot`. False (after logging) when the input count does not fit.
  template <class Fill>
  bool describeInputs(int32_t nbInputs, InputLayout& layout, scan::TensorDesc (&desc)[scan::kNumInputs],
                      Fill fill) const;
  // Logs a non-empty problem with the node prefix; true when there was one.
  bool failed(std::string const& problem) const;
  // Validates the inputs of configurePlugin / onShapeChange (descOf(i): input i's PluginTensorDesc;
  // bounds: the profile's, or nullptr) and remembers the input layout for enqueue. Returns 0 or -1
  // (after logging the problem).
  template <class DescOf>
  int32_t checkInputs(int32_t nbInputs, int32_t nbOutputs, nvinfer1::DynamicPluginTensorDesc const* bounds,
                      DescOf descOf) noexcept;
  std::string where() const { return detail::whereOf(Op::kName, mNodeName); }

  std::string mNodeName;
  int32_t mAttrs[kNumAttrs];
  InputLayout mLayout{};  // resolved from the input count in configurePlugin / onShapeChange
  bool mLayoutKnown = false;
  std::vector<nvinfer1::PluginField> mSerialFields;
  nvinfer1::PluginFieldCollection mSerialCollection{};
};

template <class Op>
class ScanPluginCreator : public nvinfer1::IPluginCreatorV3One {
 public:
  ScanPluginCreator();
  ~ScanPluginCreator() override = default;

  nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
                                    nvinfer1::TensorRTPhase phase) noexcept override;
  nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override { return &mFieldCollection; }
  char const* getPluginName() const noexcept override { return Op::kName; }
  char const* getPluginVersion() const noexcept override { return Op::kVersion; }
  char const* getPluginNamespace() const noexcept override { return kPluginNamespace; }

 private:
  std::vector<nvinfer1::PluginField> mFields;
  nvinfer1::PluginFieldCollection mFieldCollection{};
};

// ---- ScanPlugin ---------------------------------------------------------------------------------

template <class Op>
ScanPlugin<Op>::ScanPlugin(std::string nodeName, int32_t const (&attrs)[kNumAttrs]) : mNodeName(std::move(nodeName)) {
  for (int i = 0; i < kNumAttrs; ++i) mAttrs[i] = attrs[i];
}

template <class Op>
nvinfer1::IPluginCapability* ScanPlugin<Op>::getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept {
  try {
    switch (type) {
      case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
      case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
      case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
    }
  } catch (...) {
    detail::reportCaught(Op::kName, mNodeName, "getCapabilityInterface");
  }
  return nullptr;
}

template <class Op>
nvinfer1::IPluginV3* ScanPlugin<Op>::clone() noexcept {
  try {
    auto* copy = new ScanPlugin(mNodeName, mAttrs);
    copy->mLayout = mLayout;
    copy->mLayoutKnown = mLayoutKnown;
    return copy;
  } catch (...) {
    detail::reportCaught(Op::kName, mNodeName, "clone");
  }
  return nullptr;
}

template <class Op>
bool ScanPlugin<Op>::resolveLayout(int32_t nbInputs, InputLayout& layout) const noexcept {
  try {
    // TensorRT gets the compacted form only: its ONNX parser cannot hand an empty-name input to a plugin.
    return !failed(scan::resolve_optional_slots(nbInputs, mAttrs[Op::kHasD], mAttrs[Op::kHasDeltaBias], layout.d,
                                                layout.deltaBias));
  } catch (...) {
    detail::reportCaught(Op::kName, mNodeName, "resolving the input layout");
  }
  return false;
}

template <class Op>
template <class Fill>
bool ScanPlugin<Op>::describeInputs(int32_t nbInputs, InputLayout& layout, scan::TensorDesc (&desc)[scan::kNumInputs],
                                    Fill fill) const {
  if (!resolveLayout(nbInputs, layout)) return false;
  int32_t slot[scan::kNumInputs];
  detail::slotsOf(layout, slot);
  for (int i = 0; i < scan::kNumInputs; ++i) {
    if (slot[i] < 0) continue;
    desc[i].present = true;
    fill(desc[i], slot[i]);
  }
  return true;
}

template <class Op>
bool ScanPlugin<Op>::failed(std::string const& problem) const {
  if (problem.empty()) return false;
  reportError(where() + problem);
  return true;
}

template <class Op>
int32_t ScanPlugin<Op>::getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
                                           nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept {
  try {
    if (nbOutputs != 1) {
      reportError(where() + "has exactly one output y, got " + std::to_string(nbOutputs));
      return -1;
    }
    InputLayout layout;
    scan::TensorDesc desc[scan::kNumInputs];
    const auto typeOf = [inputTypes](scan::TensorDesc& d, int32_t slot) {
      d.type = detail::toElemType(inputTypes[slot]);
    };
    if (!describeInputs(nbInputs, layout, desc, typeOf)) return -1;
    if (failed(scan::validate_types(desc))) return -1;
    outputTypes[0] = nvinfer1::DataType::kFLOAT;  // fp32 output whatever the input type (fp32 state and accumulation)
    return 0;
  } catch (...) {
    detail::reportCaught(Op::kName, mNodeName, "getOutputDataTypes");
  }
  return -1;
}

template <class Op>
int32_t ScanPlugin<Op>::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
                                        nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/,
                                        nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                                        nvinfer1::IExprBuilder& /*exprBuilder*/) noexcept {
  try {
    InputLayout layout;
    scan::TensorDesc desc[scan::kNumInputs];
    const auto dimsOf = [inputs](scan::TensorDesc& d, int32_t slot) {
      nvinfer1::DimsExprs const& e = inputs[slot];
      for (int32_t k = 0; k < e.nbDims; ++k) d.dims.push_back(e.d[k]->isConstant() ? e.d[k]->getConstantValue() : -1);
    };
    if (nbOutputs != 1 || !describeInputs(nbInputs, layout, desc, dimsOf)) return -1;
    if (failed(Op::validateShapes(desc))) return -1;  // ranks, then the dimensions known at this point
    outputs[0] = inputs[0];  // y has u's shape
    return 0;
  } catch (...) {
    detail::reportCaught(Op::kName, mNodeName, "getOutputShapes");
  }
  return -1;
}

template <class Op>
bool ScanPlugin<Op>::supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut,
                                               int32_t nbInputs, int32_t nbOutputs) noexcept {
  using nvinfer1::DataType;
  try {
    if (nbOutputs != 1 || pos < 0 || pos >= nbInputs + nbOutputs) return false;
    InputLayout layout;
    if (!resolveLayout(nbInputs, layout)) return false;
    nvinfer1::PluginTensorDesc const& d = inOut[pos].desc;
    if (d.format != nvinfer1::TensorFormat::kLINEAR) return false;
    if (pos == nbInputs) return d.type == DataType::kFLOAT;  // y
    switch (pos) {
      case scan::kU:
        return d.type == DataType::kFLOAT || d.type == DataType::kHALF || d.type == DataType::kBF16;
      case scan::kDelta:
      case scan::kB:
      case scan::kC:
        return d.type == inOut[scan::kU].desc.type;
      default:  // A, D, delta_bias
        return d.type == DataType::kFLOAT;
    }
  } catch (...) {
    detail::reportCaught(Op::kName, mNodeName, "supportsFormatCombination");
  }
  return false;
}

template <class Op>
template <class DescOf>
int32_t ScanPlugin<Op>::checkInputs(int32_t nbInputs, int32_t nbOutputs,
                                    nvinfer1::DynamicPluginTensorDesc const* bounds, DescOf descOf) noexcept {
  try {
    InputLayout layout;
    scan::TensorDesc desc[scan::kNumInputs];
    const auto typeAndDimsOf = [&descOf](scan::TensorDesc& d, int32_t slot) {
      nvinfer1::PluginTensorDesc const& in = descOf(slot);  // slot < nbInputs: resolved from the count
      d.type = detail::toElemType(in.type);
      d.dims = detail::toDims(in.dims);  // dynamic dimensions read as -1
    };
    if (nbOutputs != 1 || !describeInputs(nbInputs, layout, desc, typeAndDimsOf)) return -1;
    if (failed(Op::validateInputs(desc, bounds))) return -1;
    mLayout = layout;
    mLayoutKnown = true;
    return 0;
  } catch (...) {
    detail::reportCaught(Op::kName, mNodeName, "checking the inputs");
  }
  return -1;
}

template <class Op>
int32_t ScanPlugin<Op>::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
                                        nvinfer1::DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept {
  try {
    return checkInputs(nbInputs, nbOutputs, in,
                       [in](int32_t i) -> nvinfer1::PluginTensorDesc const& { return in[i].desc; });
  } catch (...) {
    detail::reportCaught(Op::kName, mNodeName, "configurePlugin");
  }
  return -1;
}

template <class Op>
int32_t ScanPlugin<Op>::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
                                      nvinfer1::PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept {
  try {
    return checkInputs(nbInputs, nbOutputs, nullptr,
                       [in](int32_t i) -> nvinfer1::PluginTensorDesc const& { return in[i]; });
  } catch (...) {
    detail::reportCaught(Op::kName, mNodeName, "onShapeChange");
  }
  return -1;
}

template <class Op>
int32_t ScanPlugin<Op>::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
                                nvinfer1::PluginTensorDesc const* /*outputDesc*/, void const* const* inputs,
                                void* const* outputs, void* /*workspace*/, cudaStream_t stream) noexcept {
  try {
    // The input layout (where D and delta_bias sit) was resolved by onShapeChange, which TensorRT
    // calls with the input count before the first enqueue.
    if (!mLayoutKnown) {
      reportError(where() + "enqueue before onShapeChange: input layout unknown");
      return -1;
    }
    scan::ScanDtype dtype;
    if (!scan::scan_dtype_of(detail::toElemType(inputDesc[scan::kU].type), dtype)) {
      reportError(where() + "unsupported input type at enqueue");
      return -1;
    }
    int32_t slot[scan::kNumInputs];
    detail::slotsOf(mLayout, slot);
    void const* in[scan::kNumInputs];
    for (int i = 0; i < scan::kNumInputs; ++i) in[i] = slot[i] >= 0 ? inputs[slot[i]] : nullptr;
    if (char const* err = Op::launch(mAttrs, inputDesc, in, static_cast<float*>(outputs[0]), dtype, stream)) {
      reportError(where() + "kernel launch failed: " + err);
      return -1;
    }
    return 0;
  } catch (...) {
    detail::reportCaught(Op::kName, mNodeName, "enqueue");
  }
  return -1;
}

template <class Op>
nvinfer1::IPluginV3* ScanPlugin<Op>::attachToContext(nvinfer1::IPluginResourceContext* /*context*/) noexcept {
  return clone();  // clone() catches and reports its own exceptions
}

template <class Op>
nvinfer1::PluginFieldCollection const* ScanPlugin<Op>::getFieldsToSerialize() noexcept {
  try {
    mSerialFields.clear();
    for (int i = 0; i < kNumAttrs; ++i)
      mSerialFields.emplace_back(Op::kAttrNames[i], &mAttrs[i], nvinfer1::PluginFieldType::kINT32, 1);
    mSerialCollection.nbFields = static_cast<int32_t>(mSerialFields.size());
    mSerialCollection.fields = mSerialFields.data();
    return &mSerialCollection;
  } catch (...) {
    detail::reportCaught(Op::kName, mNodeName, "getFieldsToSerialize");
  }
  return nullptr;
}

// ---- ScanPluginCreator --------------------------------------------------------------------------

template <class Op>
ScanPluginCreator<Op>::ScanPluginCreator() {
  // The fields the TensorRT ONNX parser passes through (it drops undeclared attributes).
  for (char const* name : Op::kAttrNames) mFields.emplace_back(name, nullptr, nvinfer1::PluginFieldType::kINT32, 1);
  mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
  mFieldCollection.fields = mFields.data();
}

template <class Op>
nvinfer1::IPluginV3* ScanPluginCreator<Op>::createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
                                                         nvinfer1::TensorRTPhase /*phase*/) noexcept {
  try {
    const std::string node = name ? name : "";
    const std::string where = detail::whereOf(Op::kName, node);
    int64_t values[Op::kNumAttrs];
    for (int i = 0; i < Op::kNumAttrs; ++i) values[i] = Op::kAttrDefaults[i];
    for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i) {
      nvinfer1::PluginField const& f = fc->fields[i];
      const std::string field = f.name ? f.name : "";
      if (field == "plugin_namespace" || field == "plugin_version") {
        // The ONNX node's lookup attributes (export/scan_onnx.py, export/ss2d_onnx.py). The parser consumes
        // them itself; a caller that forwards every attribute passes them here: accept them when they name us.
        std::string value;
        char const* expected = field == "plugin_namespace" ? kPluginNamespace : Op::kVersion;
        if (!detail::readString(f, value) || value != expected) {
          reportError(where + "attribute '" + field + "' must be the string \"" + expected + "\"");
          return nullptr;
        }
        continue;
      }
      int64_t* target = nullptr;
      for (int k = 0; k < Op::kNumAttrs; ++k)
        if (field == Op::kAttrNames[k]) target = &values[k];
      if (target == nullptr) {
        reportError(where + "unknown attribute '" + field + "'; " + Op::kAccepted);
        return nullptr;
      }
      if (!detail::readInt(f, *target)) {
        reportError(where + "attribute '" + field + "' must be a single int");
        return nullptr;
      }
    }
    const std::string problem = Op::validateAttributes(values);
    if (!problem.empty()) {
      reportError(where + problem);
      return nullptr;
    }
    int32_t attrs[Op::kNumAttrs];
    for (int i = 0; i < Op::kNumAttrs; ++i) attrs[i] = static_cast<int32_t>(values[i]);
    return new ScanPlugin<Op>(node, attrs);
  } catch (...) {
    detail::reportCaught(Op::kName, name ? name : "", "createPlugin");
  }
  return nullptr;
}

}  // namespace trt
}  // namespace remamber
