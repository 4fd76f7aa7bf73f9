// The oldest ONNX Runtime C API the remamber custom-op library asks for, shared by every op it
// registers. A runtime serves any older API version unchanged (the C API is versioned and
// append-only), so asking for the oldest one the code needs lets one build load into ONNX Runtime
// 1.17 to today's release, whatever headers it was compiled with.
//
// Why 17 (ONNX Runtime 1.17): the newest C API functions the library calls, directly or through the
// C++ wrappers, are KernelContext_ParallelFor (the CPU kernels' thread pool) and ShapeInferContext_*
// (InferOutputShape), both "since 1.17" in onnxruntime_c_api.h; the others date from 1.15 or earlier
// (KernelInfo_GetNodeName 1.15, KernelInfo_GetInputName / GetInputTypeInfo 1.14,
// KernelContext_GetGPUComputeStream before 1.11). The status-returning entry points CreateKernelV2 /
// KernelComputeV2 are honoured by runtimes from 1.16. Calling a function newer than this version
// reads past the runtime's OrtApi table: raise the number with any such call (and the check below).
//
// Every op must also set OrtCustomOp::version to this number (Ort::CustomOpBase sets the headers'
// ORT_API_VERSION): ONNX Runtime refuses a custom op whose version is above its own API
// ("Unsupported version '21' in custom op", seen with the 1.21 headers in onnxruntime 1.17.0).
// scripts/check_ort_floor.py proves both sides: onnxruntime 1.17.0 runs the op, 1.16.3 refuses it.
#pragma once

#include <stdint.h>

namespace remamber {
namespace ort {

constexpr uint32_t kOrtApiFloor = 17;
constexpr const char* kOrtFloorRelease = "1.17";

}  // namespace ort
}  // namespace remamber
