// Lightning indexer (model.md §6): score visible compressed entries per query, keep the top k.
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <numeric>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "backend/cpu/cpu_backend.hpp"
#include "quant/cache_format.hpp"
#include "util/checked.hpp"
#include "backend/cpu/attention/indexer_int.hpp"

namespace dsv4::DSV4_CPU_NS {

namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// dots [w1 - w0, nI] = K · q_hᵀ for the chunk's keys K [w1 - w0, ihd] in f32, through one small GEMM.
void gemm_dots(const IndexerArgs& a, const float* keys, int64_t s, int64_t n, float* dots) {
  Eigen::Map<const RowMat> K(keys, n, a.ihd);
  Eigen::Map<const RowMat> Qs(a.q + s * a.nI * a.ihd, a.nI, a.ihd);
  Eigen::Map<RowMat> Dm(dots, n, a.nI);
  Dm.noalias() = K * Qs.transpose();
}

// score[w] for w in [w0, w1): Σ_h wts[h] · relu(dots[w - w0, h]) · scale.
void reduce_scores(const IndexerArgs& a, int64_t s, int64_t w0, int64_t w1, const float* dots, float* score, float* wt) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(a.ihd));
  // Σ_h wts[h] · relu(dot) in double: selections are discontinuous, so the sum must not add
  // rounding of its own. Eight partial sums (h mod 8) reduced in one fixed order, then the heads
  // past the last multiple of 8: every tier gives the same bits. The head weights are scaled in
  // fp32 first (wt, nI floats of the caller's scratch).
  for (int64_t h = 0; h < a.nI; ++h) wt[h] = a.wts[s * a.nI + h] * a.wts_scale;
  const int64_t h8 = a.nI / 8 * 8;
  for (int64_t w = w0; w < w1; ++w) {
    const float* d = dots + (w - w0) * a.nI;
    alignas(64) double p[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#if defined(__AVX512F__)
    __m512d part = _mm512_setzero_pd();
    for (int64_t h = 0; h < h8; h += 8) {
      const __m256 dv = _mm256_max_ps(_mm256_loadu_ps(d + h), _mm256_setzero_ps());
      part = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm256_loadu_ps(wt + h)), _mm512_cvtps_pd(dv), part);
    }
    _mm512_store_pd(p, part);
#elif defined(__AVX2__)
    __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
    for (int64_t h = 0; h < h8; h += 8) {
      const __m256 dv = _mm256_max_ps(_mm256_loadu_ps(d + h), _mm256_setzero_ps()), wv = _mm256_loadu_ps(wt + h);
      lo = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(wv)), _mm256_cvtps_pd(_mm256_castps256_ps128(dv)), lo);
      hi = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(wv, 1)), _mm256_cvtps_pd(_mm256_extractf128_ps(dv, 1)), hi);
    }
    _mm256_store_pd(p, lo);
    _mm256_store_pd(p + 4, hi);
#else
    for (int64_t h = 0; h < h8; ++h) p[h % 8] = std::fma(static_cast<double>(wt[h]), static_cast<double>(std::max(0.0f, d[h])), p[h % 8]);
#endif
    double acc = ((p[0] + p[4]) + (p[2] + p[6])) + ((p[1] + p[5]) + (p[3] + p[7]));
    for (int64_t h = h8; h < a.nI; ++h) acc += static_cast<double>(wt[h]) * std::max(0.0f, d[h]);
    score[w] = static_cast<float>(acc) * scale;
  }
}

// Highest score first; equal scores keep the lower entry index.
void select_top(const IndexerArgs& a, int64_t vis, const float* score, int32_t* order, int32_t* sel) {
  const int64_t k = std::min(a.topk, vis);
  std::iota(order, order + vis, 0);
  auto before = [&](int32_t x, int32_t y) { return score[x] > score[y] || (score[x] == score[y] && x < y); };
  // A strict total order (ties by index), so selecting then sorting the k first gives the same
  // list as a partial sort, in O(n + k log k).
  if (k < vis) std::nth_element(order, order + k, order + vis, before);
  std::sort(order, order + k, before);
  std::copy(order, order + k, sel);
}

constexpr int64_t kChunk = 256;  // most entries scored per GEMM

// The chunks of `vis` entries of a key table: each within one block, at most kChunk long, starting
// at a block start or kChunk past a chunk start, so every path scores the same chunks.
struct Chunks {
  int64_t per_block, per_block_chunks, vis;
  Chunks(const EntryTable& t, int64_t v) : per_block(t.per_block), per_block_chunks((t.per_block + kChunk - 1) / kChunk), vis(v) {}
  int64_t count() const {
    const int64_t full = vis / per_block, rest = vis % per_block;
    return full * per_block_chunks + (rest + kChunk - 1) / kChunk;
  }
  std::pair<int64_t, int64_t> range(int64_t ci) const {
    const int64_t w0 = ci / per_block_chunks * per_block + ci % per_block_chunks * kChunk;
    return {w0, std::min({w0 + kChunk, (w0 / per_block + 1) * per_block, vis})};
  }
};

