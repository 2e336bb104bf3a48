// linear / linear_multi against a naive double-precision product: every stored format, awkward
// shapes (1, 13, 137) and real V4 shapes, with row offsets and strides; and embed / gather_rows.
#include <cmath>
#include <limits>

#include "quant/decode.hpp"
#include "ops/harness.hpp"
#include "support/support.hpp"

namespace dsv4::test {

namespace {

// RMS error relative to the RMS size of the summed terms. Float32 accumulation gives 1e-8..1e-7
// here (the worst case seen is 6e-8); a kernel keeping under ~21 bits of x or w fails.
constexpr double kTol = 5e-7;

// y_ref[s, j] = Σ_i x[s, i] · W[r0 + j, i] in double (W decoded on the host) and Σ_i |x · W|.
void naive(const MatW& w, int64_t r0, int64_t n, const std::vector<float>& x, int64_t ldx, int64_t S, std::vector<double>& y,
           std::vector<double>& mag) {
  std::vector<float> row(static_cast<size_t>(w.cols));
  y.assign(static_cast<size_t>(S * n), 0.0);
  mag.assign(static_cast<size_t>(S * n), 0.0);
  for (int64_t j = 0; j < n; ++j) {
    decode_rows(w, r0 + j, 1, row.data());
    for (int64_t s = 0; s < S; ++s) {
      double acc = 0, abs_acc = 0;
      for (int64_t i = 0; i < w.cols; ++i) {
        const double t = static_cast<double>(x[static_cast<size_t>(s * ldx + i)]) * row[static_cast<size_t>(i)];
        acc += t;
        abs_acc += std::fabs(t);
      }
      y[static_cast<size_t>(s * n + j)] = acc;
      mag[static_cast<size_t>(s * n + j)] = abs_acc;
    }
  }
}

class LinearOp final : public PreparedOp {
 public:
  LinearOp(Backend& be, WFormat fmt, int64_t rows, int64_t cols, int64_t S, int64_t r0, uint64_t seed)
      : be_(be), rows_(rows), S_(S), r0_(r0), ldx_(cols + 3), ldy_(rows + 5), host_(make_mat(fmt, rows + r0, cols, seed)) {
    dev_ = to_backend(be, host_.w);
    x_ = random_floats(static_cast<size_t>(S * ldx_), seed + 1);
    xd_ = to_backend(be, x_);
    yd_ = to_backend(be, std::vector<float>(static_cast<size_t>(S * ldy_), 7.0f));
    naive(host_.w, r0, rows, x_, ldx_, S, ref_, mag_);
    tol = kTol;
    bytes = static_cast<double>(host_.w.bytes()) * static_cast<double>(rows) / static_cast<double>(rows + r0) +
            4.0 * static_cast<double>(S * (cols + rows));
  }
  void run() override { be_.linear(dev_.w, r0_, rows_, xd_.as<const float>(), ldx_, S_, yd_.as<float>(), ldy_); }
  double error() override {
    const auto y = from_backend(be_, yd_, static_cast<size_t>(S_ * ldy_));
    double num = 0, den = 0;
    for (int64_t s = 0; s < S_; ++s) {
      for (int64_t j = 0; j < rows_; ++j) {
        const double d = y[static_cast<size_t>(s * ldy_ + j)] - ref_[static_cast<size_t>(s * rows_ + j)];
        num += d * d;
        den += mag_[static_cast<size_t>(s * rows_ + j)] * mag_[static_cast<size_t>(s * rows_ + j)];
      }
      for (int64_t j = rows_; j < ldy_; ++j)
        if (y[static_cast<size_t>(s * ldy_ + j)] != 7.0f) return INFINITY;  // padding must stay untouched
    }
    return std::isfinite(num) ? std::sqrt(num / den) : INFINITY;
  }

