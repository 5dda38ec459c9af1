// Experiment only (benchmarks/experiments/winograd_experiment.py --native): not used by the models.
#include <torch/extension.h>
#include <algorithm>
#include <vector>

// Winograd F(4x4, 3x3) tile transforms on NHWC float32 data (channels innermost, so every formula below is a
// plain loop over contiguous channels that the compiler vectorises). One tile per OpenMP iteration.

static inline void bt6(const float* const* d, float* const* t, int n) {
  for (int c = 0; c < n; ++c) {
    const float d0 = d[0][c], d1 = d[1][c], d2 = d[2][c], d3 = d[3][c], d4 = d[4][c], d5 = d[5][c];
    t[0][c] = 4.f * d0 - 5.f * d2 + d4;
    t[1][c] = -4.f * (d1 + d2) + d3 + d4;
    t[2][c] = 4.f * (d1 - d2) - d3 + d4;
    t[3][c] = 2.f * (d3 - d1) - d2 + d4;
    t[4][c] = 2.f * (d1 - d3) - d2 + d4;
    t[5][c] = 4.f * d1 - 5.f * d3 + d5;
  }
}

static inline void at4(const float* const* m, float* const* o, int n) {
  for (int c = 0; c < n; ++c) {
    const float m0 = m[0][c], m1 = m[1][c], m2 = m[2][c], m3 = m[3][c], m4 = m[4][c], m5 = m[5][c];
    const float a = m1 + m2, b = m1 - m2, e = m3 + m4, f = m3 - m4;
    o[0][c] = m0 + a + e;
    o[1][c] = b + 2.f * f;
    o[2][c] = a + 4.f * e;
    o[3][c] = b + 8.f * f + m5;
  }
}

constexpr int CB = 64;  // channel block (36 x 64 floats of scratch per tile)

// x: (N, H, W, C) contiguous. Returns V: (36, N*th*tw, C).
torch::Tensor input_transform(torch::Tensor x) {
  TORCH_CHECK(x.is_contiguous() && x.scalar_type() == torch::kFloat && x.dim() == 4);
  const int64_t N = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
  const int64_t th = (H + 3) / 4, tw = (W + 3) / 4, P = N * th * tw;
  auto V = torch::empty({36, P, C}, x.options());
  const float* xp = x.data_ptr<float>();
  float* vp = V.data_ptr<float>();
  std::vector<float> zeros(C, 0.f);
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < P; ++p) {
    const int64_t n = p / (th * tw), ty = (p / tw) % th, tx = p % tw;
    float tmp[36 * CB];
    for (int64_t cb = 0; cb < C; cb += CB) {
      const int nc = (int)std::min<int64_t>(CB, C - cb);
      for (int b = 0; b < 6; ++b) {
        const float* d[6];
        float* t[6];
        const int64_t col = 4 * tx + b - 1;
        for (int a = 0; a < 6; ++a) {
          const int64_t row = 4 * ty + a - 1;
          d[a] = (row >= 0 && row < H && col >= 0 && col < W) ? xp + ((n * H + row) * W + col) * C + cb : zeros.data();
          t[a] = tmp + (a * 6 + b) * CB;  // t[i][b]
        }
        bt6(d, t, nc);
      }
      for (int i = 0; i < 6; ++i) {
        const float* d[6];
        float* t[6];
        for (int b = 0; b < 6; ++b) d[b] = tmp + (i * 6 + b) * CB;
        for (int j = 0; j < 6; ++j) t[j] = vp + ((int64_t)(i * 6 + j) * P + p) * C + cb;
        bt6(d, t, nc);
      }
    }
  }
  return V;
}

// M: (36, P, Co); returns (N, H, W, Co) with optional bias.
torch::Tensor output_transform(torch::Tensor M, int64_t N, int64_t H, int64_t W, torch::Tensor bias) {
  TORCH_CHECK(M.is_contiguous() && M.scalar_type() == torch::kFloat);
  const int64_t P = M.size(1), Co = M.size(2), th = (H + 3) / 4, tw = (W + 3) / 4;
  TORCH_CHECK(P == N * th * tw);
  auto out = torch::empty({N, H, W, Co}, M.options());
  const float* mp = M.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const bool has_bias = bias.defined() && bias.numel() == Co;
  const float* bp = has_bias ? bias.data_ptr<float>() : nullptr;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < P; ++p) {
    const int64_t n = p / (th * tw), ty = (p / tw) % th, tx = p % tw;
    float s[24 * CB], y[4 * CB];
    for (int64_t cb = 0; cb < Co; cb += CB) {
      const int nc = (int)std::min<int64_t>(CB, Co - cb);
      for (int j = 0; j < 6; ++j) {
        const float* m[6];
        float* o[4];
        for (int i = 0; i < 6; ++i) m[i] = mp + ((int64_t)(i * 6 + j) * P + p) * Co + cb;
        for (int x = 0; x < 4; ++x) o[x] = s + (x * 6 + j) * CB;
        at4(m, o, nc);
      }
      for (int x = 0; x < 4; ++x) {
        const int64_t row = 4 * ty + x;
        if (row >= H) break;
        const float* m[6];
        float* o[4];
        for (int j = 0; j < 6; ++j) m[j] = s + (x * 6 + j) * CB;
        for (int yy = 0; yy < 4; ++yy) o[yy] = y + yy * CB;
        at4(m, o, nc);
        for (int yy = 0; yy < 4; ++yy) {
          const int64_t col = 4 * tx + yy;
          if (col >= W) break;
          float* dst = op + ((n * H + row) * W + col) * Co + cb;
          const float* src = y + yy * CB;
          if (has_bias) for (int c = 0; c < nc; ++c) dst[c] = src[c] + bp[cb + c];
          else for (int c = 0; c < nc; ++c) dst[c] = src[c];
        }
      }
    }
  }
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("input_transform", &input_transform);
  m.def("output_transform", &output_transform);
}
