// mHC against a naive double implementation; the Sinkhorn result is doubly stochastic.
#include <doctest/doctest.h>

#include <cmath>

#include "backend/cpu/cpu_backend.hpp"
#include "ops/encode.hpp"
#include "support/support.hpp"

using namespace dsv4;
using namespace dsv4::test;

namespace {

ModelConfig mhc_config(int64_t D) {
  ModelConfig c;
  c.hidden_size = D;
  c.hc_mult = 4;
  c.hc_sinkhorn_iters = 20;
  c.hc_eps = 1e-6;
  c.rms_norm_eps = 1e-6;
  return c;
}

double sig(double z) { return 1.0 / (1.0 + std::exp(-z)); }

struct NaivePre {
  std::vector<double> xin, post, C;  // [S, D], [S, nc], [S, nc, nc]
};

NaivePre naive_pre(const std::vector<float>& X, const std::vector<float>& fn, const std::vector<float>& base,
                   const std::vector<float>& scale, const std::vector<float>& norm, int64_t S, int64_t D) {
  const int64_t nc = 4, N = nc * D, nmix = 24;
  const double eps = 1e-6;
  NaivePre r;
  r.xin.resize(static_cast<size_t>(S * D));
  r.post.resize(static_cast<size_t>(S * nc));
  r.C.resize(static_cast<size_t>(S * nc * nc));
  for (int64_t s = 0; s < S; ++s) {
    const float* x = X.data() + s * N;
    double ss = 0;
    for (int64_t i = 0; i < N; ++i) ss += static_cast<double>(x[i]) * x[i];
    const double inv = 1.0 / std::sqrt(ss / N + 1e-6);
    double mix[24];
    for (int64_t k = 0; k < nmix; ++k) {
      double a = 0;
      for (int64_t i = 0; i < N; ++i) a += x[i] * inv * fn[static_cast<size_t>(k * N + i)];
      mix[k] = a;
    }
    double pre[4], C[4][4];
    for (int j = 0; j < 4; ++j) {
      pre[j] = sig(mix[j] * scale[0] + base[j]) + eps;
      r.post[static_cast<size_t>(s * 4 + j)] = 2 * sig(mix[4 + j] * scale[1] + base[4 + j]);
    }
    for (int j = 0; j < 4; ++j) {
      double mx = -1e300, sum = 0;
      for (int k = 0; k < 4; ++k) mx = std::max(mx, C[j][k] = mix[8 + j * 4 + k] * scale[2] + base[8 + j * 4 + k]);
      for (int k = 0; k < 4; ++k) sum += C[j][k] = std::exp(C[j][k] - mx);
      for (int k = 0; k < 4; ++k) C[j][k] = C[j][k] / sum + eps;
    }
    for (int it = 0; it < 20; ++it) {
      if (it > 0)
        for (int j = 0; j < 4; ++j) {
          double sum = 0;
          for (int k = 0; k < 4; ++k) sum += C[j][k];
          for (int k = 0; k < 4; ++k) C[j][k] /= sum + eps;
        }
      for (int k = 0; k < 4; ++k) {
        double sum = 0;
        for (int j = 0; j < 4; ++j) sum += C[j][k];
        for (int j = 0; j < 4; ++j) C[j][k] /= sum + eps;
      }
    }
    for (int j = 0; j < 4; ++j)
      for (int k = 0; k < 4; ++k) r.C[static_cast<size_t>(s * 16 + j * 4 + k)] = C[j][k];
    std::vector<double> col(static_cast<size_t>(D));
    double ss2 = 0;
    for (int64_t d = 0; d < D; ++d) {
      double a = 0;
      for (int j = 0; j < 4; ++j) a += pre[j] * x[j * D + d];
      col[static_cast<size_t>(d)] = a;
      ss2 += a * a;
    }
    const double inv2 = 1.0 / std::sqrt(ss2 / D + 1e-6);
    for (int64_t d = 0; d < D; ++d) r.xin[static_cast<size_t>(s * D + d)] = col[static_cast<size_t>(d)] * inv2 * norm[static_cast<size_t>(d)];
  }
  return r;
}

}  // namespace

