// mHC (hc_pre with Sinkhorn, hc_post, hc_head) against naive double implementations.
#include <cmath>

#include "ops/harness.hpp"
#include "support/support.hpp"

namespace dsv4::test {

namespace {

ModelConfig mhc_config(int64_t D, int64_t iters = 20) {
  ModelConfig c;
  c.hidden_size = D;
  c.hc_mult = 4;
  c.hc_sinkhorn_iters = iters;
  c.hc_eps = 1e-6;
  c.rms_norm_eps = 1e-6;
  return c;
}

double sig(double z) { return 1.0 / (1.0 + std::exp(-z)); }

struct NaivePre {
  std::vector<double> xin, post, C;  // [S, D], [S, nc], [S, nc, nc]
};

NaivePre naive_pre(const std::vector<float>& X, const std::vector<float>& fn, const std::vector<float>& base,
                   const std::vector<float>& scale, const std::vector<float>& norm, int64_t S, int64_t D, int iters) {
  const int64_t N = 4 * D, nmix = 24;
  const double eps = 1e-6;
  NaivePre r;
  r.xin.resize(static_cast<size_t>(S * D));
  r.post.resize(static_cast<size_t>(S * 4));
  r.C.resize(static_cast<size_t>(S * 16));
  for (int64_t s = 0; s < S; ++s) {
    const float* x = X.data() + s * N;
    double ss = 0;
    for (int64_t i = 0; i < N; ++i) ss += static_cast<double>(x[i]) * x[i];
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(N) + 1e-6);
    double mix[24];
    for (int64_t k = 0; k < nmix; ++k) {
      double a = 0;
      for (int64_t i = 0; i < N; ++i) a += x[i] * inv * fn[static_cast<size_t>(k * N + i)];
      mix[k] = a;
    }
    double pre[4], C[4][4];
    for (int j = 0; j < 4; ++j) {
      pre[j] = sig(mix[j] * scale[0] + base[static_cast<size_t>(j)]) + eps;
      r.post[static_cast<size_t>(s * 4 + j)] = 2 * sig(mix[4 + j] * scale[1] + base[static_cast<size_t>(4 + j)]);
    }
    for (int j = 0; j < 4; ++j) {
      double mx = -1e300, sum = 0;
      for (int k = 0; k < 4; ++k) mx = std::max(mx, C[j][k] = mix[8 + j * 4 + k] * scale[2] + base[static_cast<size_t>(8 + j * 4 + k)]);
      for (int k = 0; k < 4; ++k) sum += C[j][k] = std::exp(C[j][k] - mx);
      for (int k = 0; k < 4; ++k) C[j][k] = C[j][k] / sum + eps;
    }
    for (int it = 0; it < iters; ++it) {
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
    const double inv2 = 1.0 / std::sqrt(ss2 / static_cast<double>(D) + 1e-6);
    for (int64_t d = 0; d < D; ++d) r.xin[static_cast<size_t>(s * D + d)] = col[static_cast<size_t>(d)] * inv2 * norm[static_cast<size_t>(d)];
  }
  return r;
}

// hc_pre: xin and the coefficients (post weights, Sinkhorn-normalised C).
class HcPreOp final : public PreparedOp {
 public:
  HcPreOp(Backend& be, int64_t S, int64_t D, int iters) : be_(be), S_(S), c_(mhc_config(D, iters)) {
    X_ = random_floats(static_cast<size_t>(S * 4 * D), 1 + S, -2, 2);
    fn_ = random_floats(static_cast<size_t>(24 * 4 * D), 2, -0.3f, 0.3f);
    base_ = random_floats(24, 3);
    scale_ = {0.7f, 1.3f, 2.0f};
    norm_ = random_floats(static_cast<size_t>(D), 4, 0.5f, 1.5f);
    fnd_ = to_backend(be, f32_view(fn_, 24, 4 * D));
    based_ = to_backend(be, base_);
    scaled_ = to_backend(be, scale_);
    normd_ = to_backend(be, norm_);
    Xd_ = to_backend(be, X_);
    xin_ = DevBuf(be, static_cast<size_t>(S * D) * sizeof(float));
    coef_ = DevBuf(be, static_cast<size_t>(S * 20) * sizeof(float));
    hw_.fn = fnd_.w;
    hw_.base = view(based_, 24);
    hw_.scale = view(scaled_, 3);
    ref_ = naive_pre(X_, fn_, base_, scale_, norm_, S, D, iters);
    sinkhorn_only_ = iters > 100;
    tol = sinkhorn_only_ ? 1e-4 : 1e-5;
    bytes = 4.0 * static_cast<double>(S * 4 * D + 24 * 4 * D + S * D);
  }
  void run() override {
    be_.hc_pre(hw_, c_, Xd_.as<const float>(), S_, normd_.as<const float>(), xin_.as<float>(), coef_.as<float>());
  }
  double error() override {
    const int64_t D = c_.hidden_size;
    const auto xin = from_backend(be_, xin_, static_cast<size_t>(S_ * D));
    const auto coef = from_backend(be_, coef_, static_cast<size_t>(S_ * 20));
    double worst_c = 0, worst_post = 0, worst_col = 0, worst_row = 0;
    for (int64_t s = 0; s < S_; ++s) {
      const float* Cm = coef.data() + s * 20 + 4;
      for (int j = 0; j < 4; ++j) {
        double rs = 0, cs = 0;
        for (int k = 0; k < 4; ++k) {
          if (!(Cm[j * 4 + k] > 0.0f)) return INFINITY;
          rs += Cm[j * 4 + k];
          cs += Cm[k * 4 + j];
          worst_c = std::max(worst_c, std::fabs(Cm[j * 4 + k] - ref_.C[static_cast<size_t>(s * 16 + j * 4 + k)]));
        }
        worst_row = std::max(worst_row, std::fabs(rs - 1));
        worst_col = std::max(worst_col, std::fabs(cs - 1));
        const double p = ref_.post[static_cast<size_t>(s * 4 + j)];
        worst_post = std::max(worst_post, std::fabs(coef[static_cast<size_t>(s * 20 + j)] - p));  // absolute: post is in [0, 2]
      }
    }
    // Converged (many iterations): doubly stochastic. Otherwise the last pass normalises columns.
    if (sinkhorn_only_) return std::max(worst_row, worst_col);
    if (worst_col > 1e-4 || worst_row > 0.1) return INFINITY;
    return std::max({rel_err_d(xin, ref_.xin), worst_c, worst_post});
  }

