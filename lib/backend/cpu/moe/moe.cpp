// MoE (model.md §7): sqrt-softplus scores, hash or biased top-k routing, clamped SwiGLU experts
// (tokens grouped per expert), plus the shared expert.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/linear/gemv.hpp"

namespace dsv4::DSV4_CPU_NS {

namespace {
enum Slot : size_t { kScores = 1, kH1, kH3, kGather, kY, kWeights };
enum ISlot : size_t { kIdx = 0, kTokOfExpert, kCount };

inline float sqrt_softplus(float z) {
  const double sp = z > 20.0f ? static_cast<double>(z) : std::log1p(std::exp(static_cast<double>(z)));
  return static_cast<float>(std::sqrt(sp));
}

// h1 = silu(min(h1, L)) · clamp(h3, -L, L), in place into h1.
void swiglu(float* h1, const float* h3, int64_t n, float L) {
  for (int64_t i = 0; i < n; ++i) {
    float a = h1[i], b = h3[i];
    if (L > 0) {
      a = std::min(a, L);
      b = std::clamp(b, -L, L);
    }
    h1[i] = a / (1.0f + std::exp(-a)) * b;
  }
}
}  // namespace

void CpuBackend::moe(const MoeW& w, const ModelConfig& c, MoeKind kind, const float* x, const StepRef& step, int64_t S,
                     float* out) {
  const int32_t* ids = step.ids;
  const int64_t D = c.hidden_size, E = c.n_routed_experts, K = c.experts_per_token, I = c.moe_intermediate_size;
  const float L = static_cast<float>(c.swiglu_limit);
  float* scores = ws_.get(kScores, static_cast<size_t>(S * E));
  float* wk = ws_.get(kWeights, static_cast<size_t>(S * K));
  int32_t* idx = ws_.get_i32(kIdx, static_cast<size_t>(S * K));
  linear(w.gate, 0, E, x, D, S, scores, E);
  for (int64_t s = 0; s < S; ++s) {
    float* sc = scores + s * E;
    for (int64_t e = 0; e < E; ++e) sc[e] = sqrt_softplus(sc[e]);
    int32_t* ix = idx + s * K;
    if (kind == MoeKind::Hash) {
      for (int64_t k = 0; k < K; ++k) ix[k] = static_cast<int32_t>(w.expert_of(ids[s], k, K));
    } else {
      // top-k of (score + bias); the bias only selects. Ties keep the lower expert id.
      int32_t* cand = ws_.get_i32(kCount + 2, static_cast<size_t>(E));
      for (int32_t e = 0; e < E; ++e) cand[e] = e;
      std::partial_sort(cand, cand + K, cand + E, [&](int32_t a, int32_t b) {
        const float va = sc[a] + w.bias[a], vb = sc[b] + w.bias[b];
        return va > vb || (va == vb && a < b);
      });
      std::copy(cand, cand + K, ix);
    }
    double sum = 0;
    for (int64_t k = 0; k < K; ++k) sum += sc[ix[k]];
    for (int64_t k = 0; k < K; ++k)
      wk[s * K + k] = static_cast<float>(sc[ix[k]] / sum * c.routed_scaling_factor);
  }

  // Sized for S·K rows: a hash table may route one token to the same expert twice.
  float* h1 = nullptr;
  float* h3 = nullptr;
  stats_.expert_evals += static_cast<uint64_t>(S * K);
  if (S == 1 && gemv_available()) {
    int64_t distinct = 0;
    for (int64_t k = 0; k < K; ++k) distinct += std::find(idx, idx + k, idx[k]) == idx + k;
    stats_.experts_touched += static_cast<uint64_t>(distinct);
    moe_decode(w, c, x, idx, wk, out);
    return;
  }
  // Group (token, slot) pairs by expert with a counting sort.
  int32_t* count = ws_.get_i32(kCount, static_cast<size_t>(E + 1));
  int32_t* order = ws_.get_i32(kTokOfExpert, static_cast<size_t>(S * K));
  std::fill(count, count + E + 1, 0);
  for (int64_t i = 0; i < S * K; ++i) ++count[idx[i] + 1];
  // The fused kernels take up to `most` rows. While the experts average no more than that, one
  // with more is split into parts of at most `most` rows (its weights read once per part), so
  // that a few busy experts (uneven routing) do not send the whole step down the per-expert
  // decode + GEMM path, which is for steps where most experts have many rows.
  const ExpertW& e0 = w.experts[0];
  const int64_t most = std::min({gemv_max_batch(e0.w1), gemv_max_batch(e0.w3), gemv_max_batch(e0.w2)});
  const bool fused = gemv_available() && S * K <= most * E;
  for (int64_t e = 0; e < E; ++e) {
    stats_.experts_touched += count[e + 1] > 0;
    count[e + 1] += count[e];
  }
  {
    int32_t* fill = ws_.get_i32(kCount + 1, static_cast<size_t>(E));
    std::copy(count, count + E, fill);
    for (int64_t i = 0; i < S * K; ++i) order[fill[idx[i]]++] = static_cast<int32_t>(i);
  }
  float* xg = ws_.get(kGather, static_cast<size_t>(S * K * D));
  float* y = ws_.get(kY, static_cast<size_t>(S * K * D));
  for (int64_t r = 0; r < S * K; ++r) std::memcpy(xg + r * D, x + (order[r] / K) * D, static_cast<size_t>(D) * sizeof(float));
  // The shared expert's rows follow the routed ones in h1/h3.
  float* h1s = ws_.get(kH1, static_cast<size_t>((S * K + S) * I)) + S * K * I;
  float* h3s = ws_.get(kH3, static_cast<size_t>((S * K + S) * I)) + S * K * I;
  h1 = h1s - S * K * I;
  h3 = h3s - S * K * I;
  const bool shared_fused = fused && w.shared && S <= gemv_max_batch(w.shared->w1) && S <= gemv_max_batch(w.shared->w2);

  if (fused) {
    // Decode-size batches: every expert's products on its gathered rows in one parallel pass for
    // the up projections and one for the down projections (each weight read once, no pass per expert).
    // At most E + S·K / most parts (each expert's last part may be short), plus the shared expert.
    const size_t cap = static_cast<size_t>(2 * (E + S * K / most + 1));
    if (moe_tasks_.size() < cap) moe_tasks_.resize(cap);
    // The task list changes with the routing; its scratch depends only on S.
    reserve_multi(cap,
                  gemv_prepared_bound(e0.w1, S * K + S) + gemv_prepared_bound(e0.w2, S * K + S) +
                      (w.shared ? gemv_prepared_bound(w.shared->w1, S) + gemv_prepared_bound(w.shared->w2, S) : 0));
    LinearTask* t = moe_tasks_.data();
    size_t nt = 0;
    for (int64_t e = 0; e < E; ++e) {
      const ExpertW& ex = w.experts[static_cast<size_t>(e)];
      for (int64_t b = count[e]; b < count[e + 1]; b += most) {
        const int64_t n = std::min(most, count[e + 1] - b);
        t[nt++] = {&ex.w1, 0, I, xg + b * D, D, h1 + b * I, I, n};
        t[nt++] = {&ex.w3, 0, I, xg + b * D, D, h3 + b * I, I, n};
      }
    }
    if (shared_fused) {
      t[nt++] = {&w.shared->w1, 0, I, x, D, h1s, I, S};
      t[nt++] = {&w.shared->w3, 0, I, x, D, h3s, I, S};
    }
    linear_multi(t, nt, S);
    if (w.shared && !shared_fused) {
      linear(w.shared->w1, 0, I, x, D, S, h1s, I);
      linear(w.shared->w3, 0, I, x, D, S, h3s, I);
    }
    swiglu(h1, h3, (S * K + (w.shared ? S : 0)) * I, L);
    nt = 0;
    for (int64_t e = 0; e < E; ++e)
      for (int64_t b = count[e]; b < count[e + 1]; b += most)
        t[nt++] = {&w.experts[static_cast<size_t>(e)].w2, 0, D, h1 + b * I, I, y + b * D, D, std::min(most, count[e + 1] - b)};
    if (shared_fused) t[nt++] = {&w.shared->w2, 0, D, h1s, I, out, D, S};
    linear_multi(t, nt, S);
    if (w.shared && !shared_fused) linear(w.shared->w2, 0, D, h1s, I, S, out, D);
  } else {
    // Shared expert writes `out`; routed experts, one after another, accumulate into it.
    if (w.shared) {
      linear(w.shared->w1, 0, I, x, D, S, h1s, I);
      linear(w.shared->w3, 0, I, x, D, S, h3s, I);
      swiglu(h1s, h3s, S * I, L);
      linear(w.shared->w2, 0, D, h1s, I, S, out, D);
    }
    for (int64_t e = 0; e < E; ++e) {
      const int64_t b = count[e], n = count[e + 1] - b;
      if (n == 0) continue;
      const ExpertW& ex = w.experts[static_cast<size_t>(e)];
      linear(ex.w1, 0, I, xg + b * D, D, n, h1 + b * I, I);
      linear(ex.w3, 0, I, xg + b * D, D, n, h3 + b * I, I);
      swiglu(h1 + b * I, h3 + b * I, n * I, L);
      linear(ex.w2, 0, D, h1 + b * I, I, n, y + b * D, D);
    }
  }
  if (!w.shared) std::memset(out, 0, static_cast<size_t>(S * D) * sizeof(float));
  // Weighted routed outputs, in expert order.
  for (int64_t r = 0; r < S * K; ++r) {
    const int64_t s = order[r] / K;
    const float wt = wk[order[r]];
    float* o = out + s * D;
    const float* yr = y + r * D;
    for (int64_t d = 0; d < D; ++d) o[d] += wt * yr[d];
  }
}

void CpuBackend::moe_decode(const MoeW& w, const ModelConfig& c, const float* x, const int32_t* idx, const float* wk, float* out) {
  // One token: all up-projections (routed and shared) in one pass, then all down-projections.
  const int64_t D = c.hidden_size, K = c.experts_per_token, I = c.moe_intermediate_size;
  const float L = static_cast<float>(c.swiglu_limit);
  const int64_t n = K + (w.shared ? 1 : 0);
  float* h1 = ws_.get(kH1, static_cast<size_t>(n * I));
  float* h3 = ws_.get(kH3, static_cast<size_t>(n * I));
  float* y = ws_.get(kY, static_cast<size_t>(n * D));
  LinearTask up[2 * 64], down[64];
  const ExpertW* ex[64];
  for (int64_t k = 0; k < K; ++k) ex[k] = &w.experts[static_cast<size_t>(idx[k])];
  if (w.shared) ex[K] = &*w.shared;
  for (int64_t k = 0; k < n; ++k) {
    up[2 * k] = {&ex[k]->w1, 0, I, x, D, h1 + k * I, I};
    up[2 * k + 1] = {&ex[k]->w3, 0, I, x, D, h3 + k * I, I};
  }
  linear_multi(up, static_cast<size_t>(2 * n), 1);
  swiglu(h1, h3, n * I, L);
  for (int64_t k = 0; k < n; ++k) down[k] = {&ex[k]->w2, 0, D, h1 + k * I, I, y + k * D, D};
  linear_multi(down, static_cast<size_t>(n), 1);
  for (int64_t d = 0; d < D; ++d) {
    float acc = w.shared ? y[K * D + d] : 0.0f;
    for (int64_t k = 0; k < K; ++k) acc += wk[k] * y[k * D + d];
    out[d] = acc;
  }
}

}  // namespace dsv4::DSV4_CPU_NS
