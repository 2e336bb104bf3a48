// The dsv4k (CUDA kernel) format codecs against the library's reference codecs, exhaustively over
// every code and bit for bit on encodes (they run on the host too: kernels/cuda/include/dsv4k).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "dsv4k/formats.hpp"
#include "dsv4k/gemm.hpp"
#include "dsv4k/gemv.hpp"
#include "dsv4k/indexer.hpp"
#include "dsv4k/linear.hpp"
#include "quant/cache_format.hpp"
#include "quant/formats.hpp"
#include "support/support.hpp"

using namespace dsv4;

namespace {
bool same_value(float a, float b) {  // equal bits, or both NaN
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  uint32_t x, y;
  std::memcpy(&x, &a, 4);
  std::memcpy(&y, &b, 4);
  return x == y;
}
}  // namespace

TEST_CASE("dsv4k decoders equal the reference tables for every code") {
  int bad = 0;
  for (int c = 0; c < 256; ++c) {
    bad += !same_value(dsv4k::e4m3_f32(static_cast<uint8_t>(c)), quant::e4m3_to_f32(static_cast<uint8_t>(c)));
    bad += !same_value(dsv4k::e8m0_f32(static_cast<uint8_t>(c)), quant::e8m0_to_f32(static_cast<uint8_t>(c)));
  }
  for (int c = 0; c < 16; ++c) bad += !same_value(dsv4k::e2m1_f32(static_cast<uint8_t>(c)), quant::e2m1_to_f32(static_cast<uint8_t>(c)));
  for (uint32_t h = 0; h < 65536; ++h) {
    bad += !same_value(dsv4k::f16_f32(static_cast<uint16_t>(h)), quant::f16_to_f32(static_cast<uint16_t>(h)));
    bad += !same_value(dsv4k::bf16_f32(static_cast<uint16_t>(h)), quant::bf16_to_f32(static_cast<uint16_t>(h)));
  }
  CHECK(bad == 0);
}

TEST_CASE("dsv4k encoders give the reference bytes (bf16, e4m3 and every cache entry format)") {
  std::vector<float> v = test::random_floats(4096, 7, -3.0f, 3.0f);
  // Edge values: zeros, subnormal e4m3 range, rounding ties, saturation, huge and tiny magnitudes, NaN.
  const float edge[] = {0.0f, -0.0f, 0.001f, 0.0078125f, 0.015625f, 0.0146484375f, 1.0625f, 1.1875f, 447.9f, 448.0f, 1e6f, -1e6f,
                        1e-30f, 3e-38f, 65504.0f, NAN, INFINITY, -INFINITY};
  v.insert(v.begin(), std::begin(edge), std::end(edge));
  int bad = 0;
  for (float x : v) {
    bad += dsv4k::f32_bf16(x) != quant::f32_to_bf16(x);
    bad += dsv4k::f32_e4m3(x) != quant::f32_to_e4m3(x);
  }
  CHECK(bad == 0);
  // Whole entries: several scales per FP8 group (including all-zero and one-huge-value groups).
  for (EntryFormat fmt : {EntryFormat::F32, EntryFormat::BF16, EntryFormat::FP8, EntryFormat::I8})
    for (int64_t width : {int64_t{1}, int64_t{13}, int64_t{128}, int64_t{137}, int64_t{512}})
      for (float mag : {0.0f, 1e-20f, 0.3f, 7.0f, 3e4f}) {
        const int64_t rope = fmt == EntryFormat::FP8 && width > 64 ? 64 : 0;
        std::vector<float> x = test::random_floats(static_cast<size_t>(width), static_cast<uint64_t>(width * 31 + 1), -mag, mag);
        if (width > 3) x[2] = mag * 100.0f;
        const size_t stride = quant::entry_stride(fmt, width, rope);
        std::vector<unsigned char> a(stride, 0), b(stride, 0);
        quant::encode_entry(fmt, x.data(), width, rope, a.data());
        dsv4k::encode_entry(fmt, x.data(), width, rope, b.data());
        INFO("format " << static_cast<int>(fmt) << " width " << width << " magnitude " << mag);
        CHECK(std::memcmp(a.data(), b.data(), stride) == 0);
        std::vector<float> ref(static_cast<size_t>(width));
        quant::decode_entry(fmt, a.data(), width, rope, ref.data());
        int off = 0;
        for (int64_t d = 0; d < width; ++d) off += !same_value(dsv4k::entry_value(fmt, a.data(), width, rope, d), ref[static_cast<size_t>(d)]);
        CHECK(off == 0);
      }
}

