// Attention core (model.md §4): window rows + visible compressed entries + sink, one softmax.
#include <Eigen/Core>
#include <cmath>

#include "backend/cpu/cpu_backend.hpp"

namespace dsv4 {

void CpuBackend::attention(const AttentionArgs& a) {
  const int64_t hd = a.hd, H = a.H;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t max_entries = a.entries == nullptr ? 0 : (a.select != nullptr ? a.topk : (a.p0 + a.S) / a.ratio);
  const int64_t cap = a.W + max_entries, ptr_off = (cap + 1) / 2 * 2;  // keep the pointer array 8-byte aligned
  const size_t scratch = static_cast<size_t>(ptr_off + 2 * cap);
  pool_.parallel_for(a.S * H, 1, [&](int tid, int64_t b, int64_t e) {
    float* logits = pool_.scratch(tid, scratch);
    const float** vals = reinterpret_cast<const float**>(logits + ptr_off);
    for (int64_t i = b; i < e; ++i) {
      const int64_t s = i / H, h = i % H, t = a.p0 + s;
      Eigen::Map<const Eigen::VectorXf> q(a.q + s * H * hd + h * hd, hd);
      int64_t n = 0;
      for (int64_t j = std::max<int64_t>(0, t - a.W + 1); j <= t; ++j)
        vals[n++] = j < a.p0 ? a.ring + (j % a.W) * hd : a.kv + (j - a.p0) * hd;
      if (a.entries != nullptr) {
        if (a.select != nullptr) {
          for (int64_t k = 0; k < a.topk; ++k) {
            const int32_t w = a.select[s * a.topk + k];
            if (w >= 0) vals[n++] = a.entries + w * hd;
          }
        } else {
          const int64_t visible = (t + 1) / a.ratio;
          for (int64_t w = 0; w < visible; ++w) vals[n++] = a.entries + w * hd;
        }
      }
      float mx = a.sink[h];
      for (int64_t k = 0; k < n; ++k) {
        logits[k] = Eigen::Map<const Eigen::VectorXf>(vals[k], hd).dot(q) * scale;
        mx = std::max(mx, logits[k]);
      }
      float denom = std::exp(a.sink[h] - mx);
      for (int64_t k = 0; k < n; ++k) denom += (logits[k] = std::exp(logits[k] - mx));
      Eigen::Map<Eigen::VectorXf> o(a.out + s * H * hd + h * hd, hd);
      o.setZero();
      for (int64_t k = 0; k < n; ++k) o += (logits[k] / denom) * Eigen::Map<const Eigen::VectorXf>(vals[k], hd);
    }
  });
}

}  // namespace dsv4
