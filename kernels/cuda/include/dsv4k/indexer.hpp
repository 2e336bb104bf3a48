// dsv4k reference kernels: the lightning indexer (model.md §6). Scores of every visible key per
// row, then the top k by rank (higher score first, equal scores: lower index first), written in
// that order, -1 past the visible count: the CPU backend's selection exactly.
#pragma once
#include "dsv4k/formats.hpp"

namespace dsv4k {

// A row's query rounded to int16 per head (for int8 keys): qi[s, h, d], qscale[s, h] =
// max|q_h| / 32767 (the CPU backend's rounding). One item per (row, head).
struct IndexQuery {
  const float* q = nullptr;  // [S, nI·ihd]
  int64_t S = 0, nI = 0, ihd = 0;
  int16_t* qi = nullptr;
  float* qscale = nullptr;
  int64_t count() const { return S * nI; }
  DSV4_HD void operator()(int64_t i) const {
    const float* qh = q + i * ihd;
    float amax = 0;
    for (int64_t d = 0; d < ihd; ++d) amax = max_(amax, fabsf(qh[d]));
    qscale[i] = amax / 32767.0f;
    const float inv = amax > 0 ? 32767.0f / amax : 0.0f;
    for (int64_t d = 0; d < ihd; ++d) {
      const float v = rintf(qh[d] * inv);
      qi[i * ihd + d] = static_cast<int16_t>(v >= -32767.0f && v <= 32767.0f ? v : 0.0f);
    }
  }
};

// score[s, w] = Σ_h (wts[s, h] · wts_scale) · relu(q_h · k_w) / sqrt(ihd) for visible w (w <
// (pos + 1) / ratio); the head sum in double, eight partial sums (h mod 8) folded in a fixed order.
// One item per (row, key slot) up to `cap` slots per row.
struct IndexScore {
  dsv4::StepRef step;
  int64_t S = 0, layer = 0, ratio = 0, nI = 0, ihd = 0, cap = 0;
  const float* q = nullptr;
  const int16_t* qi = nullptr;
  const float* qscale = nullptr;
  const float* wts = nullptr;
  float wts_scale = 1;
  float* score = nullptr;  // [S, cap]
  int64_t count() const { return S * cap; }
  DSV4_HD void operator()(int64_t i) const {
    const int64_t s = i / cap, w = i % cap;
    if (w >= (step.pos[s] + 1) / ratio) return;
    const dsv4::EntryTable& t = step.seqs[step.seq[s]].state[layer].index.entries;
    const unsigned char* k = entry_at(t, w);
    auto term = [&](int64_t h) {  // wts[h] · relu(q_h · k) in double
      float dot = 0;
      if (t.fmt == dsv4::EntryFormat::I8) {
        int64_t acc = 0;
        const int16_t* qh = qi + (s * nI + h) * ihd;
        for (int64_t d = 0; d < ihd; ++d) acc += static_cast<int32_t>(qh[d]) * static_cast<int8_t>(k[d]);
        dot = static_cast<float>(acc) * (qscale[s * nI + h] * load<float>(k + ihd));
      } else {
        const float* qh = q + (s * nI + h) * ihd;
        for (int64_t d = 0; d < ihd; ++d) dot += qh[d] * entry_value(t.fmt, k, ihd, t.rope, d);
      }
      return static_cast<double>(max_(0.0f, dot));
    };
    double p[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    const int64_t h8 = nI / 8 * 8;
    for (int64_t h = 0; h < h8; ++h) p[h % 8] = fma(static_cast<double>(wts[s * nI + h] * wts_scale), term(h), p[h % 8]);
    double acc = ((p[0] + p[4]) + (p[2] + p[6])) + ((p[1] + p[5]) + (p[3] + p[7]));
    for (int64_t h = h8; h < nI; ++h) acc += static_cast<double>(wts[s * nI + h] * wts_scale) * term(h);
    score[s * cap + w] = static_cast<float>(acc) * (1.0f / sqrtf(static_cast<float>(ihd)));
  }
};

// select[s, r] = the key of rank r among the row's visible keys (r < min(topk, visible)), -1 for
// the other slots. One item per (row, slot) up to max(cap, topk): an item ranks its key by counting
// the keys before it.
struct IndexSelect {
  dsv4::StepRef step;
  int64_t S = 0, ratio = 0, cap = 0, topk = 0;
  const float* score = nullptr;
  int32_t* select = nullptr;
  DSV4_HD int64_t items() const { return cap > topk ? cap : topk; }
  int64_t count() const { return S * items(); }
  DSV4_HD void operator()(int64_t i) const {
    const int64_t n = items(), s = i / n, w = i % n;
    const int64_t vis = (step.pos[s] + 1) / ratio, k = min_(topk, vis);
    if (w >= k && w < topk) select[s * topk + w] = -1;
    if (w >= vis) return;
    const float* sc = score + s * cap;
    const float v = sc[w];
    int64_t rank = 0;
    for (int64_t u = 0; u < vis && rank < k; ++u) rank += sc[u] > v || (sc[u] == v && u < w);
    if (rank < k) select[s * topk + rank] = static_cast<int32_t>(w);
  }
};

// ---- the same selection for long rows: a radix select on distinct 64-bit keys (order-preserving
// score bits, then the inverted index: a larger key is a higher score, or an equal score at a lower
// index), eight 8-bit passes of per-row histograms (integer atomics: counts, order-free), then the
// keys at or above the k-th one are collected and each is ranked among them. Fixed launches,
// O(visible) work per pass, and the output of IndexSelect bit for bit. ----

DSV4_HDI uint64_t select_key(float score, int64_t w) {
  uint32_t b = f32_bits(score == 0.0f ? 0.0f : score);  // -0 and +0 are equal scores
  b = (b & 0x80000000u) != 0 ? ~b : (b | 0x80000000u);
  return static_cast<uint64_t>(b) << 32 | (0xffffffffu - static_cast<uint32_t>(w));
}

struct TopkState {
  dsv4::StepRef step;
  int64_t S = 0, ratio = 0, cap = 0, topk = 0;
  const float* score = nullptr;  // [S, cap]
  uint64_t* prefix = nullptr;    // [S] the key bits fixed so far (after the passes: the k-th key)
  int32_t* need = nullptr;       // [S] keys still to take below the prefix
  int32_t* hist = nullptr;       // [S, 256]
  int32_t* taken = nullptr;      // [S] keys collected
  int32_t* list = nullptr;       // [S, topk] collected keys' indices (in no order)
  int32_t* select = nullptr;     // [S, topk]
  DSV4_HD int64_t visible(int64_t s) const { return (step.pos[s] + 1) / ratio; }
};

// Items (s, b) for b < max(256, topk): clears the histograms and the outputs.
struct TopkInit {
  TopkState t;
  DSV4_HD int64_t items() const { return t.topk > 256 ? t.topk : 256; }
  int64_t count() const { return t.S * items(); }
  DSV4_HD void operator()(int64_t i) const {
    const int64_t s = i / items(), b = i % items();
    if (b < 256) t.hist[s * 256 + b] = 0;
    if (b < t.topk) t.select[s * t.topk + b] = -1;
    if (b == 0) {
      t.prefix[s] = 0;
      t.need[s] = static_cast<int32_t>(min_(t.topk, t.visible(s)));
      t.taken[s] = 0;
    }
  }
};

// Pass p (digit bits 56 - 8p … 63 - 8p): histogram of the digit over the keys matching the prefix.
struct TopkHist {
  TopkState t;
  int pass = 0;
  int64_t count() const { return t.S * t.cap; }
  DSV4_HD void operator()(int64_t i) const {
    const int64_t s = i / t.cap, w = i % t.cap;
    if (t.need[s] == 0 || w >= t.visible(s)) return;
    const uint64_t k = select_key(t.score[s * t.cap + w], w);
    const int shift = 56 - 8 * pass;
    if (pass > 0 && (k >> (shift + 8)) != (t.prefix[s] >> (shift + 8))) return;
    atomic_add_i32(t.hist + s * 256 + static_cast<int64_t>((k >> shift) & 255u), 1);
  }
};

// Pass p, per row: the digit at which the count from the top reaches `need`; fixes it in the prefix.
struct TopkPick {
  TopkState t;
  int pass = 0;
  int64_t count() const { return t.S; }
  DSV4_HD void operator()(int64_t s) const {
    int32_t* h = t.hist + s * 256;
    if (t.need[s] > 0) {
      int32_t above = 0;
      for (int d = 255; d >= 0; --d) {
        if (above + h[d] >= t.need[s]) {
          t.prefix[s] |= static_cast<uint64_t>(d) << (56 - 8 * pass);
          t.need[s] -= above;
          break;
        }
        above += h[d];
      }
    }
    for (int d = 0; d < 256; ++d) h[d] = 0;
  }
};

// Collects the keys at or above the row's k-th key (exactly k of them: keys are distinct).
struct TopkCollect {
  TopkState t;
  int64_t count() const { return t.S * t.cap; }
  DSV4_HD void operator()(int64_t i) const {
    const int64_t s = i / t.cap, w = i % t.cap;
    if (w >= t.visible(s) || min_(t.topk, t.visible(s)) == 0) return;
    if (select_key(t.score[s * t.cap + w], w) < t.prefix[s]) return;
    const int32_t slot = atomic_add_i32(t.taken + s, 1);
    if (slot < t.topk) t.list[s * t.topk + slot] = static_cast<int32_t>(w);
  }
};

// select[s, rank] = each collected key, ranked among the collected ones.
struct TopkRank {
  TopkState t;
  int64_t count() const { return t.S * t.topk; }
  DSV4_HD void operator()(int64_t i) const {
    const int64_t s = i / t.topk, j = i % t.topk;
    const int64_t n = min_<int64_t>(t.taken[s], t.topk);
    if (j >= n) return;
    const int32_t* l = t.list + s * t.topk;
    const float* sc = t.score + s * t.cap;
    const uint64_t k = select_key(sc[l[j]], l[j]);
    int64_t rank = 0;
    for (int64_t u = 0; u < n; ++u) rank += select_key(sc[l[u]], l[u]) > k;
    t.select[s * t.topk + rank] = l[j];
  }
};

}  // namespace dsv4k
