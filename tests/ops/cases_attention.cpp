// Attention core against a naive double implementation: window (ring + this step's rows),
// compressed entries (all visible, or selected), sink; steps with rows of several sequences at
// different positions; and the window store.
#include <cmath>

#include "ops/harness.hpp"
#include "support/support.hpp"
#include "quant/cache_format.hpp"

namespace dsv4::test {

namespace {

struct AttnSpec {
  std::vector<std::pair<int64_t, int64_t>> seqs;  // (p0, rows) per sequence
  int64_t H = 3, hd = 16, W = 8, ratio = 4, topk = 3;
  bool entries = false, select = false;
  EntryFormat fmt = EntryFormat::F32;  // how the compressed entries are stored
  EntryFormat wfmt = EntryFormat::F32; // how the window ring is stored
  int64_t per_block = 5;               // entries per block of the table
};

// One sequence's history and state buffers.
struct SeqData {
  int64_t p0 = 0, S = 0;
  std::vector<float> hist, ring, raw;  // kv rows of every position as the ring stores them; ring; as given
  DevBuf ring_d;
  EntryBuf entries;               // compressed entries (stored: as the op reads them)
};

class AttentionOp final : public PreparedOp {
 public:
  AttentionOp(Backend& be, AttnSpec sp) : be_(be), sp_(std::move(sp)) {
    const int64_t H = sp_.H, hd = sp_.hd, W = sp_.W;
    std::vector<TestSeq> ts;
    uint64_t seed = 1;
    for (auto [p0, S] : sp_.seqs) {
      SeqData d;
      d.p0 = p0;
      d.S = S;
      const int64_t T = p0 + S;
      d.hist = random_floats(static_cast<size_t>(T * hd), seed + T, -1, 1);
      d.entries = EntryBuf(be, random_floats(static_cast<size_t>(std::max<int64_t>(T / sp_.ratio, 1) * hd), seed + 2 * T), hd, std::min<int64_t>(64, hd / 2),
                           sp_.fmt, sp_.per_block);
      const int64_t rope = std::min<int64_t>(64, hd / 2);
      const size_t rs = quant::entry_stride(sp_.wfmt, hd, rope);
      std::vector<unsigned char> ring_img(static_cast<size_t>(W) * rs, 0xFF);  // rows the op must not read stay NaN
      std::vector<float> raw = d.hist;  // this step's rows go in as given; the op rounds them as the ring would
      for (int64_t j = 0; j < T; ++j) {  // the reference reads every window row as stored
        std::vector<unsigned char> e(rs);
        quant::encode_entry(sp_.wfmt, raw.data() + j * hd, hd, rope, e.data());
        quant::decode_entry(sp_.wfmt, e.data(), hd, rope, d.hist.data() + j * hd);
        if (j >= std::max<int64_t>(0, p0 - W) && j < p0) std::copy(e.begin(), e.end(), ring_img.begin() + static_cast<std::ptrdiff_t>((j % W) * rs));
      }
      d.raw = std::move(raw);
      d.ring_d = to_backend(be, ring_img);
      TestSeq t;
      t.p0 = p0;
      t.rows = S;
      t.state.ring = d.ring_d.as<unsigned char>();
      t.state.window_fmt = sp_.wfmt;
      t.state.window_stride = static_cast<int32_t>(rs);
      t.state.window_rope = static_cast<int32_t>(rope);
      t.state.comp.entries = d.entries.t;
      ts.push_back(t);
      seqs_.push_back(std::move(d));
      seed += 17;
    }
    step_ = make_step(be, ts);
    S_ = step_.S;
    // This step's kv rows (each sequence's positions p0 …), queries, selections.
    std::vector<float> kv;
    for (const auto& d : seqs_) kv.insert(kv.end(), d.raw.begin() + d.p0 * hd, d.raw.end());
    q_ = random_floats(static_cast<size_t>(S_ * H * hd), 2 + S_, -1.5f, 1.5f);
    sink_ = random_floats(static_cast<size_t>(H), 4);
    sel_.assign(static_cast<size_t>(S_ * sp_.topk), -1);
    for (int64_t s = 0; s < S_; ++s) {
      const int64_t vis = (step_.pos[static_cast<size_t>(s)] + 1) / sp_.ratio;
      for (int64_t k = 0; k < std::min(sp_.topk, vis); ++k)
        sel_[static_cast<size_t>(s * sp_.topk + k)] = static_cast<int32_t>((vis - 1 - 2 * k + 100 * vis) % vis);
    }
    kvd_ = to_backend(be, kv);
    qd_ = to_backend(be, q_);
    sinkd_ = to_backend(be, sink_);
    seld_ = to_backend(be, sel_);
    outd_ = DevBuf(be, static_cast<size_t>(S_ * H * hd) * sizeof(float));
    a_.S = S_;
    a_.H = H;
    a_.hd = hd;
    a_.W = W;
    a_.step = step_.ref;
    a_.layer = 0;
    a_.q = qd_.as<const float>();
    a_.kv = kvd_.as<const float>();
    a_.sink = sinkd_.as<const float>();
    a_.out = outd_.as<float>();
    if (sp_.entries) {
      a_.entries = true;
      a_.ratio = sp_.ratio;
      if (sp_.select) {
        a_.select = seld_.as<const int32_t>();
        a_.topk = sp_.topk;
      }
    }
    reference();
    tol = 1e-5;
    bytes = 4.0 * static_cast<double>(S_ * H * hd * 2);
    for (int64_t s = 0; s < S_; ++s) bytes += 4.0 * static_cast<double>(keys_of(s).size() * static_cast<size_t>(hd));
  }
  void run() override { be_.attention(a_); }
  double error() override { return rel_err_d(from_backend(be_, outd_, ref_.size()), ref_); }