 private:
  Backend& be_;
  int64_t S_;
  ModelConfig c_;
  std::vector<float> X_, fn_, base_, scale_, norm_;
  DevMat fnd_;
  DevBuf based_, scaled_, normd_, Xd_, xin_, coef_;
  HyperW hw_;
  NaivePre ref_;
  bool sinkhorn_only_ = false;
};

// hc_post: X'[k] = post_k y + Σ_j C[j,k] X[j].
class HcPostOp final : public PreparedOp {
 public:
  HcPostOp(Backend& be, int64_t S, int64_t D) : be_(be), S_(S), c_(mhc_config(D)) {
    X_ = random_floats(static_cast<size_t>(S * 4 * D), 5 + S, -2, 2);
    y_ = random_floats(static_cast<size_t>(S * D), 9);
    coef_ = random_floats(static_cast<size_t>(S * 20), 10, 0, 1);
    Xd_ = to_backend(be, X_);
    yd_ = to_backend(be, y_);
    cd_ = to_backend(be, coef_);
    ref_.resize(X_.size());
    for (int64_t s = 0; s < S; ++s)
      for (int k = 0; k < 4; ++k)
        for (int64_t d = 0; d < D; ++d) {
          double a = coef_[static_cast<size_t>(s * 20 + k)] * static_cast<double>(y_[static_cast<size_t>(s * D + d)]);
          for (int j = 0; j < 4; ++j)
            a += coef_[static_cast<size_t>(s * 20 + 4 + j * 4 + k)] * static_cast<double>(X_[static_cast<size_t>((s * 4 + j) * D + d)]);
          ref_[static_cast<size_t>((s * 4 + k) * D + d)] = a;
        }
    tol = 1e-6;
    bytes = 4.0 * static_cast<double>(2 * S * 4 * D + S * D);
  }
  void run() override {
    be_.upload(Xd_.as<void>(), X_.data(), X_.size() * sizeof(float));  // in place: start from X each time
    be_.hc_post(c_, Xd_.as<float>(), yd_.as<const float>(), cd_.as<const float>(), S_);
  }
  double error() override { return rel_err_d(from_backend(be_, Xd_, X_.size()), ref_); }

