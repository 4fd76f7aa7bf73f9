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
// (linked statically with the static CUDA runtime). Both kernel kinds share the node checks, and both
// ops share the custom-op machinery of ort_scan_op.h; this file holds what is SelectiveScan's own (its
// attributes, checks and shape, the two kernels' Run) and the library's entry point.
#define ORT_API_MANUAL_INIT
#include "onnxruntime_cxx_api.h"
#undef ORT_API_MANUAL_INIT

#include <algorithm>
#include <exception>
#include <string>

#include "ort_api_floor.h"
#include "ort_scan_op.h"
#include "scan_cpu.h"
#include "scan_types.h"
#include "scan_validate.h"
#ifdef REMAMBER_ORT_WITH_CUDA
#include "scan_launch.h"
#endif

#define REMAMBER_EXPORT extern "C" __attribute__((visibility("default")))

namespace remamber {
namespace ort {

constexpr const char* kDomain = "remamber";

// What ScanKernel / ScanCustomOp need to know of SelectiveScan (see ort_scan_op.h).
struct SelectiveScanOrt {
  static constexpr const char* kName = "SelectiveScan";
  using Args = scan::ScanArgs;
  static constexpr int kNumAttrs = 3;
  static constexpr const char* kAttrNames[kNumAttrs] = {"delta_softplus", "has_D", "has_delta_bias"};
  static constexpr int64_t kAttrDefaults[kNumAttrs] = {1, -1, -1};
  static constexpr int kDeltaSoftplus = 0, kHasD = 1, kHasDeltaBias = 2;
  static constexpr size_t kRank = 3;
  static constexpr const char* kULayout = "(batch, G*D, L)";

  static std::string validate_attributes(const int64_t (&v)[kNumAttrs]) {
    return scan::validate_scan_attributes(v[kDeltaSoftplus], v[kHasD], v[kHasDeltaBias]);
  }
  static std::string validate_signature(const scan::TensorDesc (&in)[scan::kNumInputs]) {
    return scan::validate_signature(in);
  }
  static const char* set_shape(Args& args, const scan::TensorDesc (&in)[scan::kNumInputs],
                               const int64_t (&/*attrs*/)[kNumAttrs]) {
    args.shape.batch = in[scan::kU].dims[0];
    args.shape.channels = in[scan::kU].dims[1];
    args.shape.length = in[scan::kU].dims[2];
    args.shape.groups = in[scan::kB].dims[1];
    args.shape.nstate = in[scan::kA].dims[1];
    return scan::check_shape(args.shape);
  }
};

struct ScanCpuKernel : ScanKernel<SelectiveScanOrt, ScanCpuKernel> {
  static constexpr const char* kExecutionProvider = "CPUExecutionProvider";

  void Run(Ort::KernelContext& ctx, const scan::ScanArgs& args) {
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
struct ScanCudaKernel : ScanKernel<SelectiveScanOrt, ScanCudaKernel> {
  static constexpr const char* kExecutionProvider = "CUDAExecutionProvider";

  void Run(Ort::KernelContext& ctx, const scan::ScanArgs& params) {
    // The launcher reports bad arguments and the launch status; a fault while the kernel runs is
    // asynchronous and surfaces at ORT's next synchronisation of the stream, as for its own kernels.
    auto stream = static_cast<cudaStream_t>(ctx.GetGPUComputeStream());
    check_launch(scan::launch_selective_scan(params, stream));
  }
};
#endif  // REMAMBER_ORT_WITH_CUDA

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
      remamber::ort::add_ops<remamber::ort::SelectiveScanOrt, remamber::ort::ScanCpuKernel>(d);
      remamber::ort::add_ss2d_cpu_ops(d);  // SS2DScan, plugins/ort/ort_ss2d_scan.cpp
#ifdef REMAMBER_ORT_WITH_CUDA
      // Registered whatever the runtime: a CPU-only ONNX Runtime has no CUDA EP, so it never picks
      // these kernels and places the node on the CPU kernel above.
      remamber::ort::add_ops<remamber::ort::SelectiveScanOrt, remamber::ort::ScanCudaKernel>(d);
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
