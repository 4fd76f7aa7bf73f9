// TensorRT plugin remamber::SS2DScan v1: build-time checks through the shared SS2D validation
// (plugins/common/ss2d_validate.h, the same messages as the ONNX Runtime op), enqueue through the fused
// CUDA kernel's launcher (plugins/cuda/ss2d_launch.h). Every noexcept method catches all exceptions and
// reports them through TensorRT's logger, so nothing throws across the TensorRT ABI.
#include "ss2dScanPlugin.h"

#include <cstdio>
#include <exception>
#include <new>

#include "scan_validate.h"
#include "ss2d_launch.h"
#include "ss2d_validate.h"

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
void slotsOf(SS2DInputSlots const& s, int32_t (&slot)[scan::kNumInputs]) {
  for (int i = 0; i < scan::kD; ++i) slot[i] = i;
  slot[scan::kD] = s.d;
  slot[scan::kDeltaBias] = s.deltaBias;
}

std::string whereOf(std::string const& node) {
  return std::string(kSS2DPluginNamespace) + "::" + kSS2DPluginName + " node '" + node + "': ";
}

// TensorRT OSS discipline: no exception may leave a noexcept plugin or creator method (it would terminate
// the host process). Every such method catches everything and reports it here, then returns its failure value.
void reportCaught(std::string const& node, char const* method) noexcept {
  try {
    try {
      throw;
    } catch (std::exception const& e) {
      reportError(whereOf(node) + method + " failed: " + e.what());
    } catch (...) {
      reportError(whereOf(node) + method + " failed: unknown exception");
    }
  } catch (...) {
    std::fputs("[E] remamber::SS2DScan: exception while reporting an exception\n", stderr);  // out of memory
  }
}

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

SS2DScanPlugin::SS2DScanPlugin(std::string nodeName, int32_t layout, int32_t deltaSoftplus, int32_t hasD,
                               int32_t hasDeltaBias)
    : mNodeName(std::move(nodeName)),
      mLayout(layout),
      mDeltaSoftplus(deltaSoftplus),
      mHasD(hasD),
      mHasDeltaBias(hasDeltaBias) {}

std::string SS2DScanPlugin::where() const { return whereOf(mNodeName); }

IPluginCapability* SS2DScanPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept {
  try {
    switch (type) {
      case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
      case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
      case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
  } catch (...) {
    reportCaught(mNodeName, "getCapabilityInterface");
  }
  return nullptr;
}

IPluginV3* SS2DScanPlugin::clone() noexcept {
  try {
    auto* copy = new SS2DScanPlugin(mNodeName, mLayout, mDeltaSoftplus, mHasD, mHasDeltaBias);
    copy->mSlots = mSlots;
    copy->mSlotsKnown = mSlotsKnown;
    return copy;
  } catch (...) {
    reportCaught(mNodeName, "clone");
    return nullptr;
  }
}

bool SS2DScanPlugin::resolveSlots(int32_t nbInputs, SS2DInputSlots& slots) const noexcept {
  try {
    // TensorRT gets the compacted form only: its ONNX parser cannot hand an empty-name input to a plugin.
    const std::string problem = scan::resolve_optional_slots(nbInputs, mHasD, mHasDeltaBias, slots.d, slots.deltaBias);
    if (!problem.empty()) {
      reportError(where() + problem);
      return false;
    }
    return true;
  } catch (...) {
    reportCaught(mNodeName, "input slots");
    return false;
  }
}

int32_t SS2DScanPlugin::getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes,
                                           int32_t nbInputs) const noexcept {
  try {
    if (nbOutputs != 1) {
      reportError(where() + "has exactly one output y, got " + std::to_string(nbOutputs));
      return -1;
    }
    SS2DInputSlots s;
    if (!resolveSlots(nbInputs, s)) return -1;
    int32_t slot[scan::kNumInputs];
    slotsOf(s, slot);
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
    outputTypes[0] = DataType::kFLOAT;  // fp32 output whatever the input type (fp32 state, fp32 merge)
    return 0;
  } catch (...) {
    reportCaught(mNodeName, "getOutputDataTypes");
    return -1;
  }
}