 private:
  std::vector<const float*> keys_of(int64_t s) const {
    const SeqData& d = seqs_[static_cast<size_t>(step_.seq[static_cast<size_t>(s)])];
    const int64_t t = step_.pos[static_cast<size_t>(s)], hd = sp_.hd;
    std::vector<const float*> keys;
    for (int64_t j = std::max<int64_t>(0, t - sp_.W + 1); j <= t; ++j) keys.push_back(d.hist.data() + j * hd);
    if (sp_.entries) {
      if (sp_.select) {
        for (int64_t k = 0; k < sp_.topk; ++k) {
          const int32_t w = sel_[static_cast<size_t>(s * sp_.topk + k)];
          if (w >= 0) keys.push_back(d.entries.stored.data() + w * hd);
        }
      } else {
        for (int64_t w = 0; w < (t + 1) / sp_.ratio; ++w) keys.push_back(d.entries.stored.data() + w * hd);
      }
    }
    return keys;
  }
  void reference() {
    const int64_t H = sp_.H, hd = sp_.hd;
    ref_.assign(static_cast<size_t>(S_ * H * hd), 0.0);
    for (int64_t s = 0; s < S_; ++s) {
      const auto keys = keys_of(s);
      for (int64_t h = 0; h < H; ++h) {
        std::vector<double> lg;
        double mx = sink_[static_cast<size_t>(h)];
        for (auto* k : keys) {
          double d = 0;
          for (int64_t i = 0; i < hd; ++i) d += static_cast<double>(q_[static_cast<size_t>(s * H * hd + h * hd + i)]) * k[i];
          lg.push_back(d / std::sqrt(static_cast<double>(hd)));
          mx = std::max(mx, lg.back());
        }
        double den = std::exp(sink_[static_cast<size_t>(h)] - mx);
        for (auto& l : lg) den += (l = std::exp(l - mx));
        for (int64_t i = 0; i < hd; ++i) {
          double o = 0;
          for (size_t k = 0; k < keys.size(); ++k) o += lg[k] / den * keys[k][i];
          ref_[static_cast<size_t>(s * H * hd + h * hd + i)] = o;
        }
      }
    }
  }

