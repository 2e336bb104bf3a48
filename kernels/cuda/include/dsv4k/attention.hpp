// dsv4k reference kernels: attention over window rows + compressed entries + sink (model.md §4),
// the window store, and the rounding of this step's rows through the window's cache format.
#pragma once
#include "dsv4k/formats.hpp"

namespace dsv4k {

DSV4_HDI size_t window_row_bytes(const dsv4::LayerState& st, int64_t hd) {
  return st.window_stride > 0 ? static_cast<size_t>(st.window_stride) : static_cast<size_t>(hd) * sizeof(float);
}

// kvs[s, :] = kv[s, :] as the ring of its sequence will store it (encoded and decoded again in the
// window format; a copy for F32). tmp: [S, 4·hd + 64] bytes.
struct RoundRows {
  dsv4::StepRef step;
  int64_t S = 0, layer = 0, hd = 0;
  const float* kv = nullptr;
  float* kvs = nullptr;
  unsigned char* tmp = nullptr;
  int64_t count() const { return S; }
  DSV4_HD void operator()(int64_t s) const {
    const dsv4::LayerState& st = step.seqs[step.seq[s]].state[layer];
    const float* src = kv + s * hd;
    float* dst = kvs + s * hd;
    if (st.window_fmt == dsv4::EntryFormat::F32) {
      for (int64_t d = 0; d < hd; ++d) dst[d] = src[d];
      return;
    }
    unsigned char* b = tmp + s * (4 * hd + 64);
    encode_entry(st.window_fmt, src, hd, st.window_rope, b);
    for (int64_t d = 0; d < hd; ++d) dst[d] = entry_value(st.window_fmt, b, hd, st.window_rope, d);
  }
};

// out[s, h, :] = softmax over (the row's keys, the sink) of q·k · scale, times the keys (keys are
// the values). The row's keys, in the reference's order: window rows win0 … t (this step's from
// kvs, older ones from the ring), then the compressed entries (all visible, or the selected ones).
// One item per (row, head): the logits twice (max, then exponentials), accumulated in `out`.
struct Attention {
  dsv4::StepRef step;
  int64_t S = 0, H = 0, hd = 0, W = 0, layer = 0;
  const float* q = nullptr;    // [S, H·hd]
  const float* kvs = nullptr;  // [S, hd] (RoundRows)
  bool entries = false;
  int64_t ratio = 0;
  const int32_t* select = nullptr;  // [S, topk] or null (all visible)
  int64_t topk = 0;
  const float* sink = nullptr;
  float scale = 0;
  float* out = nullptr;
  int64_t count() const { return S * H; }

  // f(key) for each key of row s, where key(d) gives value d.
  template <class F>
  DSV4_HD void for_each_key(int64_t s, F&& f) const {
    const int64_t t = step.pos[s];
    const dsv4::StepSeq& sq = step.seqs[step.seq[s]];
    const dsv4::LayerState& st = sq.state[layer];
    const int64_t win0 = t - W + 1 > 0 ? t - W + 1 : 0;
    const size_t rs = window_row_bytes(st, hd);
    for (int64_t j = win0; j <= t; ++j) {
      if (j >= sq.p0) {
        const float* row = kvs + (static_cast<int64_t>(sq.row0) + j - sq.p0) * hd;
        f([row](int64_t d) { return row[d]; });
      } else {
        const unsigned char* src = st.ring + static_cast<size_t>(j % W) * rs;
        const dsv4::EntryFormat fmt = st.window_fmt;
        const int64_t hdv = hd, rope = st.window_rope;
        f([=](int64_t d) { return entry_value(fmt, src, hdv, rope, d); });
      }
    }
    if (!entries) return;
    const dsv4::EntryTable& et = st.comp.entries;
    const int64_t hdv = hd;
    auto entry = [&](int64_t w) {
      const unsigned char* src = entry_at(et, w);
      const dsv4::EntryFormat fmt = et.fmt;
      const int64_t rope = et.rope;
      f([=](int64_t d) { return entry_value(fmt, src, hdv, rope, d); });
    };
    if (select == nullptr) {
      for (int64_t w = 0, n = (t + 1) / ratio; w < n; ++w) entry(w);
    } else {
      for (int64_t k = 0; k < topk; ++k)
        if (select[s * topk + k] >= 0) entry(select[s * topk + k]);
    }
  }

