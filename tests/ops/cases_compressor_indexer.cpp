// Compressor (CSA overlap, HCA) against a naive whole-sequence pooling, fed in any split and with
// several sequences per step; indexer causal mask and exact top-k against brute force.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "model/rope.hpp"
#include "ops/harness.hpp"
#include "support/support.hpp"

namespace dsv4::test {

namespace {

// Entries of every complete window from the whole sequence's projected kv and raw gates g.
std::vector<double> naive_entries(const CompressorW& w, const std::vector<float>& ape, const std::vector<float>& norm,
                                  const std::vector<float>& kv, const std::vector<float>& g, int64_t T,
                                  const std::vector<double>& freqs, int64_t rd) {
  const int64_t m = w.ratio, Wd = w.width, c = w.overlap ? 2 : 1, row = c * Wd, n = T / m;
  std::vector<double> out(static_cast<size_t>(n * Wd));
  for (int64_t e = 0; e < n; ++e) {
    std::vector<double> ent(static_cast<size_t>(Wd));
    for (int64_t ch = 0; ch < Wd; ++ch) {
      std::vector<std::pair<double, double>> slots;  // (gate, value)
      if (w.overlap && e > 0)
        for (int64_t i = 0; i < m; ++i) {
          const int64_t t = (e - 1) * m + i;
          slots.emplace_back(g[static_cast<size_t>(t * row + ch)] + ape[static_cast<size_t>(i * row + ch)], kv[static_cast<size_t>(t * row + ch)]);
        }
      for (int64_t i = 0; i < m; ++i) {
        const int64_t t = e * m + i, off = (c - 1) * Wd + ch;
        slots.emplace_back(g[static_cast<size_t>(t * row + off)] + ape[static_cast<size_t>(i * row + off)], kv[static_cast<size_t>(t * row + off)]);
      }
      double mx = -1e300, num = 0, den = 0;
      for (auto& [gt, v] : slots) mx = std::max(mx, gt);
      for (auto& [gt, v] : slots) {
        den += std::exp(gt - mx);
        num += std::exp(gt - mx) * v;
      }
      ent[static_cast<size_t>(ch)] = num / den;
    }
    double ss = 0;
    for (double v : ent) ss += v * v;
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(Wd) + 1e-6);
    for (int64_t ch = 0; ch < Wd; ++ch) ent[static_cast<size_t>(ch)] *= inv * norm[static_cast<size_t>(ch)];
    for (int64_t i = 0; i < rd / 2; ++i) {
      const double a = static_cast<double>(e * m) * freqs[static_cast<size_t>(i)];
      const size_t k = static_cast<size_t>(Wd - rd + 2 * i);
      const double x0 = ent[k], x1 = ent[k + 1];
      ent[k] = x0 * std::cos(a) - x1 * std::sin(a);
      ent[k + 1] = x1 * std::cos(a) + x0 * std::sin(a);
    }
    std::copy(ent.begin(), ent.end(), out.begin() + e * Wd);
  }
  return out;
}

// Sequences fed in chunks: round r carries the r-th chunk of every sequence that has one (the
// remainder of each sequence one token per round), all in one step.
class CompressorOp final : public PreparedOp {
 public:
  struct Seq {
    int64_t T;
    std::vector<int64_t> splits;
  };
  CompressorOp(Backend& be, bool overlap, int64_t m, std::vector<Seq> seqs, EntryFormat fmt = EntryFormat::F32, int64_t per_block = 3)
      : be_(be), seqs_(std::move(seqs)) {
    const int64_t Wd = 16, c = overlap ? 2 : 1, row = c * Wd;
    rd_ = 8;
    w_.ratio = m;
    w_.width = Wd;
    w_.overlap = overlap;
    ape_ = random_floats(static_cast<size_t>(m * row), 1, -2, 2);
    norm_ = random_floats(static_cast<size_t>(Wd), 2, 0.5f, 1.5f);
    aped_ = to_backend(be, ape_);
    normd_ = to_backend(be, norm_);
    w_.ape = view(aped_, ape_.size());
    w_.norm = view(normd_, norm_.size());
    RopeParams p;
    p.theta = 160000;
    freqs_ = rope_frequencies(p, rd_);
    freqd_ = to_backend(be, freqs_);
    // Per sequence: inputs, state buffers (entries NaN-filled: only complete windows may be written).
    std::vector<std::vector<int64_t>> chunks;
    for (size_t i = 0; i < seqs_.size(); ++i) {
      const Seq& s = seqs_[i];
      kv_.push_back(random_floats(static_cast<size_t>(s.T * row), 3 + i));
      g_.push_back(random_floats(static_cast<size_t>(s.T * row), 4 + i, -3, 3));
      St st;
      st.pend_kv = DevBuf(be, static_cast<size_t>(m * row) * 4);
      st.pend_g = DevBuf(be, static_cast<size_t>(m * row) * 4);
      st.prev_kv = DevBuf(be, static_cast<size_t>(m * Wd) * 4);
      st.prev_g = DevBuf(be, static_cast<size_t>(m * Wd) * 4);
      st.entries = EntryBuf(be, std::vector<float>(static_cast<size_t>((s.T / m + 1) * Wd), NAN), Wd, rd_, fmt, per_block);
      state_.push_back(std::move(st));
      std::vector<int64_t> ch = s.splits;
      int64_t done = 0;
      for (auto n : ch) done += n;
      while (done++ < s.T) ch.push_back(1);
      chunks.push_back(ch);
      ref_.push_back(naive_entries(w_, ape_, norm_, kv_.back(), g_.back(), s.T, freqs_, rd_));
    }
    // The rounds: a step over the sequences with a chunk left, and its kv/g rows.
    std::vector<int64_t> at(seqs_.size(), 0);
    for (size_t r = 0;; ++r) {
      std::vector<TestSeq> ts;
      std::vector<float> kv, g;
      for (size_t i = 0; i < seqs_.size(); ++i) {
        if (r >= chunks[i].size()) continue;
        const int64_t n = chunks[i][r];
        TestSeq t;
        t.p0 = at[i];
        t.rows = n;
        t.state.comp = {state_[i].pend_kv.as<float>(), state_[i].pend_g.as<float>(), state_[i].prev_kv.as<float>(),
                        state_[i].prev_g.as<float>(), state_[i].entries.t};
        t.state.index = t.state.comp;
        ts.push_back(t);
        kv.insert(kv.end(), kv_[i].begin() + at[i] * row, kv_[i].begin() + (at[i] + n) * row);
        g.insert(g.end(), g_[i].begin() + at[i] * row, g_[i].begin() + (at[i] + n) * row);
        at[i] += n;
      }
      if (ts.empty()) break;
      Round rd;
      rd.step = make_step(be, ts);
      rd.kv = to_backend(be, kv);
      rd.g = to_backend(be, g);
      rounds_.push_back(std::move(rd));
    }
    // A stored format adds its rounding: bf16 and e4m3 round to nearest, at most 2^-8 and 2^-4 of
    // each value; int8 with a per-entry scale at most amax/254 per value, sqrt(width)/254 relative.
    switch (fmt) {
      case EntryFormat::F32: tol = 1e-5; break;
      case EntryFormat::BF16: tol = std::ldexp(1.0, -8) + 1e-5; break;
      case EntryFormat::FP8: tol = std::ldexp(1.0, -4) + 1e-5; break;
      case EntryFormat::I8: tol = std::sqrt(static_cast<double>(Wd)) / 254.0 + 1e-5; break;
    }
  }
  void run() override {
    for (size_t r = 0; r < rounds_.size(); ++r) {
      const Round& rd = rounds_[r];
      // Alternate the two slots: both read the same fields of the test's state.
      be_.compress(w_, r % 2 ? CompressorSlot::Indexer : CompressorSlot::Attention, rd.step.ref, rd.step.S, 0, rd.kv.as<const float>(),
                   rd.g.as<const float>(), freqd_.as<const double>(), rd_, 1e-6f);
    }
  }
  double error() override {
    double worst = 0;
    for (size_t i = 0; i < seqs_.size(); ++i) {
      const auto got = state_[i].entries.read(be_, static_cast<int64_t>(ref_[i].size()) / 16);
      worst = std::max(worst, rel_err_d(got, ref_[i]));
      // Window 0 of the overlapping compressor pools only its own Cb slots.
      const size_t w0 = std::min<size_t>(16, ref_[i].size());
      worst = std::max(worst, rel_err_d(std::vector<float>(got.begin(), got.begin() + static_cast<std::ptrdiff_t>(w0)),
                                        std::vector<double>(ref_[i].begin(), ref_[i].begin() + static_cast<std::ptrdiff_t>(w0))));
    }
    return worst;
  }

