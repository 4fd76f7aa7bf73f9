// What the two C entry points of libremamber_scan_cuda.so (scan_c_api.cu: SelectiveScan, ss2d_c_api.cu:
// SS2DScan) do the same way: the delta_softplus check, the operand wiring, the launch and the
// thread-local last-error bookkeeping. Why one place: both ABIs promise the same conventions (0 / 1
// return, "<entry point>: <problem>" messages, per-thread last error), so they must not drift apart.
// Each entry point keeps its own signature, dimension check, shape fields and error string.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "c_api_status.h"
#include "scan_operands.h"

namespace remamber {
namespace scan {
namespace capi {

// One forward call: `bad_dims` is the op's own dimension check (nullptr when fine), `args` holds the
// op's shape already, `launch` is the op's launcher (nullptr or a message). Returns 0 or 1.
template <class Args, class Launch>
int forward_call(std::string& last_error, const char* entry, const char* bad_dims, Args& args, const void* u,
                 const void* delta, const float* A, const void* B, const void* C, const float* D,
                 const float* delta_bias, float* y, int dtype, int delta_softplus, void* stream, Launch launch) {
  if (bad_dims != nullptr) return finish(last_error, entry, bad_dims);
  if (delta_softplus != 0 && delta_softplus != 1) return finish(last_error, entry, "delta_softplus must be 0 or 1");
  const void* const in[kNumInputs] = {u, delta, A, B, C, D, delta_bias};
  set_operands(args, in, y, static_cast<ScanDtype>(dtype), delta_softplus != 0);  // dtype: checked by the launcher
  return finish(last_error, entry, launch(args, static_cast<cudaStream_t>(stream)));
}

}  // namespace capi
}  // namespace scan
}  // namespace remamber
