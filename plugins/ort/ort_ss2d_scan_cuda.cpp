// ONNX Runtime CUDA execution-provider kernel of remamber::SS2DScan v1 (domain "remamber", op "SS2DScan";
// contract: plugins/ss2dScanPlugin/README.md). Compiled into libremamber_ort_ops.so only when CMake finds
// CUDA (REMAMBER_ORT_WITH_CUDA); RegisterCustomOps (ort_selective_scan.cpp) calls add_ss2d_cuda_ops().
//
// Inputs and y live on the device (OrtMemTypeDefault for this EP, A / D / delta_bias included); the fused
// kernel (plugins/cuda/ss2d_launch.h) is queued on ORT's compute stream for the node, so ORT orders the
// consumers after it. The node checks are the shared SS2D ones (plugins/common/ss2d_validate.h), so this
// kernel refuses a malformed node with the same message as the CPU kernel and the TensorRT plugin.
// Three op instances (float32 / float16 / bfloat16 activations) share the name; ORT picks by input type,
// and a CPU-only ONNX Runtime never picks these (it has no CUDA EP) and runs the CPU kernel instead.
#ifdef REMAMBER_ORT_WITH_CUDA

// Same Ort::Global initialisation mode as ort_selective_scan.cpp (the API pointer is set in RegisterCustomOps).
#define ORT_API_MANUAL_INIT
#include "onnxruntime_cxx_api.h"
#undef ORT_API_MANUAL_INIT

#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "ort_ss2d_op.h"
#include "scan_validate.h"
#include "ss2d_launch.h"
#include "ss2d_types.h"
#include "ss2d_validate.h"

namespace remamber {
namespace ort {
namespace ss2d_cuda_ep {

using scan::ElemType;
using scan::TensorDesc;
using ss2d::NodeError;
using ss2d::elem_type;

class LaunchError : public std::runtime_error {  // the device launch itself: ORT_FAIL
 public:
  using std::runtime_error::runtime_error;
};

struct SS2DCudaKernel : ss2d::SS2DNode {
  static constexpr const char* kExecutionProvider = "CUDAExecutionProvider";

  OrtStatusPtr ComputeV2(OrtKernelContext* raw_context) noexcept {
    try {
      Compute(raw_context);
      return nullptr;
    } catch (const LaunchError& e) {
      return Ort::GetApi().CreateStatus(ORT_FAIL, e.what());
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
      auto info = v.GetTensorTypeAndShapeInfo();  // metadata is on the host whatever the memory
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
    // Bad arguments and the launch status come back here; a fault while the kernel runs is asynchronous
    // and surfaces at ORT's next synchronisation of the stream, as for ORT's own kernels.
    auto stream = static_cast<cudaStream_t>(ctx.GetGPUComputeStream());
    if (const char* err = scan::launch_ss2d_scan(p, stream)) throw LaunchError(where() + "CUDA kernel: " + err);
  }
};

}  // namespace ss2d_cuda_ep

void add_ss2d_cuda_ops(Ort::CustomOpDomain& domain) { ss2d::add_ops<ss2d_cuda_ep::SS2DCudaKernel>(domain); }

}  // namespace ort
}  // namespace remamber

#endif  // REMAMBER_ORT_WITH_CUDA
