#include "selectiveScanPlugin.h"

#include <cstdio>
#include <cstring>
#include <exception>
#include <new>

#include "scan_launch.h"
#include "scan_validate.h"

using namespace nvinfer1;

namespace remamber {
namespace trt {
namespace {

using scan::ElemType;
using scan::TensorDesc;

ElemType toElemType(DataType t) {
  switch (t) {
    case DataType::kFLOAT: return ElemType::kFloat32;
    case DataType::kHALF: return ElemType::kFloat16;
    case DataType::kBF16: return ElemType::kBFloat16;
    default: return ElemType::kOther;
  }
}

std::vector<int64_t> toDims(Dims const& d) { return std::vector<int64_t>(d.d, d.d + (d.nbDims > 0 ? d.nbDims : 0)); }

// Slot of each contract input (u, delta, A, B, C, D, delta_bias) in the plugin's input list, -1 if absent.
void slotsOf(InputLayout const& layout, int32_t (&slot)[scan::kNumInputs]) {
  for (int i = 0; i < scan::kD; ++i) slot[i] = i;
  slot[scan::kD] = layout.d;
  slot[scan::kDeltaBias] = layout.deltaBias;
}

// TensorRT OSS discipline: no exception may leave a noexcept plugin or creator method (it would
// terminate the host process, trtexec or a serving runtime). Every such method wraps its body in
// try/catch and reports what it caught through the logger, then returns its failure value.
void reportCaughtException(std::string const& node, char const* method) noexcept {
  try {
    try {
      throw;
    } catch (std::exception const& e) {
      reportError(std::string(kPluginNamespace) + "::" + kPluginName + " node '" + node + "': " + method +
                  " failed: " + e.what());
    } catch (...) {
      reportError(std::string(kPluginNamespace) + "::" + kPluginName + " node '" + node + "': " + method +
                  " failed: unknown exception");
    }
  } catch (...) {
    // Building the message itself failed (out of memory): say so without allocating.
    std::fputs("[E] remamber::SelectiveScan: exception while reporting an exception\n", stderr);
  }
}

}  // namespace

SelectiveScanPlugin::SelectiveScanPlugin(std::string nodeName, int32_t deltaSoftplus, int32_t hasD, int32_t hasDeltaBias)
    : mNodeName(std::move(nodeName)), mDeltaSoftplus(deltaSoftplus), mHasD(hasD), mHasDeltaBias(hasDeltaBias) {}

std::string SelectiveScanPlugin::where() const {
  return std::string(kPluginNamespace) + "::" + kPluginName + " node '" + mNodeName + "': ";
}

IPluginCapability* SelectiveScanPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept {
  try {
    switch (type) {
      case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
      case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
      case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
  } catch (...) {
    reportCaughtException(mNodeName, "getCapabilityInterface");
  }
  return nullptr;
}

IPluginV3* SelectiveScanPlugin::clone() noexcept {
  try {
    return new SelectiveScanPlugin(mNodeName, mDeltaSoftplus, mHasD, mHasDeltaBias);
  } catch (...) {
    reportCaughtException(mNodeName, "clone");
  }
  return nullptr;
}

bool SelectiveScanPlugin::resolveLayout(int32_t nbInputs, InputLayout& layout) const noexcept {
  try {
    // TensorRT gets the compacted form only: its ONNX parser cannot hand an empty-name input to a plugin.
    const std::string problem = scan::resolve_optional_slots(nbInputs, mHasD, mHasDeltaBias, layout.d, layout.deltaBias);
    if (!problem.empty()) {
      reportError(where() + problem);
      return false;
    }
    return true;
  } catch (...) {
    reportCaughtException(mNodeName, "resolving the input layout");
  }
  return false;
}

int32_t SelectiveScanPlugin::getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes,
                                                int32_t nbInputs) const noexcept {
  try {
    InputLayout layout;
    if (nbOutputs != 1 || !resolveLayout(nbInputs, layout)) {
      if (nbOutputs != 1) reportError(where() + "has exactly one output y, got " + std::to_string(nbOutputs));
      return -1;
    }
    int32_t slot[scan::kNumInputs];
    slotsOf(layout, slot);
    TensorDesc desc[scan::kNumInputs];
    for (int i = 0; i < scan::kNumInputs; ++i) {
      if (slot[i] < 0) continue;
      desc[i].present = true;
      desc[i].type = toElemType(inputTypes[slot[i]]);
    }
    const std::string problem = scan::validate_types(desc);
    if (!problem.empty()) {
      reportError(where() + problem);
      return -1;
    }
    outputTypes[0] = DataType::kFLOAT;  // fp32 output whatever the input type (fp32 state and accumulation)
    return 0;
  } catch (...) {
    reportCaughtException(mNodeName, "getOutputDataTypes");
  }
  return -1;
}

int32_t SelectiveScanPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
                                             int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs,
                                             IExprBuilder& /*exprBuilder*/) noexcept {
  try {
    InputLayout layout;
    if (nbOutputs != 1 || !resolveLayout(nbInputs, layout)) return -1;
    int32_t slot[scan::kNumInputs];
    slotsOf(layout, slot);
    TensorDesc desc[scan::kNumInputs];
    for (int i = 0; i < scan::kNumInputs; ++i) {
      if (slot[i] < 0) continue;
      DimsExprs const& e = inputs[slot[i]];
      desc[i].present = true;
      for (int32_t k = 0; k < e.nbDims; ++k) desc[i].dims.push_back(e.d[k]->isConstant() ? e.d[k]->getConstantValue() : -1);
    }
    std::string problem = scan::validate_ranks(desc);
    if (problem.empty()) problem = scan::validate_dims(desc);  // static dimensions only (N, G | channels, ...)
    if (!problem.empty()) {
      reportError(where() + problem);
      return -1;
    }
    outputs[0] = inputs[0];  // y has u's shape
    return 0;
  } catch (...) {
    reportCaughtException(mNodeName, "getOutputShapes");
  }
  return -1;
}

bool SelectiveScanPlugin::supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                                    int32_t nbOutputs) noexcept {
  try {
    if (nbOutputs != 1 || pos < 0 || pos >= nbInputs + nbOutputs) return false;
    InputLayout layout;
    if (!resolveLayout(nbInputs, layout)) return false;
    PluginTensorDesc const& d = inOut[pos].desc;
    if (d.format != TensorFormat::kLINEAR) return false;
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
    reportCaughtException(mNodeName, "supportsFormatCombination");
  }
  return false;
}

