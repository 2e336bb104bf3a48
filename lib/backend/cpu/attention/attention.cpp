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
// Rows that see more than kKeyBlock keys (long contexts) are computed in key blocks of that
// many rows with kBlockHeads heads at a time: a softmax per block, the blocks folded in order
// into the sink's term. The same fold runs whether a row's blocks are spread across threads
// (decode) or taken in turn by one thread (prefill), so both give the same bits.
constexpr int64_t kKeyBlock = 1024, kBlockHeads = 32;
constexpr size_t kMaxRowBytes = 8192;  // a compact-type window row, rounded through the format (head_dim <= 2048)

// The keys a row at position t sees, in the reference's order: window rows, then compressed
// entries (all visible, or the selected ones). put(i, src) is called for list positions
// [b, e) only, with either an f32 row or an entry.
struct RowKeys {
  const AttentionArgs& a;
  int64_t s, t, win0, nwin, nent;
  const StepSeq& sq;
  const LayerState& st;
  RowKeys(const AttentionArgs& args, int64_t row)
      : a(args), s(row), t(args.step.pos[row]), sq(args.step.seqs[args.step.seq[row]]), st(sq.state[args.layer]) {
    win0 = std::max<int64_t>(0, t - a.W + 1);
    nwin = t - win0 + 1;
    nent = 0;
    if (a.entries) {
      if (a.select != nullptr) {
        for (int64_t k = 0; k < a.topk; ++k) nent += a.select[s * a.topk + k] >= 0;
      } else {
        nent = (t + 1) / a.ratio;
      }
    }
  }
  int64_t count() const { return nwin + nent; }
  // Gathers list positions [b, e) into K [e - b, hd] (ring rows and entries decoded from the
  // cache format). `kv` [S, hd]: this step's window rows as the ring will store them.
  void gather(int64_t b, int64_t e, const float* kv_step, float* K) const {
    const int64_t hd = a.hd;
    const float* kv = kv_step + static_cast<int64_t>(sq.row0) * hd;  // row of position p0 of this sequence
    const size_t rs = st.window_stride > 0 ? static_cast<size_t>(st.window_stride) : static_cast<size_t>(hd) * sizeof(float);
    int64_t i = b;
    for (; i < std::min(e, nwin); ++i) {
      const int64_t j = win0 + i;
      if (j >= sq.p0)
        std::memcpy(K + (i - b) * hd, kv + (j - sq.p0) * hd, static_cast<size_t>(hd) * sizeof(float));
      else
        quant::decode_entry(st.window_fmt, st.ring + static_cast<size_t>(j % a.W) * rs, hd, st.window_rope, K + (i - b) * hd);
    }
    if (i >= e) return;
    const EntryTable& et = st.comp.entries;
    if (a.select == nullptr) {
      for (; i < e; ++i) quant::decode_entry(et.fmt, et.at(i - nwin), hd, et.rope, K + (i - b) * hd);
      return;
    }
    int64_t k = 0, seen = 0;  // the (i - nwin)-th selected entry
    for (; i < e; ++i) {
      for (;; ++k) {
        const int32_t w = a.select[s * a.topk + k];
        if (w >= 0 && seen++ == i - nwin) {
          quant::decode_entry(et.fmt, et.at(w), hd, et.rope, K + (i - b) * hd);
          ++k;
          break;
        }
      }
    }
  }
};

// One key block's softmax for nh heads: P = exp(Q·Kᵀ·scale - m_h), l_h = Σ P, O = P·K.
void block_softmax(const float* q, int64_t nh, int64_t hd, const float* K, int64_t n, float scale, float* P, float* O, float* m, float* l) {
  Eigen::Map<const RowMat> Km(K, n, hd);
  Eigen::Map<const RowMat> Q(q, nh, hd);
  Eigen::Map<RowMat> Pm(P, nh, n);
  Pm.noalias() = (Q * Km.transpose()) * scale;
  for (int64_t h = 0; h < nh; ++h) {
    Eigen::Map<Eigen::ArrayXf> p(P + h * n, n);
    m[h] = p.maxCoeff();
    p = (p - m[h]).exp();
    l[h] = p.sum();
  }
  Eigen::Map<RowMat> Om(O, nh, hd);
  Om.noalias() = Pm * Km;
}