 private:
  struct St {
    DevBuf pend_kv, pend_g, prev_kv, prev_g;
    EntryBuf entries;
  };
  struct Round {
    TestStep step;
    DevBuf kv, g;
  };
  Backend& be_;
  std::vector<Seq> seqs_;
  CompressorW w_;
  int64_t rd_;
  std::vector<float> ape_, norm_;
  DevBuf aped_, normd_, freqd_;
  std::vector<double> freqs_;
  std::vector<std::vector<float>> kv_, g_;
  std::vector<St> state_;
  std::vector<std::vector<double>> ref_;
  std::vector<Round> rounds_;
};

class IndexerOp final : public PreparedOp {
 public:
  IndexerOp(Backend& be, int64_t nI, int64_t ihd, int64_t topk, std::vector<std::pair<int64_t, int64_t>> seqs,
            EntryFormat fmt = EntryFormat::F32, int64_t per_block = 256)
      : be_(be), nI_(nI), ihd_(ihd), topk_(topk) {
    std::vector<TestSeq> ts;
    for (auto [S, p0] : seqs) {
      const int64_t T = p0 + S;
      keys_d_.emplace_back(be, random_floats(static_cast<size_t>((T / kM + 1) * ihd), 1 + S + p0), ihd, 0, fmt, per_block);
      keys_.push_back(keys_d_.back().stored);  // the reference scores the keys as stored
      TestSeq t;
      t.p0 = p0;
      t.rows = S;
      t.state.index.entries = keys_d_.back().t;
      ts.push_back(t);
    }
    step_ = make_step(be, ts);
    const int64_t S = step_.S;
    q_ = random_floats(static_cast<size_t>(S * nI * ihd), 2 + S);
    wts_ = random_floats(static_cast<size_t>(S * nI), 3 + S);
    qd_ = to_backend(be, q_);
    wd_ = to_backend(be, wts_);
    seld_ = to_backend(be, std::vector<int32_t>(static_cast<size_t>(S * topk), 77));
    a_.S = S;
    a_.ratio = kM;
    a_.nI = nI;
    a_.ihd = ihd;
    a_.topk = topk;
    a_.step = step_.ref;
    a_.layer = 0;
    a_.q = qd_.as<const float>();
    a_.wts = wd_.as<const float>();
    a_.wts_scale = 0.5f;
    a_.select = seld_.as<int32_t>();
    tol = 0;
    for (int64_t s = 0; s < S; ++s) bytes += 4.0 * static_cast<double>((step_.pos[static_cast<size_t>(s)] + 1) / kM * ihd);
  }
  void run() override { be_.indexer_select(a_); }
  double error() override {
    const int64_t S = step_.S;
    const auto sel = from_backend<int32_t>(be_, seld_, static_cast<size_t>(S * topk_));
    double bad = 0;
    for (int64_t s = 0; s < S; ++s) {
      const std::vector<float>& keys = keys_[static_cast<size_t>(step_.seq[static_cast<size_t>(s)])];
      const int64_t t = step_.pos[static_cast<size_t>(s)], vis = (t + 1) / kM;
      std::vector<double> score(static_cast<size_t>(vis));
      for (int64_t w = 0; w < vis; ++w) {
        double acc = 0;
        for (int64_t h = 0; h < nI_; ++h) {
          double d = 0;
          for (int64_t i = 0; i < ihd_; ++i)
            d += static_cast<double>(q_[static_cast<size_t>(s * nI_ * ihd_ + h * ihd_ + i)]) * keys[static_cast<size_t>(w * ihd_ + i)];
          acc += static_cast<double>(wts_[static_cast<size_t>(s * nI_ + h)] * 0.5f) * std::max(0.0, d);
        }
        score[static_cast<size_t>(w)] = acc / std::sqrt(static_cast<double>(ihd_));
      }
      std::vector<int32_t> order(static_cast<size_t>(vis));
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return score[static_cast<size_t>(a)] > score[static_cast<size_t>(b)]; });
      const int64_t k = std::min(topk_, vis);
      std::vector<int32_t> got(sel.begin() + s * topk_, sel.begin() + s * topk_ + k), want(order.begin(), order.begin() + k);
      std::sort(got.begin(), got.end());
      std::sort(want.begin(), want.end());
      bad += got != want;
      for (int64_t j = 0; j < k; ++j) bad += sel[static_cast<size_t>(s * topk_ + j)] >= vis;  // causal
      for (int64_t j = k; j < topk_; ++j) bad += sel[static_cast<size_t>(s * topk_ + j)] != -1;
    }
    return bad;
  }

 private:
  static constexpr int64_t kM = 4;
  Backend& be_;
  int64_t nI_, ihd_, topk_;
  std::vector<std::vector<float>> keys_;
  std::vector<EntryBuf> keys_d_;
  TestStep step_;
  std::vector<float> q_, wts_;
  DevBuf qd_, wd_, seld_;
  IndexerArgs a_;
};

}  // namespace