int32_t SS2DScanPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
                                        int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs,
                                        IExprBuilder& /*exprBuilder*/) noexcept {
  try {
    SS2DInputSlots s;
    if (nbOutputs != 1 || !resolveSlots(nbInputs, s)) return -1;
    int32_t slot[scan::kNumInputs];
    slotsOf(s, slot);
    TensorDesc desc[scan::kNumInputs];
    for (int i = 0; i < scan::kNumInputs; ++i) {
      if (slot[i] < 0) continue;
      DimsExprs const& e = inputs[slot[i]];
      desc[i].present = true;
      for (int32_t k = 0; k < e.nbDims; ++k)
        desc[i].dims.push_back(e.d[k]->isConstant() ? e.d[k]->getConstantValue() : -1);
    }
    std::string problem = scan::validate_ss2d_ranks(desc);
    if (problem.empty()) problem = scan::validate_ss2d_dims(desc);  // the dimensions known at this point
    if (!problem.empty()) {
      reportError(where() + problem);
      return -1;
    }
    outputs[0] = inputs[0];  // y has u's shape (batch, D, H, W)
    return 0;
  } catch (...) {
    reportCaught(mNodeName, "getOutputShapes");
    return -1;
  }
}

bool SS2DScanPlugin::supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                               int32_t nbOutputs) noexcept {
  try {
    if (nbOutputs != 1 || pos < 0 || pos >= nbInputs + nbOutputs) return false;
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
    return false;
  }
}

int32_t SS2DScanPlugin::checkInputs(PluginTensorDesc const* const* in, int32_t nbInputs, int32_t nbOutputs) noexcept {
  try {
    SS2DInputSlots s;
    if (nbOutputs != 1 || !resolveSlots(nbInputs, s)) return -1;
    int32_t slot[scan::kNumInputs];
    slotsOf(s, slot);
    TensorDesc desc[scan::kNumInputs];
    for (int i = 0; i < scan::kNumInputs; ++i) {
      if (slot[i] < 0) continue;
      desc[i].present = true;
      desc[i].type = toElemType(in[slot[i]]->type);
      desc[i].dims = toDims(in[slot[i]]->dims);
    }
    const std::string problem = scan::validate_ss2d_signature(desc);
    if (!problem.empty()) {
      reportError(where() + problem);
      return -1;
    }
    mSlots = s;
    mSlotsKnown = true;
    return 0;
  } catch (...) {
    reportCaught(mNodeName, "input check");
    return -1;
  }
}

int32_t SS2DScanPlugin::configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs,
                                        DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept {
  if (nbInputs < 0 || nbInputs > scan::kNumInputs) return checkInputs(nullptr, nbInputs, nbOutputs);
  PluginTensorDesc const* descs[scan::kNumInputs];
  for (int32_t i = 0; i < nbInputs; ++i) descs[i] = &in[i].desc;  // dynamic dimensions read as -1
  return checkInputs(descs, nbInputs, nbOutputs);
}

int32_t SS2DScanPlugin::onShapeChange(PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* /*out*/,
                                      int32_t nbOutputs) noexcept {
  if (nbInputs < 0 || nbInputs > scan::kNumInputs) return checkInputs(nullptr, nbInputs, nbOutputs);
  PluginTensorDesc const* descs[scan::kNumInputs];
  for (int32_t i = 0; i < nbInputs; ++i) descs[i] = &in[i];
  return checkInputs(descs, nbInputs, nbOutputs);
}

int32_t SS2DScanPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
                                void const* const* inputs, void* const* outputs, void* /*workspace*/,
                                cudaStream_t stream) noexcept {
  try {
    // onShapeChange (called with the input count before the first enqueue) resolved the optional slots.
    if (!mSlotsKnown) {
      reportError(where() + "enqueue before onShapeChange: input layout unknown");
      return -1;
    }
    Dims const& u = inputDesc[scan::kU].dims;
    Dims const& a = inputDesc[scan::kA].dims;
    scan::SS2DArgs p;
    p.shape.batch = u.d[0];
    p.shape.dim = u.d[1];
    p.shape.height = u.d[2];
    p.shape.width = u.d[3];
    p.shape.nstate = a.d[1];
    switch (inputDesc[scan::kU].type) {
      case DataType::kFLOAT: p.dtype = scan::ScanDtype::kFloat32; break;
      case DataType::kHALF: p.dtype = scan::ScanDtype::kFloat16; break;
      case DataType::kBF16: p.dtype = scan::ScanDtype::kBFloat16; break;
      default: reportError(where() + "unsupported input type at enqueue"); return -1;
    }
    p.layout = static_cast<scan::SS2DLayout>(mLayout);
    p.u = inputs[scan::kU];
    p.delta = inputs[scan::kDelta];
    p.A = static_cast<float const*>(inputs[scan::kA]);
    p.B = inputs[scan::kB];
    p.C = inputs[scan::kC];
    p.y = static_cast<float*>(outputs[0]);
    p.delta_softplus = mDeltaSoftplus != 0;
    if (mSlots.d >= 0) p.D = static_cast<float const*>(inputs[mSlots.d]);
    if (mSlots.deltaBias >= 0) p.delta_bias = static_cast<float const*>(inputs[mSlots.deltaBias]);
    if (char const* err = scan::launch_ss2d_scan(p, stream)) {
      reportError(where() + "kernel launch failed: " + err);
      return -1;
    }
    return 0;
  } catch (...) {
    reportCaught(mNodeName, "enqueue");
    return -1;
  }
}

