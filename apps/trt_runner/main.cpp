// remamber_trt_runner: run a TensorRT engine of ReMamber from C++ (no Python, no libtorch).
//
//   remamber-deploy prepare-inputs --sample cat --size 480 --out inputs/
//   remamber_trt_runner --engine remamber_480_fp16.engine --plugin libremamber_trt_plugin.so
//       --inputs inputs/ --warmup 10 --iterations 100 --output logits.npy    (one command line)
//   remamber-deploy compare remamber_480_fp16.onnx --runtime-logits logits.npy --inputs inputs/
//
// Loads TensorRT (libnvinfer) and the CUDA runtime at run time, registers the plugin library with
// IPluginRegistry::loadLibrary, deserializes the engine, binds each engine input to <inputs>/<name>.npy
// (names = the ONNX input names), runs warm-up iterations, then a timed loop (CUDA events around
// enqueueV3 = GPU compute time; host wall clock around enqueue + synchronize = latency), prints
// trtexec-style statistics and writes the logits as .npy.
// Exit status: 0 done, 2 bad arguments or input files, 3 TensorRT / CUDA / plugin library missing,
// 1 TensorRT or CUDA failed while running.
#include <NvInferRuntime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "npy.h"
#include "runtime_loader.h"
#include "stats.h"

namespace {

using remamber::npy::Array;
using remamber::runner::Cuda;
using remamber::runner::LoadError;

constexpr int kExitFailed = 1, kExitUsage = 2, kExitMissing = 3;

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Options {
  std::string engine, inputs, output, output_name = "logits", libnvinfer, libcudart, copy_in, copy_out;
  std::vector<std::string> plugins;
  std::map<std::string, std::string> input_files;
  int warmup = 10, iterations = 100;
  double duration_s = 0.0;
};

void usage(FILE* out) {
  std::fputs(
      "usage: remamber_trt_runner --engine FILE --plugin LIB [--inputs DIR] [--input NAME=FILE ...]\n"
      "                           [--warmup N] [--iterations N] [--duration S] [--output FILE.npy]\n"
      "                           [--output-name NAME] [--libnvinfer PATH] [--libcudart PATH]\n"
      "       remamber_trt_runner --copy-npy IN.npy OUT.npy   (read and write back through the runner's .npy code)\n"
      "  --inputs DIR    <DIR>/<input name>.npy for each engine input (remamber-deploy prepare-inputs --out DIR)\n"
      "  --plugin LIB    plugin library to register (default $REMAMBER_TRT_PLUGIN_LIB); repeatable\n"
      "  --warmup N      untimed iterations first (default 10)\n"
      "  --iterations N  timed iterations (default 100); --duration S keeps going until S seconds have passed\n"
      "  --output FILE   write the output --output-name (default logits) as .npy\n"
      "  --libnvinfer / --libcudart  library paths (else $REMAMBER_LIBNVINFER / $REMAMBER_LIBCUDART, then the loader's search)\n",
      out);
}

int to_int(std::string const& flag, std::string const& value, int minimum) {
  try {
    size_t used = 0;
    long v = std::stol(value, &used);
    if (used == value.size() && v >= minimum && v <= 1000000000) return static_cast<int>(v);
  } catch (std::exception const&) {
  }
  throw UsageError(flag + " " + value + ": expected an integer >= " + std::to_string(minimum));
}

Options parse(int argc, char** argv) {
  Options o;
  if (char const* env = std::getenv("REMAMBER_TRT_PLUGIN_LIB")) {
    if (*env) o.plugins.push_back(env);
  }
  bool plugin_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError(a + " needs a value");
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      usage(stdout);
      std::exit(0);
    } else if (a == "--engine") o.engine = value();
    else if (a == "--plugin") {
      if (!plugin_given) o.plugins.clear();  // an explicit --plugin replaces the environment's
      plugin_given = true;
      o.plugins.push_back(value());
    } else if (a == "--inputs") o.inputs = value();
    else if (a == "--input") {
      const std::string v = value();
      const size_t eq = v.find('=');
      if (eq == std::string::npos || eq == 0) throw UsageError("--input " + v + ": expected NAME=FILE.npy");
      o.input_files[v.substr(0, eq)] = v.substr(eq + 1);
    } else if (a == "--output") o.output = value();
    else if (a == "--output-name") o.output_name = value();
    else if (a == "--warmup") o.warmup = to_int(a, value(), 0);
    else if (a == "--iterations") o.iterations = to_int(a, value(), 1);
    else if (a == "--duration") {
      const std::string v = value();
      try {
        o.duration_s = std::stod(v);
      } catch (std::exception const&) {
        o.duration_s = -1;
      }
      if (!(o.duration_s >= 0)) throw UsageError("--duration " + v + ": expected seconds >= 0");
    } else if (a == "--libnvinfer") o.libnvinfer = value();
    else if (a == "--libcudart") o.libcudart = value();
    else if (a == "--copy-npy") {
      o.copy_in = value();
      o.copy_out = value();
    } else throw UsageError("unknown argument " + a + " (see --help)");
  }
  if (o.copy_in.empty()) {
    if (o.engine.empty()) throw UsageError("--engine FILE is required (an engine from remamber-deploy build-engine or trtexec)");
    if (o.plugins.empty())
      throw UsageError("--plugin LIB is required (libremamber_trt_plugin.so; or set REMAMBER_TRT_PLUGIN_LIB)");
  }
  return o;
}

