// See runtime_loader.h.
#include "runtime_loader.h"

#include <dlfcn.h>

#include <cstdlib>
#include <stdexcept>
#include <type_traits>

namespace remamber {
namespace runner {

std::vector<std::string> candidates(std::string const& explicit_path, char const* env_var,
                                    std::vector<std::string> const& defaults) {
  if (!explicit_path.empty()) return {explicit_path};
  if (char const* env = std::getenv(env_var)) {
    if (*env) return {env};
  }
  return defaults;
}

void* open_first(std::vector<std::string> const& names, std::string const& what, std::string const& hint,
                 std::string* chosen) {
  std::string tried;
  for (std::string const& name : names) {
    dlerror();
    if (void* h = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL)) {
      if (chosen) *chosen = name;
      return h;
    }
    char const* err = dlerror();
    tried += "\n  " + name + ": " + (err ? err : "not loadable");
  }
  throw LoadError(what + " not found; tried:" + tried + "\n" + hint);
}

void* symbol(void* handle, char const* name, std::string const& library) {
  dlerror();
  void* s = dlsym(handle, name);
  if (s == nullptr) {
    char const* err = dlerror();
    throw LoadError(library + " has no symbol " + name + (err ? std::string(" (") + err + ")" : std::string()) +
                    ": is it the right library?");
  }
  return s;
}

Cuda Cuda::load(std::string const& explicit_path) {
  Cuda c;
  void* h = open_first(candidates(explicit_path, "REMAMBER_LIBCUDART",
                                  {"libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0"}),
                       "the CUDA runtime library (libcudart)",
                       "Install the CUDA runtime (JetPack ships it; on x86 the CUDA toolkit or the nvidia-cuda-runtime "
                       "wheel), add its folder to LD_LIBRARY_PATH, or pass --libcudart PATH.",
                       &c.library);
  auto get = [&](auto& fn, char const* name) { fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(symbol(h, name, c.library)); };
  get(c.malloc, "cudaMalloc");
  get(c.free, "cudaFree");
  get(c.memcpy, "cudaMemcpy");
  get(c.streamCreate, "cudaStreamCreate");
  get(c.streamDestroy, "cudaStreamDestroy");
  get(c.streamSynchronize, "cudaStreamSynchronize");
  get(c.eventCreate, "cudaEventCreate");
  get(c.eventDestroy, "cudaEventDestroy");
  get(c.eventRecord, "cudaEventRecord");
  get(c.eventSynchronize, "cudaEventSynchronize");
  get(c.eventElapsedTime, "cudaEventElapsedTime");
  get(c.getErrorString, "cudaGetErrorString");
  return c;
}

void Cuda::check(cudaError_t status, char const* call) const {
  if (status != cudaSuccess) throw std::runtime_error(std::string(call) + " failed: " + getErrorString(status));
}

}  // namespace runner
}  // namespace remamber