IPluginV3* SS2DScanPlugin::attachToContext(IPluginResourceContext* /*context*/) noexcept {
  return clone();  // clone() catches everything itself
}

PluginFieldCollection const* SS2DScanPlugin::getFieldsToSerialize() noexcept {
  try {
    mSerialFields.clear();
    mSerialFields.emplace_back("layout", &mLayout, PluginFieldType::kINT32, 1);
    mSerialFields.emplace_back("delta_softplus", &mDeltaSoftplus, PluginFieldType::kINT32, 1);
    mSerialFields.emplace_back("has_D", &mHasD, PluginFieldType::kINT32, 1);
    mSerialFields.emplace_back("has_delta_bias", &mHasDeltaBias, PluginFieldType::kINT32, 1);
    mSerialCollection.nbFields = static_cast<int32_t>(mSerialFields.size());
    mSerialCollection.fields = mSerialFields.data();
    return &mSerialCollection;
  } catch (...) {
    reportCaught(mNodeName, "getFieldsToSerialize");
    return nullptr;
  }
}

// ---- creator ------------------------------------------------------------------------------------

SS2DScanPluginCreator::SS2DScanPluginCreator() {
  // The fields the TensorRT ONNX parser passes through (it drops undeclared attributes).
  mFields.emplace_back("layout", nullptr, PluginFieldType::kINT32, 1);
  mFields.emplace_back("delta_softplus", nullptr, PluginFieldType::kINT32, 1);
  mFields.emplace_back("has_D", nullptr, PluginFieldType::kINT32, 1);
  mFields.emplace_back("has_delta_bias", nullptr, PluginFieldType::kINT32, 1);
  mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
  mFieldCollection.fields = mFields.data();
}

IPluginV3* SS2DScanPluginCreator::createPlugin(char const* name, PluginFieldCollection const* fc,
                                               TensorRTPhase /*phase*/) noexcept {
  try {
    const std::string node = name ? name : "";
    const std::string where = whereOf(node);
    int64_t layout = 0, deltaSoftplus = 1, hasD = -1, hasDeltaBias = -1;
    for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i) {
      PluginField const& f = fc->fields[i];
      const std::string field = f.name ? f.name : "";
      if (field == "plugin_namespace" || field == "plugin_version") {
        // The node's lookup attributes: the parser consumes them itself (they are not declared fields);
        // a caller that forwards every attribute passes them here: accept them when they name us.
        std::string value;
        char const* expected = field == "plugin_namespace" ? kSS2DPluginNamespace : kSS2DPluginVersion;
        if (!readString(f, value) || value != expected) {
          reportError(where + "attribute '" + field + "' must be the string \"" + expected + "\"");
          return nullptr;
        }
        continue;
      }
      int64_t* target = nullptr;
      if (field == "layout") target = &layout;
      else if (field == "delta_softplus") target = &deltaSoftplus;
      else if (field == "has_D") target = &hasD;
      else if (field == "has_delta_bias") target = &hasDeltaBias;
      else {
        reportError(where + "unknown attribute '" + field +
                    "'; SS2DScan v1 accepts layout (int), delta_softplus (int), has_D (int), has_delta_bias (int), "
                    "plugin_namespace and plugin_version (strings)");
        return nullptr;
      }
      if (!readInt(f, *target)) {
        reportError(where + "attribute '" + field + "' must be a single int");
        return nullptr;
      }
    }
    const std::string problem = scan::validate_ss2d_attributes(layout, deltaSoftplus, hasD, hasDeltaBias);
    if (!problem.empty()) {
      reportError(where + problem);
      return nullptr;
    }
    return new SS2DScanPlugin(node, static_cast<int32_t>(layout), static_cast<int32_t>(deltaSoftplus),
                              static_cast<int32_t>(hasD), static_cast<int32_t>(hasDeltaBias));
  } catch (...) {
    reportCaught(name ? name : "", "createPlugin");
    return nullptr;
  }
}

}  // namespace trt
}  // namespace remamber
