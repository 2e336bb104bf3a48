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
