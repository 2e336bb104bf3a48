// dsv4k reference kernels: MoE (model.md §7). Routing per token (sqrt-softplus scores; hash
// through tid2eid or top-k of score + bias, ties to the lower expert id; weights normalised over
// the chosen and scaled), then the clamped-SwiGLU experts and the weighted combine. The gate
// product (scores = x · gateᵀ) runs as a Linear kernel first.
#pragma once
#include "dsv4k/gemv.hpp"

namespace dsv4k {

struct ExpertMats {
  Mat w1, w3, w2;  // w1/w3 [I, D], w2 [D, I]
};

constexpr int64_t kMaxExperts = 1024;

DSV4_HDI float sqrt_softplus(float z) {
  const double sp = z > 20.0f ? static_cast<double>(z) : log1p(exp(static_cast<double>(z)));
  return static_cast<float>(sqrt(sp));
}

// In place scores [S, E] -> sqrt-softplus; idx [S, K] and weights [S, K]. One item per token.
struct MoeRoute {
  float* scores = nullptr;
  const float* bias = nullptr;  // [E] (top-k routing)
  const unsigned char* tid2eid = nullptr;  // [V, K] (hash routing), I64 or I32
  bool tid_i64 = true;
  dsv4::StepRef step;
  int64_t S = 0, E = 0, K = 0;
  double scaling = 1;
  int32_t* idx = nullptr;
  float* weights = nullptr;
  int64_t count() const { return S; }
  DSV4_HD void operator()(int64_t s) const {
    float* sc = scores + s * E;
    for (int64_t e = 0; e < E; ++e) sc[e] = sqrt_softplus(sc[e]);
    int32_t* ix = idx + s * K;
    if (tid2eid != nullptr) {
      const int64_t t = step.ids[s];
      for (int64_t k = 0; k < K; ++k)
        ix[k] = tid_i64 ? static_cast<int32_t>(load<int64_t>(tid2eid + (t * K + k) * 8)) : load<int32_t>(tid2eid + (t * K + k) * 4);
    } else {
      uint64_t taken[kMaxExperts / 64] = {};
      for (int64_t k = 0; k < K; ++k) {  // the k-th best of (score + bias), ties to the lower id
        int64_t best = -1;
        float bv = 0;
        for (int64_t e = 0; e < E; ++e) {
          if (taken[e / 64] >> (e % 64) & 1u) continue;
          const float v = sc[e] + bias[e];
          if (best < 0 || v > bv) {
            best = e;
            bv = v;
          }
        }
        taken[best / 64] |= uint64_t{1} << (best % 64);
        ix[k] = static_cast<int32_t>(best);
      }
    }
    double sum = 0;
    for (int64_t k = 0; k < K; ++k) sum += sc[ix[k]];
    for (int64_t k = 0; k < K; ++k) weights[s * K + k] = static_cast<float>(sc[ix[k]] / sum * scaling);
  }
};

// h[s, j, i] = silu(min(x·w1ᵢ, L)) · clamp(x·w3ᵢ, -L, L) for slot j < K (expert idx[s, j]) and,
// with a shared expert, j = K. One item per (token, slot, i).
struct MoeUp {
  const ExpertMats* experts = nullptr;  // [E]
  ExpertMats shared;
  bool has_shared = false;
  const int32_t* idx = nullptr;
  const float* x = nullptr;  // [S, D]
  int64_t S = 0, K = 0, D = 0, I = 0;
  float limit = 0;
  float* h = nullptr;  // [S, K + 1, I]
  DSV4_HD int64_t slots() const { return K + (has_shared ? 1 : 0); }
  int64_t count() const { return S * slots() * I; }
  DSV4_HD void operator()(int64_t n) const {
    const int64_t i = n % I, j = (n / I) % slots(), s = n / I / slots();
    const ExpertMats& ex = j < K ? experts[idx[s * K + j]] : shared;
    const float* xs = x + s * D;
    double a1 = 0, a3 = 0;
    for (int64_t c = 0; c < D; ++c) {
      a1 += static_cast<double>(weight_at(ex.w1, i, c)) * xs[c];
      a3 += static_cast<double>(weight_at(ex.w3, i, c)) * xs[c];
    }
    float a = static_cast<float>(a1), b = static_cast<float>(a3);
    if (limit > 0) {
      a = min_(a, limit);
      b = max_(-limit, min_(b, limit));
    }
    h[(s * (K + 1) + j) * I + i] = a / (1.0f + expf(-a)) * b;
  }
};

// out[s, d] = (shared expert's y) + Σ_j weights[s, j] · y_j, y_j = h[s, j] · w2ᵀ. One item per (token, d).
struct MoeDown {
  const ExpertMats* experts = nullptr;
  ExpertMats shared;
  bool has_shared = false;
  const int32_t* idx = nullptr;
  const float* weights = nullptr;
  const float* h = nullptr;
  int64_t S = 0, K = 0, D = 0, I = 0;
  float* out = nullptr;
  int64_t count() const { return S * D; }
  DSV4_HD void operator()(int64_t n) const {
    const int64_t s = n / D, d = n % D;
    auto y = [&](const ExpertMats& ex, int64_t j) {
      const float* hs = h + (s * (K + 1) + j) * I;
      double acc = 0;
      for (int64_t c = 0; c < I; ++c) acc += static_cast<double>(weight_at(ex.w2, d, c)) * hs[c];
      return static_cast<float>(acc);
    };
    float acc = has_shared ? y(shared, K) : 0.0f;
    for (int64_t j = 0; j < K; ++j) acc += weights[s * K + j] * y(experts[idx[s * K + j]], j);
    out[n] = acc;
  }
};

// MoeUp as a warp kernel: one warp per (token, slot, i), both rows streamed (gemv.hpp).
struct MoeUpRows {
  static constexpr int kSums = 2;
  MoeUp p;
  int64_t count() const { return p.count(); }
  DSV4_HD void lanes(int64_t n, int lane, float* acc) const {
    const int64_t i = n % p.I, j = (n / p.I) % p.slots(), s = n / p.I / p.slots();
    const ExpertMats& ex = j < p.K ? p.experts[p.idx[s * p.K + j]] : p.shared;
    const float* xs[1] = {p.x + s * p.D};
    row_dots_lane(ex.w1, i, xs, 1, lane, acc);
    row_dots_lane(ex.w3, i, xs, 1, lane, acc + 1);
  }
  DSV4_HD void finish(int64_t n, const float* sums) const {
    const int64_t i = n % p.I, j = (n / p.I) % p.slots(), s = n / p.I / p.slots();
    float a = sums[0], b = sums[1];
    if (p.limit > 0) {
      a = min_(a, p.limit);
      b = max_(-p.limit, min_(b, p.limit));
    }
    p.h[(s * (p.K + 1) + j) * p.I + i] = a / (1.0f + expf(-a)) * b;
  }
};

// MoeDown as a warp kernel: one warp per (token, d), the w2 rows of every slot streamed.
struct MoeDownRows {
  static constexpr int kSums = 8;  // routed slots + the shared expert
  MoeDown p;
  int64_t count() const { return p.count(); }
  DSV4_HD void lanes(int64_t n, int lane, float* acc) const {
    const int64_t s = n / p.D, d = n % p.D;
    for (int64_t j = 0; j < p.K + (p.has_shared ? 1 : 0); ++j) {
      const ExpertMats& ex = j < p.K ? p.experts[p.idx[s * p.K + j]] : p.shared;
      const float* hs[1] = {p.h + (s * (p.K + 1) + j) * p.I};
      row_dots_lane(ex.w2, d, hs, 1, lane, acc + j);
    }
  }
  DSV4_HD void finish(int64_t n, const float* sums) const {
    float acc = p.has_shared ? sums[p.K] : 0.0f;
    for (int64_t j = 0; j < p.K; ++j) acc += p.weights[(n / p.D) * p.K + j] * sums[j];
    p.out[n] = acc;
  }
};

}  // namespace dsv4k
