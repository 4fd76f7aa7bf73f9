// gpu_check's ABI driver for libremamber_scan_cuda.so: exact-size cudaMalloc per tensor (so
// compute-sanitizer sees any out-of-bounds access; a caching allocator would hide it), a float64
// host reference, NaN-poisoned output, and calls that must be rejected with a message.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

typedef int (*ForwardFn)(const void*, const void*, const float*, const void*, const void*, const float*, const float*,
                         float*, int, int, int, int, int, int, int, void*);
typedef const char* (*LastErrorFn)(void);
typedef int (*VersionFn)(void);

#define CUDA_OK(x)                                                                                   \
  do {                                                                                               \
    cudaError_t e_ = (x);                                                                            \
    if (e_ != cudaSuccess) {                                                                         \
      std::fprintf(stderr, "CUDA error %s at line %d: %s\n", #x, __LINE__, cudaGetErrorString(e_)); \
      std::exit(3);                                                                                  \
    }                                                                                                \
  } while (0)

struct Case { int batch, channels, length, groups, nstate, dtype, softplus, with_D, with_bias; };

static float stored(int dtype, float x) {
  if (dtype == 1) return __half2float(__float2half(x));
  if (dtype == 2) return __bfloat162float(__float2bfloat16(x));
  return x;
}

static void* upload(int dtype, const std::vector<float>& v) {
  void* d = nullptr;
  size_t n = v.size();
  if (dtype == 0) {
    CUDA_OK(cudaMalloc(&d, n * 4));
    CUDA_OK(cudaMemcpy(d, v.data(), n * 4, cudaMemcpyHostToDevice));
  } else if (dtype == 1) {
    std::vector<__half> h(n);
    for (size_t i = 0; i < n; ++i) h[i] = __float2half(v[i]);
    CUDA_OK(cudaMalloc(&d, n * 2));
    CUDA_OK(cudaMemcpy(d, h.data(), n * 2, cudaMemcpyHostToDevice));
  } else {
    std::vector<__nv_bfloat16> h(n);
    for (size_t i = 0; i < n; ++i) h[i] = __float2bfloat16(v[i]);
    CUDA_OK(cudaMalloc(&d, n * 2));
    CUDA_OK(cudaMemcpy(d, h.data(), n * 2, cudaMemcpyHostToDevice));
  }
  return d;
}

struct Inputs {
  std::vector<float> u, delta, A, B, C, D, bias;
};

static Inputs make(const Case& k, std::mt19937& rng) {
  std::normal_distribution<float> nrm(0.f, 1.f);
  std::uniform_real_distribution<float> uni(0.f, 1.f);
  size_t nx = (size_t)k.batch * k.channels * k.length, nbc = (size_t)k.batch * k.groups * k.nstate * k.length;
  Inputs in;
  in.u.resize(nx); in.delta.resize(nx); in.B.resize(nbc); in.C.resize(nbc);
  in.A.resize((size_t)k.channels * k.nstate); in.D.resize(k.channels); in.bias.resize(k.channels);
  for (auto& x : in.u) x = stored(k.dtype, nrm(rng));
  for (auto& x : in.delta) x = stored(k.dtype, k.softplus ? uni(rng) * 4.f - 3.f : uni(rng) * 0.2f + 1e-3f);
  for (auto& x : in.B) x = stored(k.dtype, nrm(rng));
  for (auto& x : in.C) x = stored(k.dtype, nrm(rng));
  for (size_t i = 0; i < in.A.size(); ++i) in.A[i] = -std::exp(uni(rng) * 2.f - 1.f) * (float)(i % k.nstate + 1);
  for (auto& x : in.D) x = nrm(rng);
  for (auto& x : in.bias) x = k.softplus ? uni(rng) * 1.5f - 1.f : uni(rng) * 0.01f;
  return in;
}

static std::vector<double> reference(const Case& k, const Inputs& in) {
  std::vector<double> y((size_t)k.batch * k.channels * k.length);
  std::vector<double> h(k.nstate);
  int per_group = k.channels / k.groups;
  for (int b = 0; b < k.batch; ++b)
    for (int c = 0; c < k.channels; ++c) {
      int g = c / per_group;
      for (auto& x : h) x = 0.0;
      for (int t = 0; t < k.length; ++t) {
        size_t i = ((size_t)b * k.channels + c) * k.length + t;
        double dt = (double)in.delta[i] + (k.with_bias ? (double)in.bias[c] : 0.0);
        if (k.softplus) dt = dt <= 20.0 ? std::log1p(std::exp(dt)) : dt;
        double acc = 0.0;
        for (int n = 0; n < k.nstate; ++n) {
          size_t j = (((size_t)b * k.groups + g) * k.nstate + n) * k.length + t;
          h[n] = std::exp(dt * in.A[(size_t)c * k.nstate + n]) * h[n] + dt * in.B[j] * in.u[i];
          acc += in.C[j] * h[n];
        }
        y[i] = acc + (k.with_D ? (double)in.D[c] * in.u[i] : 0.0);
      }
    }
  return y;
}

int main(int argc, char** argv) {
  if (argc < 2) { std::fprintf(stderr, "usage: %s LIBRARY [quick]\n", argv[0]); return 2; }
  bool quick = argc > 2;
  void* handle = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!handle) { std::fprintf(stderr, "dlopen failed: %s\n", dlerror()); return 2; }
  ForwardFn fwd = (ForwardFn)dlsym(handle, "remamberSelectiveScanForward");
  LastErrorFn last = (LastErrorFn)dlsym(handle, "remamberSelectiveScanLastError");
  VersionFn version = (VersionFn)dlsym(handle, "remamberSelectiveScanVersion");
  if (!fwd || !last || !version) { std::fprintf(stderr, "missing ABI symbol\n"); return 2; }
  int failures = 0;
  std::printf("VERSION %d %s\n", version(), version() == 1 ? "PASS" : "FAIL");
  if (version() != 1) ++failures;
  // batch, channels, length, groups, nstate, dtype, softplus, D, bias
  std::vector<Case> cases = {
      {1, 8, 1, 4, 1, 0, 1, 1, 1},     {2, 8, 37, 4, 1, 1, 1, 1, 1},    {1, 12, 2049, 4, 16, 0, 1, 1, 0},
      {2, 6, 513, 2, 3, 2, 1, 0, 1},   {1, 4, 2048, 1, 2, 0, 0, 0, 0},  {1, 8, 1000, 8, 16, 1, 1, 0, 1},
      {1, 8, 4097, 4, 1, 0, 1, 1, 1},  {3, 16, 16387, 4, 1, 1, 1, 1, 1},
  };
  if (quick) cases.resize(5);
  std::mt19937 rng(12345);
  for (const Case& k : cases) {
    Inputs in = make(k, rng);
    void* u = upload(k.dtype, in.u); void* delta = upload(k.dtype, in.delta);
    void* B = upload(k.dtype, in.B); void* C = upload(k.dtype, in.C);
    float* A = (float*)upload(0, in.A);
    float* D = k.with_D ? (float*)upload(0, in.D) : nullptr;
    float* bias = k.with_bias ? (float*)upload(0, in.bias) : nullptr;
    size_t ny = (size_t)k.batch * k.channels * k.length;
    float* y = nullptr;
    CUDA_OK(cudaMalloc(&y, ny * 4));
    CUDA_OK(cudaMemset(y, 0xFF, ny * 4));  // all-ones bits: NaN, so unwritten elements show
    int rc = fwd(u, delta, A, B, C, D, bias, y, k.batch, k.channels, k.length, k.groups, k.nstate, k.dtype, k.softplus, nullptr);
    cudaError_t sync = cudaDeviceSynchronize();
    std::vector<float> out(ny);
    CUDA_OK(cudaMemcpy(out.data(), y, ny * 4, cudaMemcpyDeviceToHost));
    std::vector<double> ref = reference(k, in);
    double num = 0, den = 0, maxdiff = 0, maxref = 0;
    long unwritten = 0;
    for (size_t i = 0; i < ny; ++i) {
      if (!std::isfinite(out[i])) { ++unwritten; continue; }
      double d = out[i] - ref[i];
      num += d * d; den += ref[i] * ref[i];
      maxdiff = std::fmax(maxdiff, std::fabs(d)); maxref = std::fmax(maxref, std::fabs(ref[i]));
    }
    double rel = std::sqrt(num / den), ratio = maxdiff / maxref;
    const char* msg = rc ? last() : "";
    if (!msg) msg = "(null)";
    bool ok = rc == 0 && sync == cudaSuccess && unwritten == 0 && rel <= 1e-5 && ratio <= 1e-5;
    std::printf("CASE b=%d c=%d L=%d G=%d N=%d dtype=%d softplus=%d D=%d bias=%d rc=%d sync=%s rel_l2=%.3e max_ratio=%.3e nonfinite=%ld %s%s%s\n",
                k.batch, k.channels, k.length, k.groups, k.nstate, k.dtype, k.softplus, k.with_D, k.with_bias, rc,
                cudaGetErrorName(sync), rel, ratio, unwritten, ok ? "PASS" : "FAIL", rc ? " msg=" : "", msg);
    if (!ok) ++failures;
    for (void* p : {u, delta, B, C, (void*)A, (void*)D, (void*)bias, (void*)y}) if (p) CUDA_OK(cudaFree(p));
  }
  // Calls the contract rejects: they must return nonzero with a message, and touch no memory.
  {
    Case k = {1, 8, 64, 4, 1, 0, 1, 1, 1};
    Inputs in = make(k, rng);
    void* u = upload(0, in.u); void* delta = upload(0, in.delta); void* B = upload(0, in.B); void* C = upload(0, in.C);
    float* A = (float*)upload(0, in.A); float* D = (float*)upload(0, in.D); float* bias = (float*)upload(0, in.bias);
    float* y = nullptr;
    CUDA_OK(cudaMalloc(&y, 8 * 64 * 4));
    struct Bad { const char* name; int batch, channels, length, groups, nstate, dtype; } bad[] = {
        {"nstate=0", 1, 8, 64, 4, 0, 0},   {"nstate=17", 1, 8, 64, 4, 17, 0}, {"groups=3 does not divide 8", 1, 8, 64, 3, 1, 0},
        {"dtype=7", 1, 8, 64, 4, 1, 7},    {"length=-1", 1, 8, -1, 4, 1, 0},  {"batch=-2", -2, 8, 64, 4, 1, 0},
    };
    for (const Bad& b : bad) {
      int rc = fwd(u, delta, A, B, C, D, bias, y, b.batch, b.channels, b.length, b.groups, b.nstate, b.dtype, 1, nullptr);
      const char* msg = rc ? last() : "";
      bool ok = rc != 0 && msg && msg[0];
      std::printf("REJECT %s rc=%d msg=\"%s\" %s\n", b.name, rc, msg ? msg : "(null)", ok ? "PASS" : "FAIL");
      if (!ok) ++failures;
    }
    CUDA_OK(cudaDeviceSynchronize());
    for (void* p : {u, delta, B, C, (void*)A, (void*)D, (void*)bias, (void*)y}) CUDA_OK(cudaFree(p));
  }
  std::printf("DRIVER %s (%d failures)\n", failures ? "FAIL" : "PASS", failures);
  return failures ? 1 : 0;
}
