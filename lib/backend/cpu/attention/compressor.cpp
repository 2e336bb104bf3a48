// KV compressor (model.md §5): gated softmax pooling of each complete window into one entry.
#include <cmath>
#include <cstring>

#include "backend/cpu/cpu_backend.hpp"
#include "quant/cache_format.hpp"

namespace dsv4::DSV4_CPU_NS {

void CpuBackend::compress(const CompressorW& w, CompressorSlot which, const StepRef& step, int64_t S, int64_t layer,
                          const float* kv, const float* g, const double* freqs, int64_t rd, float eps) {
  const int64_t m = w.ratio, W = w.width, c = w.overlap ? 2 : 1, row = c * W;
  for (int64_t s = 0; s < S; ++s) {
    const StepSeq& sq = step.seqs[step.seq[s]];
    const CompressorBufs& st = which == CompressorSlot::Attention ? sq.state[layer].comp : sq.state[layer].index;
    const int64_t t = step.pos[s], slot = t % m;
    std::memcpy(st.pend_kv + slot * row, kv + s * row, static_cast<size_t>(row) * sizeof(float));
    for (int64_t i = 0; i < row; ++i) st.pend_g[slot * row + i] = g[s * row + i] + w.ape[slot * row + i];
    if (slot != m - 1) continue;
    const int64_t win = t / m;
    // The entry is pooled in f32 scratch, then stored in the cache's format.
    float* e = ws_.get(kCompressEntry, static_cast<size_t>(W));
    const bool has_prev = w.overlap && win > 0;
    par(W, 32, [&](int, int64_t cb, int64_t ce) {
      for (int64_t ch = cb; ch < ce; ++ch) {
        // Series Cb (or the only series) of this window sits at channel offset (c-1)·W.
        const int64_t off = (c - 1) * W + ch;
        float mx = -INFINITY;
        for (int64_t i = 0; i < m; ++i) mx = std::max(mx, st.pend_g[i * row + off]);
        if (has_prev)
          for (int64_t i = 0; i < m; ++i) mx = std::max(mx, st.prev_g[i * W + ch]);
        double num = 0, den = 0;
        for (int64_t i = 0; i < m; ++i) {
          const double p = std::exp(static_cast<double>(st.pend_g[i * row + off] - mx));
          den += p;
          num += p * st.pend_kv[i * row + off];
        }
        if (has_prev)
          for (int64_t i = 0; i < m; ++i) {
            const double p = std::exp(static_cast<double>(st.prev_g[i * W + ch] - mx));
            den += p;
            num += p * st.prev_kv[i * W + ch];
          }
        e[ch] = static_cast<float>(num / den);
      }
    });
    double ss = 0;
    for (int64_t ch = 0; ch < W; ++ch) ss += static_cast<double>(e[ch]) * e[ch];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(W) + eps));
    for (int64_t ch = 0; ch < W; ++ch) e[ch] = e[ch] * inv * w.norm[ch];
    const double pos = static_cast<double>(win * m);
    float* r = e + W - rd;
    for (int64_t i = 0; i < rd / 2; ++i) {
      const double ang = pos * freqs[i];
      const float cs = static_cast<float>(std::cos(ang)), sn = static_cast<float>(std::sin(ang));
      const float x0 = r[2 * i], x1 = r[2 * i + 1];
      r[2 * i] = x0 * cs - x1 * sn;
      r[2 * i + 1] = x1 * cs + x0 * sn;
    }
    quant::encode_entry(st.entries.fmt, e, W, st.entries.rope, st.entries.at(win));
    if (w.overlap)
      for (int64_t i = 0; i < m; ++i) {
        std::memcpy(st.prev_kv + i * W, st.pend_kv + i * row, static_cast<size_t>(W) * sizeof(float));
        std::memcpy(st.prev_g + i * W, st.pend_g + i * row, static_cast<size_t>(W) * sizeof(float));
      }
  }
}

}  // namespace dsv4::DSV4_CPU_NS
