// The ONNX Runtime side of remamber::SS2DScan v1 that does not depend on where the kernel runs: the node's
// attributes and input slots (SS2DNode) and the custom-op class (SS2DOp: kernel creation with the shared
// node checks, input/output types, shape inference). The CPU kernel (ort_ss2d_scan.cpp) and the CUDA EP
// kernel (ort_ss2d_scan_cuda.cpp) each derive their kernel from SS2DNode, add only Compute and name their
// execution provider, so both refuse a malformed node with the same message at session creation.
#pragma once

#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "ort_api_floor.h"
#include "scan_validate.h"
#include "ss2d_types.h"
#include "ss2d_validate.h"

namespace remamber {
namespace ort {
namespace ss2d {

constexpr const char* kOpName = "SS2DScan";

inline scan::ElemType elem_type(ONNXTensorElementDataType t) {
  switch (t) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return scan::ElemType::kFloat32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return scan::ElemType::kFloat16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16: return scan::ElemType::kBFloat16;
    default: return scan::ElemType::kOther;
  }
}

class NodeError : public std::runtime_error {  // the node's inputs or attributes: ORT_INVALID_ARGUMENT
 public:
  using std::runtime_error::runtime_error;
};

// What a kernel knows of its node: attributes and input names, read once at session creation.
struct SS2DNode {
  std::string node_name;
  int64_t layout = 0;
  bool delta_softplus = true;
  int64_t has_d = -1;
  int64_t has_delta_bias = -1;
  std::vector<std::string> input_names;  // "" = absent optional input (positional form)

  std::string where() const { return "remamber::SS2DScan node '" + node_name + "': "; }

  // Input slot of each contract input (u, delta, A, B, C, D, delta_bias), -1 when absent. An empty name
  // among the optional inputs means the positional form (slot 5 = D, slot 6 = delta_bias); otherwise the
  // compacted form resolved with has_D / has_delta_bias (the TensorRT-compatible one the export writes).
  void slots(size_t count, int (&slot)[scan::kNumInputs]) const {
    for (int i = 0; i < scan::kD; ++i) slot[i] = i;
    bool positional = false;
    for (size_t i = scan::kD; i < input_names.size(); ++i) positional = positional || input_names[i].empty();
    if (positional) {
      slot[scan::kD] = count > 5 && !input_names[5].empty() ? 5 : -1;
      slot[scan::kDeltaBias] = count > 6 && !input_names[6].empty() ? 6 : -1;
      if (has_d >= 0 && (slot[scan::kD] >= 0) != (has_d == 1))
        throw NodeError(where() + "attribute has_D=" + std::to_string(has_d) + " contradicts input slot 5");
      if (has_delta_bias >= 0 && (slot[scan::kDeltaBias] >= 0) != (has_delta_bias == 1))
        throw NodeError(where() + "attribute has_delta_bias=" + std::to_string(has_delta_bias) +
                        " contradicts input slot 6");
      return;
    }
    const std::string problem =
        scan::resolve_optional_slots(static_cast<int>(count), static_cast<int>(has_d), static_cast<int>(has_delta_bias),
                                     slot[scan::kD], slot[scan::kDeltaBias]);
    if (!problem.empty()) throw NodeError(where() + problem);
  }
};

// One op instance per activation type (float32 / float16 / bfloat16 share the name; ORT picks by input
// type). Kernel derives from SS2DNode and names its provider in kExecutionProvider.
template <class Kernel, ONNXTensorElementDataType kActType>
struct SS2DOp : Ort::CustomOpBase<SS2DOp<Kernel, kActType>, Kernel, /*WithStatus=*/true> {
  // The op declares the API version the library asks for, not the headers' (ort_api_floor.h).
  SS2DOp() { this->version = kOrtApiFloor; }

  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* raw_info, void** op_kernel) const noexcept {
    try {
      Ort::ConstKernelInfo info(raw_info);
      auto kernel = std::make_unique<Kernel>();
      kernel->node_name = info.GetNodeName();
      int64_t values[4] = {0, 1, -1, -1};  // defaults of layout, delta_softplus, has_D, has_delta_bias
      const char* names[4] = {"layout", "delta_softplus", "has_D", "has_delta_bias"};
      for (int i = 0; i < 4; ++i) {
        OrtStatus* st = api.KernelInfoGetAttribute_int64(raw_info, names[i], &values[i]);
        if (st != nullptr) api.ReleaseStatus(st);  // absent: keep the default
      }
      const std::string bad = scan::validate_ss2d_attributes(values[0], values[1], values[2], values[3]);
      if (!bad.empty()) throw NodeError(kernel->where() + bad);
      kernel->layout = values[0];
      kernel->delta_softplus = values[1] != 0;
      kernel->has_d = values[2];
      kernel->has_delta_bias = values[3];
      const size_t count = info.GetInputCount();
      for (size_t i = 0; i < count; ++i) kernel->input_names.push_back(info.GetInputName(i));
      int slot[scan::kNumInputs];
      kernel->slots(count, slot);
      // What the graph already tells (ranks, types, static dimensions) is checked at session creation.
      scan::TensorDesc desc[scan::kNumInputs];
      bool ranks_known = true;
      for (int i = 0; i < scan::kNumInputs; ++i) {
        if (slot[i] < 0 || static_cast<size_t>(slot[i]) >= count || kernel->input_names[slot[i]].empty()) continue;
        Ort::TypeInfo type_info = info.GetInputTypeInfo(static_cast<size_t>(slot[i]));
        if (type_info.GetONNXType() != ONNX_TYPE_TENSOR) continue;
        auto tensor_info = type_info.GetTensorTypeAndShapeInfo();
        desc[i].present = true;
        desc[i].type = elem_type(tensor_info.GetElementType());
        desc[i].dims = tensor_info.GetShape();
        if (desc[i].dims.empty()) ranks_known = false;  // unknown rank reads as rank 0
      }
      if (ranks_known) {
        const std::string problem = scan::validate_ss2d_signature(desc);
        if (!problem.empty()) throw NodeError(kernel->where() + problem);
      }
      *op_kernel = kernel.release();
      return nullptr;
    } catch (const std::exception& e) {
      return api.CreateStatus(ORT_INVALID_ARGUMENT, e.what());
    }
  }