// Folds one block (m_b, l_b, O_b) into the running (m, l, acc) of nh heads.
void fold_block(int64_t nh, int64_t hd, const float* mb, const float* lb, const float* Ob, float* m, float* l, float* acc) {
  for (int64_t h = 0; h < nh; ++h) {
    const float mn = std::max(m[h], mb[h]);
    const float x = std::exp(m[h] - mn), y = std::exp(mb[h] - mn);
    l[h] = l[h] * x + lb[h] * y;
    m[h] = mn;
    Eigen::Map<Eigen::ArrayXf> o(acc + h * hd, hd);
    o = o * x + Eigen::Map<const Eigen::ArrayXf>(Ob + h * hd, hd) * y;
  }
}

}  // namespace

size_t CpuBackend::attention_scratch_floats(int64_t W, int64_t hd, int64_t hb, int64_t max_entries) {
  // Saturating: a max_context near 2^62 gives SIZE_MAX (then a CapacityError), never a wrapped size.
  // Rows with more keys than a block take the blocked path, whose scratch is fixed.
  constexpr size_t round = static_cast<size_t>(kRowsRound);
  const size_t rows = std::min(sat_add(sat_add(sat_size(W), sat_size(max_entries)), round - 1), static_cast<size_t>(kKeyBlock + round - 1));
  const size_t cap = rows / round * round;
  const size_t whole = sat_add(sat_mul(cap, sat_size(hd)), sat_mul(sat_size(hb), cap));
  return std::max(whole, blocked_scratch_floats(hd));
}

size_t CpuBackend::blocked_scratch_floats(int64_t hd) {
  // K [kKeyBlock, hd], P [kBlockHeads, kKeyBlock], O and the running sum [kBlockHeads, hd], m and l twice.
  const size_t h = static_cast<size_t>(hd);
  return static_cast<size_t>(kKeyBlock) * h + static_cast<size_t>(kBlockHeads * kKeyBlock) + 2 * static_cast<size_t>(kBlockHeads) * h +
         4 * static_cast<size_t>(kBlockHeads);
}

void CpuBackend::attention(const AttentionArgs& a) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(a.hd));
  // This step's window rows are read as the ring stores them (a compact cache type rounds them),
  // so a row's result does not depend on whether its window was fed in this step or before.
  const float* kvs = a.kv;
  bool exact = true;
  for (int64_t s = 0; s < a.S && exact; ++s) exact = a.step.seqs[a.step.seq[s]].state[a.layer].window_fmt == EntryFormat::F32;
  if (!exact) {
    float* q = ws_.get(kAttnKv, static_cast<size_t>(a.S * a.hd));
    if (quant::entry_stride(EntryFormat::F32, a.hd, 0) > kMaxRowBytes)
      throw UnsupportedError("attention: head_dim " + std::to_string(a.hd) + " is too large for a compact cache type");
    par(a.S, 8, [&](int, int64_t b, int64_t e) {
      alignas(64) unsigned char tmp[kMaxRowBytes];  // one stored row
      for (int64_t s = b; s < e; ++s) {
        const LayerState& st = a.step.seqs[a.step.seq[s]].state[a.layer];
        const float* src = a.kv + s * a.hd;
        float* dst = q + s * a.hd;
        if (st.window_fmt == EntryFormat::F32) {
          std::memcpy(dst, src, static_cast<size_t>(a.hd) * sizeof(float));
          continue;
        }
        quant::encode_entry(st.window_fmt, src, a.hd, st.window_rope, tmp);
        quant::decode_entry(st.window_fmt, tmp, a.hd, st.window_rope, dst);
      }
    });
    kvs = q;
  }
  // Rows beyond one key block go the blocked way (below); the rest in one softmax each.
  int64_t max_short = 0, n_long = 0;
  for (int64_t s = 0; s < a.S; ++s) {
    const RowKeys rk(a, s);
    if (rk.count() > kKeyBlock) {
      ++n_long;
    } else {
      max_short = std::max(max_short, rk.count());
    }
  }
  if (n_long < a.S) attention_short(a, kvs, scale, max_short);
  if (n_long > 0) attention_long(a, kvs, scale);
}

