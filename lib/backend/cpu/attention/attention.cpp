// Attention core (model.md §4): window rows + visible compressed entries + sink, one softmax;
// and the window store (a step's last W rows of each sequence into its ring).
//
// Keys and values are the same rows (one shared kv head), so a query token's visible rows are
// gathered once into a contiguous block K [n, hd] and every head in a work item uses it through
// two matrix products: logits = Q_heads · Kᵀ, out = softmax(logits) · K. Work items are (token,
// block of heads): whole tokens when there are enough of them (prefill), else the heads of one
// token split across threads (decode).
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/cpu_backend.hpp"
#include "quant/cache_format.hpp"
#include "util/checked.hpp"

namespace dsv4::DSV4_CPU_NS {

namespace {
using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
constexpr int64_t kRowsRound = 512;  // scratch sized in steps of this many rows: no regrowth every few tokens
}  // namespace

size_t CpuBackend::attention_scratch_floats(int64_t W, int64_t hd, int64_t hb, int64_t max_entries) {
  // Saturating: a max_context near 2^62 gives SIZE_MAX (then a CapacityError), never a wrapped size.
  constexpr size_t round = static_cast<size_t>(kRowsRound);
  const size_t rows = sat_add(sat_add(sat_size(W), sat_size(max_entries)), round - 1);
  const size_t cap = rows == SIZE_MAX ? SIZE_MAX : rows / round * round;
  return sat_add(sat_mul(cap, sat_size(hd)), sat_mul(sat_size(hb), cap));
}

void CpuBackend::attention(const AttentionArgs& a) {
  const int64_t hd = a.hd, H = a.H;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  int64_t max_pos = 0;
  for (int64_t s = 0; s < a.S; ++s) max_pos = std::max(max_pos, a.step.pos[s]);
  const int64_t max_entries = !a.entries ? 0 : (a.select != nullptr ? a.topk : (max_pos + 1) / a.ratio);
  const int64_t cap = (a.W + max_entries + kRowsRound - 1) / kRowsRound * kRowsRound;
  // About kItems work items per step, each as many heads as possible (a thread gathers a token's
  // rows once for its consecutive items). From the step's shape alone, never the thread count:
  // the heads per item set the GEMM shapes and so the order of their sums.
  constexpr int64_t kItems = 8;
  const int64_t per_token = std::clamp<int64_t>((kItems + a.S - 1) / a.S, 1, H);
  const int64_t hb = (H + per_token - 1) / per_token, blocks = (H + hb - 1) / hb;
  const size_t scratch_floats = attention_scratch_floats(a.W, hd, hb, max_entries);
  par(a.S * blocks, 1, [&](int tid, int64_t b, int64_t e) {
    float* K = thread_scratch(tid, scratch_floats);
    float* L = K + cap * hd;
    int64_t gathered_for = -1, n = 0;
    for (int64_t i = b; i < e; ++i) {
      const int64_t s = i / blocks, h0 = (i % blocks) * hb, nh = std::min(hb, H - h0), t = a.step.pos[s];
      if (gathered_for != s) {  // this token's visible rows, in the order of the reference
        const StepSeq& sq = a.step.seqs[a.step.seq[s]];
        const LayerState& st = sq.state[a.layer];
        const float* kv = a.kv + static_cast<int64_t>(sq.row0) * hd;  // row of position p0 of this sequence
        n = 0;
        auto put = [&](const float* row) { std::memcpy(K + (n++) * hd, row, static_cast<size_t>(hd) * sizeof(float)); };
        for (int64_t j = std::max<int64_t>(0, t - a.W + 1); j <= t; ++j) put(j < sq.p0 ? st.ring + (j % a.W) * hd : kv + (j - sq.p0) * hd);
        if (a.entries) {  // compressed entries, decoded from the cache format into f32 rows
          const EntryTable& et = st.comp.entries;
          auto put_entry = [&](int64_t w) { quant::decode_entry(et.fmt, et.at(w), hd, et.rope, K + (n++) * hd); };
          if (a.select != nullptr) {
            for (int64_t k = 0; k < a.topk; ++k) {
              const int32_t w = a.select[s * a.topk + k];
              if (w >= 0) put_entry(w);
            }
          } else {
            const int64_t visible = (t + 1) / a.ratio;
            for (int64_t w = 0; w < visible; ++w) put_entry(w);
          }
        }
        gathered_for = s;
      }
      Eigen::Map<const RowMat> Km(K, n, hd);
      Eigen::Map<const RowMat> Q(a.q + s * H * hd + h0 * hd, nh, hd);
      Eigen::Map<RowMat> P(L, nh, n);
      P.noalias() = (Q * Km.transpose()) * scale;
      for (int64_t h = 0; h < nh; ++h) {  // softmax with the sink as one more logit (vectorised exp)
        Eigen::Map<Eigen::ArrayXf> p(L + h * n, n);
        const float sink = a.sink[h0 + h];
        const float mx = n > 0 ? std::max(sink, p.maxCoeff()) : sink;
        p = (p - mx).exp();
        p *= 1.0f / (std::exp(sink - mx) + p.sum());
      }
      Eigen::Map<RowMat> O(a.out + s * H * hd + h0 * hd, nh, hd);
      O.noalias() = P * Km;
    }
  });
}

void CpuBackend::store_window(const StepRef& step, int64_t, int64_t layer, const float* kv, int64_t W, int64_t hd) {
  const int64_t n_seqs = step.counts[kStepSeqs];
  for (int64_t i = 0; i < n_seqs; ++i) {
    const StepSeq& sq = step.seqs[i];
    float* ring = sq.state[layer].ring;
    const int64_t p0 = sq.p0, end = sq.p0 + sq.rows;
    for (int64_t j = std::max(p0, end - W); j < end; ++j)
      std::memcpy(ring + (j % W) * hd, kv + (sq.row0 + j - p0) * hd, static_cast<size_t>(hd) * sizeof(float));
  }
}

}  // namespace dsv4::DSV4_CPU_NS