  Backend& be_;
  AttnSpec sp_;
  std::vector<SeqData> seqs_;
  TestStep step_;
  int64_t S_ = 0;
  std::vector<float> q_, sink_;
  std::vector<int32_t> sel_;
  DevBuf kvd_, qd_, sinkd_, seld_, outd_;
  AttentionArgs a_;
  std::vector<double> ref_;
};

// store_window: each sequence's last min(rows, W) rows land at ring row j % W; the rest stay.
class StoreWindowOp final : public PreparedOp {
 public:
  StoreWindowOp(Backend& be, std::vector<std::pair<int64_t, int64_t>> seqs, int64_t W, int64_t hd) : be_(be), W_(W), hd_(hd) {
    std::vector<TestSeq> ts;
    int64_t rows = 0;
    for (auto [p0, S] : seqs) {
      rings_.push_back(random_floats(static_cast<size_t>(W * hd), 40 + p0));
      ring_d_.push_back(to_backend(be, rings_.back()));
      TestSeq t;
      t.p0 = p0;
      t.rows = S;
      t.state.ring = ring_d_.back().as<unsigned char>();
      ts.push_back(t);
      rows += S;
    }
    seqs_ = std::move(seqs);
    step_ = make_step(be, ts);
    kv_ = random_floats(static_cast<size_t>(rows * hd), 77);
    kvd_ = to_backend(be, kv_);
    tol = 0;
  }
  void run() override { be_.store_window(step_.ref, step_.S, 0, kvd_.as<const float>(), W_, hd_); }
  double error() override {
    double bad = 0;
    int64_t row0 = 0;
    for (size_t i = 0; i < seqs_.size(); ++i) {
      const auto [p0, S] = seqs_[i];
      std::vector<float> want = rings_[i];
      for (int64_t j = std::max(p0, p0 + S - W_); j < p0 + S; ++j)
        std::copy_n(kv_.begin() + (row0 + j - p0) * hd_, hd_, want.begin() + (j % W_) * hd_);
      const auto got = from_backend(be_, ring_d_[i], want.size());
      for (size_t k = 0; k < want.size(); ++k) bad += got[k] != want[k];
      row0 += S;
    }
    return bad;
  }

