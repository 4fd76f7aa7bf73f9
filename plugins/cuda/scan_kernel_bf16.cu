// bf16 instantiations of the selective-scan kernel (one file per dtype so builds run in parallel).
#include "scan_kernel.cuh"

namespace remamber {
namespace scan {

cudaError_t launch_selective_scan_bf16(const ScanCudaParams& params, cudaStream_t stream) {
  return cuda_detail::launch_typed<__nv_bfloat16>(params, stream);
}

}  // namespace scan
}  // namespace remamber
