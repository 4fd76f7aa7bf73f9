// remamber_plugin_harness: drives the TensorRT plugin library's runtime path as TensorRT would, with
// no TensorRT runtime installed (only its headers). The GPU machine has CUDA but no TensorRT, so this
// is how the plugin's enqueue path runs there (issue #9, item 2):
//   dlopen(libremamber_trt_plugin.so) -> setLoggerFinder -> getCreators -> the creator of
//   remamber::SelectiveScan v1 -> createPlugin(fields as the ONNX parser passes them: delta_softplus,
//   has_D, has_delta_bias, each kINT32, phase kBUILD) -> supportsFormatCombination /
//   getOutputDataTypes / configurePlugin / getWorkspaceSize (build side) -> clone -> createPlugin again
//   in the kRUNTIME phase from getFieldsToSerialize (what an engine stores) -> attachToContext (a minimal
//   IPluginResourceContext) -> onShapeChange -> enqueue on a stream with device buffers, the output
//   NaN-poisoned first -> compared with a float64 host loop of the op contract.
// One JSON line per case on stdout:
//   {"case":..., "dtype":..., "has_D":..., "has_delta_bias":..., "shape":[B, KD, L, G, N], "max_rel_err":..., "pass":...}
// Exit status 0 only when every case passes (1: a case failed, 2: bad usage or the library cannot be used).
// Usage: remamber_plugin_harness --plugin <path/libremamber_trt_plugin.so> [--quick]
// (--quick leaves out the two large model shapes; runnable under compute-sanitizer either way.)
#include <NvInferRuntime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace nvinfer1;

// ---- TensorRT stand-ins: a logger (the plugin reports problems through it) and a resource context
class StderrLogger : public ILogger {
 public:
  void log(Severity severity, AsciiChar const* msg) noexcept override {
    if (severity <= Severity::kWARNING) std::fprintf(stderr, "[plugin %s] %s\n", severity <= Severity::kERROR ? "E" : "W", msg);
    if (severity <= Severity::kERROR) ++errors;
  }
  int errors = 0;
};
StderrLogger gLogger;

class Finder : public ILoggerFinder {
 public:
  ILogger* findLogger() override { return &gLogger; }
};
Finder gFinder;

// What TensorRT hands attachToContext: the plugin asks it for nothing, so both answers are null.
class MinimalResourceContext : public IPluginResourceContext {
 public:
  IGpuAllocator* getGpuAllocator() const noexcept override { return nullptr; }
  IErrorRecorder* getErrorRecorder() const noexcept override { return nullptr; }
};

int fail_usage(std::string const& msg) {
  std::fprintf(stderr, "remamber_plugin_harness: error: %s\n", msg.c_str());
  return 2;
}

