// The blocked linear kernel against a naive double-precision product, every stored format,
// awkward shapes (1, 13, 137) and real V4 shapes, with row offsets and strides.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "backend/cpu/cpu_backend.hpp"
#include "ops/encode.hpp"
#include "support/support.hpp"

using namespace dsv4;
using namespace dsv4::test;

namespace {

// y_ref[s, j] = Σ_i x[s, i] · W[r0 + j, i] in double, W decoded row by row; with `mag`, also
// Σ_i |x[s, i] · W[r0 + j, i]|, the scale that float rounding errors of the sum are relative to.
std::vector<double> naive(const MatW& w, int64_t r0, int64_t n, const std::vector<float>& x, int64_t ldx, int64_t S,
                          std::vector<double>* mag = nullptr) {
  std::vector<float> row(static_cast<size_t>(w.cols));
  std::vector<double> y(static_cast<size_t>(S * n));
  if (mag) mag->assign(static_cast<size_t>(S * n), 0.0);
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
      if (mag) (*mag)[static_cast<size_t>(s * n + j)] = abs_acc;
    }
  }
  return y;
}

double check_one(CpuBackend& be, WFormat fmt, int64_t rows, int64_t cols, int64_t S, int64_t r0, uint64_t seed) {
  OwnedMat m = make_mat(fmt, rows + r0, cols, seed);
  const int64_t ldx = cols + 3, ldy = rows + 5;
  auto x = random_floats(static_cast<size_t>(S * ldx), seed + 1);
  std::vector<float> y(static_cast<size_t>(S * ldy), 7.0f);
  be.linear(m.w, r0, rows, x.data(), ldx, S, y.data(), ldy);
  std::vector<double> mag;
  const auto ref = naive(m.w, r0, rows, x, ldx, S, &mag);
  double num = 0, den = 0;
  for (int64_t s = 0; s < S; ++s) {
    for (int64_t j = 0; j < rows; ++j) {
      const double d = y[static_cast<size_t>(s * ldy + j)] - ref[static_cast<size_t>(s * rows + j)];
      num += d * d;
      den += mag[static_cast<size_t>(s * rows + j)] * mag[static_cast<size_t>(s * rows + j)];
    }
    for (int64_t j = rows; j < ldy; ++j) CHECK(y[static_cast<size_t>(s * ldy + j)] == 7.0f);  // padding untouched
  }
  return std::sqrt(num / den);  // RMS error relative to the RMS size of the terms summed
}

// RMS error relative to the RMS size of the summed terms. Float32 accumulation gives 1e-8..1e-7
// here (the worst case seen is 6e-8); a kernel keeping under ~21 bits of x or w fails.
constexpr double kTol = 5e-7;

}  // namespace

TEST_CASE("linear matches the naive product on awkward shapes in every format") {
  CpuBackend be(2);
  uint64_t seed = 10;
  for (WFormat fmt : {WFormat::F32, WFormat::BF16, WFormat::F16, WFormat::FP8, WFormat::FP4})
    for (int64_t rows : {1, 13, 137})
      for (int64_t S : {1, 13, 137})
        for (int64_t cols : {32, 160, 192, 384, 640}) {  // 192: FP8 fast path only; 384, 640: FP8 and FP4 fast paths (640: a second, partial span of 16 FP4 blocks)
          const int64_t r0 = rows == 13 ? 5 : 0;
          const double err = check_one(be, fmt, rows, cols, S, r0, seed++);
          INFO(std::string(wformat_name(fmt)) << " rows " << rows << " cols " << cols << " S " << S << " err " << err);
          CHECK(err < kTol);
        }
}

TEST_CASE("linear at real V4-Flash shapes (FP8 wq_a / FP4 expert w1)") {
  CpuBackend be(2);
  CHECK(check_one(be, WFormat::FP8, 1024, 4096, 1, 0, 99) < kTol);
  CHECK(check_one(be, WFormat::FP8, 1024, 4096, 4, 0, 98) < kTol);
  CHECK(check_one(be, WFormat::FP4, 2048, 4096, 1, 0, 97) < kTol);
  CHECK(check_one(be, WFormat::BF16, 256, 4096, 3, 0, 96) < kTol);
  CHECK(check_one(be, WFormat::FP8, 300, 8192, 1, 77, 95) < kTol);   // wo_b width, rows crossing scale tiles
  CHECK(check_one(be, WFormat::FP4, 4096, 2048, 2, 0, 94) < kTol);   // expert w2
  CHECK(check_one(be, WFormat::FP4, 48, 4096, 9, 0, 93) < kTol);     // more activation rows than one group
  CHECK(check_one(be, WFormat::FP4, 40, 4096, 32, 0, 92) < kTol);    // the most rows the fused kernels take
  CHECK(check_one(be, WFormat::FP4, 40, 4096, 33, 0, 91) < kTol);    // one more: decode + GEMM
  CHECK(check_one(be, WFormat::FP8, 40, 4096, 21, 0, 90) < kTol);    // fused FP8 kernel, three groups of rows
  CHECK(check_one(be, WFormat::FP8, 40, 4096, 25, 0, 89) < kTol);    // FP8 above 24 rows: decode + GEMM
}