// Scores one chunk: int8 keys through integer dot products with the row's int16 query `qi`;
// other formats as f32 keys (straight from the block, or decoded into `kbuf` [kChunk, ihd]).
void score_chunk(const IndexerArgs& a, const EntryTable& t, const QInt16& qi, int64_t s, int64_t w0, int64_t w1, float* kbuf,
                 float* dots, float* score, float* wt) {
  const unsigned char* src = t.at(w0);
  if (t.fmt == EntryFormat::I8) {
    int8_dots(qi, src, t.stride, w1 - w0, dots);
  } else if (t.fmt == EntryFormat::F32) {
    gemm_dots(a, reinterpret_cast<const float*>(src), s, w1 - w0, dots);
  } else {
    for (int64_t w = w0; w < w1; ++w) quant::decode_entry(t.fmt, src + (w - w0) * t.stride, a.ihd, t.rope, kbuf + (w - w0) * a.ihd);
    gemm_dots(a, kbuf, s, w1 - w0, dots);
  }
  reduce_scores(a, s, w0, w1, dots, score, wt);
}

}  // namespace

size_t CpuBackend::indexer_scratch_floats(int64_t max_vis, int64_t nI, int64_t ihd) {
  // Per thread: dots [kChunk, nI], decoded keys [kChunk, ihd], head weights [nI], an int16 query;
  // and for a thread that selects for whole rows, a row's scores and order [max_vis] each.
  const size_t v = sat_size(max_vis), n = sat_size(nI);
  const size_t chunk = sat_add(sat_add(sat_mul(kChunk, n), sat_mul(kChunk, sat_size(ihd))), sat_add(n, qint16_floats(nI, ihd)));
  return sat_add(chunk, sat_mul(2, v));
}

size_t CpuBackend::indexer_query_floats(int64_t nI, int64_t ihd) { return qint16_floats(nI, ihd); }

void CpuBackend::indexer_select(const IndexerArgs& a) {
  int64_t max_pos = 0;
  for (int64_t s = 0; s < a.S; ++s) max_pos = std::max(max_pos, a.step.pos[s]);
  const int64_t max_vis = (max_pos + 1) / a.ratio;
  auto keys_of = [&](int64_t s) -> const EntryTable& { return a.step.seqs[a.step.seq[s]].state[a.layer].index.entries; };
  const int64_t qf = static_cast<int64_t>(qint16_floats(a.nI, a.ihd));
  const size_t chunk_floats = static_cast<size_t>(kChunk * (a.nI + a.ihd) + a.nI);
  if (a.S < 4 && max_vis >= 2 * kChunk) {
    // Decode: one query, many entries: split the chunks across threads instead.
    for (int64_t s = 0; s < a.S; ++s) {
      const int64_t vis = (a.step.pos[s] + 1) / a.ratio;
      int32_t* sel = a.select + s * a.topk;
      std::fill(sel, sel + a.topk, -1);
      float* score = ws_.get(kIndexScore, static_cast<size_t>(max_vis));
      const EntryTable& t = keys_of(s);
      QInt16 qi;
      if (t.fmt == EntryFormat::I8) qi = prepare_qint16(a.q + s * a.nI * a.ihd, a.nI, a.ihd, ws_.get(kIndexQ, static_cast<size_t>(qf)));
      const Chunks ch(t, vis);
      par(ch.count(), 1, [&](int tid, int64_t cb, int64_t ce) {
        float* dots = thread_scratch(tid, chunk_floats);
        for (int64_t ci = cb; ci < ce; ++ci) {
          const auto [w0, w1] = ch.range(ci);
          score_chunk(a, t, qi, s, w0, w1, dots + kChunk * a.nI, dots, score, dots + kChunk * (a.nI + a.ihd));
        }
      });
      int32_t* order = reinterpret_cast<int32_t*>(ws_.get(kIndexOrder, static_cast<size_t>(max_vis)));
      select_top(a, vis, score, order, sel);
    }
    return;
  }
  // Prefill: whole rows per thread, scratch bounded by one chunk plus one row's scores.
  const size_t scratch_floats = indexer_scratch_floats(max_vis, a.nI, a.ihd);
  par(a.S, 1, [&](int tid, int64_t b, int64_t e) {
    float* buf = thread_scratch(tid, scratch_floats);
    float* dots = buf;                               // [kChunk, nI]
    float* kbuf = dots + kChunk * a.nI;              // [kChunk, ihd]
    float* wt = kbuf + kChunk * a.ihd;               // [nI]
    float* qbuf = wt + a.nI;                         // the row's int16 query
    float* score = qbuf + qf;                        // [max_vis]
    int32_t* order = reinterpret_cast<int32_t*>(score + max_vis);
    for (int64_t s = b; s < e; ++s) {
      const int64_t vis = (a.step.pos[s] + 1) / a.ratio;
      int32_t* sel = a.select + s * a.topk;
      std::fill(sel, sel + a.topk, -1);
      if (vis == 0) continue;
      const EntryTable& t = keys_of(s);
      QInt16 qi;
      if (t.fmt == EntryFormat::I8) qi = prepare_qint16(a.q + s * a.nI * a.ihd, a.nI, a.ihd, qbuf);
      const Chunks ch(t, vis);
      for (int64_t ci = 0, n = ch.count(); ci < n; ++ci) {
        const auto [w0, w1] = ch.range(ci);
        score_chunk(a, t, qi, s, w0, w1, kbuf, dots, score, wt);
      }
      select_top(a, vis, score, order, sel);
    }
  });
}

}  // namespace dsv4::DSV4_CPU_NS