TEST_CASE("dsv4k FP8 group exponent: the smallest power of two that brings the group within 448") {
  for (float amax : {1e-30f, 1e-3f, 0.5f, 1.0f, 447.99f, 448.0f, 448.01f, 896.0f, 896.1f, 1e30f}) {
    const int e = dsv4k::fp8_group_exponent(amax);
    INFO("amax " << amax << " exponent " << e);
    CHECK(std::ldexp(448.0f, e) >= amax);
    if (e > -127) CHECK(std::ldexp(448.0f, e - 1) < amax);
  }
  CHECK(dsv4k::fp8_group_exponent(0.0f) == -127);
}

TEST_CASE("dsv4k warp-per-row GEMV (LinearRows) agrees with the one-thread reference on awkward shapes, aligned or not") {
  std::mt19937 rng(11);
  double worst = 0;
  int cases = 0;
  for (int32_t fmt : {dsv4k::kF32, dsv4k::kBF16, dsv4k::kF16, dsv4k::kFP8, dsv4k::kFP4})
    for (int64_t rows : {int64_t{1}, int64_t{13}, int64_t{137}})
      for (int64_t cols : {int64_t{32}, int64_t{96}, int64_t{160}, int64_t{4096}, int64_t{13}})
        for (int64_t S : {int64_t{1}, int64_t{5}})
          for (int misalign : {0, 4}) {
            if (fmt == dsv4k::kFP4 && cols % 32 != 0) continue;
            const int64_t bpw2 = fmt == dsv4k::kF32 ? 8 : fmt == dsv4k::kFP8 ? 2 : fmt == dsv4k::kFP4 ? 1 : 4;  // bytes per weight · 2
            std::vector<uint8_t> data(static_cast<size_t>(rows * cols * bpw2 / 2 + 64));
            for (auto& b : data) b = static_cast<uint8_t>(rng());
            if (fmt == dsv4k::kF32)  // finite floats of moderate size
              for (size_t i = 0; i + 4 <= data.size(); i += 4) {
                const float f = std::ldexp(static_cast<float>(rng() % 2000) - 1000.0f, -10);
                std::memcpy(data.data() + i, &f, 4);
              }
            if (fmt == dsv4k::kBF16 || fmt == dsv4k::kF16)
              for (size_t i = 1; i < data.size(); i += 2) data[i] = static_cast<uint8_t>((data[i] & 0x83) | 0x38);  // exponents near 1
            if (fmt == dsv4k::kFP8)
              for (auto& b : data) b = (b & 0x7f) == 0x7f ? 0x10 : b;  // no NaN codes
            dsv4k::Mat w;
            w.fmt = fmt;
            w.rows = rows;
            w.cols = cols;
            w.data = data.data() + misalign;
            std::vector<uint8_t> scale(static_cast<size_t>(rows * (cols + 31) / 32 + 64));
            for (auto& b : scale) b = static_cast<uint8_t>(120 + rng() % 14);
            w.scale = scale.data();
            w.scale_cols = fmt == dsv4k::kFP8 ? (cols + 127) / 128 : cols / 32;
            const std::vector<float> x = test::random_floats(static_cast<size_t>(S * cols), static_cast<uint64_t>(rows + cols + S));
            std::vector<float> y_ref(static_cast<size_t>(S * rows)), y(static_cast<size_t>(S * rows)), mag(static_cast<size_t>(S * rows));
            dsv4k::Linear ref{w, 0, rows, S, x.data(), cols, y_ref.data(), rows};
            dsv4k::LinearRows fast{w, 0, rows, S, x.data(), cols, y.data(), rows};
            for (int64_t i = 0; i < ref.count(); ++i) ref(i);
            for (int64_t i = 0; i < fast.count(); ++i) dsv4k::run_warp_item_host(fast, i);
            for (int64_t s = 0; s < S; ++s)
              for (int64_t j = 0; j < rows; ++j) {
                double m = 0;
                for (int64_t c = 0; c < cols; ++c) m += std::fabs(static_cast<double>(dsv4k::weight_at(w, j, c)) * x[static_cast<size_t>(s * cols + c)]);
                const size_t k = static_cast<size_t>(s * rows + j);
                worst = std::max(worst, std::fabs(static_cast<double>(y[k]) - y_ref[k]) / std::max(m, 1e-30));
              }
            ++cases;
          }
  MESSAGE("LinearRows vs Linear: worst |dy| / sum|w x| = " << worst << " over " << cases << " shapes");
  CHECK(cases > 100);
  CHECK(worst <= 4 * std::sqrt(4096.0) * 6e-8);  // fp32 accumulation in another order (the harness's floor)
}

