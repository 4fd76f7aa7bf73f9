// CPU scan kernels: the scalar paths of both ops (the original v1 kernel, and SS2DScan walking each
// direction by index) and the run-time choice between them and the SIMD paths (scan_cpu_simd.h).
#include "scan_cpu.h"

#include <stdlib.h>
#include <string.h>

#include <algorithm>

#include "scan_cpu_simd.h"
#include "scan_math.h"

namespace remamber {
namespace scan {
namespace {

// Time steps handled per tile: the tile's dt, dt*u and y stay in L1 while the N state dimensions
// are scanned one after the other (the state h[n] is carried from tile to tile).
constexpr int64_t kTile = 512;

struct F32 {
  static float load(const void* p, int64_t i) { return static_cast<const float*>(p)[i]; }
};
struct F16 {
  static float load(const void* p, int64_t i) { return half_bits_to_float(static_cast<const uint16_t*>(p)[i]); }
};
struct BF16 {
  static float load(const void* p, int64_t i) { return bf16_bits_to_float(static_cast<const uint16_t*>(p)[i]); }
};

template <typename Load>
void scan_rows(const ScanCpuArgs& a, int64_t row_begin, int64_t row_end) {
  const ScanShape& s = a.shape;
  const int64_t L = s.length;
  const int64_t N = s.nstate;
  const int64_t channels_per_group = s.channels / s.groups;
  float dt[kTile];
  float dt_u[kTile];
  float u_f[kTile];
  float y_acc[kTile];
  float h[kMaxState];

  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t b = row / s.channels;
    const int64_t c = row % s.channels;
    const int64_t g = c / channels_per_group;
    const int64_t io = row * L;                   // offset of this row in u, delta, y
    const int64_t bc = (b * s.groups + g) * N * L; // offset of B[b, g, 0, 0] and C[b, g, 0, 0]
    const float* a_row = a.A + c * N;
    const float bias = a.delta_bias ? a.delta_bias[c] : 0.0f;
    const float d_skip = a.D ? a.D[c] : 0.0f;
    for (int64_t n = 0; n < N; ++n) h[n] = 0.0f;

    for (int64_t t0 = 0; t0 < L; t0 += kTile) {
      const int64_t len = std::min(kTile, L - t0);
      for (int64_t i = 0; i < len; ++i) {
        const float u = Load::load(a.u, io + t0 + i);
        dt[i] = step_size(Load::load(a.delta, io + t0 + i), bias, a.delta_softplus);
        dt_u[i] = dt[i] * u;
        u_f[i] = u;
        y_acc[i] = 0.0f;
      }
      for (int64_t n = 0; n < N; ++n) {
        const int64_t bcn = bc + n * L + t0;  // B[b, g, n, t0]
        const float a_n = a_row[n];
        float hn = h[n];
        for (int64_t i = 0; i < len; ++i) {
          hn = state_update(hn, decay(dt[i], a_n), dt_u[i], Load::load(a.B, bcn + i));
          y_acc[i] += output_term(Load::load(a.C, bcn + i), hn);
        }
        h[n] = hn;
      }
      float* y = a.y + io + t0;
      for (int64_t i = 0; i < len; ++i) y[i] = y_acc[i] + skip_term(d_skip, u_f[i]);
    }
  }
}

// SS2DScan, scalar: per channel, the four directions one after the other, each walking its positions
// by index (ss2d_position) with the per-element maths of scan_math.h; y[b, d] is written by direction 0
// and accumulated by directions 1..3 (the contract's sum, always in this order).
template <typename Load>
void ss2d_channels(const SS2DArgs& a, int64_t chan_begin, int64_t chan_end) {
  const SS2DShape& s = a.shape;
  const int64_t L = s.length();
  const int64_t N = s.nstate;
  const int64_t dim = s.dim;
  float h[kMaxState];
  for (int64_t chan = chan_begin; chan < chan_end; ++chan) {
    const int64_t b = chan / dim;
    const int64_t d = chan % dim;
    const int64_t io = chan * L;  // u[b, d], y[b, d]
    float* y = a.y + io;
    for (int k = 0; k < kSS2DDirections; ++k) {
      const int64_t c = k * dim + d;                        // per-direction parameter row
      const int64_t delta_off = (b * kSS2DDirections * dim + c) * L;
      const int64_t bc = (b * kSS2DDirections + k) * N * L;  // B[b, k, 0, 0]
      const float* a_row = a.A + c * N;
      const float bias = a.delta_bias ? a.delta_bias[c] : 0.0f;
      const float d_skip = a.D ? a.D[c] : 0.0f;
      for (int64_t n = 0; n < N; ++n) h[n] = 0.0f;
      for (int64_t t = 0; t < L; ++t) {
        const int64_t p = ss2d_position(a.layout, k, t, s.height, s.width);
        const float u = Load::load(a.u, io + p);
        const float dt = step_size(Load::load(a.delta, delta_off + p), bias, a.delta_softplus);
        const float dt_u = dt * u;
        float acc = 0.0f;
        for (int64_t n = 0; n < N; ++n) {
          h[n] = state_update(h[n], decay(dt, a_row[n]), dt_u, Load::load(a.B, bc + n * L + p));
          acc += output_term(Load::load(a.C, bc + n * L + p), h[n]);
        }
        const float out = acc + skip_term(d_skip, u);
        y[p] = k == 0 ? out : y[p] + out;
      }
    }
  }
}

CpuPath best_path() {
  if (cpu_path_supported(CpuPath::kAVX512)) return CpuPath::kAVX512;
  if (cpu_path_supported(CpuPath::kAVX2)) return CpuPath::kAVX2;
  return CpuPath::kVec128;
}

// Read on every call (a getenv per kernel call is negligible next to a scan), so a process can switch
// paths between runs: scan-bench times each path through one ONNX Runtime session this way.
CpuPath env_or_best(const char** note) {
  *note = nullptr;
  const char* env = getenv("REMAMBER_SCAN_CPU_PATH");
  if (env == nullptr || *env == '\0') return best_path();
  CpuPath p;
  if (!parse_cpu_path(env, &p)) {
    *note = "REMAMBER_SCAN_CPU_PATH is not one of auto, scalar, vec128, avx2, avx512; using the best path";
    return best_path();
  }
  if (p == CpuPath::kAuto) return best_path();
  if (!cpu_path_supported(p)) {
    *note = "REMAMBER_SCAN_CPU_PATH names a path this CPU or build cannot run; using the best one";
    return best_path();
  }
  return p;
}

}  // namespace

const char* cpu_path_name(CpuPath path) {
  switch (path) {
    case CpuPath::kAuto: return "auto";
    case CpuPath::kScalar: return "scalar";
    case CpuPath::kVec128: return "vec128";
    case CpuPath::kAVX2: return "avx2";
    case CpuPath::kAVX512: return "avx512";
  }
  return "?";
}

bool parse_cpu_path(const char* name, CpuPath* out) {
  for (CpuPath p : {CpuPath::kAuto, CpuPath::kScalar, CpuPath::kVec128, CpuPath::kAVX2, CpuPath::kAVX512}) {
    if (name != nullptr && strcmp(name, cpu_path_name(p)) == 0) {
      *out = p;
      return true;
    }
  }
  return false;
}

bool cpu_path_supported(CpuPath path) {
  switch (path) {
    case CpuPath::kAuto:
    case CpuPath::kScalar:
    case CpuPath::kVec128: return true;
#ifdef REMAMBER_HAVE_X86_SIMD
    case CpuPath::kAVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case CpuPath::kAVX512: return __builtin_cpu_supports("avx512f");
#else
    default: return false;
#endif
  }
  return false;
}

CpuPath resolve_cpu_path(CpuPath path) {
  const char* note;
  return path == CpuPath::kAuto ? env_or_best(&note) : path;
}

const char* cpu_path_note() {
  const char* note;
  env_or_best(&note);
  return note;
}

void selective_scan_cpu_rows(const ScanCpuArgs& args, int64_t row_begin, int64_t row_end, CpuPath path) {
  switch (resolve_cpu_path(path)) {
    case CpuPath::kVec128: return simd_vec128::selective_scan_rows(args, row_begin, row_end);
#ifdef REMAMBER_HAVE_X86_SIMD
    case CpuPath::kAVX2: return simd_avx2::selective_scan_rows(args, row_begin, row_end);
    case CpuPath::kAVX512: return simd_avx512::selective_scan_rows(args, row_begin, row_end);
#endif
    default: break;
  }
  switch (args.dtype) {
    case ScanDtype::kFloat32: scan_rows<F32>(args, row_begin, row_end); break;
    case ScanDtype::kFloat16: scan_rows<F16>(args, row_begin, row_end); break;
    case ScanDtype::kBFloat16: scan_rows<BF16>(args, row_begin, row_end); break;
  }
}

void ss2d_scan_cpu_channels(const SS2DArgs& args, int64_t chan_begin, int64_t chan_end, CpuPath path) {
  switch (resolve_cpu_path(path)) {
    case CpuPath::kVec128: return simd_vec128::ss2d_channels(args, chan_begin, chan_end);
#ifdef REMAMBER_HAVE_X86_SIMD
    case CpuPath::kAVX2: return simd_avx2::ss2d_channels(args, chan_begin, chan_end);
    case CpuPath::kAVX512: return simd_avx512::ss2d_channels(args, chan_begin, chan_end);
#endif
    default: break;
  }
  switch (args.dtype) {
    case ScanDtype::kFloat32: ss2d_channels<F32>(args, chan_begin, chan_end); break;
    case ScanDtype::kFloat16: ss2d_channels<F16>(args, chan_begin, chan_end); break;
    case ScanDtype::kBFloat16: ss2d_channels<BF16>(args, chan_begin, chan_end); break;
  }
}

}  // namespace scan
}  // namespace remamber