class Logger : public nvinfer1::ILogger {
 public:
  void log(Severity severity, char const* msg) noexcept override {
    if (severity <= Severity::kWARNING)
      std::fprintf(stderr, "[TRT %s] %s\n", severity == Severity::kWARNING ? "W" : "E", msg);
  }
};

std::vector<char> read_file(std::string const& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw UsageError(path + ": cannot open the engine file");
  std::vector<char> data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (data.empty()) throw UsageError(path + ": the engine file is empty");
  return data;
}

// The .npy dtype that carries a TensorRT tensor type ("" when the runner does not handle it).
std::string descr_of(nvinfer1::DataType t) {
  switch (t) {
    case nvinfer1::DataType::kFLOAT: return "<f4";
    case nvinfer1::DataType::kHALF: return "<f2";
    case nvinfer1::DataType::kINT32: return "<i4";
    case nvinfer1::DataType::kINT64: return "<i8";
    case nvinfer1::DataType::kINT8: return "|i1";
    case nvinfer1::DataType::kUINT8: return "|u1";
    case nvinfer1::DataType::kBOOL: return "|b1";
    default: return "";
  }
}

std::string dims_str(std::vector<int64_t> const& d) {
  std::string s = "(";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + ")";
}

struct DeviceBuffer {
  Cuda const* cuda = nullptr;
  void* ptr = nullptr;
  size_t bytes = 0;
  DeviceBuffer() = default;
  DeviceBuffer(DeviceBuffer const&) = delete;
  DeviceBuffer& operator=(DeviceBuffer const&) = delete;
  ~DeviceBuffer() {
    if (ptr) cuda->free(ptr);
  }
};