TEST_CASE("dsv4k bf16 split: hi + mid + lo is x exactly (every exponent of the normal range), inf and NaN kept in hi") {
  std::mt19937 rng(3);
  int bad = 0, n = 0;
  for (int e = -126; e <= 127; ++e)
    for (int k = 0; k < 64; ++k, ++n) {
      const uint32_t u = (rng() & 0x80000000u) | static_cast<uint32_t>(e + 127) << 23 | (rng() & 0x7fffffu);
      float v;
      std::memcpy(&v, &u, 4);
      uint16_t hi, mid, lo;
      dsv4k::split_bf16(v, &hi, &mid, &lo);
      const double sum = static_cast<double>(dsv4k::bf16_f32(hi)) + dsv4k::bf16_f32(mid) + dsv4k::bf16_f32(lo);
      // Exact while the last bit of x (2^(e-23)) is within bf16's range (2^-133); below, within half of that.
      bad += e >= -110 ? sum != static_cast<double>(v) : std::fabs(sum - v) > std::ldexp(1.0, -134);
    }
  CHECK(n > 16000);
  CHECK(bad == 0);
  for (float v : {INFINITY, -INFINITY, NAN, 0.0f, -0.0f}) {
    uint16_t hi, mid, lo;
    dsv4k::split_bf16(v, &hi, &mid, &lo);
    CHECK(same_value(dsv4k::bf16_f32(hi), v));
    CHECK(mid == 0);
    CHECK(lo == 0);
  }
}

TEST_CASE("dsv4k bf16 weight tiles: FP8, FP4 and BF16 weights times their scales decode to bf16 exactly") {
  std::mt19937 rng(9);
  int bad = 0, n = 0;
  for (int32_t fmt : {dsv4k::kBF16, dsv4k::kFP8, dsv4k::kFP4})
    for (int64_t cols : {int64_t{32}, int64_t{160}, int64_t{4096}}) {
      const int64_t rows = 137, bpw2 = fmt == dsv4k::kFP8 ? 2 : fmt == dsv4k::kFP4 ? 1 : 4;
      std::vector<uint8_t> data(static_cast<size_t>(rows * cols * bpw2 / 2));
      for (auto& b : data) b = static_cast<uint8_t>(rng());
      if (fmt == dsv4k::kFP8)
        for (auto& b : data) b = (b & 0x7f) == 0x7f ? 0x10 : b;  // no NaN codes
      std::vector<uint8_t> scale(static_cast<size_t>(rows * ((cols + 31) / 32)));
      for (auto& b : scale) b = static_cast<uint8_t>(10 + rng() % 236);  // 2^-117 .. 2^118: every checkpoint's range and far beyond
      dsv4k::Mat w;
      w.fmt = fmt;
      w.rows = rows;
      w.cols = cols;
      w.data = data.data();
      w.scale = scale.data();
      w.scale_cols = fmt == dsv4k::kFP8 ? (cols + 127) / 128 : cols / 32;
      std::vector<uint16_t> out(static_cast<size_t>(129 * cols), 0xFFFF);
      dsv4k::DecodeBf16 d{w, 8, 129, out.data()};
      for (int64_t i = 0; i < d.count(); ++i) d(i);
      for (int64_t j = 0; j < 129; ++j)
        for (int64_t c = 0; c < cols; ++c, ++n) bad += !same_value(dsv4k::bf16_f32(out[static_cast<size_t>(j * cols + c)]), dsv4k::weight_at(w, 8 + j, c));
    }
  CHECK(n > 100000);
  CHECK(bad == 0);
}