 private:
  Backend& be_;
  int64_t rows_, S_, r0_, ldx_, ldy_;
  OwnedMat host_;
  DevMat dev_;
  std::vector<float> x_;
  DevBuf xd_, yd_;
  std::vector<double> ref_, mag_;
};

// Several products on one shared input through linear_multi, each against its own reference.
class LinearMultiOp final : public PreparedOp {
 public:
  struct Task {
    WFormat fmt;
    int64_t rows, r0, n;
  };
  LinearMultiOp(Backend& be, std::vector<Task> tasks, int64_t cols, int64_t S) : be_(be), tasks_(std::move(tasks)), S_(S) {
    const int64_t ldx = cols + 1;
    x_ = random_floats(static_cast<size_t>(S * ldx), 7);
    xd_ = to_backend(be, x_);
    for (size_t i = 0; i < tasks_.size(); ++i) {
      host_.push_back(make_mat(tasks_[i].fmt, tasks_[i].rows, cols, 500 + i));
      yd_.push_back(to_backend(be, std::vector<float>(static_cast<size_t>(S * tasks_[i].n), -1.0f)));
      ref_.emplace_back();
      mag_.emplace_back();
      naive(host_.back().w, tasks_[i].r0, tasks_[i].n, x_, ldx, S, ref_.back(), mag_.back());
    }
    for (auto& h : host_) dev_.push_back(to_backend(be, h.w));
    for (size_t i = 0; i < tasks_.size(); ++i)
      lt_.push_back({&dev_[i].w, tasks_[i].r0, tasks_[i].n, xd_.as<const float>(), ldx, yd_[i].as<float>(), tasks_[i].n});
    tol = kTol;
  }
  void run() override { be_.linear_multi(lt_.data(), lt_.size(), S_); }
  double error() override {
    double worst = 0;
    for (size_t i = 0; i < tasks_.size(); ++i) {
      const auto y = from_backend(be_, yd_[i], static_cast<size_t>(S_ * tasks_[i].n));
      double num = 0, den = 0;
      for (size_t k = 0; k < y.size(); ++k) {
        num += (y[k] - ref_[i][k]) * (y[k] - ref_[i][k]);
        den += mag_[i][k] * mag_[i][k];
      }
      worst = std::max(worst, std::isfinite(num) ? std::sqrt(num / den) : INFINITY);
    }
    return worst;
  }

 private:
  Backend& be_;
  std::vector<Task> tasks_;
  int64_t S_;
  std::vector<float> x_;
  DevBuf xd_;
  std::vector<OwnedMat> host_;
  std::vector<DevMat> dev_;
  std::vector<DevBuf> yd_;
  std::vector<std::vector<double>> ref_, mag_;
  std::vector<LinearTask> lt_;
};

// The fused FP4 kernel puts x into block fixed point: blocks of very different magnitude, an
// all-zero block and tiny values must still match the double reference, and NaN must propagate.
class Fp4ExtremeOp final : public PreparedOp {
 public:
  explicit Fp4ExtremeOp(Backend& be) : be_(be), host_(make_mat(WFormat::FP4, kRows, kCols, 31)) {
    dev_ = to_backend(be, host_.w);
    yd_ = DevBuf(be, kRows * sizeof(float));
    tol = 0;
  }
  void run() override {}
  double error() override {
    double bad = 0;
    auto x = random_floats(kCols, 32);
    const int exps[16] = {-60, 0, 40, -126, 3, 0, -20, 90, 0, 1, -1, 7, 0, 0, -100, 20};
    for (int64_t i = 0; i < kCols; ++i) x[static_cast<size_t>(i)] = std::ldexp(x[static_cast<size_t>(i)], exps[i / 32]);
    for (int64_t i = 96; i < 128; ++i) x[static_cast<size_t>(i)] = 0.0f;
    auto y = apply(x);
    std::vector<double> ref, mag;
    naive(host_.w, 0, kRows, x, kCols, 1, ref, mag);
    for (int64_t j = 0; j < kRows; ++j) {
      // per-block terms differ by up to 2^216: compare with the largest block's magnitude
      const double d = std::fabs(y[static_cast<size_t>(j)] - ref[static_cast<size_t>(j)]);
      bad += d > 2e-6 * std::ldexp(1.0, 90 + 6) || d > 1e-5 * std::fabs(ref[static_cast<size_t>(j)]) + 1e20;
    }
    for (int64_t i = 0; i < kCols; ++i) x[static_cast<size_t>(i)] = std::ldexp(static_cast<float>(i % 7) - 3.0f, -120);
    y = apply(x);
    naive(host_.w, 0, kRows, x, kCols, 1, ref, mag);
    for (int64_t j = 0; j < kRows; ++j)  // only tiny values: must not flush to zero
      bad += std::fabs(y[static_cast<size_t>(j)] - ref[static_cast<size_t>(j)]) > 1e-5 * std::fabs(ref[static_cast<size_t>(j)]) + 1e-42;
    x[5] = std::numeric_limits<float>::quiet_NaN();
    y = apply(x);
    bad += !std::isnan(y[0]);
    return bad;
  }