int run(Options const& o) {
  // TensorRT and the CUDA runtime first: without them nothing else can run.
  std::string nvinfer_name;
  void* nvinfer = remamber::runner::open_first(
      remamber::runner::candidates(o.libnvinfer, "REMAMBER_LIBNVINFER",
                                   {"libnvinfer.so." + std::to_string(NV_TENSORRT_MAJOR), "libnvinfer.so"}),
      "the TensorRT runtime library (libnvinfer)",
      "Install TensorRT " + std::to_string(NV_TENSORRT_MAJOR) +
          ".x (JetPack ships it; on x86 the TensorRT tar/deb packages), add its lib folder to LD_LIBRARY_PATH, "
          "or pass --libnvinfer PATH. TensorRT-RTX cannot run this runner's engines.",
      &nvinfer_name);
  using CreateRuntime = void* (*)(void*, int32_t);
  auto create = reinterpret_cast<CreateRuntime>(remamber::runner::symbol(nvinfer, "createInferRuntime_INTERNAL", nvinfer_name));
  Cuda cuda = Cuda::load(o.libcudart);

  Logger logger;
  std::unique_ptr<nvinfer1::IRuntime> runtime(static_cast<nvinfer1::IRuntime*>(create(&logger, NV_TENSORRT_VERSION)));
  if (!runtime) throw LoadError(nvinfer_name + " refused to create a runtime (TensorRT version mismatch with the headers, "
                                "built for " + std::to_string(NV_TENSORRT_MAJOR) + "." + std::to_string(NV_TENSORRT_MINOR) + "?)");
  for (std::string const& plugin : o.plugins) {
    if (runtime->getPluginRegistry().loadLibrary(plugin.c_str()) == nullptr)
      throw LoadError("TensorRT could not load the plugin library " + plugin +
                      " (missing file, or not a getCreators plugin library: build it with scripts/build_native.sh)");
  }
  const std::vector<char> blob = read_file(o.engine);
  std::unique_ptr<nvinfer1::ICudaEngine> engine(runtime->deserializeCudaEngine(blob.data(), blob.size()));
  if (!engine) throw std::runtime_error(o.engine + ": TensorRT could not deserialize the engine (see its log above)");
  std::unique_ptr<nvinfer1::IExecutionContext> context(engine->createExecutionContext());
  if (!context) throw std::runtime_error("createExecutionContext failed");

  std::map<std::string, DeviceBuffer> buffers;
  std::vector<std::string> outputs;
  for (int32_t i = 0; i < engine->getNbIOTensors(); ++i) {
    const std::string name = engine->getIOTensorName(i);
    if (engine->getTensorIOMode(name.c_str()) != nvinfer1::TensorIOMode::kINPUT) {
      outputs.push_back(name);
      continue;
    }
    auto it = o.input_files.find(name);
    const std::string path = it != o.input_files.end() ? it->second
                             : o.inputs.empty()       ? throw UsageError("engine input '" + name + "' has no file: pass --inputs DIR or --input " + name + "=FILE.npy")
                                                      : o.inputs + "/" + name + ".npy";
    Array a = remamber::npy::load(path);
    const std::string want = descr_of(engine->getTensorDataType(name.c_str()));
    if (a.descr != want)
      throw UsageError(path + " holds " + a.descr + " but the engine input '" + name + "' takes " + want);
    nvinfer1::Dims dims{};
    dims.nbDims = static_cast<int32_t>(a.shape.size());
    for (size_t k = 0; k < a.shape.size(); ++k) dims.d[k] = a.shape[k];
    if (!context->setInputShape(name.c_str(), dims))
      throw UsageError(path + ": shape " + dims_str(a.shape) + " is outside the engine's optimization profile for '" + name + "'");
    DeviceBuffer& buf = buffers[name];
    buf.cuda = &cuda;
    buf.bytes = a.data.size();
    cuda.check(cuda.malloc(&buf.ptr, std::max<size_t>(buf.bytes, 1)), "cudaMalloc");
    cuda.check(cuda.memcpy(buf.ptr, a.data.data(), buf.bytes, cudaMemcpyHostToDevice), "cudaMemcpy (input)");
    context->setTensorAddress(name.c_str(), buf.ptr);
    std::printf("input  %-16s %s %s <- %s\n", name.c_str(), a.descr.c_str(), dims_str(a.shape).c_str(), path.c_str());
  }
  std::map<std::string, Array> host_out;
  for (std::string const& name : outputs) {
    const nvinfer1::Dims d = context->getTensorShape(name.c_str());
    Array a;
    a.descr = descr_of(engine->getTensorDataType(name.c_str()));
    if (a.descr.empty()) throw std::runtime_error("output '" + name + "' has a type the runner cannot write");
    for (int32_t k = 0; k < d.nbDims; ++k) a.shape.push_back(d.d[k]);
    if (a.size() < 0) throw std::runtime_error("output '" + name + "' has an unresolved shape " + dims_str(a.shape));
    a.data.resize(static_cast<size_t>(a.size()) * a.itemsize());
    DeviceBuffer& buf = buffers[name];
    buf.cuda = &cuda;
    buf.bytes = a.data.size();
    cuda.check(cuda.malloc(&buf.ptr, std::max<size_t>(buf.bytes, 1)), "cudaMalloc");
    context->setTensorAddress(name.c_str(), buf.ptr);
    host_out[name] = std::move(a);
  }

  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  cuda.check(cuda.streamCreate(&stream), "cudaStreamCreate");
  cuda.check(cuda.eventCreate(&start), "cudaEventCreate");
  cuda.check(cuda.eventCreate(&stop), "cudaEventCreate");
  auto once = [&]() {
    if (!context->enqueueV3(stream)) throw std::runtime_error("enqueueV3 failed (see the TensorRT log above)");
  };
  for (int i = 0; i < o.warmup; ++i) once();
  cuda.check(cuda.streamSynchronize(stream), "cudaStreamSynchronize (warm-up)");

  std::vector<double> gpu_ms, host_ms;
  const auto loop_start = std::chrono::steady_clock::now();
  for (int i = 0;; ++i) {
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - loop_start).count();
    if (i >= o.iterations && elapsed >= o.duration_s) break;
    const auto t0 = std::chrono::steady_clock::now();
    cuda.check(cuda.eventRecord(start, stream), "cudaEventRecord");
    once();
    cuda.check(cuda.eventRecord(stop, stream), "cudaEventRecord");
    cuda.check(cuda.eventSynchronize(stop), "cudaEventSynchronize");
    const auto t1 = std::chrono::steady_clock::now();
    float ms = 0;
    cuda.check(cuda.eventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    gpu_ms.push_back(ms);
    host_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  const double total_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - loop_start).count();
  for (auto& [name, a] : host_out)
    cuda.check(cuda.memcpy(a.data.data(), buffers[name].ptr, a.data.size(), cudaMemcpyDeviceToHost), "cudaMemcpy (output)");
  cuda.eventDestroy(start);
  cuda.eventDestroy(stop);
  cuda.streamDestroy(stream);

  using remamber::stats::format;
  using remamber::stats::summarize;
  const auto gpu = summarize(gpu_ms), host = summarize(host_ms);
  std::printf("TensorRT %s (headers %d.%d.%d), %s, engine %s\n", nvinfer_name.c_str(), NV_TENSORRT_MAJOR, NV_TENSORRT_MINOR,
              NV_TENSORRT_PATCH, cuda.library.c_str(), o.engine.c_str());
  std::printf("Timing: %d warm-up, %zu timed iterations in %.3f s (%.2f qps)\n", o.warmup, gpu.n, total_s,
              static_cast<double>(gpu.n) / total_s);
  std::printf("%s\n", format("Latency", host).c_str());
  std::printf("%s\n", format("GPU Compute Time", gpu).c_str());
  std::printf("Coefficient of variation: GPU %.2f %%, latency %.2f %%%s\n", gpu.cv_percent, host.cv_percent,
              gpu.cv_percent > remamber::stats::kCvWarnPercent ? "  (unstable: above 2.5 %; lock clocks, close other work)" : "");
  if (!o.output.empty()) {
    auto it = host_out.find(o.output_name);
    if (it == host_out.end()) {
      std::string names;
      for (auto const& kv : host_out) names += " " + kv.first;
      throw UsageError("the engine has no output '" + o.output_name + "' (outputs:" + names + "); use --output-name");
    }
    remamber::npy::save(o.output, it->second);
    std::printf("output %s %s %s -> %s\n", o.output_name.c_str(), it->second.descr.c_str(), dims_str(it->second.shape).c_str(),
                o.output.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    if (!o.copy_in.empty()) {
      remamber::npy::save(o.copy_out, remamber::npy::load(o.copy_in));
      return 0;
    }
    return run(o);
  } catch (UsageError const& e) {
    std::fprintf(stderr, "remamber_trt_runner: error: %s\n", e.what());
    return kExitUsage;
  } catch (remamber::npy::Error const& e) {
    std::fprintf(stderr, "remamber_trt_runner: error: %s\n", e.what());
    return kExitUsage;
  } catch (LoadError const& e) {
    std::fprintf(stderr, "remamber_trt_runner: error: %s\n", e.what());
    return kExitMissing;
  } catch (std::exception const& e) {
    std::fprintf(stderr, "remamber_trt_runner: error: %s\n", e.what());
    return kExitFailed;
  }
}