  const char* GetName() const { return kOpName; }
  const char* GetExecutionProviderType() const { return Kernel::kExecutionProvider; }

  size_t GetInputTypeCount() const { return scan::kNumInputs; }
  ONNXTensorElementDataType GetInputType(size_t index) const {
    switch (index) {
      case scan::kA:
      case scan::kD:
      case scan::kDeltaBias: return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
      default: return kActType;  // u, delta, B, C
    }
  }
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t index) const {
    return index >= scan::kD ? OrtCustomOpInputOutputCharacteristic::INPUT_OUTPUT_OPTIONAL
                             : OrtCustomOpInputOutputCharacteristic::INPUT_OUTPUT_REQUIRED;
  }

  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t /*index*/) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }

  // y has u's shape (batch, D, H, W) and is float32 whatever the input type.
  static Ort::Status InferOutputShape(Ort::ShapeInferContext& ctx) {
    if (ctx.GetInputCount() < 1) return Ort::Status("remamber::SS2DScan: missing input u", ORT_INVALID_ARGUMENT);
    const auto& shape = ctx.GetInputShape(0);
    if (shape.size() != 4)
      return Ort::Status(("remamber::SS2DScan: input u must have rank 4 (batch, D, H, W), got rank " +
                          std::to_string(shape.size()))
                             .c_str(),
                         ORT_INVALID_ARGUMENT);
    return ctx.SetOutputShape(0, shape, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT);
  }
};

// Adds the float32, float16 and bfloat16 ops of one kernel to the library's domain; the op objects live as
// long as the library (ORT requires them to outlive every session).
template <class Kernel>
void add_ops(Ort::CustomOpDomain& domain) {
  static SS2DOp<Kernel, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT> op_fp32;
  static SS2DOp<Kernel, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16> op_fp16;
  static SS2DOp<Kernel, ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16> op_bf16;
  domain.Add(&op_fp32);
  domain.Add(&op_fp16);
  domain.Add(&op_bf16);
}

}  // namespace ss2d
}  // namespace ort
}  // namespace remamber