#define CUDA_OK(call)                                                                                   \
  do {                                                                                                  \
    cudaError_t e_ = (call);                                                                            \
    if (e_ != cudaSuccess) {                                                                            \
      std::fprintf(stderr, "remamber_plugin_harness: %s failed: %s\n", #call, cudaGetErrorString(e_)); \
      return false;                                                                                     \
    }                                                                                                   \
  } while (0)

struct Case {
  std::string name;
  DataType dtype;
  int64_t batch, channels, length, groups, nstate;
  int32_t has_d, has_bias, softplus;
};

char const* dtype_name(DataType t) { return t == DataType::kFLOAT ? "float32" : t == DataType::kHALF ? "float16" : "bfloat16"; }
size_t elem_size(DataType t) { return t == DataType::kFLOAT ? 4 : 2; }

Dims dims_of(std::vector<int64_t> const& v) {
  Dims d{};
  d.nbDims = static_cast<int32_t>(v.size());
  for (size_t i = 0; i < v.size(); ++i) d.d[i] = v[i];
  return d;
}

// Activation values rounded to the tensor's dtype: `bytes` gets the encoding, `exact` the fp32 value
// the kernel will read, so the float64 reference sees the same inputs.
void encode(std::vector<float> const& v, DataType t, std::vector<uint8_t>& bytes, std::vector<float>& exact) {
  bytes.resize(v.size() * elem_size(t));
  exact.resize(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if (t == DataType::kFLOAT) {
      std::memcpy(bytes.data() + 4 * i, &v[i], 4);
      exact[i] = v[i];
    } else if (t == DataType::kHALF) {
      const __half h = __float2half_rn(v[i]);
      std::memcpy(bytes.data() + 2 * i, &h, 2);
      exact[i] = __half2float(h);
    } else {
      const __nv_bfloat16 h = __float2bfloat16_rn(v[i]);
      std::memcpy(bytes.data() + 2 * i, &h, 2);
      exact[i] = __bfloat162float(h);
    }
  }
}

IPluginCreatorV3One* find_creator(void* lib, std::string& why) {
  using GetCreators = IPluginCreatorInterface* const* (*)(int32_t&);
  using SetLoggerFinder = void (*)(ILoggerFinder*);
  if (auto set_finder = reinterpret_cast<SetLoggerFinder>(dlsym(lib, "setLoggerFinder"))) set_finder(&gFinder);
  auto get_creators = reinterpret_cast<GetCreators>(dlsym(lib, "getCreators"));
  if (!get_creators) {
    why = "the library exports no getCreators";
    return nullptr;
  }
  int32_t n = 0;
  IPluginCreatorInterface* const* creators = get_creators(n);
  for (int32_t i = 0; creators && i < n; ++i) {
    // TensorRT identifies the creator interface by its InterfaceInfo (no RTTI across libraries).
    InterfaceInfo info = creators[i]->getInterfaceInfo();
    if (std::strcmp(info.kind, "PLUGIN CREATOR_V3ONE") != 0) continue;
    auto* c = static_cast<IPluginCreatorV3One*>(creators[i]);
    if (std::strcmp(c->getPluginName(), "SelectiveScan") == 0 && std::strcmp(c->getPluginVersion(), "1") == 0 &&
        std::strcmp(c->getPluginNamespace(), "remamber") == 0)
      return c;
  }
  why = "getCreators lists no IPluginCreatorV3One for remamber::SelectiveScan version 1";
  return nullptr;
}

// Runs one case through the plugin; prints its JSON line; returns whether it passed.
bool run_case(IPluginCreatorV3One* creator, Case const& k, unsigned seed) {
  const int gl_errors_before = gLogger.errors;
  std::string problem;
  // ---- inputs (host) ----
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const size_t io = static_cast<size_t>(k.batch * k.channels * k.length);
  const size_t bc = static_cast<size_t>(k.batch * k.groups * k.nstate * k.length);
  std::vector<float> u(io), delta(io), B(bc), C(bc), A(static_cast<size_t>(k.channels * k.nstate)),
      D(static_cast<size_t>(k.channels)), bias(static_cast<size_t>(k.channels));
  for (auto& x : u) x = normal(gen);
  for (auto& x : delta) x = k.softplus ? 0.5f * normal(gen) - 1.0f : 0.25f * std::fabs(normal(gen)) + 0.01f;
  for (auto& x : B) x = normal(gen);
  for (auto& x : C) x = normal(gen);
  for (auto& x : A) x = -std::exp(0.5f * normal(gen));
  for (auto& x : D) x = normal(gen);
  for (auto& x : bias) x = k.softplus ? 0.5f * normal(gen) : 0.1f * std::fabs(normal(gen));
  std::vector<uint8_t> ub, db, Bb, Cb;
  std::vector<float> ue, de, Be, Ce;
  encode(u, k.dtype, ub, ue);
  encode(delta, k.dtype, db, de);
  encode(B, k.dtype, Bb, Be);
  encode(C, k.dtype, Cb, Ce);

  // ---- plugin objects, as TensorRT creates them ----
  int32_t softplus = k.softplus, has_d = k.has_d, has_bias = k.has_bias;
  std::vector<PluginField> fields{PluginField("delta_softplus", &softplus, PluginFieldType::kINT32, 1),
                                  PluginField("has_D", &has_d, PluginFieldType::kINT32, 1),
                                  PluginField("has_delta_bias", &has_bias, PluginFieldType::kINT32, 1)};
  PluginFieldCollection fc{static_cast<int32_t>(fields.size()), fields.data()};
  IPluginV3* built = creator->createPlugin(k.name.c_str(), &fc, TensorRTPhase::kBUILD);
  IPluginV3* cloned = nullptr;
  IPluginV3* runtime = nullptr;
  IPluginV3* attached = nullptr;
  void* dev[8] = {};
  void* workspace = nullptr;
  cudaStream_t stream = nullptr;
  std::vector<float> y(io);
  bool ok = true;

  // Input list in the ONNX node order: u, delta, A, B, C, then D and delta_bias only when present.
  std::vector<std::vector<int64_t>> shapes{{k.batch, k.channels, k.length},
                                           {k.batch, k.channels, k.length},
                                           {k.channels, k.nstate},
                                           {k.batch, k.groups, k.nstate, k.length},
                                           {k.batch, k.groups, k.nstate, k.length}};
  std::vector<DataType> types{k.dtype, k.dtype, DataType::kFLOAT, k.dtype, k.dtype};
  std::vector<void const*> host{ub.data(), db.data(), A.data(), Bb.data(), Cb.data()};
  std::vector<size_t> bytes{ub.size(), db.size(), A.size() * 4, Bb.size(), Cb.size()};
  if (k.has_d) {
    shapes.push_back({k.channels});
    types.push_back(DataType::kFLOAT);
    host.push_back(D.data());
    bytes.push_back(D.size() * 4);
  }
  if (k.has_bias) {
    shapes.push_back({k.channels});
    types.push_back(DataType::kFLOAT);
    host.push_back(bias.data());
    bytes.push_back(bias.size() * 4);
  }
  const int32_t nb_in = static_cast<int32_t>(shapes.size());
  std::vector<DynamicPluginTensorDesc> dyn(static_cast<size_t>(nb_in) + 1);
  std::vector<PluginTensorDesc> desc(static_cast<size_t>(nb_in) + 1);
  for (int32_t i = 0; i <= nb_in; ++i) {
    PluginTensorDesc& d = desc[static_cast<size_t>(i)];
    d.dims = dims_of(i < nb_in ? shapes[static_cast<size_t>(i)] : shapes[0]);
    d.type = i < nb_in ? types[static_cast<size_t>(i)] : DataType::kFLOAT;
    d.format = TensorFormat::kLINEAR;
    d.scale = 1.0f;
    dyn[static_cast<size_t>(i)].desc = d;
    dyn[static_cast<size_t>(i)].min = d.dims;
    dyn[static_cast<size_t>(i)].opt = d.dims;
    dyn[static_cast<size_t>(i)].max = d.dims;
  }

  do {
    if (!built) { problem = "createPlugin (kBUILD) returned null"; break; }
    auto* build = static_cast<IPluginV3OneBuild*>(built->getCapabilityInterface(PluginCapabilityType::kBUILD));
    if (!build) { problem = "no kBUILD capability"; break; }
    // The builder's checks: every position's format/type, the output type, configure, workspace.
    for (int32_t pos = 0; pos <= nb_in && problem.empty(); ++pos)
      if (!build->supportsFormatCombination(pos, dyn.data(), nb_in, 1))
        problem = "supportsFormatCombination rejected position " + std::to_string(pos);
    if (!problem.empty()) break;
    DataType out_type{};
    if (build->getOutputDataTypes(&out_type, 1, types.data(), nb_in) != 0 || out_type != DataType::kFLOAT) {
      problem = "getOutputDataTypes did not give float32";
      break;
    }
    if (build->configurePlugin(dyn.data(), nb_in, &dyn[static_cast<size_t>(nb_in)], 1) != 0) {
      problem = "configurePlugin failed";
      break;
    }
    const size_t ws = build->getWorkspaceSize(dyn.data(), nb_in, &dyn[static_cast<size_t>(nb_in)], 1);
    cloned = built->clone();
    if (!cloned) { problem = "clone returned null"; break; }
    // The engine stores getFieldsToSerialize; deserialization calls createPlugin in the runtime phase.
    auto* core = static_cast<IPluginV3OneRuntime*>(cloned->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    if (!core) { problem = "no kRUNTIME capability on the clone"; break; }
    PluginFieldCollection const* serial = core->getFieldsToSerialize();
    runtime = creator->createPlugin(k.name.c_str(), serial, TensorRTPhase::kRUNTIME);
    if (!runtime) { problem = "createPlugin (kRUNTIME) from the serialized fields returned null"; break; }
    auto* rt0 = static_cast<IPluginV3OneRuntime*>(runtime->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    MinimalResourceContext context;
    attached = rt0->attachToContext(&context);
    if (!attached) { problem = "attachToContext returned null"; break; }
    auto* rt = static_cast<IPluginV3OneRuntime*>(attached->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    if (rt->onShapeChange(desc.data(), nb_in, &desc[static_cast<size_t>(nb_in)], 1) != 0) {
      problem = "onShapeChange failed";
      break;
    }
    // ---- device buffers; y poisoned with NaN (all bits set) ----
    auto upload = [&]() -> bool {
      CUDA_OK(cudaStreamCreate(&stream));
      for (int32_t i = 0; i < nb_in; ++i) {
        CUDA_OK(cudaMalloc(&dev[i], bytes[static_cast<size_t>(i)]));
        CUDA_OK(cudaMemcpy(dev[i], host[static_cast<size_t>(i)], bytes[static_cast<size_t>(i)], cudaMemcpyHostToDevice));
      }
      CUDA_OK(cudaMalloc(&dev[7], io * sizeof(float)));
      CUDA_OK(cudaMemset(dev[7], 0xff, io * sizeof(float)));
      if (ws > 0) CUDA_OK(cudaMalloc(&workspace, ws));
      return true;
    };
    if (!upload()) { problem = "CUDA allocation or copy failed"; break; }
    void* outputs[1] = {dev[7]};
    void const* const* inputs = dev;
    if (rt->enqueue(desc.data(), &desc[static_cast<size_t>(nb_in)], inputs, outputs, workspace, stream) != 0) {
      problem = "enqueue returned an error";
      break;
    }
    auto download = [&]() -> bool {
      CUDA_OK(cudaStreamSynchronize(stream));
      CUDA_OK(cudaGetLastError());
      CUDA_OK(cudaMemcpy(y.data(), dev[7], io * sizeof(float), cudaMemcpyDeviceToHost));
      return true;
    };
    if (!download()) { problem = "the kernel failed (see the CUDA error above)"; break; }
  } while (false);

  // ---- float64 reference (the op contract) and the comparison ----
  double max_err = 0.0, scale = 1e-30;
  bool finite = true;
  const bool compared = problem.empty();
  if (compared) {
    std::vector<double> h(static_cast<size_t>(k.nstate));
    for (int64_t b = 0; b < k.batch; ++b)
      for (int64_t c = 0; c < k.channels; ++c) {
        const int64_t g = c / (k.channels / k.groups);
        std::fill(h.begin(), h.end(), 0.0);
        for (int64_t t = 0; t < k.length; ++t) {
          const size_t i = static_cast<size_t>((b * k.channels + c) * k.length + t);
          const double x = static_cast<double>(de[i]) + (k.has_bias ? bias[static_cast<size_t>(c)] : 0.0);
          const double dt = k.softplus ? (x <= 20.0 ? std::log1p(std::exp(x)) : x) : x;
          double acc = k.has_d ? static_cast<double>(D[static_cast<size_t>(c)]) * ue[i] : 0.0;
          for (int64_t n = 0; n < k.nstate; ++n) {
            const size_t j = static_cast<size_t>(((b * k.groups + g) * k.nstate + n) * k.length + t);
            h[static_cast<size_t>(n)] = std::exp(dt * A[static_cast<size_t>(c * k.nstate + n)]) * h[static_cast<size_t>(n)] +
                                        dt * Be[j] * ue[i];
            acc += Ce[j] * h[static_cast<size_t>(n)];
          }
          scale = std::fmax(scale, std::fabs(acc));
          if (!std::isfinite(y[i])) finite = false;
          max_err = std::fmax(max_err, std::fabs(y[i] - acc));
        }
      }
    if (!finite) problem = "output holds NaN/inf (an element was never written)";
  }
  const double rel = max_err / scale;
  if (problem.empty() && !(rel <= 1e-5)) problem = "max_rel_err above 1e-5";
  if (problem.empty() && gLogger.errors != gl_errors_before) problem = "the plugin logged an error";
  ok = problem.empty();

  for (void* p : dev)
    if (p) cudaFree(p);
  if (workspace) cudaFree(workspace);
  if (stream) cudaStreamDestroy(stream);
  delete attached;
  delete runtime;
  delete cloned;
  delete built;

  char rel_buf[32];
  std::snprintf(rel_buf, sizeof(rel_buf), "%.3g", rel);
  const std::string rel_text = compared && finite ? rel_buf : "null";  // JSON has no NaN
  std::printf(
      "{\"case\": \"%s\", \"dtype\": \"%s\", \"has_D\": %d, \"has_delta_bias\": %d, \"delta_softplus\": %d, "
      "\"shape\": [%lld, %lld, %lld, %lld, %lld], \"max_rel_err\": %s, \"pass\": %s%s%s%s}\n",
      k.name.c_str(), dtype_name(k.dtype), k.has_d, k.has_bias, k.softplus, static_cast<long long>(k.batch),
      static_cast<long long>(k.channels), static_cast<long long>(k.length), static_cast<long long>(k.groups),
      static_cast<long long>(k.nstate), rel_text.c_str(), ok ? "true" : "false",
      ok ? "" : ", \"error\": \"", ok ? "" : problem.c_str(), ok ? "" : "\"");
  std::fflush(stdout);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  std::string plugin;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--plugin" && i + 1 < argc) plugin = argv[++i];
    else if (a == "--quick") quick = true;
    else if (a == "-h" || a == "--help") {
      std::printf("usage: %s --plugin <path/libremamber_trt_plugin.so> [--quick]\n", argv[0]);
      return 0;
    } else {
      return fail_usage("unknown argument '" + a + "' (usage: --plugin <path/libremamber_trt_plugin.so> [--quick])");
    }
  }
  if (plugin.empty()) return fail_usage("--plugin <path/libremamber_trt_plugin.so> is required");
  void* lib = dlopen(plugin.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) return fail_usage(std::string("cannot dlopen the plugin: ") + dlerror());
  std::string why;
  IPluginCreatorV3One* creator = find_creator(lib, why);
  if (!creator) return fail_usage(why + " (" + plugin + ")");
  int dev_count = 0;
  if (cudaGetDeviceCount(&dev_count) != cudaSuccess || dev_count == 0)
    return fail_usage("no CUDA device: the harness runs the plugin's enqueue on a GPU");

  std::vector<Case> cases;
  // Every has_D / has_delta_bias combination for each input dtype (odd L: unaligned rows, partial chunk).
  for (DataType t : {DataType::kFLOAT, DataType::kHALF, DataType::kBF16})
    for (int32_t hd : {0, 1})
      for (int32_t hb : {0, 1})
        cases.push_back(Case{"combo", t, 2, 8, 1001, 4, 1, hd, hb, 1});
  // N = 16 without softplus.
  cases.push_back(Case{"n16_no_softplus", DataType::kFLOAT, 1, 12, 333, 3, 16, 1, 1, 0});
  cases.push_back(Case{"n16_no_softplus", DataType::kHALF, 1, 12, 333, 3, 16, 1, 1, 0});
  // Model shapes (batch x K*D x L, G = K = 4, N = 1, D and delta_bias, softplus): each launch shape.
  cases.push_back(Case{"model_warp_row_L225", DataType::kFLOAT, 1, 8192, 225, 4, 1, 1, 1, 1});
  if (!quick) {
    cases.push_back(Case{"model_1x1024x14400", DataType::kHALF, 1, 1024, 14400, 4, 1, 1, 1, 1});
    cases.push_back(Case{"model_4x4096x900", DataType::kFLOAT, 4, 4096, 900, 4, 1, 1, 1, 1});
  }
  int failed = 0;
  unsigned seed = 1234;
  for (Case const& k : cases)
    if (!run_case(creator, k, seed++)) ++failed;
  std::fprintf(stderr, "remamber_plugin_harness: %zu case(s), %d failed\n", cases.size(), failed);
  // The library stays loaded: creators are static objects of the library, torn down at exit.
  return failed == 0 ? 0 : 1;
}