 private:
  static constexpr int64_t kRows = 37, kCols = 512;
  std::vector<float> apply(const std::vector<float>& x) {
    DevBuf xd = to_backend(be_, x);
    be_.linear(dev_.w, 0, kRows, xd.as<const float>(), kCols, 1, yd_.as<float>(), kRows);
    return from_backend(be_, yd_, kRows);
  }
  Backend& be_;
  OwnedMat host_;
  DevMat dev_;
  DevBuf yd_;
};

// embed: rows of the table at the step's ids, copied to every stream; gather_rows: output rows.
class EmbedGatherOp final : public PreparedOp {
 public:
  EmbedGatherOp(Backend& be, WFormat fmt, int64_t V, int64_t D, int64_t S) : be_(be), S_(S), D_(D), host_(make_mat(fmt, V, D, 3)) {
    dev_ = to_backend(be, host_.w);
    for (int64_t s = 0; s < S; ++s) ids_.push_back(static_cast<int32_t>((s * 7 + 3) % V));
    for (int64_t k = 0; k < S; k += 3) outs_.push_back(static_cast<int32_t>(S - 1 - k));
    // Two sequences share the rows: the second starts at row S/2.
    std::vector<TestSeq> seqs = {{0, S / 2, {}}, {100, S - S / 2, {}}};
    if (S / 2 == 0) seqs.erase(seqs.begin());
    step_ = make_step(be, seqs, ids_, outs_);
    Xd_ = DevBuf(be, static_cast<size_t>(S * kNc * D) * sizeof(float));
    Gd_ = DevBuf(be, std::max<size_t>(outs_.size(), 1) * static_cast<size_t>(kNc * D) * sizeof(float));
    tol = 0;
    bytes = 4.0 * static_cast<double>(S * kNc * D);
  }
  void run() override {
    be_.embed(dev_.w, step_.ref, S_, kNc, Xd_.as<float>());
    be_.gather_rows(Xd_.as<const float>(), kNc * D_, step_.ref, static_cast<int64_t>(outs_.size()), kNc * D_, Gd_.as<float>());
  }
  double error() override {
    const auto X = from_backend(be_, Xd_, static_cast<size_t>(S_ * kNc * D_));
    const auto G = from_backend(be_, Gd_, outs_.size() * static_cast<size_t>(kNc * D_));
    std::vector<float> row(static_cast<size_t>(D_));
    double bad = 0;
    for (int64_t s = 0; s < S_; ++s) {
      decode_rows(host_.w, ids_[static_cast<size_t>(s)], 1, row.data());
      for (int64_t j = 0; j < kNc; ++j)
        for (int64_t d = 0; d < D_; ++d) bad += X[static_cast<size_t>((s * kNc + j) * D_ + d)] != row[static_cast<size_t>(d)];
    }
    for (size_t k = 0; k < outs_.size(); ++k)
      for (int64_t i = 0; i < kNc * D_; ++i)
        bad += G[k * static_cast<size_t>(kNc * D_) + static_cast<size_t>(i)] != X[static_cast<size_t>(outs_[k] * kNc * D_ + i)];
    return bad;
  }