TEST_CASE("dsv4k split bf16 GEMM (three planes, fp32 sums) agrees with the one-thread double reference at fp32 level") {
  double worst = 0;
  int cases = 0;
  for (int32_t fmt : {dsv4k::kBF16, dsv4k::kFP8, dsv4k::kFP4})
    for (int64_t rows : {int64_t{1}, int64_t{13}, int64_t{137}})
      for (int64_t cols : {int64_t{32}, int64_t{160}, int64_t{1024}})
        for (int64_t S : {int64_t{1}, int64_t{16}, int64_t{37}}) {
          std::mt19937 rng(static_cast<uint32_t>(rows * 7 + cols + S));
          const int64_t bpw2 = fmt == dsv4k::kFP8 ? 2 : fmt == dsv4k::kFP4 ? 1 : 4;
          std::vector<uint8_t> data(static_cast<size_t>(rows * cols * bpw2 / 2));
          for (auto& b : data) b = static_cast<uint8_t>(rng());
          if (fmt == dsv4k::kFP8)
            for (auto& b : data) b = (b & 0x7f) == 0x7f ? 0x10 : b;
          if (fmt == dsv4k::kBF16)
            for (size_t i = 1; i < data.size(); i += 2) data[i] = static_cast<uint8_t>((data[i] & 0x83) | 0x38);
          std::vector<uint8_t> scale(static_cast<size_t>(rows * ((cols + 31) / 32)));
          for (auto& b : scale) b = static_cast<uint8_t>(120 + rng() % 14);
          dsv4k::Mat w;
          w.fmt = fmt;
          w.rows = rows;
          w.cols = cols;
          w.data = data.data();
          w.scale = scale.data();
          w.scale_cols = fmt == dsv4k::kFP8 ? (cols + 127) / 128 : cols / 32;
          const int64_t ldx = cols + 3, ldy = rows + 2;
          const std::vector<float> x = test::random_floats(static_cast<size_t>(S * ldx), static_cast<uint64_t>(rows + cols + S), -2.0f, 2.0f);
          std::vector<float> y_ref(static_cast<size_t>(S * rows)), y(static_cast<size_t>(S * ldy), 5.0f);
          dsv4k::Linear ref{w, 0, rows, S, x.data(), ldx, y_ref.data(), rows};
          for (int64_t i = 0; i < ref.count(); ++i) ref(i);
          std::vector<uint16_t> planes(static_cast<size_t>(3 * S * cols)), tile(static_cast<size_t>(rows * cols));
          dsv4k::SplitBf16 sp{x.data(), ldx, S, cols, planes.data(), S * cols};
          for (int64_t i = 0; i < sp.count(); ++i) sp(i);
          dsv4k::DecodeBf16 d{w, 0, rows, tile.data()};
          for (int64_t i = 0; i < d.count(); ++i) d(i);
          for (int p = 2; p >= 0; --p) {
            dsv4k::Bf16Gemm g{tile.data(), cols, planes.data() + p * S * cols, cols, y.data(), ldy, rows, S, cols, p != 2};
            for (int64_t i = 0; i < g.count(); ++i) g(i);
          }
          for (int64_t s = 0; s < S; ++s) {
            for (int64_t j = 0; j < rows; ++j) {
              double m = 0;
              for (int64_t c = 0; c < cols; ++c) m += std::fabs(static_cast<double>(dsv4k::weight_at(w, j, c)) * x[static_cast<size_t>(s * ldx + c)]);
              worst = std::max(worst, std::fabs(static_cast<double>(y[static_cast<size_t>(s * ldy + j)]) - y_ref[static_cast<size_t>(s * rows + j)]) /
                                          std::max(m, 1e-30));
            }
            for (int64_t j = rows; j < ldy; ++j) CHECK(y[static_cast<size_t>(s * ldy + j)] == 5.0f);  // past n: untouched
          }
          ++cases;
        }
  MESSAGE("split bf16 GEMM vs Linear: worst |dy| / sum|w x| = " << worst << " over " << cases << " shapes");
  CHECK(cases == 81);
  CHECK(worst <= 4 * std::sqrt(1024.0) * 6e-8);  // fp32 accumulation, as the GEMV's bound
}

TEST_CASE("dsv4k radix top-k gives IndexSelect's selection and order exactly (ties, signed zeros, rows shorter than k)") {
  std::mt19937 rng(5);
  const int64_t ratio = 4, topk = 37;
  for (int64_t cap : {int64_t{1}, int64_t{30}, int64_t{200}, int64_t{3000}}) {
    const int64_t S = 6;
    std::vector<int64_t> pos(static_cast<size_t>(S));
    for (int64_t s = 0; s < S; ++s) pos[static_cast<size_t>(s)] = s == 0 ? 2 : static_cast<int64_t>(rng() % static_cast<uint32_t>(cap * ratio));
    dsv4::StepRef step;
    step.pos = pos.data();
    std::vector<float> score(static_cast<size_t>(S * cap));
    for (auto& v : score) {
      const uint32_t r = rng() % 9;  // few distinct values: many ties
      v = r == 0 ? -0.0f : r == 1 ? 0.0f : static_cast<float>(static_cast<int>(r) - 5) * 0.25f;
    }
    std::vector<int32_t> ref(static_cast<size_t>(S * topk), 7), got(static_cast<size_t>(S * topk), 7);
    dsv4k::IndexSelect sel{step, S, ratio, cap, topk, score.data(), ref.data()};
    for (int64_t i = 0; i < sel.count(); ++i) sel(i);
    std::vector<uint64_t> prefix(static_cast<size_t>(S));
    std::vector<int32_t> need(static_cast<size_t>(S)), hist(static_cast<size_t>(S * 256)), taken(static_cast<size_t>(S)), list(static_cast<size_t>(S * topk));
    dsv4k::TopkState t{step, S, ratio, cap, topk, score.data(), prefix.data(), need.data(), hist.data(), taken.data(), list.data(), got.data()};
    auto run = [](const auto& k) {
      for (int64_t i = k.count() - 1; i >= 0; --i) k(i);  // any order: reversed here
    };
    run(dsv4k::TopkInit{t});
    for (int pass = 0; pass < 8; ++pass) {
      run(dsv4k::TopkHist{t, pass});
      run(dsv4k::TopkPick{t, pass});
    }
    run(dsv4k::TopkCollect{t});
    run(dsv4k::TopkRank{t});
    INFO("cap " << cap);
    CHECK(got == ref);
  }
}
