// ONNX Runtime custom-op library: domain "remamber", op "SelectiveScan" (remamber::SelectiveScan v1).
//
// Classic Ort::CustomOpBase (not the lite API) because the node's optional inputs may be absent in
// the middle (D = "" while delta_bias is given), which needs a null check per input slot. Three op
// instances share the name, for float32, float16 and bfloat16 u/delta/B/C; ORT merges them into one
// schema and picks the kernel from the input types. The CPU kernel runs the rows
// (batch * channels) on the session's intra-op thread pool (KernelContext::ParallelFor), so
// `SessionOptions.intra_op_num_threads` controls its threads.
//
// Built with REMAMBER_ORT_WITH_CUDA (CMake defines it when it finds CUDA), the library also registers
// three CUDA execution-provider kernels under the same domain/name: inputs and y live on the device
// and the scan runs on ORT's compute stream for the node, through the launcher of plugins/cuda
// (linked statically with the static CUDA runtime). Both kernel kinds share the node checks below.
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
#ifdef REMAMBER_ORT_WITH_CUDA
#include "scan_launch.h"
#endif

#define REMAMBER_EXPORT extern "C" __attribute__((visibility("default")))

namespace remamber {
namespace ort {

using scan::ElemType;
using scan::TensorDesc;

constexpr const char* kDomain = "remamber";
constexpr const char* kOpName = "SelectiveScan";

ElemType to_elem_type(ONNXTensorElementDataType t) {
  switch (t) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return ElemType::kFloat32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return ElemType::kFloat16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16: return ElemType::kBFloat16;
    default: return ElemType::kOther;
  }
}

class ScanError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A failure of the device launch itself (not of the node's inputs): reported as ORT_FAIL.
class ScanLaunchError : public ScanError {
 public:
  using ScanError::ScanError;
};

// One run's arguments once the inputs passed the checks: pointers in the kernel's memory (host for
// the CPU kernel, device for the CUDA kernel), y allocated with u's shape.
// What every kernel kind holds (the node's attributes and input names) and the checks they share.
struct ScanKernel {
  std::string node_name;
  bool delta_softplus = true;
  int64_t has_d = -1;           // attributes has_D / has_delta_bias (-1: not given)
  int64_t has_delta_bias = -1;
  std::vector<std::string> input_names;  // node input names ("" = absent optional input)

  // Input slot -> contract input (u, delta, A, B, C, D, delta_bias). An empty name anywhere means the
  // positional form (slot 5 = D, slot 6 = delta_bias); otherwise the compacted form with attributes.
  void slots(size_t count, int (&slot)[scan::kNumInputs]) const {
    for (int i = 0; i < scan::kD; ++i) slot[i] = i;
    bool positional = false;
    for (size_t i = scan::kD; i < input_names.size(); ++i) positional = positional || input_names[i].empty();
    if (positional) {
      slot[scan::kD] = count > 5 && !input_names[5].empty() ? 5 : -1;
      slot[scan::kDeltaBias] = count > 6 && !input_names[6].empty() ? 6 : -1;
      if (has_d >= 0 && (slot[scan::kD] >= 0) != (has_d == 1))
        throw ScanError(where() + "attribute has_D=" + std::to_string(has_d) + " contradicts input slot 5");
      if (has_delta_bias >= 0 && (slot[scan::kDeltaBias] >= 0) != (has_delta_bias == 1))
        throw ScanError(where() + "attribute has_delta_bias=" + std::to_string(has_delta_bias) + " contradicts input slot 6");
      return;
    }
    const std::string problem = scan::resolve_optional_slots(static_cast<int>(count), static_cast<int>(has_d),
                                                             static_cast<int>(has_delta_bias), slot[scan::kD],
                                                             slot[scan::kDeltaBias]);
    if (!problem.empty()) throw ScanError(where() + problem);
  }

  std::string where() const { return "remamber::SelectiveScan node '" + node_name + "': "; }

  // Reads the inputs' types and shapes (tensor metadata is on the host whatever the memory), checks
  // them against the op contract, allocates y, and returns the call's arguments (pointers in the
  // memory of the kernel's execution provider).
  scan::ScanArgs prepare(Ort::KernelContext& ctx) const {
    const size_t count = ctx.GetInputCount();
    int slot[scan::kNumInputs];
    slots(count, slot);
    TensorDesc desc[scan::kNumInputs];
    const void* data[scan::kNumInputs] = {};  // nullptr for an absent optional input
    for (int i = 0; i < scan::kNumInputs; ++i) {
      if (slot[i] < 0 || static_cast<size_t>(slot[i]) >= count) continue;
      Ort::ConstValue v = ctx.GetInput(static_cast<size_t>(slot[i]));
      if (v == nullptr) continue;  // absent optional input ("" in the node)
      auto info = v.GetTensorTypeAndShapeInfo();
      desc[i].present = true;
      desc[i].type = to_elem_type(info.GetElementType());
      desc[i].dims = info.GetShape();
      data[i] = v.GetTensorRawData();
    }
    const std::string problem = scan::validate_signature(desc);
    if (!problem.empty()) throw ScanError(where() + problem);

    scan::ScanArgs call;
    call.shape.batch = desc[scan::kU].dims[0];
    call.shape.channels = desc[scan::kU].dims[1];
    call.shape.length = desc[scan::kU].dims[2];
    call.shape.groups = desc[scan::kB].dims[1];
    call.shape.nstate = desc[scan::kA].dims[1];
    if (const char* bad = scan::check_shape(call.shape)) throw ScanError(where() + bad);
    call.dtype = desc[scan::kU].type == ElemType::kFloat32   ? scan::ScanDtype::kFloat32
                 : desc[scan::kU].type == ElemType::kFloat16 ? scan::ScanDtype::kFloat16
                                                             : scan::ScanDtype::kBFloat16;
    Ort::UnownedValue out = ctx.GetOutput(0, desc[scan::kU].dims);
    call.y = out.GetTensorMutableData<float>();
    call.u = data[scan::kU];
    call.delta = data[scan::kDelta];
    call.A = static_cast<const float*>(data[scan::kA]);
    call.B = data[scan::kB];
    call.C = data[scan::kC];
    call.D = static_cast<const float*>(data[scan::kD]);
    call.delta_bias = static_cast<const float*>(data[scan::kDeltaBias]);
    call.delta_softplus = delta_softplus;
    return call;
  }

  // ComputeV2 of every kernel kind: runs `compute` and turns its exceptions into an OrtStatus.
  template <typename F>
  static OrtStatusPtr guarded(F&& compute) noexcept {
    try {
      compute();
      return nullptr;
    } catch (const ScanLaunchError& e) {
      return Ort::GetApi().CreateStatus(ORT_FAIL, e.what());
    } catch (const std::exception& e) {
      return Ort::GetApi().CreateStatus(ORT_INVALID_ARGUMENT, e.what());
    }
  }
};

struct ScanCpuKernel : ScanKernel {
  static constexpr const char* kExecutionProvider = "CPUExecutionProvider";

  OrtStatusPtr ComputeV2(OrtKernelContext* raw_context) noexcept {
    return guarded([&] { Compute(raw_context); });
  }

  void Compute(OrtKernelContext* raw_context) {
    Ort::KernelContext ctx(raw_context);
    const scan::ScanArgs args = prepare(ctx);

    const int64_t rows = args.shape.batch * args.shape.channels;
    if (rows == 0 || args.shape.length == 0) return;
    // One task per block of rows; ORT splits the tasks over its intra-op pool (or runs them inline
    // with one thread). Blocks keep tasks large enough to amortise scheduling on short rows.
    struct Job {
      const scan::ScanCpuArgs* args;
      int64_t rows;
      int64_t rows_per_task;
    } job{&args, rows, 1};
    const int64_t target_elems_per_task = 1 << 16;
    job.rows_per_task = std::max<int64_t>(1, std::min<int64_t>(rows, target_elems_per_task / std::max<int64_t>(1, args.shape.length * args.shape.nstate)));
    // At least 4 rows: the SIMD kernel interleaves the recurrences of 4 rows of a group (scan_cpu.h).
    job.rows_per_task = std::max<int64_t>(job.rows_per_task, std::min<int64_t>(rows, 4));
    const int64_t tasks = (rows + job.rows_per_task - 1) / job.rows_per_task;
    auto run = [](void* user, size_t task) {
      const Job& j = *static_cast<const Job*>(user);
      const int64_t begin = static_cast<int64_t>(task) * j.rows_per_task;
      const int64_t end = std::min(j.rows, begin + j.rows_per_task);
      scan::selective_scan_cpu_rows(*j.args, begin, end);
    };
    if (tasks == 1) {
      run(&job, 0);
    } else {
      ctx.ParallelFor(run, static_cast<size_t>(tasks), 0, &job);
    }
  }
};

#ifdef REMAMBER_ORT_WITH_CUDA
// CUDA execution-provider kernel: every input (A, D and delta_bias included, small fp32 tensors) and
// y are in device memory (OrtMemTypeDefault for this EP), so the pointers go to the launcher as they
// are; the kernel is queued on the node's compute stream and ORT orders the consumers after it.
struct ScanCudaKernel : ScanKernel {
  static constexpr const char* kExecutionProvider = "CUDAExecutionProvider";

  OrtStatusPtr ComputeV2(OrtKernelContext* raw_context) noexcept {
    return guarded([&] { Compute(raw_context); });
  }

  void Compute(OrtKernelContext* raw_context) {
    Ort::KernelContext ctx(raw_context);
    const scan::ScanArgs params = prepare(ctx);

    // The launcher reports bad arguments and the launch status; a fault while the kernel runs is
    // asynchronous and surfaces at ORT's next synchronisation of the stream, as for its own kernels.
    auto stream = static_cast<cudaStream_t>(ctx.GetGPUComputeStream());
    if (const char* err = scan::launch_selective_scan(params, stream))
      throw ScanLaunchError(where() + "CUDA kernel: " + err);
  }
};
#endif  // REMAMBER_ORT_WITH_CUDA

// One op instance per (activation dtype, kernel kind); TKernel names its execution provider.
template <ONNXTensorElementDataType kActType, typename TKernel>
struct ScanOp : Ort::CustomOpBase<ScanOp<kActType, TKernel>, TKernel, /*WithStatus=*/true> {
  // The op declares the API version the library asks for, not the headers' (ort_api_floor.h).
  ScanOp() { this->version = kOrtApiFloor; }

  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* raw_info, void** op_kernel) const noexcept {
    try {
      Ort::ConstKernelInfo info(raw_info);
      auto kernel = std::make_unique<TKernel>();
      kernel->node_name = info.GetNodeName();
      int64_t softplus = 1;
      OrtStatus* st = api.KernelInfoGetAttribute_int64(raw_info, "delta_softplus", &softplus);
      if (st != nullptr) {
        api.ReleaseStatus(st);  // attribute absent: default 1
        softplus = 1;
      }
      if (softplus != 0 && softplus != 1)
        throw ScanError(kernel->where() + "attribute delta_softplus must be 0 or 1, got " + std::to_string(softplus));
      kernel->delta_softplus = softplus != 0;
      for (auto& [attr, target] : {std::make_pair("has_D", &kernel->has_d), std::make_pair("has_delta_bias", &kernel->has_delta_bias)}) {
        int64_t value = -1;
        OrtStatus* status = api.KernelInfoGetAttribute_int64(raw_info, attr, &value);
        if (status != nullptr) {
          api.ReleaseStatus(status);
          continue;
        }
        if (value < -1 || value > 1)
          throw ScanError(kernel->where() + "attribute " + attr + " must be 0 or 1, got " + std::to_string(value));
        *target = value;
      }
      const size_t count = info.GetInputCount();
      for (size_t i = 0; i < count; ++i) kernel->input_names.push_back(info.GetInputName(i));
      int slot[scan::kNumInputs];
      kernel->slots(count, slot);

      // Check what the graph already tells (ranks, dtypes, static dimensions) when the session is
      // created, so a malformed node fails before any run. Dynamic dimensions are checked in Compute.
      TensorDesc desc[scan::kNumInputs];
      for (int i = 0; i < scan::kNumInputs; ++i) {
        if (slot[i] < 0 || static_cast<size_t>(slot[i]) >= count || kernel->input_names[slot[i]].empty()) continue;
        Ort::TypeInfo type_info = info.GetInputTypeInfo(static_cast<size_t>(slot[i]));
        if (type_info.GetONNXType() != ONNX_TYPE_TENSOR) continue;
        auto tensor_info = type_info.GetTensorTypeAndShapeInfo();
        desc[i].present = true;
        desc[i].type = to_elem_type(tensor_info.GetElementType());
        desc[i].dims = tensor_info.GetShape();

      }
      // An input of unknown rank reads as rank 0 here: only judge when every rank is known.
      bool ranks_known = true;
      for (int i = 0; i < scan::kNumInputs; ++i)
        if (desc[i].present && desc[i].dims.empty()) ranks_known = false;
      if (ranks_known) {
        const std::string problem = scan::validate_signature(desc);
        if (!problem.empty()) throw ScanError(kernel->where() + problem);
      }
      *op_kernel = kernel.release();
      return nullptr;
    } catch (const std::exception& e) {
      return api.CreateStatus(ORT_INVALID_ARGUMENT, e.what());
    }
  }

  const char* GetName() const { return kOpName; }
  const char* GetExecutionProviderType() const { return TKernel::kExecutionProvider; }

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
    if (ctx.GetInputCount() < 1) return Ort::Status("remamber::SelectiveScan: missing input u", ORT_INVALID_ARGUMENT);
    const auto& shape = ctx.GetInputShape(0);
    if (shape.size() != 3)
      return Ort::Status(("remamber::SelectiveScan: input u must have rank 3 (batch, G*D, L), got rank " +
                          std::to_string(shape.size()))
                             .c_str(),
                         ORT_INVALID_ARGUMENT);
    return ctx.SetOutputShape(0, shape, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT);
  }
};