 private:
  static constexpr int64_t kNc = 4;
  Backend& be_;
  int64_t S_, D_;
  OwnedMat host_;
  DevMat dev_;
  std::vector<int32_t> ids_, outs_;
  TestStep step_;
  DevBuf Xd_, Gd_;
};

std::string fmt_name(WFormat f) { return wformat_name(f); }

}  // namespace

void add_linear_cases(std::vector<OpCase>& v) {
  uint64_t seed = 10;
  for (WFormat fmt : {WFormat::F32, WFormat::BF16, WFormat::F16, WFormat::FP8, WFormat::FP4})
    for (int64_t rows : {1, 13, 137})
      for (int64_t S : {1, 13, 137})
        for (int64_t cols : {32, 160, 192, 384, 640}) {  // 192: FP8 fast path only; 384, 640: FP8 and FP4 fast paths
          const int64_t r0 = rows == 13 ? 5 : 0;
          const uint64_t sd = seed++;
          v.push_back({"linear", fmt_name(fmt) + " " + std::to_string(rows) + "x" + std::to_string(cols) + " S=" + std::to_string(S),
                       false, [=](Backend& be) -> std::unique_ptr<PreparedOp> {
                         if (!be.supports(fmt)) return nullptr;
                         return std::make_unique<LinearOp>(be, fmt, rows, cols, S, r0, sd);
                       }});
        }
  struct Real {
    WFormat fmt;
    int64_t rows, cols, S, r0;
    const char* what;
  };
  const Real real[] = {
      {WFormat::FP8, 1024, 4096, 1, 0, "wq_a decode"},
      {WFormat::FP8, 1024, 4096, 4, 0, "wq_a 4 rows"},
      {WFormat::FP4, 2048, 4096, 1, 0, "expert w1 decode"},
      {WFormat::BF16, 256, 4096, 3, 0, "bf16 3 rows"},
      {WFormat::FP8, 300, 8192, 1, 77, "wo_b width, rows crossing scale tiles"},
      {WFormat::FP4, 4096, 2048, 2, 0, "expert w2"},
      {WFormat::FP4, 2048, 4096, 12, 0, "expert w1, its share of a 512-token prefill"},
      {WFormat::FP4, 48, 4096, 9, 0, "more rows than one group"},
      {WFormat::FP4, 200, 4096, 3, 0, "three rows (AVX2: the float kernel's fewest)"},
      {WFormat::FP4, 72, 2048, 4, 8, "four rows, a row offset"},
      {WFormat::FP4, 40, 4096, 32, 0, "most rows the fused kernels take"},
      {WFormat::FP4, 40, 4096, 33, 0, "one more: decode + GEMM"},
      {WFormat::FP8, 40, 4096, 21, 0, "fused FP8, three groups of rows"},
      {WFormat::FP8, 40, 4096, 25, 0, "FP8 above 24 rows: decode + GEMM"},
      {WFormat::FP8, 4096, 8192, 1, 0, "wo_b decode"},
      {WFormat::FP8, 32768, 1024, 1, 0, "wq_b decode"},
  };
  uint64_t rs = 99;
  for (const Real& r : real) {
    const uint64_t sd = rs--;
    v.push_back({"linear", fmt_name(r.fmt) + " " + std::to_string(r.rows) + "x" + std::to_string(r.cols) + " S=" + std::to_string(r.S) + " (" + r.what + ")",
                 true, [=](Backend& be) -> std::unique_ptr<PreparedOp> {
                   if (!be.supports(r.fmt)) return nullptr;
                   return std::make_unique<LinearOp>(be, r.fmt, r.rows, r.cols, r.S, r.r0, sd);
                 }});
  }
  for (int64_t S : {1, 3, 40}) {  // 40 > the fused kernels' batch: the per-task fallback
    v.push_back({"linear_multi", "6 tasks, mixed formats, S=" + std::to_string(S), false, [=](Backend& be) -> std::unique_ptr<PreparedOp> {
                   return std::make_unique<LinearMultiOp>(
                       be,
                       std::vector<LinearMultiOp::Task>{{WFormat::FP8, 300, 37, 137}, {WFormat::FP4, 64, 0, 64}, {WFormat::BF16, 13, 0, 13},
                                                        {WFormat::FP4, 200, 5, 1}, {WFormat::FP8, 256, 128, 128}, {WFormat::F32, 40, 3, 17}},
                       384, S);
                 }});
  }
  v.push_back({"linear_multi", "V4-Flash attention inputs (wq_a, wkv, compressor, indexer), S=1", true,
               [](Backend& be) -> std::unique_ptr<PreparedOp> {
                 return std::make_unique<LinearMultiOp>(
                     be,
                     std::vector<LinearMultiOp::Task>{{WFormat::FP8, 1024, 0, 1024}, {WFormat::FP8, 512, 0, 512}, {WFormat::BF16, 1024, 0, 1024},
                                                      {WFormat::BF16, 1024, 0, 1024}, {WFormat::BF16, 64, 0, 64}, {WFormat::BF16, 256, 0, 256}},
                     4096, 1);
               }});
  v.push_back({"linear", "FP4 37x512 extreme activation scales, zeros, NaN", false,
               [](Backend& be) -> std::unique_ptr<PreparedOp> { return std::make_unique<Fp4ExtremeOp>(be); }});
  for (int64_t S : {1, 13, 137})
    v.push_back({"embed", "BF16 table 50x40, S=" + std::to_string(S) + ", gather every third row", false,
                 [=](Backend& be) -> std::unique_ptr<PreparedOp> { return std::make_unique<EmbedGatherOp>(be, WFormat::BF16, 50, 40, S); }});
  v.push_back({"embed", "BF16 1000x4096 table (V4 width), S=4", true,
               [](Backend& be) -> std::unique_ptr<PreparedOp> { return std::make_unique<EmbedGatherOp>(be, WFormat::BF16, 1000, 4096, 4); }});
}

}  // namespace dsv4::test
