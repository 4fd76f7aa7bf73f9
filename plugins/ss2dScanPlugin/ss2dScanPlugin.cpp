// TensorRT plugin remamber::SS2DScan v1: what is SS2DScan's own on top of the shared IPluginV3 machinery
// (plugins/common/trt_scan_plugin.h): build-time checks through the shared SS2D validation
// (plugins/common/ss2d_validate.h, the same messages as the ONNX Runtime op) and enqueue through the fused
// CUDA kernel's launcher (plugins/cuda/ss2d_launch.h).
#include "ss2dScanPlugin.h"

#include "scan_operands.h"
#include "ss2d_launch.h"
#include "ss2d_validate.h"

using namespace nvinfer1;

namespace remamber {
namespace trt {

std::string SS2DScanOp::validateAttributes(int64_t const (&values)[kNumAttrs]) {
  return scan::validate_ss2d_attributes(values[kLayout], values[kDeltaSoftplus], values[kHasD], values[kHasDeltaBias]);
}

std::string SS2DScanOp::validateShapes(scan::TensorDesc const (&in)[scan::kNumInputs]) {
  std::string problem = scan::validate_ss2d_ranks(in);
  if (problem.empty()) problem = scan::validate_ss2d_dims(in);  // the dimensions known at this point
  return problem;
}

std::string SS2DScanOp::validateInputs(scan::TensorDesc const (&in)[scan::kNumInputs],
                                       DynamicPluginTensorDesc const* /*bounds*/) {
  return scan::validate_ss2d_signature(in);
}

char const* SS2DScanOp::launch(int32_t const (&attrs)[kNumAttrs], PluginTensorDesc const* inputDesc,
                               void const* const (&in)[scan::kNumInputs], float* y, scan::ScanDtype dtype,
                               cudaStream_t stream) {
  Dims const& u = inputDesc[scan::kU].dims;
  scan::SS2DArgs p;
  p.shape.batch = u.d[0];
  p.shape.dim = u.d[1];
  p.shape.height = u.d[2];
  p.shape.width = u.d[3];
  p.shape.nstate = inputDesc[scan::kA].dims.d[1];
  p.layout = static_cast<scan::SS2DLayout>(attrs[kLayout]);
  scan::set_operands(p, in, y, dtype, attrs[kDeltaSoftplus] != 0);
  return scan::launch_ss2d_scan(p, stream);
}

template class ScanPlugin<SS2DScanOp>;
template class ScanPluginCreator<SS2DScanOp>;

}  // namespace trt
}  // namespace remamber