void CpuBackend::attention_short(const AttentionArgs& a, const float* kvs, float scale, int64_t max_rows) {
  const int64_t hd = a.hd, H = a.H;
  const int64_t cap = (max_rows + kRowsRound - 1) / kRowsRound * kRowsRound;
  // About kItems work items per step, each as many heads as possible (a thread gathers a token's
  // rows once for its consecutive items). From the step's shape alone, never the thread count:
  // the heads per item set the GEMM shapes and so the order of their sums.
  constexpr int64_t kItems = 8;
  const int64_t per_token = std::clamp<int64_t>((kItems + a.S - 1) / a.S, 1, H);
  const int64_t hb = (H + per_token - 1) / per_token, blocks = (H + hb - 1) / hb;
  const size_t scratch_floats = std::max(attention_scratch_floats(0, hd, hb, cap), static_cast<size_t>(cap * (hd + hb)));
  par(a.S * blocks, 1, [&](int tid, int64_t b, int64_t e) {
    float* K = thread_scratch(tid, scratch_floats);
    float* L = K + cap * hd;
    int64_t gathered_for = -1, n = 0;
    for (int64_t i = b; i < e; ++i) {
      const int64_t s = i / blocks, h0 = (i % blocks) * hb, nh = std::min(hb, H - h0);
      const RowKeys rk(a, s);
      if (rk.count() > kKeyBlock) continue;  // the blocked path's
      if (gathered_for != s) {  // this token's visible rows, in the order of the reference
        n = rk.count();
        rk.gather(0, n, kvs, K);
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

void CpuBackend::attention_long(const AttentionArgs& a, const float* kvs, float scale) {
  const int64_t hd = a.hd, H = a.H, hb = std::min(H, kBlockHeads), hblocks = (H + hb - 1) / hb;
  const size_t scratch_floats = blocked_scratch_floats(hd);
  // Each block's result, then the fold in block order: the sink's term first (m = sink, l = 1).
  auto finish = [&](int64_t s, int64_t h0, int64_t nh, const float* l, const float* acc) {
    for (int64_t h = 0; h < nh; ++h) {
      const float inv = 1.0f / l[h];
      float* o = a.out + s * H * hd + (h0 + h) * hd;
      for (int64_t d = 0; d < hd; ++d) o[d] = acc[h * hd + d] * inv;
    }
  };
  if (a.S < 4) {
    // Decode: (row, key block, head block) items across threads, their results kept, then folded.
    int64_t total = 0;
    int32_t* first = ws_.get_i32(kAttnFirst, static_cast<size_t>(a.S + 1));  // per row, its first item (read by the workers)
    for (int64_t s = 0; s < a.S; ++s) {
      const RowKeys rk(a, s);
      const int64_t kb = rk.count() > kKeyBlock ? (rk.count() + kKeyBlock - 1) / kKeyBlock : 0;
      first[s] = static_cast<int32_t>(total);
      total += kb * hblocks;
    }
    first[a.S] = static_cast<int32_t>(total);
    // Per item: O [hb, hd], m [hb], l [hb].
    const size_t per_item = static_cast<size_t>(hb * hd + 2 * hb);
    float* parts = ws_.get(kAttnParts, static_cast<size_t>(total) * per_item);
    par(total, 1, [&](int tid, int64_t b, int64_t e) {
      float* K = thread_scratch(tid, scratch_floats);
      float* P = K + kKeyBlock * hd;
      int64_t gathered = -1, n = 0;
      for (int64_t i = b; i < e; ++i) {
        int64_t s = 0;
        while (first[s + 1] <= i) ++s;
        const int64_t local = i - first[s], blk = local / hblocks, h0 = (local % hblocks) * hb;
        const int64_t nh = std::min(hb, H - h0);
        const RowKeys rk(a, s);
        const int64_t k0 = blk * kKeyBlock, k1 = std::min(rk.count(), k0 + kKeyBlock);
        if (gathered != s * 1000003 + blk) {
          rk.gather(k0, k1, kvs, K);
          n = k1 - k0;
          gathered = s * 1000003 + blk;
        }
        float* out = parts + static_cast<size_t>(i) * per_item;
        block_softmax(a.q + s * H * hd + h0 * hd, nh, hd, K, n, scale, P, out, out + hb * hd, out + hb * hd + hb);
      }
    });
    // The fold, per (row, head block), blocks in order.
    par(a.S * hblocks, 1, [&](int tid, int64_t b, int64_t e) {
      float* K = thread_scratch(tid, scratch_floats);
      float* acc = K + kKeyBlock * hd + kBlockHeads * kKeyBlock + kBlockHeads * hd;
      float* m = acc + kBlockHeads * hd;
      float* l = m + kBlockHeads;
      for (int64_t i = b; i < e; ++i) {
        const int64_t s = i / hblocks, hbi = i % hblocks, h0 = hbi * hb, nh = std::min(hb, H - h0);
        const int64_t nblk = (first[s + 1] - first[s]) / hblocks;
        if (nblk == 0) continue;
        for (int64_t h = 0; h < nh; ++h) {
          m[h] = a.sink[h0 + h];
          l[h] = 1.0f;
        }
        std::fill(acc, acc + nh * hd, 0.0f);
        for (int64_t blk = 0; blk < nblk; ++blk) {
          const float* part = parts + static_cast<size_t>(first[s] + blk * hblocks + hbi) * per_item;
          fold_block(nh, hd, part + hb * hd, part + hb * hd + hb, part, m, l, acc);
        }
        finish(s, h0, nh, l, acc);
      }
    });
    return;
  }
  // Prefill: (row, head block) items, each taking its key blocks in turn with the same fold.
  par(a.S * hblocks, 1, [&](int tid, int64_t b, int64_t e) {
    float* K = thread_scratch(tid, scratch_floats);
    float* P = K + kKeyBlock * hd;
    float* Ob = P + kBlockHeads * kKeyBlock;
    float* acc = Ob + kBlockHeads * hd;
    float* m = acc + kBlockHeads * hd;
    float* l = m + kBlockHeads;
    float* mb = l + kBlockHeads;
    float* lb = mb + kBlockHeads;
    for (int64_t i = b; i < e; ++i) {
      const int64_t s = i / hblocks, h0 = (i % hblocks) * hb, nh = std::min(hb, H - h0);
      const RowKeys rk(a, s);
      const int64_t n = rk.count();
      if (n <= kKeyBlock) continue;  // the short path's
      for (int64_t h = 0; h < nh; ++h) {
        m[h] = a.sink[h0 + h];
        l[h] = 1.0f;
      }
      std::fill(acc, acc + nh * hd, 0.0f);
      for (int64_t k0 = 0; k0 < n; k0 += kKeyBlock) {
        const int64_t k1 = std::min(n, k0 + kKeyBlock);
        rk.gather(k0, k1, kvs, K);
        block_softmax(a.q + s * H * hd + h0 * hd, nh, hd, K, k1 - k0, scale, P, Ob, mb, lb);
        fold_block(nh, hd, mb, lb, Ob, m, l, acc);
      }
      finish(s, h0, nh, l, acc);
    }
  });
}

void CpuBackend::store_window(const StepRef& step, int64_t, int64_t layer, const float* kv, int64_t W, int64_t hd) {
  const int64_t n_seqs = step.counts[kStepSeqs];
  for (int64_t i = 0; i < n_seqs; ++i) {
    const StepSeq& sq = step.seqs[i];
    const LayerState& st = sq.state[layer];
    const size_t rs = st.window_stride > 0 ? static_cast<size_t>(st.window_stride) : static_cast<size_t>(hd) * sizeof(float);
    const int64_t p0 = sq.p0, end = sq.p0 + sq.rows;
    for (int64_t j = std::max(p0, end - W); j < end; ++j)
      quant::encode_entry(st.window_fmt, kv + (sq.row0 + j - p0) * hd, hd, st.window_rope, st.ring + static_cast<size_t>(j % W) * rs);
  }
}

}  // namespace dsv4::DSV4_CPU_NS