int32_t SelectiveScanPlugin::checkInputs(PluginTensorDesc const* const* in, int32_t nbInputs, int32_t nbOutputs,
                                         DynamicPluginTensorDesc const* bounds) noexcept {
  try {
    InputLayout layout;
    if (nbOutputs != 1 || !resolveLayout(nbInputs, layout)) return -1;
    int32_t slot[scan::kNumInputs];
    slotsOf(layout, slot);
    TensorDesc desc[scan::kNumInputs];
    for (int i = 0; i < scan::kNumInputs; ++i) {
      if (slot[i] < 0) continue;
      desc[i].present = true;
      desc[i].type = toElemType(in[slot[i]]->type);
      desc[i].dims = toDims(in[slot[i]]->dims);
    }
    std::string problem = scan::validate_signature(desc);
    if (problem.empty() && bounds != nullptr) {
      // With dynamic shapes the profile's bounds are known: a channel count the profile fixes must
      // still be divisible by G.
      std::vector<int64_t> uMax = toDims(bounds[0].max), bMax = toDims(bounds[scan::kB].max);
      if (uMax.size() == 3 && bMax.size() == 4 && bMax[1] > 0 && bounds[0].min.d[1] == bounds[0].max.d[1] &&
          uMax[1] % bMax[1] != 0)
        problem = "the group count G = " + std::to_string(bMax[1]) + " (B.shape[1]) must divide the channel count " +
                  std::to_string(uMax[1]) + " (u.shape[1])";
    }
    if (!problem.empty()) {
      reportError(where() + problem);
      return -1;
    }
    mLayout = layout;
    mLayoutKnown = true;
    return 0;
  } catch (...) {
    reportCaughtException(mNodeName, "checking the inputs");
  }
  return -1;
}

