// MoE against a naive implementation: hash routing (token ids from the step) and biased top-k
// routing, clamped SwiGLU, shared expert; awkward sizes in F32 and V4-Flash sizes in the
// published formats (FP4 experts, FP8 shared expert, BF16 gate).
#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>

#include "quant/decode.hpp"
#include "ops/harness.hpp"
#include "support/support.hpp"

namespace dsv4::test {

namespace {

struct HostExpert {
  OwnedMat w1, w3, w2;
};

// Row r of W as doubles.
std::vector<double> row_of(const MatW& w, int64_t r) {
  std::vector<float> f(static_cast<size_t>(w.cols));
  decode_rows(w, r, 1, f.data());
  return {f.begin(), f.end()};
}

std::vector<double> expert_ref(const HostExpert& e, const float* x, int64_t D, int64_t I, double L) {
  std::vector<double> h(static_cast<size_t>(I)), y(static_cast<size_t>(D));
  for (int64_t i = 0; i < I; ++i) {
    const auto r1 = row_of(e.w1.w, i), r3 = row_of(e.w3.w, i);
    double a = 0, b = 0;
    for (int64_t d = 0; d < D; ++d) {
      a += static_cast<double>(x[d]) * r1[static_cast<size_t>(d)];
      b += static_cast<double>(x[d]) * r3[static_cast<size_t>(d)];
    }
    if (L > 0) {
      a = std::min(a, L);
      b = std::clamp(b, -L, L);
    }
    h[static_cast<size_t>(i)] = a / (1 + std::exp(-a)) * b;
  }
  for (int64_t d = 0; d < D; ++d) {
    const auto r2 = row_of(e.w2.w, d);
    for (int64_t i = 0; i < I; ++i) y[static_cast<size_t>(d)] += h[static_cast<size_t>(i)] * r2[static_cast<size_t>(i)];
  }
  return y;
}

struct MoeSpec {
  MoeKind kind = MoeKind::Hash;
  int64_t S = 1, D = 32, E = 6, K = 2, I = 16, V = 50;
  double L = 0.8;  // small, so the clamps are exercised
  WFormat expert_fmt = WFormat::F32, shared_fmt = WFormat::F32, gate_fmt = WFormat::F32;
  int seqs = 1;    // rows split over this many sequences of the step
  bool one_id = false;  // every row the same token id: hash routing sends all rows to the same K experts
};

class MoeOp final : public PreparedOp {
 public:
  MoeOp(Backend& be, const MoeSpec& sp) : be_(be), sp_(sp) {
    c_.hidden_size = sp.D;
    c_.n_routed_experts = sp.E;
    c_.experts_per_token = sp.K;
    c_.moe_intermediate_size = sp.I;
    c_.routed_scaling_factor = 1.5;
    c_.swiglu_limit = sp.L;
    c_.vocab_size = sp.V;
    const int64_t D = sp.D, E = sp.E, K = sp.K, I = sp.I;
    for (int64_t e = 0; e <= E; ++e) {  // E routed + the shared one
      const WFormat f = e == E ? sp.shared_fmt : sp.expert_fmt;
      ex_.push_back({make_mat(f, I, D, 100 + e), make_mat(f, I, D, 200 + e), make_mat(f, D, I, 300 + e)});
    }
    gate_ = make_mat(sp.gate_fmt, E, D, 7);
    std::vector<int64_t> tid2eid(static_cast<size_t>(sp.V * K));
    for (int64_t v = 0; v < sp.V; ++v)
      for (int64_t k = 0; k < K; ++k) tid2eid[static_cast<size_t>(v * K + k)] = (v * 7 + k * 3) % E;
    bias_ = random_floats(static_cast<size_t>(E), 8, -0.3f, 0.3f);
    // Backend copies.
    for (auto& h : ex_) dev_.push_back({to_backend(be, h.w1.w), to_backend(be, h.w3.w), to_backend(be, h.w2.w)});
    gated_ = to_backend(be, gate_.w);
    biasd_ = to_backend(be, bias_);
    tidd_ = to_backend(be, tid2eid);
    w_.gate = gated_.w;
    w_.bias = view(biasd_, bias_.size());
    w_.tid2eid = tidd_.as<const uint8_t>();
    w_.tid2eid_is_i64 = true;
    for (int64_t e = 0; e < E; ++e) w_.experts.push_back({dev_[static_cast<size_t>(e)][0].w, dev_[static_cast<size_t>(e)][1].w, dev_[static_cast<size_t>(e)][2].w});
    w_.shared = ExpertW{dev_[static_cast<size_t>(E)][0].w, dev_[static_cast<size_t>(E)][1].w, dev_[static_cast<size_t>(E)][2].w};
    x_ = random_floats(static_cast<size_t>(sp.S * D), 9 + sp.S, -2, 2);
    xd_ = to_backend(be, x_);
    outd_ = DevBuf(be, static_cast<size_t>(sp.S * D) * sizeof(float));
    for (int64_t s = 0; s < sp.S; ++s) ids_.push_back(static_cast<int32_t>(sp.one_id ? 5 : (s * 13 + 5) % sp.V));
    std::vector<TestSeq> seqs;
    for (int q = 0; q < sp.seqs; ++q) {
      const int64_t b = sp.S * q / sp.seqs, e = sp.S * (q + 1) / sp.seqs;
      if (e > b) seqs.push_back({100 * q, e - b, {}});
    }
    step_ = make_step(be, seqs, ids_);
    reference(tid2eid);
    tol = 1e-5;
    // Weights read once: the distinct experts the rows route to, the shared one and the gate.
    bytes = static_cast<double>(gate_.w.bytes()) + 3.0 * static_cast<double>(ex_[static_cast<size_t>(E)].w1.w.bytes());
    std::vector<bool> used(static_cast<size_t>(E));
    for (const auto& r : routes_)
      for (auto e : r) used[static_cast<size_t>(e)] = true;
    for (int64_t e = 0; e < E; ++e)
      if (used[static_cast<size_t>(e)]) bytes += 3.0 * static_cast<double>(ex_[static_cast<size_t>(e)].w1.w.bytes());
  }
  void run() override { be_.moe(w_, c_, sp_.kind, xd_.as<const float>(), step_.ref, sp_.S, outd_.as<float>()); }
  double error() override { return rel_err_d(from_backend(be_, outd_, ref_.size()), ref_); }