// The ops and the domain live as long as the library (ORT requires them to outlive every session).
// Adds the float32, float16 and bfloat16 ops of one kernel kind to the domain.
template <typename TKernel>
void add_ops(Ort::CustomOpDomain& domain) {
  static ScanOp<ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, TKernel> op_fp32;
  static ScanOp<ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, TKernel> op_fp16;
  static ScanOp<ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16, TKernel> op_bf16;
  domain.Add(&op_fp32);
  domain.Add(&op_fp16);
  domain.Add(&op_bf16);
}

}  // namespace ort
}  // namespace remamber

using remamber::ort::kOrtApiFloor;
static_assert(ORT_API_VERSION >= kOrtApiFloor, "ONNX Runtime headers older than 1.17: point ONNXRUNTIME_ROOT at 1.17+");

namespace remamber {
namespace ort {
void add_ss2d_cpu_ops(Ort::CustomOpDomain& domain);  // the SS2DScan CPU kernels (ort_ss2d_scan.cpp)
}  // namespace ort
}  // namespace remamber

#ifdef REMAMBER_ORT_WITH_CUDA
namespace remamber {
namespace ort {
void add_ss2d_cuda_ops(Ort::CustomOpDomain& domain);  // the SS2DScan CUDA EP kernels (ort_ss2d_scan_cuda.cpp)
}  // namespace ort
}  // namespace remamber
#endif