  DSV4_HD void operator()(int64_t i) const {
    const int64_t s = i / H, h = i % H;
    const float* qh = q + s * H * hd + h * hd;
    float* o = out + s * H * hd + h * hd;
    const float sk = sink[h];
    float mx = sk;
    for_each_key(s, [&](auto key) {
      float dot = 0;
      for (int64_t d = 0; d < hd; ++d) dot += qh[d] * key(d);
      mx = max_(mx, dot * scale);
    });
    for (int64_t d = 0; d < hd; ++d) o[d] = 0;
    float l = 0;
    for_each_key(s, [&](auto key) {
      float dot = 0;
      for (int64_t d = 0; d < hd; ++d) dot += qh[d] * key(d);
      const float p = expf(dot * scale - mx);
      l += p;
      for (int64_t d = 0; d < hd; ++d) o[d] += p * key(d);
    });
    const float inv = 1.0f / (expf(sk - mx) + l);
    for (int64_t d = 0; d < hd; ++d) o[d] *= inv;
  }
};

// ---- wide attention (the backend's, decode and prefill): the keys listed, then logits, softmax
// and output as three wide kernels (the one above has only S·H items, each walking every key
// twice), for the rows [s0, s0 + R) of the step at a time (prefill goes in chunks of rows that
// bound the logits' scratch). Same keys, same order, same result up to the order of the fp32
// sums. ----

// A key of a row's list: window row j (code 2j) or compressed entry w (code 2w + 1).
struct AttnKeys {
  Attention a;
  int64_t maxk = 0;          // list capacity per row
  int32_t* keys = nullptr;   // [R, maxk]
  int32_t* nkeys = nullptr;  // [R]
  int64_t s0 = 0, R = 0;     // the rows [s0, s0 + R) of the step (the lists are the chunk's own)
  int64_t count() const { return R; }
  DSV4_HD void operator()(int64_t r) const {
    const int64_t s = s0 + r, t = a.step.pos[s];
    const int64_t win0 = t - a.W + 1 > 0 ? t - a.W + 1 : 0;
    int32_t* k = keys + r * maxk;
    int64_t n = 0;
    for (int64_t j = win0; j <= t && n < maxk; ++j) k[n++] = static_cast<int32_t>(2 * j);
    if (a.entries) {
      if (a.select == nullptr) {
        for (int64_t w = 0, e = (t + 1) / a.ratio; w < e && n < maxk; ++w) k[n++] = static_cast<int32_t>(2 * w + 1);
      } else {
        for (int64_t i = 0; i < a.topk && n < maxk; ++i)
          if (a.select[s * a.topk + i] >= 0) k[n++] = 2 * a.select[s * a.topk + i] + 1;
      }
    }
    nkeys[r] = static_cast<int32_t>(n);
  }
};

// Value d of key `code` of row s.
DSV4_HDI float attn_key_value(const Attention& a, int64_t s, int32_t code, int64_t d) {
  const dsv4::StepSeq& sq = a.step.seqs[a.step.seq[s]];
  const dsv4::LayerState& st = sq.state[a.layer];
  const int64_t v = code >> 1;
  if ((code & 1) == 0) {
    if (v >= sq.p0) return a.kvs[(static_cast<int64_t>(sq.row0) + v - sq.p0) * a.hd + d];
    return entry_value(st.window_fmt, st.ring + static_cast<size_t>(v % a.W) * window_row_bytes(st, a.hd), a.hd, st.window_rope, d);
  }
  const dsv4::EntryTable& et = st.comp.entries;
  return entry_value(et.fmt, entry_at(et, v), a.hd, et.rope, d);
}

// logits[s, h, i] = q_h · key_i · scale. Items (s, i, h), heads fastest: a warp reads one key.
struct AttnLogits {
  Attention a;
  int64_t maxk = 0;
  const int32_t* keys = nullptr;
  const int32_t* nkeys = nullptr;
  float* logits = nullptr;  // [R, H, maxk]
  int64_t s0 = 0, R = 0;
  int64_t count() const { return R * maxk * a.H; }
  DSV4_HD void operator()(int64_t n) const {
    const int64_t h = n % a.H, i = (n / a.H) % maxk, r = n / a.H / maxk, s = s0 + r;
    if (i >= nkeys[r]) return;
    const int32_t code = keys[r * maxk + i];
    const float* qh = a.q + s * a.H * a.hd + h * a.hd;
    float dot = 0;
    for (int64_t d = 0; d < a.hd; ++d) dot += qh[d] * attn_key_value(a, s, code, d);
    logits[(r * a.H + h) * maxk + i] = dot * a.scale;
  }
};

// In place: logits -> exp(logit - m), m the largest of them and the sink; inv[s, h] = 1 / (exp(sink - m) + Σ).
struct AttnSoftmax {
  Attention a;
  int64_t maxk = 0;
  const int32_t* nkeys = nullptr;
  float* logits = nullptr;
  float* inv = nullptr;  // [R, H]
  int64_t s0 = 0, R = 0;
  int64_t count() const { return R * a.H; }
  DSV4_HD void operator()(int64_t n) const {
    const int64_t h = n % a.H, r = n / a.H, nk = nkeys[r];
    float* p = logits + n * maxk;
    const float sk = a.sink[h];
    float mx = sk;
    for (int64_t i = 0; i < nk; ++i) mx = max_(mx, p[i]);
    float l = 0;
    for (int64_t i = 0; i < nk; ++i) l += (p[i] = expf(p[i] - mx));
    inv[n] = 1.0f / (expf(sk - mx) + l);
  }
};

// out[s, h, d] = inv · Σ_i p_i · key_i[d]. Items (s, h, d), d fastest: a warp reads a key's row.
struct AttnOut {
  Attention a;
  int64_t maxk = 0;
  const int32_t* keys = nullptr;
  const int32_t* nkeys = nullptr;
  const float* p = nullptr;
  const float* inv = nullptr;
  int64_t s0 = 0, R = 0;
  int64_t count() const { return R * a.H * a.hd; }
  DSV4_HD void operator()(int64_t n) const {
    const int64_t d = n % a.hd, rh = n / a.hd, r = rh / a.H, s = s0 + r;
    const float* ps = p + rh * maxk;
    const int32_t* k = keys + r * maxk;
    float o = 0;
    for (int64_t i = 0, nk = nkeys[r]; i < nk; ++i) o += ps[i] * attn_key_value(a, s, k[i], d);
    a.out[s0 * a.H * a.hd + n] = o * inv[rh];
  }
};

// Each sequence's last min(rows, W) rows of kv [S, hd] into its ring. One item per sequence slot
// (items past the step's sequence count do nothing).
struct StoreWindow {
  dsv4::StepRef step;
  int64_t S = 0, layer = 0, W = 0, hd = 0;
  const float* kv = nullptr;
  int64_t count() const { return S; }
  DSV4_HD void operator()(int64_t i) const {
    if (i >= step.counts[dsv4::kStepSeqs]) return;
    const dsv4::StepSeq& sq = step.seqs[i];
    const dsv4::LayerState& st = sq.state[layer];
    const size_t rs = window_row_bytes(st, hd);
    const int64_t p0 = sq.p0, end = sq.p0 + sq.rows;
    for (int64_t j = max_(p0, end - W); j < end; ++j)
      encode_entry(st.window_fmt, kv + (sq.row0 + j - p0) * hd, hd, st.window_rope, st.ring + static_cast<size_t>(j % W) * rs);
  }
};

}  // namespace dsv4k
