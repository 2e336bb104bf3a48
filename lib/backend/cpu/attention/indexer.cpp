// Lightning indexer (model.md §6): score visible compressed entries per query, keep the top k.
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <numeric>

#include "backend/cpu/cpu_backend.hpp"

namespace dsv4 {

void CpuBackend::indexer_select(const IndexerArgs& a) {
  using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const int64_t max_vis = (a.p0 + a.S) / a.ratio;
  const float scale = 1.0f / std::sqrt(static_cast<float>(a.ihd));
  const size_t scratch = static_cast<size_t>(max_vis * a.nI + 2 * max_vis + 1);
  pool_.parallel_for(a.S, 1, [&](int tid, int64_t b, int64_t e) {
    float* buf = pool_.scratch(tid, scratch);
    float* dots = buf;                        // [vis, nI]
    float* score = buf + max_vis * a.nI;      // [vis]
    int32_t* order = reinterpret_cast<int32_t*>(score + max_vis);
    for (int64_t s = b; s < e; ++s) {
      const int64_t t = a.p0 + s, vis = (t + 1) / a.ratio;
      int32_t* sel = a.select + s * a.topk;
      std::fill(sel, sel + a.topk, -1);
      if (vis == 0) continue;
      Eigen::Map<const RowMat> K(a.keys, vis, a.ihd);
      Eigen::Map<const RowMat> Qs(a.q + s * a.nI * a.ihd, a.nI, a.ihd);
      Eigen::Map<RowMat> Dm(dots, vis, a.nI);
      Dm.noalias() = K * Qs.transpose();
      const float* wt = a.wts + s * a.nI;
      for (int64_t w = 0; w < vis; ++w) {
        double acc = 0;
        for (int64_t h = 0; h < a.nI; ++h) acc += static_cast<double>(wt[h]) * std::max(0.0f, dots[w * a.nI + h]);
        score[w] = static_cast<float>(acc) * scale;
      }
      const int64_t k = std::min(a.topk, vis);
      std::iota(order, order + vis, 0);
      // Highest score first; equal scores keep the lower entry index.
      std::partial_sort(order, order + k, order + vis, [&](int32_t x, int32_t y) {
        return score[x] > score[y] || (score[x] == score[y] && x < y);
      });
      std::copy(order, order + k, sel);
    }
  });
}

}  // namespace dsv4