 private:
  Backend& be_;
  int64_t S_;
  ModelConfig c_;
  std::vector<float> X_, y_, coef_;
  DevBuf Xd_, yd_, cd_;
  std::vector<double> ref_;
};

// hc_head: h = Σ_j pre_j X[j] with sigmoid weights and no Sinkhorn.
class HcHeadOp final : public PreparedOp {
 public:
  HcHeadOp(Backend& be, int64_t S, int64_t D) : be_(be), S_(S), c_(mhc_config(D)) {
    X_ = random_floats(static_cast<size_t>(S * 4 * D), 11, -2, 2);
    fn_ = random_floats(static_cast<size_t>(4 * 4 * D), 12, -0.3f, 0.3f);
    base_ = random_floats(4, 13);
    scale_ = {0.9f};
    fnd_ = to_backend(be, f32_view(fn_, 4, 4 * D));
    based_ = to_backend(be, base_);
    scaled_ = to_backend(be, scale_);
    Xd_ = to_backend(be, X_);
    hd_ = DevBuf(be, static_cast<size_t>(S * D) * sizeof(float));
    hw_.fn = fnd_.w;
    hw_.base = view(based_, 4);
    hw_.scale = view(scaled_, 1);
    ref_.resize(static_cast<size_t>(S * D));
    for (int64_t s = 0; s < S; ++s) {
      const float* x = X_.data() + s * 4 * D;
      double ss = 0;
      for (int64_t i = 0; i < 4 * D; ++i) ss += static_cast<double>(x[i]) * x[i];
      const double inv = 1.0 / std::sqrt(ss / static_cast<double>(4 * D) + 1e-6);
      double pre[4];
      for (int j = 0; j < 4; ++j) {
        double m = 0;
        for (int64_t i = 0; i < 4 * D; ++i) m += x[i] * inv * fn_[static_cast<size_t>(j * 4 * D + i)];
        pre[j] = sig(m * scale_[0] + base_[static_cast<size_t>(j)]) + 1e-6;
      }
      for (int64_t d = 0; d < D; ++d) {
        double a = 0;
        for (int j = 0; j < 4; ++j) a += pre[j] * x[j * D + d];
        ref_[static_cast<size_t>(s * D + d)] = a;
      }
    }
    tol = 1e-5;
    bytes = 4.0 * static_cast<double>(S * 5 * D + 16 * D);
  }
  void run() override { be_.hc_head(hw_, c_, Xd_.as<const float>(), S_, hd_.as<float>()); }
  double error() override { return rel_err_d(from_backend(be_, hd_, ref_.size()), ref_); }

 private:
  Backend& be_;
  int64_t S_;
  ModelConfig c_;
  std::vector<float> X_, fn_, base_, scale_;
  DevMat fnd_;
  DevBuf based_, scaled_, Xd_, hd_;
  HyperW hw_;
  std::vector<double> ref_;
};

}  // namespace

void add_mhc_cases(std::vector<OpCase>& v) {
  for (int64_t S : {1, 13, 137}) {
    v.push_back({"mhc", "hc_pre S=" + std::to_string(S) + " D=40", false,
                 [=](Backend& be) -> std::unique_ptr<PreparedOp> { return std::make_unique<HcPreOp>(be, S, 40, 20); }});
    v.push_back({"mhc", "hc_post S=" + std::to_string(S) + " D=40", false,
                 [=](Backend& be) -> std::unique_ptr<PreparedOp> { return std::make_unique<HcPostOp>(be, S, 40); }});
    v.push_back({"mhc", "hc_head S=" + std::to_string(S) + " D=24", false,
                 [=](Backend& be) -> std::unique_ptr<PreparedOp> { return std::make_unique<HcHeadOp>(be, S, 24); }});
  }
  v.push_back({"mhc", "Sinkhorn 300 iterations: doubly stochastic, S=13", false,
               [](Backend& be) -> std::unique_ptr<PreparedOp> { return std::make_unique<HcPreOp>(be, 13, 16, 300); }});
  for (int64_t S : {1, 4}) {
    v.push_back({"mhc", "hc_pre S=" + std::to_string(S) + " D=4096", true,
                 [=](Backend& be) -> std::unique_ptr<PreparedOp> { return std::make_unique<HcPreOp>(be, S, 4096, 20); }});
    v.push_back({"mhc", "hc_post S=" + std::to_string(S) + " D=4096", true,
                 [=](Backend& be) -> std::unique_ptr<PreparedOp> { return std::make_unique<HcPostOp>(be, S, 4096); }});
  }
  v.push_back({"mhc", "hc_head S=1 D=4096", true,
               [](Backend& be) -> std::unique_ptr<PreparedOp> { return std::make_unique<HcHeadOp>(be, 1, 4096); }});
}

}  // namespace dsv4::test
