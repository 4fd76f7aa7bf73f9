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

#include "ort_ss2d_op.h"
#include "scan_cpu.h"
#include "ss2d_types.h"

namespace remamber {
namespace ort {
namespace ss2d_cpu {

struct SS2DCpuKernel : ScanKernel<SS2DScanOrt, SS2DCpuKernel> {
  static constexpr const char* kExecutionProvider = "CPUExecutionProvider";

  void Run(Ort::KernelContext& ctx, const scan::SS2DArgs& p) {
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

}  // namespace ss2d_cpu

void add_ss2d_cpu_ops(Ort::CustomOpDomain& domain) { add_ops<SS2DScanOrt, ss2d_cpu::SS2DCpuKernel>(domain); }

}  // namespace ort
}  // namespace remamber