TEST_CASE("linear_multi equals one linear call per task: mixed formats and odd sizes on a shared input") {
  CpuBackend be(2);
  const int64_t cols = 384;
  struct Case {
    WFormat fmt;
    int64_t rows, r0, n;
  };
  const Case cases[] = {{WFormat::FP8, 300, 37, 137}, {WFormat::FP4, 64, 0, 64},  {WFormat::BF16, 13, 0, 13},
                        {WFormat::FP4, 200, 5, 1},    {WFormat::FP8, 256, 128, 128}, {WFormat::F32, 40, 3, 17}};
  for (int64_t S : {1, 3, 40}) {  // 40 > kGemvMaxBatch: the per-task fallback
    std::vector<OwnedMat> mats;
    for (size_t i = 0; i < std::size(cases); ++i) mats.push_back(make_mat(cases[i].fmt, cases[i].rows, cols, 500 + i));
    const int64_t ldx = cols + 1;
    auto x = random_floats(static_cast<size_t>(S * ldx), 7);
    std::vector<std::vector<float>> y_multi, y_one;
    std::vector<LinearTask> tasks;
    for (size_t i = 0; i < std::size(cases); ++i) {
      y_multi.emplace_back(static_cast<size_t>(S * cases[i].n), -1.0f);
      y_one.emplace_back(static_cast<size_t>(S * cases[i].n), -2.0f);
    }
    for (size_t i = 0; i < std::size(cases); ++i)
      tasks.push_back({&mats[i].w, cases[i].r0, cases[i].n, x.data(), ldx, y_multi[i].data(), cases[i].n});
    be.linear_multi(tasks.data(), tasks.size(), S);
    for (size_t i = 0; i < std::size(cases); ++i) {
      be.linear(mats[i].w, cases[i].r0, cases[i].n, x.data(), ldx, S, y_one[i].data(), cases[i].n);
      double num = 0, den = 0;
      for (size_t k = 0; k < y_one[i].size(); ++k) {
        num += (y_multi[i][k] - y_one[i][k]) * (y_multi[i][k] - y_one[i][k]);
        den += y_one[i][k] * y_one[i][k];
      }
      INFO("task " << i << " S " << S);
      CHECK(std::sqrt(num / den) < 1e-6);
    }
  }
}

TEST_CASE("FP4 decode kernel keeps fp32 accuracy for activations of any scale") {
  // The fused FP4 kernel puts x into block fixed point: blocks of very different magnitude, an
  // all-zero block and tiny values must still match the double reference.
  CpuBackend be(2);
  const int64_t rows = 37, cols = 512;
  OwnedMat m = make_mat(WFormat::FP4, rows, cols, 31);
  auto x = random_floats(static_cast<size_t>(cols), 32);
  const int exps[16] = {-60, 0, 40, -126, 3, 0, -20, 90, 0, 1, -1, 7, 0, 0, -100, 20};
  for (int64_t i = 0; i < cols; ++i) x[static_cast<size_t>(i)] = std::ldexp(x[static_cast<size_t>(i)], exps[i / 32]);
  for (int64_t i = 96; i < 128; ++i) x[static_cast<size_t>(i)] = 0.0f;
  std::vector<float> y(static_cast<size_t>(rows));
  be.linear(m.w, 0, rows, x.data(), cols, 1, y.data(), rows);
  const auto ref = naive(m.w, 0, rows, x, cols, 1);
  for (int64_t j = 0; j < rows; ++j) {
    // per-block terms differ by up to 2^216, so compare with the largest block's magnitude
    CHECK(std::fabs(y[static_cast<size_t>(j)] - ref[static_cast<size_t>(j)]) <= 2e-6 * std::ldexp(1.0, 90 + 6));
    CHECK(std::fabs(y[static_cast<size_t>(j)] - ref[static_cast<size_t>(j)]) <= 1e-5 * std::fabs(ref[static_cast<size_t>(j)]) + 1e20);
  }
  // Only tiny values: the result must not flush to zero.
  for (int64_t i = 0; i < cols; ++i) x[static_cast<size_t>(i)] = std::ldexp(static_cast<float>(i % 7) - 3.0f, -120);
  be.linear(m.w, 0, rows, x.data(), cols, 1, y.data(), rows);
  const auto tiny = naive(m.w, 0, rows, x, cols, 1);
  for (int64_t j = 0; j < rows; ++j) CHECK(std::fabs(y[static_cast<size_t>(j)] - tiny[static_cast<size_t>(j)]) <= 1e-5 * std::fabs(tiny[static_cast<size_t>(j)]) + 1e-42);
  // NaN in x propagates.
  x[5] = std::numeric_limits<float>::quiet_NaN();
  be.linear(m.w, 0, rows, x.data(), cols, 1, y.data(), rows);
  CHECK(std::isnan(y[0]));
}
