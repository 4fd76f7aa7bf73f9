// fp32 instantiations of the selective-scan kernel (one file per dtype so builds run in parallel).
#include "scan_kernel.cuh"

namespace remamber {
namespace scan {

cudaError_t launch_selective_scan_fp32(const ScanCudaParams& params, cudaStream_t stream) {
  return cuda_detail::launch_typed<float>(params, stream);
}

}  // namespace scan
}  // namespace remamber
