// dsv4k reference kernel: the KV compressor (model.md §5). One item per sequence of the step: its
// rows in order append to the unfinished window; each completed window is pooled (gated softmax
// over its m slots, and the previous window's with overlap), normalised, rotated at w·m and stored
// as entry w in the cache's format.
#pragma once
#include "dsv4k/formats.hpp"

namespace dsv4k {

struct Compress {
  dsv4::StepRef step;
  int64_t S = 0, layer = 0;
  bool indexer = false;  // the indexer's compressor (else the attention's)
  int64_t m = 0, width = 0, c = 1;  // ratio, entry width, series (2 with overlap)
  const float* kv = nullptr;  // [S, c·width]
  const float* g = nullptr;   // [S, c·width]
  const float* ape = nullptr; // [m, c·width]
  const float* norm = nullptr;  // [width]
  const double* freqs = nullptr;
  int64_t rd = 0;
  float eps = 0;
  float* scratch = nullptr;  // [S, width]
  int64_t count() const { return S; }
  DSV4_HD void operator()(int64_t i) const {
    if (i >= step.counts[dsv4::kStepSeqs]) return;
    const dsv4::StepSeq& sq = step.seqs[i];
    const dsv4::CompressorBufs& st = indexer ? sq.state[layer].index : sq.state[layer].comp;
    const int64_t row = c * width;
    float* e = scratch + i * width;
    for (int64_t s = sq.row0; s < sq.row0 + sq.rows; ++s) {
      const int64_t t = step.pos[s], slot = t % m;
      for (int64_t k = 0; k < row; ++k) {
        st.pend_kv[slot * row + k] = kv[s * row + k];
        st.pend_g[slot * row + k] = g[s * row + k] + ape[slot * row + k];
      }
      if (slot != m - 1) continue;
      const int64_t win = t / m;
      const bool has_prev = c == 2 && win > 0;
      for (int64_t ch = 0; ch < width; ++ch) {
        const int64_t off = (c - 1) * width + ch;  // series Cb (or the only one)
        float mx = -INFINITY;
        for (int64_t k = 0; k < m; ++k) mx = max_(mx, st.pend_g[k * row + off]);
        if (has_prev)
          for (int64_t k = 0; k < m; ++k) mx = max_(mx, st.prev_g[k * width + ch]);
        double num = 0, den = 0;
        for (int64_t k = 0; k < m; ++k) {
          const double p = exp(static_cast<double>(st.pend_g[k * row + off] - mx));
          den += p;
          num += p * st.pend_kv[k * row + off];
        }
        if (has_prev)
          for (int64_t k = 0; k < m; ++k) {
            const double p = exp(static_cast<double>(st.prev_g[k * width + ch] - mx));
            den += p;
            num += p * st.prev_kv[k * width + ch];
          }
        e[ch] = static_cast<float>(num / den);
      }
      double ss = 0;
      for (int64_t ch = 0; ch < width; ++ch) ss += static_cast<double>(e[ch]) * e[ch];
      const float inv = static_cast<float>(1.0 / sqrt(ss / static_cast<double>(width) + eps));
      for (int64_t ch = 0; ch < width; ++ch) e[ch] = e[ch] * inv * norm[ch];
      const double pos = static_cast<double>(win * m);
      float* r = e + width - rd;
      for (int64_t k = 0; k < rd / 2; ++k) {
        const double ang = pos * freqs[k];
        const float cs = static_cast<float>(cos(ang)), sn = static_cast<float>(sin(ang));
        const float x0 = r[2 * k], x1 = r[2 * k + 1];
        r[2 * k] = x0 * cs - x1 * sn;
        r[2 * k + 1] = x1 * cs + x0 * sn;
      }
      encode_entry(st.entries.fmt, e, width, st.entries.rope, entry_at(st.entries, win));
      if (c == 2)
        for (int64_t k = 0; k < m; ++k)
          for (int64_t ch = 0; ch < width; ++ch) {
            st.prev_kv[k * width + ch] = st.pend_kv[k * row + ch];
            st.prev_g[k * width + ch] = st.pend_g[k * row + ch];
          }
    }
  }
};

}  // namespace dsv4k
