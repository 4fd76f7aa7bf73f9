#include "scan_cpu.h"

#include <algorithm>

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

}  // namespace

void selective_scan_cpu_rows(const ScanCpuArgs& args, int64_t row_begin, int64_t row_end) {
  switch (args.dtype) {
    case ScanDtype::kFloat32: scan_rows<F32>(args, row_begin, row_end); break;
    case ScanDtype::kFloat16: scan_rows<F16>(args, row_begin, row_end); break;
    case ScanDtype::kBFloat16: scan_rows<BF16>(args, row_begin, row_end); break;
  }
}

}  // namespace scan
}  // namespace remamber
