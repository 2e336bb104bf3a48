// rms_norm, rope_tables + rope (forward and inverse) against double references.
#include <cmath>
#include <complex>

#include "model/rope.hpp"
#include "ops/harness.hpp"
#include "support/support.hpp"

namespace dsv4::test {

namespace {

class RmsNormOp final : public PreparedOp {
 public:
  RmsNormOp(Backend& be, int64_t rows, int64_t n, bool weighted) : be_(be), rows_(rows), n_(n), ld_(n + 7), weighted_(weighted) {
    x_ = random_floats(static_cast<size_t>(rows * ld_), 11 + rows, -3, 3);
    w_ = random_floats(static_cast<size_t>(n), 12, 0.5f, 1.5f);
    xd_ = to_backend(be, x_);
    wd_ = to_backend(be, w_);
    ref_.resize(x_.size());
    for (int64_t r = 0; r < rows; ++r) {
      double ss = 0;
      for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x_[static_cast<size_t>(r * ld_ + i)]) * x_[static_cast<size_t>(r * ld_ + i)];
      const double inv = 1.0 / std::sqrt(ss / static_cast<double>(n) + 1e-6);
      for (int64_t i = 0; i < ld_; ++i) {
        const size_t k = static_cast<size_t>(r * ld_ + i);
        ref_[k] = i < n ? x_[k] * inv * (weighted ? w_[static_cast<size_t>(i)] : 1.0) : x_[k];  // padding untouched
      }
    }
    tol = 1e-6;
    bytes = 8.0 * static_cast<double>(rows * n);
  }
  void run() override {
    // Run on a fresh copy each time (in place).
    be_.upload(xd_.as<void>(), x_.data(), x_.size() * sizeof(float));
    be_.rms_norm(xd_.as<float>(), rows_, n_, ld_, weighted_ ? wd_.as<const float>() : nullptr, 1e-6f);
  }
  double error() override { return rel_err_d(from_backend(be_, xd_, x_.size()), ref_); }

 private:
  Backend& be_;
  int64_t rows_, n_, ld_;
  bool weighted_;
  std::vector<float> x_, w_;
  DevBuf xd_, wd_;
  std::vector<double> ref_;
};

// Angles from the positions of a step with two sequences; rotate, compare, rotate back.
class RopeOp final : public PreparedOp {
 public:
  RopeOp(Backend& be, int64_t rows, int64_t heads, int64_t hd, int64_t rd, bool yarn) : be_(be), rows_(rows), heads_(heads), hd_(hd), rd_(rd) {
    RopeParams p;
    p.theta = yarn ? 160000 : 10000;
    if (yarn) {
      p.yarn = true;
      p.factor = 16;
      p.original_max_position = 65536;
    }
    f_ = rope_frequencies(p, rd);
    fd_ = to_backend(be, f_);
    std::vector<TestSeq> seqs = {{1000, rows - rows / 2, {}}, {5, rows / 2, {}}};
    if (rows / 2 == 0) seqs.pop_back();
    step_ = make_step(be, seqs);
    x_ = random_floats(static_cast<size_t>(rows * heads * hd), 5);
    xd_ = to_backend(be, x_);
    const size_t half = static_cast<size_t>(rd / 2);
    cs_ = DevBuf(be, static_cast<size_t>(rows) * half * sizeof(float));
    sn_ = DevBuf(be, static_cast<size_t>(rows) * half * sizeof(float));
    tol = 1e-5;
    bytes = 8.0 * static_cast<double>(rows * heads * rd);
  }
  void run() override {
    be_.upload(xd_.as<void>(), x_.data(), x_.size() * sizeof(float));
    be_.rope_tables(step_.ref, rows_, fd_.as<const double>(), rd_ / 2, cs_.as<float>(), sn_.as<float>());
    be_.rope(xd_.as<float>(), rows_, heads_ * hd_, heads_, hd_, hd_ - rd_, rd_, cs_.as<const float>(), sn_.as<const float>(), false);
  }
  double error() override {
    const auto y = from_backend(be_, xd_, x_.size());
    double worst = 0;
    for (int64_t r = 0; r < rows_; ++r)
      for (int64_t h = 0; h < heads_; ++h) {
        const size_t b = static_cast<size_t>(r * heads_ * hd_ + h * hd_);
        for (int64_t i = 0; i < hd_ - rd_; ++i)
          if (y[b + static_cast<size_t>(i)] != x_[b + static_cast<size_t>(i)]) return INFINITY;  // nope channels untouched
        for (int64_t i = 0; i < rd_ / 2; ++i) {
          const size_t k = b + static_cast<size_t>(hd_ - rd_ + 2 * i);
          const std::complex<double> z(x_[k], x_[k + 1]);
          const auto w = z * std::polar(1.0, static_cast<double>(step_.pos[static_cast<size_t>(r)]) * f_[static_cast<size_t>(i)]);
          worst = std::max({worst, std::fabs(w.real() - y[k]), std::fabs(w.imag() - y[k + 1])});
        }
      }
    // The inverse rotation gives x back.
    be_.rope(xd_.as<float>(), rows_, heads_ * hd_, heads_, hd_, hd_ - rd_, rd_, cs_.as<const float>(), sn_.as<const float>(), true);
    const auto back = from_backend(be_, xd_, x_.size());
    std::vector<double> xd(x_.begin(), x_.end());
    return std::max(worst, 10 * rel_err_d(back, xd));
  }

 private:
  Backend& be_;
  int64_t rows_, heads_, hd_, rd_;
  std::vector<double> f_;
  DevBuf fd_;
  TestStep step_;
  std::vector<float> x_;
  DevBuf xd_, cs_, sn_;
};

}  // namespace

void add_norm_rope_cases(std::vector<OpCase>& v) {
  for (int64_t rows : {1, 13, 137})
    for (int64_t n : {40, 1024})
      for (bool w : {false, true})
        v.push_back({"rms_norm", std::to_string(rows) + "x" + std::to_string(n) + (w ? " weighted" : " unweighted"), false,
                     [=](Backend& be) -> std::unique_ptr<PreparedOp> { return std::make_unique<RmsNormOp>(be, rows, n, w); }});
  v.push_back({"rms_norm", "64 heads x 512 (q), weight-free", true,
               [](Backend& be) -> std::unique_ptr<PreparedOp> { return std::make_unique<RmsNormOp>(be, 64, 512, false); }});
  for (int64_t rows : {1, 13, 137})
    v.push_back({"rope", std::to_string(rows) + " rows x 3 heads x 24, rd 8, two sequences", false,
                 [=](Backend& be) -> std::unique_ptr<PreparedOp> { return std::make_unique<RopeOp>(be, rows, 3, 24, 8, false); }});
  v.push_back({"rope", "1 row x 64 heads x 512, rd 64, YaRN", true,
               [](Backend& be) -> std::unique_ptr<PreparedOp> { return std::make_unique<RopeOp>(be, 1, 64, 512, 64, true); }});
  v.push_back({"rope", "4 rows x 64 heads x 512, rd 64, YaRN", true,
               [](Backend& be) -> std::unique_ptr<PreparedOp> { return std::make_unique<RopeOp>(be, 4, 64, 512, 64, true); }});
}

}  // namespace dsv4::test
