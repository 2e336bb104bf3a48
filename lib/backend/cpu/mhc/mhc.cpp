// Manifold-constrained hyper-connections (model.md §3), all in fp32.
#include <cmath>
#include <cstring>

#include "backend/cpu/cpu_backend.hpp"

namespace dsv4::DSV4_CPU_NS {

namespace {
enum Slot : size_t { kMix = 0 };

inline float sigmoid(float z) { return 1.0f / (1.0f + std::exp(-z)); }

// 1 / rms over the flattened streams of each token.
inline float inv_rms(const float* v, int64_t n, double eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(v[i]) * v[i];
  return static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
}
}  // namespace

void CpuBackend::hc_pre(const HyperW& hw, const ModelConfig& c, const float* X, int64_t S, const float* norm_w,
                        float* xin, float* coef) {
  const int64_t nc = c.hc_mult, D = c.hidden_size, nmix = (2 + nc) * nc, ncoef = nc + nc * nc;
  const float eps = static_cast<float>(c.hc_eps);
  float* mix = ws_.get(kMix, static_cast<size_t>(S * nmix));
  // mix = rms(flat) fnᵀ = (flat fnᵀ) / rms(flat): one matrix product on the raw streams.
  linear(hw.fn, 0, nmix, X, nc * D, S, mix, nmix);
  par(S, 1, [&](int, int64_t b, int64_t e) {
    float pre[16], Cm[256];
    for (int64_t s = b; s < e; ++s) {
      const float* xs = X + s * nc * D;
      const float r = inv_rms(xs, nc * D, c.rms_norm_eps);
      const float* m = mix + s * nmix;
      float* cf = coef + s * ncoef;
      for (int64_t j = 0; j < nc; ++j) {
        pre[j] = sigmoid(m[j] * r * hw.scale[0] + hw.base[j]) + eps;
        cf[j] = 2.0f * sigmoid(m[nc + j] * r * hw.scale[1] + hw.base[nc + j]);
      }
      for (int64_t j = 0; j < nc; ++j) {  // row softmax over k
        float* row = Cm + j * nc;
        float mx = -INFINITY;
        for (int64_t k = 0; k < nc; ++k) {
          row[k] = m[2 * nc + j * nc + k] * r * hw.scale[2] + hw.base[2 * nc + j * nc + k];
          mx = std::max(mx, row[k]);
        }
        float sum = 0;
        for (int64_t k = 0; k < nc; ++k) sum += (row[k] = std::exp(row[k] - mx));
        for (int64_t k = 0; k < nc; ++k) row[k] = row[k] / sum + eps;
      }
      auto col_norm = [&] {
        for (int64_t k = 0; k < nc; ++k) {
          float sum = 0;
          for (int64_t j = 0; j < nc; ++j) sum += Cm[j * nc + k];
          for (int64_t j = 0; j < nc; ++j) Cm[j * nc + k] /= sum + eps;
        }
      };
      col_norm();
      for (int64_t it = 1; it < c.hc_sinkhorn_iters; ++it) {
        for (int64_t j = 0; j < nc; ++j) {
          float sum = 0;
          for (int64_t k = 0; k < nc; ++k) sum += Cm[j * nc + k];
          for (int64_t k = 0; k < nc; ++k) Cm[j * nc + k] /= sum + eps;
        }
        col_norm();
      }
      std::memcpy(cf + nc, Cm, static_cast<size_t>(nc * nc) * sizeof(float));
      float* o = xin + s * D;
      for (int64_t d = 0; d < D; ++d) {
        float acc = 0;
        for (int64_t j = 0; j < nc; ++j) acc += pre[j] * xs[j * D + d];
        o[d] = acc;
      }
    }
  });
  rms_norm(xin, S, D, D, norm_w, static_cast<float>(c.rms_norm_eps));
}

void CpuBackend::hc_post(const ModelConfig& c, float* X, const float* y, const float* coef, int64_t S) {
  const int64_t nc = c.hc_mult, D = c.hidden_size, ncoef = nc + nc * nc;
  par(S * D, 256, [&](int, int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t s = i / D, d = i % D;
      float* xs = X + s * nc * D;
      const float* cf = coef + s * ncoef;
      float in[16], out[16];
      for (int64_t j = 0; j < nc; ++j) in[j] = xs[j * D + d];
      for (int64_t k = 0; k < nc; ++k) {
        float acc = cf[k] * y[s * D + d];
        for (int64_t j = 0; j < nc; ++j) acc += cf[nc + j * nc + k] * in[j];
        out[k] = acc;
      }
      for (int64_t k = 0; k < nc; ++k) xs[k * D + d] = out[k];
    }
  });
}

void CpuBackend::hc_head(const HyperW& hw, const ModelConfig& c, const float* X, int64_t S, float* h) {
  const int64_t nc = c.hc_mult, D = c.hidden_size;
  const float eps = static_cast<float>(c.hc_eps);
  float* mix = ws_.get(kMix, static_cast<size_t>(S * nc));
  linear(hw.fn, 0, nc, X, nc * D, S, mix, nc);
  par(S, 1, [&](int, int64_t b, int64_t e) {
    for (int64_t s = b; s < e; ++s) {
      const float* xs = X + s * nc * D;
      const float r = inv_rms(xs, nc * D, c.rms_norm_eps);
      float pre[16];
      for (int64_t j = 0; j < nc; ++j) pre[j] = sigmoid(mix[s * nc + j] * r * hw.scale[0] + hw.base[j]) + eps;
      for (int64_t d = 0; d < D; ++d) {
        float acc = 0;
        for (int64_t j = 0; j < nc; ++j) acc += pre[j] * xs[j * D + d];
        h[s * D + d] = acc;
      }
    }
  });
}

}  // namespace dsv4::DSV4_CPU_NS