int32_t SelectiveScanPlugin::configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs,
                                             DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept {
  try {
    if (nbInputs < 0 || nbInputs > scan::kNumInputs) return checkInputs(nullptr, nbInputs, nbOutputs, nullptr);
    PluginTensorDesc const* descs[scan::kNumInputs];
    for (int32_t i = 0; i < nbInputs; ++i) descs[i] = &in[i].desc;
    return checkInputs(descs, nbInputs, nbOutputs, in);
  } catch (...) {
    reportCaughtException(mNodeName, "configurePlugin");
  }
  return -1;
}

int32_t SelectiveScanPlugin::onShapeChange(PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* /*out*/,
                                           int32_t nbOutputs) noexcept {
  try {
    if (nbInputs < 0 || nbInputs > scan::kNumInputs) return checkInputs(nullptr, nbInputs, nbOutputs, nullptr);
    PluginTensorDesc const* descs[scan::kNumInputs];
    for (int32_t i = 0; i < nbInputs; ++i) descs[i] = &in[i];
    return checkInputs(descs, nbInputs, nbOutputs, nullptr);
  } catch (...) {
    reportCaughtException(mNodeName, "onShapeChange");
  }
  return -1;
}

int32_t SelectiveScanPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
                                     void const* const* inputs, void* const* outputs, void* /*workspace*/,
                                     cudaStream_t stream) noexcept {
  try {
    // The input layout (where D and delta_bias sit) was resolved by onShapeChange, which TensorRT
    // calls with the input count before the first enqueue.
    if (!mLayoutKnown) {
      reportError(where() + "enqueue before onShapeChange: input layout unknown");
      return -1;
    }
    Dims const& u = inputDesc[scan::kU].dims;
    Dims const& a = inputDesc[scan::kA].dims;
    Dims const& b = inputDesc[scan::kB].dims;
    scan::ScanCudaParams p;
    p.shape.batch = u.d[0];
    p.shape.channels = u.d[1];
    p.shape.length = u.d[2];
    p.shape.nstate = a.d[1];
    p.shape.groups = b.d[1];
    switch (inputDesc[scan::kU].type) {
      case DataType::kFLOAT: p.dtype = scan::ScanDtype::kFloat32; break;
      case DataType::kHALF: p.dtype = scan::ScanDtype::kFloat16; break;
      case DataType::kBF16: p.dtype = scan::ScanDtype::kBFloat16; break;
      default: reportError(where() + "unsupported input type at enqueue"); return -1;
    }
    p.u = inputs[scan::kU];
    p.delta = inputs[scan::kDelta];
    p.A = static_cast<float const*>(inputs[scan::kA]);
    p.B = inputs[scan::kB];
    p.C = inputs[scan::kC];
    p.y = static_cast<float*>(outputs[0]);
    p.delta_softplus = mDeltaSoftplus != 0;
    if (mLayout.d >= 0) p.D = static_cast<float const*>(inputs[mLayout.d]);
    if (mLayout.deltaBias >= 0) p.delta_bias = static_cast<float const*>(inputs[mLayout.deltaBias]);
    if (char const* err = scan::launch_selective_scan(p, stream)) {
      reportError(where() + "kernel launch failed: " + err);
      return -1;
    }
    return 0;
  } catch (...) {
    reportCaughtException(mNodeName, "enqueue");
  }
  return -1;
}

IPluginV3* SelectiveScanPlugin::attachToContext(IPluginResourceContext* /*context*/) noexcept {
  return clone();  // clone() catches and reports its own exceptions
}

