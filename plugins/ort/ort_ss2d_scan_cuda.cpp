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

#include "ort_ss2d_op.h"
#include "ss2d_launch.h"
#include "ss2d_types.h"

namespace remamber {
namespace ort {
namespace ss2d_cuda_ep {

struct SS2DCudaKernel : ScanKernel<SS2DScanOrt, SS2DCudaKernel> {
  static constexpr const char* kExecutionProvider = "CUDAExecutionProvider";

  void Run(Ort::KernelContext& ctx, const scan::SS2DArgs& p) {
    // Bad arguments and the launch status come back here; a fault while the kernel runs is asynchronous
    // and surfaces at ORT's next synchronisation of the stream, as for ORT's own kernels.
    auto stream = static_cast<cudaStream_t>(ctx.GetGPUComputeStream());
    check_launch(scan::launch_ss2d_scan(p, stream));
  }
};

}  // namespace ss2d_cuda_ep

void add_ss2d_cuda_ops(Ort::CustomOpDomain& domain) { add_ops<SS2DScanOrt, ss2d_cuda_ep::SS2DCudaKernel>(domain); }

}  // namespace ort
}  // namespace remamber

#endif  // REMAMBER_ORT_WITH_CUDA
