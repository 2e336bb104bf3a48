// dsv4k kernels: the KV compressor (model.md §5). Compress is the reference: one item per sequence
// of the step; its rows in order append to the unfinished window; each completed window is pooled
// (gated softmax over its m slots, and the previous window's with overlap), normalised, rotated at
// w·m and stored as entry w in the cache's format.
//
// The parallel kernels below do the same arithmetic in the same order, so they give the
// reference's bits (entries and state alike), in four launches (in this order: each reads state
// the next ones overwrite):
//   CompressPool    one item per (row, channel): a row that completes its window pools that
//                   channel, reading each slot from the step's rows or, for positions before the
//                   step, from the state (pending rows; the last complete window's Ca half);
//   CompressFinish  one item per row completing a window: RMS norm, rotation, entry encode;
//   CompressPrev    (overlap) one item per (sequence, slot, channel): the Ca half of the sequence's
//                   last window completed in this step becomes `prev`;
//   CompressPend    one item per (row, value): the step's last row of each slot becomes `pend`.
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

// The parallel compressor's shared view of one step (the reference kernel's parameters).
struct CompressView {
  Compress p;
  DSV4_HDI const dsv4::CompressorBufs& bufs(const dsv4::StepSeq& sq) const { return p.indexer ? sq.state[p.layer].index : sq.state[p.layer].comp; }
  // kv and gate (ape added) of position t, value `off` of its row, for positions of the window at
  // the step's start or later: a row of this step or a pending row.
  DSV4_HDI void cur(const dsv4::StepSeq& sq, const dsv4::CompressorBufs& st, int64_t t, int64_t off, float* kv, float* g) const {
    const int64_t row = p.c * p.width, slot = t % p.m;
    if (t >= sq.p0) {
      const int64_t s = sq.row0 + (t - sq.p0);
      *kv = p.kv[s * row + off];
      *g = p.g[s * row + off] + p.ape[slot * row + off];
    } else {
      *kv = st.pend_kv[slot * row + off];
      *g = st.pend_g[slot * row + off];
    }
  }
  // The Ca half (channel ch) of position t of the window before a completed one: also from the
  // last complete window's copy when that window ended before the step.
  DSV4_HDI void ca(const dsv4::StepSeq& sq, const dsv4::CompressorBufs& st, int64_t t, int64_t ch, float* kv, float* g) const {
    if (t >= sq.p0 || t / p.m == sq.p0 / p.m) {
      cur(sq, st, t, ch, kv, g);
    } else {
      *kv = st.prev_kv[(t % p.m) * p.width + ch];
      *g = st.prev_g[(t % p.m) * p.width + ch];
    }
  }
};

struct CompressPool {
  CompressView v;
  int64_t count() const { return v.p.S * v.p.width; }
  DSV4_HD void operator()(int64_t i) const {
    const Compress& p = v.p;
    const int64_t s = i / p.width, ch = i % p.width, t = p.step.pos[s];
    if (t % p.m != p.m - 1) return;
    const dsv4::StepSeq& sq = p.step.seqs[p.step.seq[s]];
    const dsv4::CompressorBufs& st = v.bufs(sq);
    const int64_t win = t / p.m, base = win * p.m, off = (p.c - 1) * p.width + ch;
    const bool has_prev = p.c == 2 && win > 0;
    float kv, g, mx = -INFINITY;
    for (int64_t k = 0; k < p.m; ++k) {
      v.cur(sq, st, base + k, off, &kv, &g);
      mx = max_(mx, g);
    }
    if (has_prev)
      for (int64_t k = 0; k < p.m; ++k) {
        v.ca(sq, st, base - p.m + k, ch, &kv, &g);
        mx = max_(mx, g);
      }
    double num = 0, den = 0;
    for (int64_t k = 0; k < p.m; ++k) {
      v.cur(sq, st, base + k, off, &kv, &g);
      const double e = exp(static_cast<double>(g - mx));
      den += e;
      num += e * kv;
    }
    if (has_prev)
      for (int64_t k = 0; k < p.m; ++k) {
        v.ca(sq, st, base - p.m + k, ch, &kv, &g);
        const double e = exp(static_cast<double>(g - mx));
        den += e;
        num += e * kv;
      }
    p.scratch[s * p.width + ch] = static_cast<float>(num / den);
  }
};

struct CompressFinish {
  CompressView v;
  int64_t count() const { return v.p.S; }
  DSV4_HD void operator()(int64_t s) const {
    const Compress& p = v.p;
    const int64_t t = p.step.pos[s];
    if (t % p.m != p.m - 1) return;
    const dsv4::CompressorBufs& st = v.bufs(p.step.seqs[p.step.seq[s]]);
    const int64_t width = p.width, win = t / p.m;
    float* e = p.scratch + s * width;
    double ss = 0;
    for (int64_t ch = 0; ch < width; ++ch) ss += static_cast<double>(e[ch]) * e[ch];
    const float inv = static_cast<float>(1.0 / sqrt(ss / static_cast<double>(width) + p.eps));
    for (int64_t ch = 0; ch < width; ++ch) e[ch] = e[ch] * inv * p.norm[ch];
    const double pos = static_cast<double>(win * p.m);
    float* r = e + width - p.rd;
    for (int64_t k = 0; k < p.rd / 2; ++k) {
      const double ang = pos * p.freqs[k];
      const float cs = static_cast<float>(cos(ang)), sn = static_cast<float>(sin(ang));
      const float x0 = r[2 * k], x1 = r[2 * k + 1];
      r[2 * k] = x0 * cs - x1 * sn;
      r[2 * k + 1] = x1 * cs + x0 * sn;
    }
    encode_entry(st.entries.fmt, e, width, st.entries.rope, entry_at(st.entries, win));
  }
};

struct CompressPrev {
  CompressView v;
  int64_t count() const { return v.p.c == 2 ? v.p.S * v.p.m * v.p.width : 0; }  // (at most S sequences)
  DSV4_HD void operator()(int64_t i) const {
    const Compress& p = v.p;
    const int64_t q = i / (p.m * p.width), k = i / p.width % p.m, ch = i % p.width;
    if (q >= p.step.counts[dsv4::kStepSeqs]) return;
    const dsv4::StepSeq& sq = p.step.seqs[q];
    const int64_t last = (sq.p0 + sq.rows) / p.m - 1;  // the last window complete after the step
    if (last < 0 || (last + 1) * p.m <= sq.p0) return;  // none completed in this step
    const dsv4::CompressorBufs& st = v.bufs(sq);
    float kv, g;
    v.cur(sq, st, last * p.m + k, ch, &kv, &g);
    st.prev_kv[k * p.width + ch] = kv;
    st.prev_g[k * p.width + ch] = g;
  }
};

struct CompressPend {
  CompressView v;
  int64_t count() const { return v.p.S * v.p.c * v.p.width; }
  DSV4_HD void operator()(int64_t i) const {
    const Compress& p = v.p;
    const int64_t row = p.c * p.width, s = i / row, k = i % row, t = p.step.pos[s];
    const dsv4::StepSeq& sq = p.step.seqs[p.step.seq[s]];
    if (t + p.m < sq.p0 + sq.rows) return;  // a later row of the step has this slot
    const dsv4::CompressorBufs& st = v.bufs(sq);
    const int64_t slot = t % p.m;
    st.pend_kv[slot * row + k] = p.kv[s * row + k];
    st.pend_g[slot * row + k] = p.g[s * row + k] + p.ape[slot * row + k];
  }
};

}  // namespace dsv4k
