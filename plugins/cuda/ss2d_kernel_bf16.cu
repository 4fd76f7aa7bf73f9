// bf16 instantiations of the fused SS2DScan kernel (one file per dtype so builds run in parallel).
#include "ss2d_kernel.cuh"

namespace remamber {
namespace scan {

cudaError_t launch_ss2d_scan_bf16(const SS2DArgs& args, cudaStream_t stream) {
  return ss2d_cuda::launch_typed<__nv_bfloat16>(args, stream);
}

}  // namespace scan
}  // namespace remamber