TEST_CASE("hc_pre and hc_post match the naive reference") {
  CpuBackend be(2);
  const int64_t D = 40;
  const ModelConfig c = mhc_config(D);
  for (int64_t S : {1, 13, 137}) {
    auto X = random_floats(static_cast<size_t>(S * 4 * D), 1 + S, -2, 2);
    auto fn = random_floats(static_cast<size_t>(24 * 4 * D), 2, -0.3f, 0.3f);
    HyperW hw;
    hw.fn = f32_view(fn, 24, 4 * D);
    hw.base = random_floats(24, 3);
    hw.scale = {0.7f, 1.3f, 2.0f};
    auto norm = random_floats(static_cast<size_t>(D), 4, 0.5f, 1.5f);
    std::vector<float> xin(static_cast<size_t>(S * D)), coef(static_cast<size_t>(S * 20));
    be.hc_pre(hw, c, X.data(), S, norm.data(), xin.data(), coef.data());
    const NaivePre ref = naive_pre(X, fn, hw.base, hw.scale, norm, S, D);
    std::vector<float> rx(ref.xin.begin(), ref.xin.end());
    CHECK(rel_err(xin.data(), rx.data(), rx.size()) < 1e-5);
    double worst_row = 0, worst_col = 0, worst_c = 0;
    for (int64_t s = 0; s < S; ++s) {
      const float* Cm = coef.data() + s * 20 + 4;
      for (int j = 0; j < 4; ++j) {
        double rs = 0, cs = 0;
        for (int k = 0; k < 4; ++k) {
          rs += Cm[j * 4 + k];
          cs += Cm[k * 4 + j];
          worst_c = std::max(worst_c, std::fabs(Cm[j * 4 + k] - ref.C[static_cast<size_t>(s * 16 + j * 4 + k)]));
        }
        worst_row = std::max(worst_row, std::fabs(rs - 1));
        worst_col = std::max(worst_col, std::fabs(cs - 1));
      }
      for (int j = 0; j < 4; ++j) CHECK(coef[static_cast<size_t>(s * 20 + j)] == doctest::Approx(ref.post[static_cast<size_t>(s * 4 + j)]).epsilon(1e-5));
    }
    CHECK(worst_c < 1e-5);
    CHECK(worst_col < 1e-4);  // the last Sinkhorn pass normalises columns
    CHECK(worst_row < 0.1);   // rows converge more slowly in 20 passes

    // hc_post: X'[k] = post_k y + Σ_j C[j,k] X[j]
    auto y = random_floats(static_cast<size_t>(S * D), 9);
    auto X2 = X;
    be.hc_post(c, X2.data(), y.data(), coef.data(), S);
    std::vector<float> ref_post(X.size());
    for (int64_t s = 0; s < S; ++s)
      for (int k = 0; k < 4; ++k)
        for (int64_t d = 0; d < D; ++d) {
          double a = coef[static_cast<size_t>(s * 20 + k)] * static_cast<double>(y[static_cast<size_t>(s * D + d)]);
          for (int j = 0; j < 4; ++j)
            a += coef[static_cast<size_t>(s * 20 + 4 + j * 4 + k)] * static_cast<double>(X[static_cast<size_t>(s * 4 * D + j * D + d)]);
          ref_post[static_cast<size_t>(s * 4 * D + k * D + d)] = static_cast<float>(a);
        }
    CHECK(rel_err(X2.data(), ref_post.data(), X2.size()) < 1e-6);
  }
}

TEST_CASE("hc_head collapses with sigmoid weights and no Sinkhorn") {
  CpuBackend be(2);
  const int64_t D = 24, S = 13;
  const ModelConfig c = mhc_config(D);
  auto X = random_floats(static_cast<size_t>(S * 4 * D), 11, -2, 2);
  auto fn = random_floats(static_cast<size_t>(4 * 4 * D), 12, -0.3f, 0.3f);
  HyperW hw;
  hw.fn = f32_view(fn, 4, 4 * D);
  hw.base = random_floats(4, 13);
  hw.scale = {0.9f};
  std::vector<float> h(static_cast<size_t>(S * D)), ref(h.size());
  be.hc_head(hw, c, X.data(), S, h.data());
  for (int64_t s = 0; s < S; ++s) {
    const float* x = X.data() + s * 4 * D;
    double ss = 0;
    for (int64_t i = 0; i < 4 * D; ++i) ss += static_cast<double>(x[i]) * x[i];
    const double inv = 1.0 / std::sqrt(ss / (4 * D) + 1e-6);
    double pre[4];
    for (int j = 0; j < 4; ++j) {
      double m = 0;
      for (int64_t i = 0; i < 4 * D; ++i) m += x[i] * inv * fn[static_cast<size_t>(j * 4 * D + i)];
      pre[j] = sig(m * hw.scale[0] + hw.base[static_cast<size_t>(j)]) + 1e-6;
    }
    for (int64_t d = 0; d < D; ++d) {
      double a = 0;
      for (int j = 0; j < 4; ++j) a += pre[j] * x[j * D + d];
      ref[static_cast<size_t>(s * D + d)] = static_cast<float>(a);
    }
  }
  CHECK(rel_err(h.data(), ref.data(), h.size()) < 1e-5);
}

TEST_CASE("Sinkhorn converges to a doubly stochastic matrix") {
  CpuBackend be(2);
  const int64_t D = 16, S = 13;
  ModelConfig c = mhc_config(D);
  c.hc_sinkhorn_iters = 300;
  auto X = random_floats(static_cast<size_t>(S * 4 * D), 21, -2, 2);
  auto fn = random_floats(static_cast<size_t>(24 * 4 * D), 22, -0.3f, 0.3f);
  HyperW hw;
  hw.fn = f32_view(fn, 24, 4 * D);
  hw.base = random_floats(24, 23);
  hw.scale = {1.0f, 1.0f, 2.0f};
  std::vector<float> norm(static_cast<size_t>(D), 1.0f), xin(static_cast<size_t>(S * D)), coef(static_cast<size_t>(S * 20));
  be.hc_pre(hw, c, X.data(), S, norm.data(), xin.data(), coef.data());
  double worst = 0;
  for (int64_t s = 0; s < S; ++s) {
    const float* Cm = coef.data() + s * 20 + 4;
    for (int j = 0; j < 4; ++j) {
      double rs = 0, cs = 0;
      for (int k = 0; k < 4; ++k) {
        CHECK(Cm[j * 4 + k] > 0.0f);
        rs += Cm[j * 4 + k];
        cs += Cm[k * 4 + j];
      }
      worst = std::max({worst, std::fabs(rs - 1), std::fabs(cs - 1)});
    }
  }
  CHECK(worst < 1e-4);
}