// Entry point looked up by SessionOptions.register_custom_ops_library / RegisterCustomOpsLibrary_V2.
REMAMBER_EXPORT OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  const OrtApi* api = api_base->GetApi(kOrtApiFloor);
  if (api == nullptr) {
    // An older runtime: report through the oldest API that has CreateStatus.
    const OrtApi* old_api = api_base->GetApi(1);
    const std::string msg = std::string("libremamber_ort_ops needs ONNX Runtime ") + remamber::ort::kOrtFloorRelease +
                            " or newer (C API " +
                            std::to_string(kOrtApiFloor) + ") but the runtime is " + api_base->GetVersionString() +
                            "; upgrade onnxruntime";
    return old_api ? old_api->CreateStatus(ORT_FAIL, msg.c_str()) : nullptr;
  }
  Ort::InitApi(api);
  try {
    // One domain for the library's lifetime (ORT requires it to outlive every session using it);
    // a function-local static is initialised once even with concurrent registrations.
    static Ort::CustomOpDomain& domain = []() -> Ort::CustomOpDomain& {
      static Ort::CustomOpDomain d{remamber::ort::kDomain};
      remamber::ort::add_ops<remamber::ort::ScanCpuKernel>(d);
      remamber::ort::add_ss2d_cpu_ops(d);  // SS2DScan, plugins/ort/ort_ss2d_scan.cpp
#ifdef REMAMBER_ORT_WITH_CUDA
      // Registered whatever the runtime: a CPU-only ONNX Runtime has no CUDA EP, so it never picks
      // these kernels and places the node on the CPU kernel above.
      remamber::ort::add_ops<remamber::ort::ScanCudaKernel>(d);
      remamber::ort::add_ss2d_cuda_ops(d);  // SS2DScan, plugins/ort/ort_ss2d_scan_cuda.cpp
#endif
      return d;
    }();
    Ort::UnownedSessionOptions session_options(options);
    session_options.Add(domain);
    return nullptr;
  } catch (const std::exception& e) {
    return api->CreateStatus(ORT_FAIL, e.what());
  }
}
