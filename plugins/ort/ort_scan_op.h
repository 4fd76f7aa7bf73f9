// The ONNX Runtime custom-op machinery both remamber scan ops share (remamber::SelectiveScan in
// ort_selective_scan.cpp, remamber::SS2DScan in ort_ss2d_op.h): the node a kernel reads at session
// creation (attributes, input names, optional-input slots), the per-run input reading and operand wiring,
// the error -> OrtStatus mapping, and the custom-op class (kernel creation with the node checks, input
// and output types, shape inference).
//
// Why one template: both ops take the same seven inputs (u, delta, A, B, C and the optional D /
// delta_bias, positional with empty names or compacted with has_D / has_delta_bias), give one float32 y
// of u's shape, and run as CPU and CUDA EP kernels in float32 / float16 / bfloat16. Only the attribute
// list, the checks and the shape differ; `Op` supplies them:
//
//   struct Op {
//     static constexpr const char* kName;                  // "SelectiveScan"
//     using Args = ...;                                    // scan::ScanArgs or scan::SS2DArgs
//     static constexpr int kNumAttrs;                      // int attributes, with their defaults
//     static constexpr const char* kAttrNames[kNumAttrs];
//     static constexpr int64_t kAttrDefaults[kNumAttrs];
//     static constexpr int kDeltaSoftplus, kHasD, kHasDeltaBias;  // indices in that list
//     static constexpr size_t kRank;                       // u's rank, and its layout for messages:
//     static constexpr const char* kULayout;               // "(batch, G*D, L)"
//     static std::string validate_attributes(const int64_t (&values)[kNumAttrs]);  // "" or the problem
//     static std::string validate_signature(const scan::TensorDesc (&in)[scan::kNumInputs]);
//     // Sets the shape (and any attribute-driven field) of validated inputs; nullptr or the problem.
//     static const char* set_shape(Args& args, const scan::TensorDesc (&in)[scan::kNumInputs],
//                                  const int64_t (&attrs)[kNumAttrs]);
//   };
//
// A kernel derives from ScanKernel<Op, Itself>, names its provider in kExecutionProvider and adds only
// Run(ctx, args); add_ops<Op, Kernel> registers its float32 / float16 / bfloat16 op instances.
// Include after onnxruntime_cxx_api.h (each translation unit picks its Ort::Global initialisation mode).
#pragma once

#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "ort_api_floor.h"
#include "scan_operands.h"
#include "scan_validate.h"

namespace remamber {
namespace ort {

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

class LaunchError : public NodeError {  // the device launch itself (not the node's inputs): ORT_FAIL
 public:
  using NodeError::NodeError;
};

// What a kernel knows of its node (attributes and input names, read once at session creation), the
// checks every kernel kind of the op shares, and ComputeV2: read and check the run's inputs, allocate y,
// call Derived::Run(ctx, args) with pointers in the memory of the kernel's execution provider.
template <class Op, class Derived>
struct ScanKernel {
  using Args = typename Op::Args;

  std::string node_name;
  int64_t attrs[Op::kNumAttrs] = {};     // validated, in Op::kAttrNames order
  std::vector<std::string> input_names;  // node input names ("" = absent optional input)

  std::string where() const { return std::string("remamber::") + Op::kName + " node '" + node_name + "': "; }