 private:
  void reference(const std::vector<int64_t>& tid2eid) {
    const int64_t D = sp_.D, E = sp_.E, K = sp_.K;
    ref_.assign(static_cast<size_t>(sp_.S * D), 0.0);
    for (int64_t s = 0; s < sp_.S; ++s) {
      const float* xs = x_.data() + s * D;
      std::vector<double> sc(static_cast<size_t>(E));
      for (int64_t e = 0; e < E; ++e) {
        const auto g = row_of(gate_.w, e);
        double z = 0;
        for (int64_t d = 0; d < D; ++d) z += static_cast<double>(xs[d]) * g[static_cast<size_t>(d)];
        sc[static_cast<size_t>(e)] = std::sqrt(std::log1p(std::exp(z)));
      }
      std::vector<int64_t> idx;
      if (sp_.kind == MoeKind::Hash) {
        for (int64_t k = 0; k < K; ++k) idx.push_back(tid2eid[static_cast<size_t>(ids_[static_cast<size_t>(s)] * K + k)]);
      } else {
        std::vector<int64_t> o(static_cast<size_t>(E));
        std::iota(o.begin(), o.end(), 0);
        std::stable_sort(o.begin(), o.end(), [&](int64_t a, int64_t b) {
          return sc[static_cast<size_t>(a)] + bias_[static_cast<size_t>(a)] > sc[static_cast<size_t>(b)] + bias_[static_cast<size_t>(b)];
        });
        idx.assign(o.begin(), o.begin() + K);
      }
      routes_.push_back(idx);
      double sum = 0;
      for (auto e : idx) sum += sc[static_cast<size_t>(e)];
      std::vector<double> acc = expert_ref(ex_[static_cast<size_t>(E)], xs, D, sp_.I, sp_.L);
      for (auto e : idx) {
        const auto y = expert_ref(ex_[static_cast<size_t>(e)], xs, D, sp_.I, sp_.L);
        for (int64_t d = 0; d < D; ++d) acc[static_cast<size_t>(d)] += sc[static_cast<size_t>(e)] / sum * 1.5 * y[static_cast<size_t>(d)];
      }
      std::copy(acc.begin(), acc.end(), ref_.begin() + s * D);
    }
  }

  Backend& be_;
  MoeSpec sp_;
  ModelConfig c_;
  std::vector<HostExpert> ex_;
  OwnedMat gate_;
  std::vector<float> bias_, x_;
  std::vector<std::array<DevMat, 3>> dev_;
  DevMat gated_;
  DevBuf biasd_, tidd_, xd_, outd_;
  MoeW w_;
  std::vector<int32_t> ids_;
  TestStep step_;
  std::vector<std::vector<int64_t>> routes_;
  std::vector<double> ref_;
};

}  // namespace

void add_moe_cases(std::vector<OpCase>& v) {
  for (MoeKind kind : {MoeKind::Hash, MoeKind::TopK})
    for (int64_t S : {1, 13, 137}) {
      MoeSpec sp;
      sp.kind = kind;
      sp.S = S;
      v.push_back({"moe", std::string(kind == MoeKind::Hash ? "hash" : "top-k") + " routing, S=" + std::to_string(S) + ", D=32 E=6 K=2 I=16", false,
                   [=](Backend& be) -> std::unique_ptr<PreparedOp> { return std::make_unique<MoeOp>(be, sp); }});
    }
  // Two experts with 40 rows each, more than the fused kernels take, among 16 mostly idle ones:
  // the busy experts are split into parts.
  MoeSpec busy;
  busy.S = 40;
  busy.E = 16;
  busy.one_id = true;
  v.push_back({"moe", "hash routing, S=40, all rows to the same two of 16 experts", false,
               [=](Backend& be) -> std::unique_ptr<PreparedOp> { return std::make_unique<MoeOp>(be, busy); }});
  MoeSpec multi;
  multi.S = 13;
  multi.seqs = 4;
  v.push_back({"moe", "hash routing, 13 rows of 4 sequences", false,
               [=](Backend& be) -> std::unique_ptr<PreparedOp> { return std::make_unique<MoeOp>(be, multi); }});
  for (MoeKind kind : {MoeKind::TopK, MoeKind::Hash})
    for (int64_t S : {1, 3}) {
      MoeSpec sp;
      sp.kind = kind;
      sp.S = S;
      sp.D = 4096;
      sp.E = 16;
      sp.K = 6;
      sp.I = 2048;
      sp.V = 1000;
      sp.L = 10.0;
      sp.expert_fmt = WFormat::FP4;
      sp.shared_fmt = WFormat::FP8;
      sp.gate_fmt = WFormat::BF16;
      sp.seqs = static_cast<int>(S);
      v.push_back({"moe", std::string(kind == MoeKind::Hash ? "hash" : "top-k") + " routing, S=" + std::to_string(S) +
                              " (V4-Flash dims: D=4096 I=2048 K=6, FP4 experts of 16, FP8 shared)",
                   true, [=](Backend& be) -> std::unique_ptr<PreparedOp> { return std::make_unique<MoeOp>(be, sp); }});
    }
}

}  // namespace dsv4::test
