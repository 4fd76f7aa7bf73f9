// ONNX Runtime CPU kernel of remamber::SS2DScan v1 (domain "remamber", op "SS2DScan"; contract:
// plugins/ss2dScanPlugin/README.md), in libremamber_ort_ops.so beside SelectiveScan. RegisterCustomOps
// (ort_selective_scan.cpp) calls add_ss2d_cpu_ops().
//
// The batch * D channels are split over the session's intra-op thread pool (KernelContext::ParallelFor,
// as the v1 kernel splits rows); each task owns whole channels and sums their four directions in a fixed
// order, so the output does not depend on the thread count. The scan itself is
// plugins/common/scan_cpu.h's ss2d_scan_cpu_channels (SIMD path chosen at run time). Node checks are
// the shared SS2D ones (plugins/common/ss2d_validate.h): the same messages as the CUDA EP kernel and
// the TensorRT plugin. Three op instances (float32 / float16 / bfloat16 activations) share the name.
#define ORT_API_MANUAL_INIT
#include "onnxruntime_cxx_api.h"
#undef ORT_API_MANUAL_INIT

#include <algorithm>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "ort_api_floor.h"
#include "scan_cpu.h"
#include "scan_validate.h"
#include "ss2d_types.h"
#include "ss2d_validate.h"

namespace remamber {
namespace ort {
namespace ss2d_cpu {

using scan::ElemType;
using scan::TensorDesc;

constexpr const char* kOpName = "SS2DScan";

ElemType elem_type(ONNXTensorElementDataType t) {
  switch (t) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return ElemType::kFloat32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return ElemType::kFloat16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16: return ElemType::kBFloat16;
    default: return ElemType::kOther;
  }
}

class NodeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct SS2DCpuKernel {
  std::string node_name;
  int64_t layout = 0;
  bool delta_softplus = true;
  int64_t has_d = -1;
  int64_t has_delta_bias = -1;
  std::vector<std::string> input_names;  // "" = absent optional input (positional form)

  std::string where() const { return "remamber::SS2DScan node '" + node_name + "': "; }

  // Input slot of each contract input, -1 when absent: an empty name among the optional inputs means the
  // positional form (slot 5 = D, 6 = delta_bias), otherwise the compacted form with has_D/has_delta_bias.
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

  OrtStatusPtr ComputeV2(OrtKernelContext* raw_context) noexcept {
    try {
      Compute(raw_context);
      return nullptr;
    } catch (const std::exception& e) {
      return Ort::GetApi().CreateStatus(ORT_INVALID_ARGUMENT, e.what());
    }
  }

  void Compute(OrtKernelContext* raw_context) {
    Ort::KernelContext ctx(raw_context);
    const size_t count = ctx.GetInputCount();
    int slot[scan::kNumInputs];
    slots(count, slot);
    TensorDesc desc[scan::kNumInputs];
    const void* data[scan::kNumInputs] = {};
    for (int i = 0; i < scan::kNumInputs; ++i) {
      if (slot[i] < 0 || static_cast<size_t>(slot[i]) >= count) continue;
      Ort::ConstValue v = ctx.GetInput(static_cast<size_t>(slot[i]));
      if (v == nullptr) continue;  // absent optional input
      auto info = v.GetTensorTypeAndShapeInfo();
      desc[i].present = true;
      desc[i].type = elem_type(info.GetElementType());
      desc[i].dims = info.GetShape();
      data[i] = v.GetTensorRawData();
    }
    const std::string problem = scan::validate_ss2d_signature(desc);
    if (!problem.empty()) throw NodeError(where() + problem);

    scan::SS2DArgs p;
    p.shape = scan::ss2d_shape_of(desc);
    if (const char* bad = scan::check_ss2d_shape(p.shape, static_cast<int>(layout))) throw NodeError(where() + bad);
    p.layout = static_cast<scan::SS2DLayout>(layout);
    p.dtype = desc[scan::kU].type == ElemType::kFloat32   ? scan::ScanDtype::kFloat32
              : desc[scan::kU].type == ElemType::kFloat16 ? scan::ScanDtype::kFloat16
                                                          : scan::ScanDtype::kBFloat16;
    Ort::UnownedValue out = ctx.GetOutput(0, desc[scan::kU].dims);
    p.y = out.GetTensorMutableData<float>();
    p.u = data[scan::kU];
    p.delta = data[scan::kDelta];
    p.A = static_cast<const float*>(data[scan::kA]);
    p.B = data[scan::kB];
    p.C = data[scan::kC];
    p.D = static_cast<const float*>(data[scan::kD]);
    p.delta_bias = static_cast<const float*>(data[scan::kDeltaBias]);
    p.delta_softplus = delta_softplus;

    const int64_t channels = p.shape.batch * p.shape.dim;
    const int64_t length = p.shape.length();
    if (channels == 0 || length == 0) return;
    // Tasks of whole channels, a multiple of 4 (the SIMD kernel scans 4 channels together), large enough
    // to amortise scheduling on short sequences.
    struct Job {
      const scan::SS2DArgs* args;
      int64_t channels;
      int64_t per_task;
    } job{&p, channels, 4};
    const int64_t work_per_channel = std::max<int64_t>(1, 4 * length * p.shape.nstate);
    job.per_task = std::max<int64_t>(4, ((1 << 16) / work_per_channel + 3) / 4 * 4);
    const int64_t tasks = (channels + job.per_task - 1) / job.per_task;
    auto run = [](void* user, size_t task) {
      const Job& j = *static_cast<const Job*>(user);
      const int64_t begin = static_cast<int64_t>(task) * j.per_task;
      const int64_t end = std::min(j.channels, begin + j.per_task);
      scan::ss2d_scan_cpu_channels(*j.args, begin, end);
    };
    if (tasks == 1) {
      run(&job, 0);
    } else {
      ctx.ParallelFor(run, static_cast<size_t>(tasks), 0, &job);
    }
  }
};

template <ONNXTensorElementDataType kActType>
struct SS2DCpuOp : Ort::CustomOpBase<SS2DCpuOp<kActType>, SS2DCpuKernel, /*WithStatus=*/true> {
  // The op declares the API version the library asks for, not the headers' (ort_api_floor.h).
  SS2DCpuOp() { this->version = kOrtApiFloor; }

  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* raw_info, void** op_kernel) const noexcept {
    try {
      Ort::ConstKernelInfo info(raw_info);
      auto kernel = std::make_unique<SS2DCpuKernel>();
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
      TensorDesc desc[scan::kNumInputs];
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
  const char* GetExecutionProviderType() const { return "CPUExecutionProvider"; }

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

}  // namespace ss2d_cpu

// Adds the float32, float16 and bfloat16 CPU SS2DScan ops to the library's domain; the op objects live as
// long as the library (ORT requires them to outlive every session).
void add_ss2d_cpu_ops(Ort::CustomOpDomain& domain) {
  static ss2d_cpu::SS2DCpuOp<ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT> op_fp32;
  static ss2d_cpu::SS2DCpuOp<ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16> op_fp16;
  static ss2d_cpu::SS2DCpuOp<ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16> op_bf16;
  domain.Add(&op_fp32);
  domain.Add(&op_fp16);
  domain.Add(&op_bf16);
}

}  // namespace ort
}  // namespace remamber