  // Input slot of each contract input (u, delta, A, B, C, D, delta_bias), -1 when absent. An empty name
  // among the optional inputs means the positional form (slot 5 = D, slot 6 = delta_bias); otherwise the
  // compacted form resolved with has_D / has_delta_bias (the TensorRT-compatible one the export writes).
  void slots(size_t count, int (&slot)[scan::kNumInputs]) const {
    const int64_t has_d = attrs[Op::kHasD], has_delta_bias = attrs[Op::kHasDeltaBias];
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

  // Reads the inputs' types and shapes (tensor metadata is on the host whatever the memory), checks
  // them against the op contract, allocates y, and returns the call's arguments.
  Args prepare(Ort::KernelContext& ctx) const {
    const size_t count = ctx.GetInputCount();
    int slot[scan::kNumInputs];
    slots(count, slot);
    scan::TensorDesc desc[scan::kNumInputs];
    const void* data[scan::kNumInputs] = {};  // nullptr for an absent optional input
    for (int i = 0; i < scan::kNumInputs; ++i) {
      if (slot[i] < 0 || static_cast<size_t>(slot[i]) >= count) continue;
      Ort::ConstValue v = ctx.GetInput(static_cast<size_t>(slot[i]));
      if (v == nullptr) continue;  // absent optional input ("" in the node)
      auto info = v.GetTensorTypeAndShapeInfo();
      desc[i].present = true;
      desc[i].type = elem_type(info.GetElementType());
      desc[i].dims = info.GetShape();
      data[i] = v.GetTensorRawData();
    }
    const std::string problem = Op::validate_signature(desc);
    if (!problem.empty()) throw NodeError(where() + problem);

    Args args;
    if (const char* bad = Op::set_shape(args, desc, attrs)) throw NodeError(where() + bad);
    scan::ScanDtype dtype = scan::ScanDtype::kFloat32;
    scan::scan_dtype_of(desc[scan::kU].type, dtype);  // a supported type: validate_signature checked it
    Ort::UnownedValue out = ctx.GetOutput(0, desc[scan::kU].dims);
    scan::set_operands(args, data, out.GetTensorMutableData<float>(), dtype, attrs[Op::kDeltaSoftplus] != 0);
    return args;
  }

  // A launcher's result: a message means the launch itself failed (reported as ORT_FAIL).
  void check_launch(const char* err) const {
    if (err != nullptr) throw LaunchError(where() + "CUDA kernel: " + err);
  }

  // KernelComputeV2 of every kernel kind: turns exceptions into an OrtStatus (nothing throws into ORT).
  OrtStatusPtr ComputeV2(OrtKernelContext* raw_context) noexcept {
    try {
      Ort::KernelContext ctx(raw_context);
      const Args args = prepare(ctx);
      static_cast<Derived*>(this)->Run(ctx, args);
      return nullptr;
    } catch (const LaunchError& e) {
      return Ort::GetApi().CreateStatus(ORT_FAIL, e.what());
    } catch (const std::exception& e) {
      return Ort::GetApi().CreateStatus(ORT_INVALID_ARGUMENT, e.what());
    }
  }
};

// One op instance per (activation type, kernel kind): float32 / float16 / bfloat16 share the name and
// ORT picks by input type; Kernel::kExecutionProvider names the provider.
template <class Op, class Kernel, ONNXTensorElementDataType kActType>
struct ScanCustomOp : Ort::CustomOpBase<ScanCustomOp<Op, Kernel, kActType>, Kernel, /*WithStatus=*/true> {
  // The op declares the API version the library asks for, not the headers' (ort_api_floor.h).
  ScanCustomOp() { this->version = kOrtApiFloor; }

  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* raw_info, void** op_kernel) const noexcept {
    try {
      Ort::ConstKernelInfo info(raw_info);
      auto kernel = std::make_unique<Kernel>();
      kernel->node_name = info.GetNodeName();
      int64_t values[Op::kNumAttrs];
      for (int i = 0; i < Op::kNumAttrs; ++i) {
        values[i] = Op::kAttrDefaults[i];
        OrtStatus* st = api.KernelInfoGetAttribute_int64(raw_info, Op::kAttrNames[i], &values[i]);
        if (st != nullptr) {
          api.ReleaseStatus(st);  // attribute absent: the default
          values[i] = Op::kAttrDefaults[i];
        }
      }
      const std::string bad = Op::validate_attributes(values);
      if (!bad.empty()) throw NodeError(kernel->where() + bad);
      for (int i = 0; i < Op::kNumAttrs; ++i) kernel->attrs[i] = values[i];
      const size_t count = info.GetInputCount();
      for (size_t i = 0; i < count; ++i) kernel->input_names.push_back(info.GetInputName(i));
      int slot[scan::kNumInputs];
      kernel->slots(count, slot);

      // Check what the graph already tells (ranks, dtypes, static dimensions) when the session is
      // created, so a malformed node fails before any run. Dynamic dimensions are checked at run time.
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
        if (desc[i].dims.empty()) ranks_known = false;  // an unknown rank reads as rank 0: judge only known ranks
      }
      if (ranks_known) {
        const std::string problem = Op::validate_signature(desc);
        if (!problem.empty()) throw NodeError(kernel->where() + problem);
      }
      *op_kernel = kernel.release();
      return nullptr;
    } catch (const std::exception& e) {
      return api.CreateStatus(ORT_INVALID_ARGUMENT, e.what());
    }
  }

  const char* GetName() const { return Op::kName; }
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

  // y has u's shape and is float32 whatever the input type.
  static Ort::Status InferOutputShape(Ort::ShapeInferContext& ctx) {
    const std::string op = std::string("remamber::") + Op::kName;
    if (ctx.GetInputCount() < 1) return Ort::Status((op + ": missing input u").c_str(), ORT_INVALID_ARGUMENT);
    const auto& shape = ctx.GetInputShape(0);
    if (shape.size() != Op::kRank)
      return Ort::Status((op + ": input u must have rank " + std::to_string(Op::kRank) + " " + Op::kULayout +
                          ", got rank " + std::to_string(shape.size()))
                             .c_str(),
                         ORT_INVALID_ARGUMENT);
    return ctx.SetOutputShape(0, shape, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT);
  }
};

// Adds the float32, float16 and bfloat16 ops of one kernel kind to the library's domain; the op objects
// live as long as the library (ORT requires them to outlive every session).
template <class Op, class Kernel>
void add_ops(Ort::CustomOpDomain& domain) {
  static ScanCustomOp<Op, Kernel, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT> op_fp32;
  static ScanCustomOp<Op, Kernel, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16> op_fp16;
  static ScanCustomOp<Op, Kernel, ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16> op_bf16;
  domain.Add(&op_fp32);
  domain.Add(&op_fp16);
  domain.Add(&op_bf16);
}

}  // namespace ort
}  // namespace remamber
