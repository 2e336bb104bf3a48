// MoE against a naive implementation: hash and biased top-k routing, clamped SwiGLU, shared expert.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "backend/cpu/cpu_backend.hpp"
#include "ops/encode.hpp"
#include "support/support.hpp"

using namespace dsv4;
using namespace dsv4::test;

namespace {

struct Expert {
  std::vector<float> w1, w3, w2;
};

std::vector<double> expert_ref(const Expert& e, const float* x, int64_t D, int64_t I, double L) {
  std::vector<double> h(static_cast<size_t>(I)), y(static_cast<size_t>(D));
  for (int64_t i = 0; i < I; ++i) {
    double a = 0, b = 0;
    for (int64_t d = 0; d < D; ++d) {
      a += static_cast<double>(x[d]) * e.w1[static_cast<size_t>(i * D + d)];
      b += static_cast<double>(x[d]) * e.w3[static_cast<size_t>(i * D + d)];
    }
    a = std::min(a, L);
    b = std::clamp(b, -L, L);
    h[static_cast<size_t>(i)] = a / (1 + std::exp(-a)) * b;
  }
  for (int64_t d = 0; d < D; ++d)
    for (int64_t i = 0; i < I; ++i) y[static_cast<size_t>(d)] += h[static_cast<size_t>(i)] * e.w2[static_cast<size_t>(d * I + i)];
  return y;
}

void check_moe(MoeKind kind, int64_t S) {
  CpuBackend be(2);
  ModelConfig c;
  c.hidden_size = 32;
  c.n_routed_experts = 6;
  c.experts_per_token = 2;
  c.moe_intermediate_size = 16;
  c.routed_scaling_factor = 1.5;
  c.swiglu_limit = 0.8;  // small, so the clamps are exercised
  c.vocab_size = 50;
  const int64_t D = 32, E = 6, K = 2, I = 16;
  std::vector<Expert> ex(static_cast<size_t>(E + 1));
  for (size_t e = 0; e < ex.size(); ++e) {
    ex[e].w1 = random_floats(static_cast<size_t>(I * D), 100 + e, -0.5f, 0.5f);
    ex[e].w3 = random_floats(static_cast<size_t>(I * D), 200 + e, -0.5f, 0.5f);
    ex[e].w2 = random_floats(static_cast<size_t>(D * I), 300 + e, -0.5f, 0.5f);
  }
  auto gate = random_floats(static_cast<size_t>(E * D), 7);
  std::vector<int64_t> tid2eid(static_cast<size_t>(c.vocab_size * K));
  for (int64_t v = 0; v < c.vocab_size; ++v)
    for (int64_t k = 0; k < K; ++k) tid2eid[static_cast<size_t>(v * K + k)] = (v * 7 + k * 3) % E;
  MoeW w;
  w.gate = f32_view(gate, E, D);
  w.bias = random_floats(static_cast<size_t>(E), 8, -0.3f, 0.3f);
  w.tid2eid = reinterpret_cast<const uint8_t*>(tid2eid.data());
  for (int64_t e = 0; e < E; ++e)
    w.experts.push_back({f32_view(ex[static_cast<size_t>(e)].w1, I, D), f32_view(ex[static_cast<size_t>(e)].w3, I, D),
                         f32_view(ex[static_cast<size_t>(e)].w2, D, I)});
  w.shared = ExpertW{f32_view(ex[E].w1, I, D), f32_view(ex[E].w3, I, D), f32_view(ex[E].w2, D, I)};

  auto x = random_floats(static_cast<size_t>(S * D), 9 + S, -2, 2);
  std::vector<int32_t> ids(static_cast<size_t>(S));
  for (int64_t s = 0; s < S; ++s) ids[static_cast<size_t>(s)] = static_cast<int32_t>((s * 13 + 5) % c.vocab_size);
  std::vector<float> out(static_cast<size_t>(S * D));
  be.moe(w, c, kind, x.data(), ids.data(), S, out.data());

  std::vector<float> ref(out.size());
  for (int64_t s = 0; s < S; ++s) {
    const float* xs = x.data() + s * D;
    std::vector<double> sc(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e) {
      double z = 0;
      for (int64_t d = 0; d < D; ++d) z += static_cast<double>(xs[d]) * gate[static_cast<size_t>(e * D + d)];
      sc[static_cast<size_t>(e)] = std::sqrt(std::log1p(std::exp(z)));
    }
    std::vector<int64_t> idx;
    if (kind == MoeKind::Hash) {
      for (int64_t k = 0; k < K; ++k) idx.push_back(tid2eid[static_cast<size_t>(ids[static_cast<size_t>(s)] * K + k)]);
    } else {
      std::vector<int64_t> o(static_cast<size_t>(E));
      std::iota(o.begin(), o.end(), 0);
      std::stable_sort(o.begin(), o.end(), [&](int64_t a, int64_t b) { return sc[static_cast<size_t>(a)] + w.bias[static_cast<size_t>(a)] > sc[static_cast<size_t>(b)] + w.bias[static_cast<size_t>(b)]; });
      idx.assign(o.begin(), o.begin() + K);
    }
    double sum = 0;
    for (auto e : idx) sum += sc[static_cast<size_t>(e)];
    std::vector<double> acc = expert_ref(ex[E], xs, D, I, c.swiglu_limit);
    for (auto e : idx) {
      const auto y = expert_ref(ex[static_cast<size_t>(e)], xs, D, I, c.swiglu_limit);
      for (int64_t d = 0; d < D; ++d) acc[static_cast<size_t>(d)] += sc[static_cast<size_t>(e)] / sum * 1.5 * y[static_cast<size_t>(d)];
    }
    for (int64_t d = 0; d < D; ++d) ref[static_cast<size_t>(s * D + d)] = static_cast<float>(acc[static_cast<size_t>(d)]);
  }
  CHECK(rel_err(out.data(), ref.data(), ref.size()) < 1e-5);
}

}  // namespace

TEST_CASE("MoE with hash routing") {
  for (int64_t S : {1, 13, 137}) check_moe(MoeKind::Hash, S);
}

TEST_CASE("MoE with biased top-k routing") {
  for (int64_t S : {1, 13, 137}) check_moe(MoeKind::TopK, S);
}