PluginFieldCollection const* SelectiveScanPlugin::getFieldsToSerialize() noexcept {
  try {
    mSerialFields.clear();
    mSerialFields.emplace_back("delta_softplus", &mDeltaSoftplus, PluginFieldType::kINT32, 1);
    mSerialFields.emplace_back("has_D", &mHasD, PluginFieldType::kINT32, 1);
    mSerialFields.emplace_back("has_delta_bias", &mHasDeltaBias, PluginFieldType::kINT32, 1);
    mSerialCollection.nbFields = static_cast<int32_t>(mSerialFields.size());
    mSerialCollection.fields = mSerialFields.data();
    return &mSerialCollection;
  } catch (...) {
    reportCaughtException(mNodeName, "getFieldsToSerialize");
  }
  return nullptr;
}

// ---- creator ------------------------------------------------------------------------------------

SelectiveScanPluginCreator::SelectiveScanPluginCreator() {
  mFields.emplace_back("delta_softplus", nullptr, PluginFieldType::kINT32, 1);
  mFields.emplace_back("has_D", nullptr, PluginFieldType::kINT32, 1);
  mFields.emplace_back("has_delta_bias", nullptr, PluginFieldType::kINT32, 1);
  mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
  mFieldCollection.fields = mFields.data();
}

namespace {

// Reads one integer field (the ONNX parser passes int attributes as kINT32; accept the other int widths).
bool readInt(PluginField const& f, int64_t& value) {
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
bool readString(PluginField const& f, std::string& value) {
  if (f.type != PluginFieldType::kCHAR || f.length < 0 || (f.length > 0 && f.data == nullptr)) return false;
  value.assign(static_cast<char const*>(f.data), static_cast<size_t>(f.length));
  while (!value.empty() && value.back() == '\0') value.pop_back();
  return true;
}

}  // namespace

IPluginV3* SelectiveScanPluginCreator::createPlugin(char const* name, PluginFieldCollection const* fc,
                                                    TensorRTPhase /*phase*/) noexcept {
  try {
    const std::string node = name ? name : "";
    const std::string where = std::string(kPluginNamespace) + "::" + kPluginName + " node '" + node + "': ";
    int64_t deltaSoftplus = 1, hasD = -1, hasDeltaBias = -1;
    for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i) {
      PluginField const& f = fc->fields[i];
      const std::string field = f.name ? f.name : "";
      if (field == "plugin_namespace" || field == "plugin_version") {
        // The ONNX node's lookup attributes (export/scan_onnx.py). The parser consumes them itself;
        // a caller that forwards every attribute passes them here: accept them when they name us.
        std::string value;
        char const* expected = field == "plugin_namespace" ? kPluginNamespace : kPluginVersion;
        if (!readString(f, value) || value != expected) {
          reportError(where + "attribute '" + field + "' must be the string \"" + expected + "\"");
          return nullptr;
        }
        continue;
      }
      int64_t* target = nullptr;
      if (field == "delta_softplus") target = &deltaSoftplus;
      else if (field == "has_D") target = &hasD;
      else if (field == "has_delta_bias") target = &hasDeltaBias;
      else {
        reportError(where + "unknown attribute '" + field +
                    "'; SelectiveScan v1 accepts delta_softplus (int), has_D (int), has_delta_bias (int), "
                    "plugin_namespace and plugin_version (strings)");
        return nullptr;
      }
      if (!readInt(f, *target)) {
        reportError(where + "attribute '" + field + "' must be a single int");
        return nullptr;
      }
    }
    if (deltaSoftplus != 0 && deltaSoftplus != 1) {
      reportError(where + "attribute delta_softplus must be 0 or 1, got " + std::to_string(deltaSoftplus));
      return nullptr;
    }
    for (auto const& kv : {std::make_pair("has_D", hasD), std::make_pair("has_delta_bias", hasDeltaBias)}) {
      if (kv.second < -1 || kv.second > 1) {
        reportError(where + "attribute " + kv.first + " must be 0 or 1 (or -1: infer), got " + std::to_string(kv.second));
        return nullptr;
      }
    }
    return new SelectiveScanPlugin(node, static_cast<int32_t>(deltaSoftplus), static_cast<int32_t>(hasD),
                                   static_cast<int32_t>(hasDeltaBias));
  } catch (...) {
    reportCaughtException(name ? name : "", "createPlugin");
  }
  return nullptr;
}

}  // namespace trt
}  // namespace remamber
