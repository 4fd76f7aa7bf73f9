// TensorRT and the CUDA runtime loaded at run time (dlopen + dlsym) rather than linked: the runner
// then builds and links anywhere TensorRT's headers exist (CI has no libnvinfer) and, on a machine
// without TensorRT or CUDA, stops with a message saying what was looked for and how to point at it.
// Only interfaces TensorRT 8.6+ has are used, so headers of one 10.x release work with another
// 10.x library (TensorRT keeps its ABI within a major version); build against your own release's
// headers (TensorRT_ROOT) to be exact.
#pragma once

#include <cuda_runtime_api.h>

#include <exception>
#include <string>
#include <vector>

namespace remamber {
namespace runner {

struct LoadError : std::exception {
  explicit LoadError(std::string m) : message(std::move(m)) {}
  char const* what() const noexcept override { return message.c_str(); }
  std::string message;
};

// The library search list: explicit path first, then the environment variable, then the defaults.
std::vector<std::string> candidates(std::string const& explicit_path, char const* env_var,
                                    std::vector<std::string> const& defaults);

// dlopen the first candidate that loads; throws LoadError listing every attempt and `hint`.
void* open_first(std::vector<std::string> const& names, std::string const& what, std::string const& hint,
                 std::string* chosen);
void* symbol(void* handle, char const* name, std::string const& library);  // throws LoadError

// The CUDA runtime functions the runner calls, resolved from libcudart.
struct Cuda {
  decltype(&::cudaMalloc) malloc = nullptr;
  decltype(&::cudaFree) free = nullptr;
  decltype(&::cudaMemcpy) memcpy = nullptr;
  decltype(&::cudaStreamCreate) streamCreate = nullptr;
  decltype(&::cudaStreamDestroy) streamDestroy = nullptr;
  decltype(&::cudaStreamSynchronize) streamSynchronize = nullptr;
  decltype(&::cudaEventCreate) eventCreate = nullptr;
  decltype(&::cudaEventDestroy) eventDestroy = nullptr;
  decltype(&::cudaEventRecord) eventRecord = nullptr;
  decltype(&::cudaEventSynchronize) eventSynchronize = nullptr;
  decltype(&::cudaEventElapsedTime) eventElapsedTime = nullptr;
  decltype(&::cudaGetErrorString) getErrorString = nullptr;
  std::string library;

  static Cuda load(std::string const& explicit_path);  // throws LoadError
  void check(cudaError_t status, char const* call) const;  // throws std::runtime_error naming the call
};

}  // namespace runner
}  // namespace remamber