 private:
  Backend& be_;
  int64_t W_, hd_;
  std::vector<std::pair<int64_t, int64_t>> seqs_;
  std::vector<std::vector<float>> rings_;
  std::vector<DevBuf> ring_d_;
  TestStep step_;
  std::vector<float> kv_;
  DevBuf kvd_;
};

std::string describe(const std::vector<std::pair<int64_t, int64_t>>& seqs) {
  std::string s;
  for (auto [p0, n] : seqs) s += (s.empty() ? "" : " + ") + std::to_string(n) + "@" + std::to_string(p0);
  return s;
}

void add(std::vector<OpCase>& v, const std::string& what, AttnSpec sp, bool real = false) {
  if (real) sp.per_block = 1024 / sp.ratio;  // the engine's blocks of 1024 positions
  std::string fmt;
  if (sp.entries) fmt = std::string(", ") + entry_format_name(sp.fmt) + " entries, " + std::to_string(sp.per_block) + " per block";
  if (sp.wfmt != EntryFormat::F32) fmt += std::string(", ") + entry_format_name(sp.wfmt) + " window";
  v.push_back({"attention", what + ", rows " + describe(sp.seqs) + ", H=" + std::to_string(sp.H) + " hd=" + std::to_string(sp.hd) + fmt, real,
               [sp](Backend& be) -> std::unique_ptr<PreparedOp> { return std::make_unique<AttentionOp>(be, sp); }});
}

}  // namespace

void add_attention_cases(std::vector<OpCase>& v) {
  for (int64_t S : {1, 13, 137}) {
    add(v, "window only, first call", {{{0, S}}});
    add(v, "window only, continuation", {{{21, S}}});
    AttnSpec hca{{{9, S}}};
    hca.entries = true;
    add(v, "window + all visible entries (HCA)", hca);
    AttnSpec csa{{{30, S}}};
    csa.entries = csa.select = true;
    add(v, "window + selected entries (CSA)", csa);
  }
  // The stored cache formats (the reference reads the values as stored).
  for (EntryFormat f : {EntryFormat::BF16, EntryFormat::FP8})
    for (int64_t S : {1, 13}) {
      AttnSpec hca{{{9, S}}};
      hca.entries = true;
      hca.fmt = f;
      hca.per_block = 1;
      add(v, "window + all visible entries (HCA)", hca);
      AttnSpec csa{{{30, S}}};
      csa.entries = csa.select = true;
      csa.fmt = f;
      add(v, "window + selected entries (CSA)", csa);
    }
  // Rows that see more than one key block (1024 rows): the blocked path, alone (decode: blocks
  // across threads) and with short rows and other long ones in one step (prefill: blocks in turn).
  for (int64_t S : {1, 3, 13}) {
    AttnSpec lh{{{5000, S}}, 5, 16, 8, 4, 3, true, false};
    lh.per_block = 64;
    add(v, "HCA beyond one key block", lh);
    AttnSpec lc{{{6000, S}}, 5, 16, 8, 4, 1300, true, true};
    lc.per_block = 256;
    lc.fmt = EntryFormat::FP8;
    add(v, "CSA, 1300 selected (beyond one key block)", lc);
  }
  AttnSpec mixed{{{4100, 1}, {30, 5}, {8000, 2}, {900, 1}}, 3, 16, 8, 4, 3, true, false};
  mixed.per_block = 100;
  add(v, "HCA, long and short rows of four sequences", mixed);
  // Compact window rings: rows of earlier steps from the ring, this step's rounded the same way.
  for (EntryFormat f : {EntryFormat::BF16, EntryFormat::FP8})
    for (int64_t S : {1, 13}) {
      AttnSpec w{{{21, S}, {3, 2}}};
      w.wfmt = w.fmt = f;
      w.entries = true;
      add(v, "compact window + entries (HCA)", w);
    }
  // Rows of several sequences at different positions and lengths in one step.
  AttnSpec multi{{{0, 5}, {40, 1}, {7, 13}, {300, 2}}};
  multi.entries = multi.select = true;
  add(v, "CSA, four sequences", multi);
  AttnSpec multi_h{{{3, 1}, {100, 1}, {57, 9}}};
  multi_h.entries = true;
  add(v, "HCA, three sequences", multi_h);
  add(v, "window only, two sequences", {{{0, 13}, {5, 1}}});
  // Odd head counts (13 heads over 2 threads splits one token's heads unevenly) and V4 decode shapes.
  AttnSpec odd{{{40, 1}}, 13, 64, 8, 4, 5, true, true};
  add(v, "CSA, odd heads", odd);
  AttnSpec odd_h{{{40, 3}}, 13, 64, 8, 4, 5, true, false};
  add(v, "HCA, odd heads", odd_h);
  add(v, "V4-Flash CSA decode: window 128, 512 selected", {{{2300, 1}}, 64, 512, 128, 4, 512, true, true}, true);
  add(v, "V4-Flash HCA decode (m=128)", {{{2300, 2}}, 64, 512, 128, 128, 512, true, false}, true);
  AttnSpec fp8{{{2300, 1}}, 64, 512, 128, 4, 512, true, true};
  fp8.fmt = EntryFormat::FP8;
  add(v, "V4-Flash CSA decode: window 128, 512 selected", fp8, true);
  AttnSpec fp8h{{{2300, 1}}, 64, 512, 128, 128, 512, true, false};
  fp8h.fmt = EntryFormat::FP8;
  add(v, "V4-Flash HCA decode (m=128)", fp8h, true);
  AttnSpec deep{{{262100, 1}}, 64, 512, 128, 128, 512, true, false};
  deep.fmt = EntryFormat::FP8;
  add(v, "V4-Flash HCA decode at 256K (2048 entries)", deep, true);
  add(v, "V4-Flash CSA, 4 sessions batched", {{{2300, 1}, {700, 1}, {5000, 1}, {130, 1}}, 64, 512, 128, 4, 512, true, true}, true);
  for (auto seqs : std::vector<std::vector<std::pair<int64_t, int64_t>>>{{{0, 1}}, {{0, 13}}, {{5, 137}}, {{0, 3}, {20, 9}, {7, 1}}})
    v.push_back({"attention", "store_window W=8, rows " + describe(seqs), false,
                 [seqs](Backend& be) -> std::unique_ptr<PreparedOp> { return std::make_unique<StoreWindowOp>(be, seqs, 8, 16); }});
}

}  // namespace dsv4::test
