// TensorRT plugin remamber::SelectiveScan v1: what is SelectiveScan's own on top of the shared IPluginV3
// machinery (plugins/common/trt_scan_plugin.h): its attribute checks, the signature checks of the shared
// validation (plugins/common/scan_validate.h, the same messages as the ONNX Runtime op) plus the
// profile-bounds group check, and enqueue through the CUDA kernel's launcher (plugins/cuda/scan_launch.h).
#include "selectiveScanPlugin.h"

#include <utility>
#include <vector>

#include "scan_launch.h"
#include "scan_operands.h"
#include "scan_validate.h"

using namespace nvinfer1;

namespace remamber {
namespace trt {

std::string SelectiveScanOp::validateAttributes(int64_t const (&values)[kNumAttrs]) {
  const int64_t deltaSoftplus = values[kDeltaSoftplus];
  if (deltaSoftplus != 0 && deltaSoftplus != 1)
    return "attribute delta_softplus must be 0 or 1, got " + std::to_string(deltaSoftplus);
  for (auto const& kv : {std::make_pair("has_D", values[kHasD]), std::make_pair("has_delta_bias", values[kHasDeltaBias])}) {
    if (kv.second < -1 || kv.second > 1)
      return std::string("attribute ") + kv.first + " must be 0 or 1 (or -1: infer), got " + std::to_string(kv.second);
  }
  return "";
}

std::string SelectiveScanOp::validateShapes(scan::TensorDesc const (&in)[scan::kNumInputs]) {
  std::string problem = scan::validate_ranks(in);
  if (problem.empty()) problem = scan::validate_dims(in);  // static dimensions only (N, G | channels, ...)
  return problem;
}

std::string SelectiveScanOp::validateInputs(scan::TensorDesc const (&in)[scan::kNumInputs],
                                            DynamicPluginTensorDesc const* bounds) {
  std::string problem = scan::validate_signature(in);
  if (problem.empty() && bounds != nullptr) {
    // With dynamic shapes the profile's bounds are known: a channel count the profile fixes must
    // still be divisible by G.
    std::vector<int64_t> uMax = detail::toDims(bounds[0].max), bMax = detail::toDims(bounds[scan::kB].max);
    if (uMax.size() == 3 && bMax.size() == 4 && bMax[1] > 0 && bounds[0].min.d[1] == bounds[0].max.d[1] &&
        uMax[1] % bMax[1] != 0)
      problem = "the group count G = " + std::to_string(bMax[1]) + " (B.shape[1]) must divide the channel count " +
                std::to_string(uMax[1]) + " (u.shape[1])";
  }
  return problem;
}

char const* SelectiveScanOp::launch(int32_t const (&attrs)[kNumAttrs], PluginTensorDesc const* inputDesc,
                                    void const* const (&in)[scan::kNumInputs], float* y, scan::ScanDtype dtype,
                                    cudaStream_t stream) {
  Dims const& u = inputDesc[scan::kU].dims;
  scan::ScanCudaParams p;
  p.shape.batch = u.d[0];
  p.shape.channels = u.d[1];
  p.shape.length = u.d[2];
  p.shape.nstate = inputDesc[scan::kA].dims.d[1];
  p.shape.groups = inputDesc[scan::kB].dims.d[1];
  scan::set_operands(p, in, y, dtype, attrs[kDeltaSoftplus] != 0);
  return scan::launch_selective_scan(p, stream);
}

template class ScanPlugin<SelectiveScanOp>;
template class ScanPluginCreator<SelectiveScanOp>;

}  // namespace trt
}  // namespace remamber
