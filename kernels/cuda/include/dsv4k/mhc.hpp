// dsv4k reference kernels: manifold-constrained hyper-connections (model.md §3), in fp32 as the
// CPU backend computes them. The mix products (X · fnᵀ) run as Linear kernels before these.
#pragma once
#include "dsv4k/hd.hpp"

namespace dsv4k {

constexpr int64_t kMaxStreams = 8;  // hc_mult (V4: 4); bounds the per-thread arrays

DSV4_HDI float sigmoidf_(float z) { return 1.0f / (1.0f + expf(-z)); }

// 1 / rms of the n values at v (the sum in double).
DSV4_HDI float inv_rms(const float* v, int64_t n, double eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(v[i]) * v[i];
  return static_cast<float>(1.0 / sqrt(ss / static_cast<double>(n) + eps));
}

// Per token: pre weights [nc] (into `pre`), post weights and the Sinkhorn-normalised C (into
// coef [nc + nc·nc]) from mix = X · fnᵀ [(2 + nc)·nc] and the token's rms. With head = true only the
// pre weights (the final collapse; mix is [nc]).
struct HcCoef {
  const float* X = nullptr;    // [S, nc·D]
  const float* mix = nullptr;  // [S, nmix]
  const float* base = nullptr;
  const float* scale = nullptr;
  int64_t S = 0, nc = 0, D = 0, nmix = 0, iters = 0;
  float eps = 0;        // hc_eps
  double rms_eps = 0;   // rms_norm_eps
  bool head = false;
  float* pre = nullptr;   // [S, nc]
  float* coef = nullptr;  // [S, nc + nc·nc] (not with head)
  int64_t count() const { return S; }
  DSV4_HD void operator()(int64_t s) const {
    const float r = inv_rms(X + s * nc * D, nc * D, rms_eps);
    const float* m = mix + s * nmix;
    float* p = pre + s * nc;
    for (int64_t j = 0; j < nc; ++j) p[j] = sigmoidf_(m[j] * r * scale[0] + base[j]) + eps;
    if (head) return;
    float* cf = coef + s * (nc + nc * nc);
    for (int64_t j = 0; j < nc; ++j) cf[j] = 2.0f * sigmoidf_(m[nc + j] * r * scale[1] + base[nc + j]);
    float Cm[kMaxStreams * kMaxStreams];
    for (int64_t j = 0; j < nc; ++j) {  // row softmax
      float* row = Cm + j * nc;
      float mx = -INFINITY;
      for (int64_t k = 0; k < nc; ++k) {
        row[k] = m[2 * nc + j * nc + k] * r * scale[2] + base[2 * nc + j * nc + k];
        mx = max_(mx, row[k]);
      }
      float sum = 0;
      for (int64_t k = 0; k < nc; ++k) sum += (row[k] = expf(row[k] - mx));
      for (int64_t k = 0; k < nc; ++k) row[k] = row[k] / sum + eps;
    }
    for (int64_t it = 0; it < max_<int64_t>(iters, 1); ++it) {  // columns first, then (rows, columns) pairs
      if (it > 0)
        for (int64_t j = 0; j < nc; ++j) {  // rows
          float sum = 0;
          for (int64_t k = 0; k < nc; ++k) sum += Cm[j * nc + k];
          for (int64_t k = 0; k < nc; ++k) Cm[j * nc + k] /= sum + eps;
        }
      for (int64_t k = 0; k < nc; ++k) {  // columns
        float sum = 0;
        for (int64_t j = 0; j < nc; ++j) sum += Cm[j * nc + k];
        for (int64_t j = 0; j < nc; ++j) Cm[j * nc + k] /= sum + eps;
      }
    }
    for (int64_t k = 0; k < nc * nc; ++k) cf[nc + k] = Cm[k];
  }
};

// out[s, d] = Σ_j pre[s, j] · X[s, j, d].
struct HcCollapse {
  const float* X = nullptr;
  const float* pre = nullptr;
  int64_t S = 0, nc = 0, D = 0;
  float* out = nullptr;
  int64_t count() const { return S * D; }
  DSV4_HD void operator()(int64_t i) const {
    const int64_t s = i / D, d = i % D;
    float acc = 0;
    for (int64_t j = 0; j < nc; ++j) acc += pre[s * nc + j] * X[s * nc * D + j * D + d];
    out[i] = acc;
  }
};

// X[s, k, d] = post_k · y[s, d] + Σ_j C[j, k] · X[s, j, d].
struct HcPost {
  float* X = nullptr;
  const float* y = nullptr;
  const float* coef = nullptr;
  int64_t S = 0, nc = 0, D = 0;
  int64_t count() const { return S * D; }
  DSV4_HD void operator()(int64_t i) const {
    const int64_t s = i / D, d = i % D;
    float* xs = X + s * nc * D;
    const float* cf = coef + s * (nc + nc * nc);
    float in[kMaxStreams], out[kMaxStreams];
    for (int64_t j = 0; j < nc; ++j) in[j] = xs[j * D + d];
    for (int64_t k = 0; k < nc; ++k) {
      float acc = cf[k] * y[s * D + d];
      for (int64_t j = 0; j < nc; ++j) acc += cf[nc + j * nc + k] * in[j];
      out[k] = acc;
    }
    for (int64_t k = 0; k < nc; ++k) xs[k * D + d] = out[k];
  }
};

}  // namespace dsv4k