void add_compressor_indexer_cases(std::vector<OpCase>& v) {
  using Seq = CompressorOp::Seq;
  auto comp = [&](const std::string& what, bool overlap, int64_t m, std::vector<Seq> seqs, EntryFormat fmt = EntryFormat::F32,
                  int64_t per_block = 3) {
    v.push_back({"compressor", what + ", " + entry_format_name(fmt) + " entries, " + std::to_string(per_block) + " per block", false,
                 [=](Backend& be) -> std::unique_ptr<PreparedOp> { return std::make_unique<CompressorOp>(be, overlap, m, seqs, fmt, per_block); }});
  };
  comp("CSA m=4, 37 tokens in one call", true, 4, {{37, {37}}});
  comp("CSA m=4, one token at a time", true, 4, {{37, {}}});
  comp("CSA m=4, splits inside windows (3,1,13,2)", true, 4, {{37, {3, 1, 13, 2}}});
  comp("CSA m=4, exactly one window", true, 4, {{4, {4}}});
  comp("HCA m=16, 137 tokens in one call", false, 16, {{137, {137}}});
  comp("HCA m=16, splits (13,1,50)", false, 16, {{137, {13, 1, 50}}});
  comp("CSA m=4, three sequences per step, different splits", true, 4, {{37, {5, 13}}, {21, {1}}, {40, {40}}});
  comp("HCA m=16, two sequences per step", false, 16, {{137, {13}}, {50, {49}}});
  for (EntryFormat f : {EntryFormat::BF16, EntryFormat::FP8, EntryFormat::I8}) {
    comp("CSA m=4, splits inside windows (3,1,13,2)", true, 4, {{37, {3, 1, 13, 2}}}, f, 1);
    comp("HCA m=16, two sequences per step", false, 16, {{137, {13}}, {50, {49}}}, f, 4);
  }
  auto idx = [&](int64_t nI, int64_t ihd, int64_t topk, std::vector<std::pair<int64_t, int64_t>> seqs, bool real,
                 EntryFormat fmt = EntryFormat::F32, int64_t per_block = 256) {
    std::string d;
    for (auto [S, p0] : seqs) d += (d.empty() ? "" : " + ") + std::to_string(S) + "@" + std::to_string(p0);
    v.push_back({"indexer", std::to_string(nI) + " heads x " + std::to_string(ihd) + ", top " + std::to_string(topk) + ", rows " + d + ", " +
                                entry_format_name(fmt) + " keys, " + std::to_string(per_block) + " per block",
                 real, [=](Backend& be) -> std::unique_ptr<PreparedOp> { return std::make_unique<IndexerOp>(be, nI, ihd, topk, seqs, fmt, per_block); }});
  };
  // (S, p0): decode early and deep (the deep one takes the entries-across-threads path), prefill.
  for (auto sp : std::vector<std::pair<int64_t, int64_t>>{{1, 40}, {1, 3001}, {13, 0}, {137, 0}}) idx(4, 8, 3, {sp}, false);
  idx(13, 32, 20, {{1, 3001}}, false);  // heads: one vector of eight and a tail
  idx(13, 32, 20, {{13, 200}}, false);
  idx(4, 8, 3, {{1, 40}, {5, 3001}, {1, 7}}, false);  // three sequences in one step
  idx(64, 128, 512, {{1, 8191}}, true);             // V4-Flash: 64 heads x 128, top 512
  idx(64, 128, 512, {{3, 4000}}, true);
  idx(64, 128, 512, {{1, 8191}, {1, 2047}, {1, 4000}}, true);  // three decoding sessions
  // Stored key formats, and blocks smaller than a scoring chunk (chunks end at block ends).
  for (EntryFormat f : {EntryFormat::F32, EntryFormat::BF16, EntryFormat::I8}) {
    idx(4, 8, 3, {{1, 3001}}, false, f, 37);
    idx(13, 32, 20, {{13, 200}}, false, f, 7);
    idx(4, 8, 3, {{1, 40}, {5, 3001}, {1, 7}}, false, f, 300);
  }
  idx(64, 128, 512, {{1, 8191}}, true, EntryFormat::I8);
}

}  // namespace dsv4::test
