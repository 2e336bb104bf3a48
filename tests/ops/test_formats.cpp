// Stored-format decoding: every e4m3, e2m1 and E8M0 code, nibble order, block scales.
#include <doctest/doctest.h>

#include <cmath>

#include "quant/decode.hpp"
#include "ops/encode.hpp"
#include "quant/formats.hpp"

using namespace dsv4;
using namespace dsv4::test;

namespace {
// Independent readings of the OCP definitions, in double.
double ref_e4m3(int c) {
  const int s = c >> 7, e = (c >> 3) & 15, m = c & 7;
  if (e == 15 && m == 7) return NAN;
  const double mag = e == 0 ? (m / 8.0) * std::pow(2.0, -6) : (1.0 + m / 8.0) * std::pow(2.0, e - 7);
  return s ? -mag : mag;
}
double ref_e2m1(int c) {
  const int s = (c >> 3) & 1, e = (c >> 1) & 3, m = c & 1;
  const double mag = e == 0 ? 0.5 * m : (1.0 + 0.5 * m) * std::pow(2.0, e - 1);
  return s ? -mag : mag;
}
}  // namespace

TEST_CASE("all 256 e4m3fn codes") {
  for (int c = 0; c < 256; ++c) {
    const double r = ref_e4m3(c);
    INFO("code " << c);
    if (std::isnan(r)) CHECK(std::isnan(quant::e4m3_to_f32(static_cast<uint8_t>(c))));
    else CHECK(quant::e4m3_to_f32(static_cast<uint8_t>(c)) == static_cast<float>(r));
  }
  CHECK(quant::e4m3_to_f32(0x7E) == 448.0f);
  CHECK(quant::e4m3_to_f32(0xFE) == -448.0f);
  CHECK(quant::e4m3_to_f32(0x38) == 1.0f);
  CHECK(quant::e4m3_to_f32(0x01) == std::ldexp(1.0f, -9));
  CHECK(quant::e4m3_to_f32(0x08) == std::ldexp(1.0f, -6));
  CHECK(std::signbit(quant::e4m3_to_f32(0x80)));
}

TEST_CASE("all 16 e2m1 codes") {
  const float mags[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
  for (int c = 0; c < 16; ++c) {
    CHECK(quant::e2m1_to_f32(static_cast<uint8_t>(c)) == static_cast<float>(ref_e2m1(c)));
    CHECK(std::fabs(quant::e2m1_to_f32(static_cast<uint8_t>(c))) == mags[c & 7]);
  }
}

TEST_CASE("E8M0 scales are 2^(code-127) and 255 is NaN") {
  for (int c = 0; c < 255; ++c) CHECK(quant::e8m0_to_f32(static_cast<uint8_t>(c)) == static_cast<float>(std::pow(2.0, c - 127)));
  CHECK(std::isnan(quant::e8m0_to_f32(255)));
  CHECK(quant::e8m0_to_f32(127) == 1.0f);
}

TEST_CASE("BF16 and F16 decoding") {
  CHECK(quant::bf16_to_f32(0x3F80) == 1.0f);
  CHECK(quant::bf16_to_f32(0xC040) == -3.0f);
  CHECK(quant::f16_to_f32(0x3C00) == 1.0f);
  CHECK(quant::f16_to_f32(0xC000) == -2.0f);
  CHECK(quant::f16_to_f32(0x0001) == std::ldexp(1.0f, -24));
  CHECK(quant::f16_to_f32(0x7BFF) == 65504.0f);
  CHECK(std::isinf(quant::f16_to_f32(0x7C00)));
}

TEST_CASE("FP4: element 2k is the low nibble and 2k+1 the high nibble with one scale per 32 inputs") {
  OwnedMat m = make_mat(WFormat::FP4, 2, 64, 1);
  m.data[0] = 0x52;  // element 0: code 2 (1.0), element 1: code 5 (3.0)
  m.data[1] = 0x9F;  // element 2: code 15 (-6), element 3: code 9 (-0.5)
  m.scale[0] = 128;  // ×2 for row 0, inputs 0..31
  m.scale[1] = 126;  // ×0.25 for row 0, inputs 32..63
  m.data[16] = 0x07; // element 32: code 7 (6.0), element 33: code 0
  std::vector<float> out(128);
  decode_rows(m.w, 0, 2, out.data());
  CHECK(out[0] == 2.0f);
  CHECK(out[1] == 6.0f);
  CHECK(out[2] == -12.0f);
  CHECK(out[3] == -1.0f);
  CHECK(out[32] == 3.0f);
  CHECK(out[33] == 0.0f);
  for (int64_t r = 0; r < 2; ++r)
    for (int64_t i = 0; i < 64; ++i) {
      const uint8_t byte = m.data[static_cast<size_t>(r * 32 + i / 2)];
      const int code = i % 2 == 0 ? byte & 15 : byte >> 4;
      CHECK(out[static_cast<size_t>(r * 64 + i)] ==
            static_cast<float>(ref_e2m1(code) * std::pow(2.0, m.scale[static_cast<size_t>(r * 2 + i / 32)] - 127)));
    }
}

TEST_CASE("FP8: one E8M0 scale per 128x128 block including partial edge blocks") {
  const int64_t R = 137, C = 260;
  OwnedMat m = make_mat(WFormat::FP8, R, C, 2);
  std::vector<float> out(static_cast<size_t>(R * C));
  decode_rows(m.w, 0, R, out.data());
  int64_t bad = 0;
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const double ref = ref_e4m3(m.data[static_cast<size_t>(r * C + c)]) *
                         std::pow(2.0, m.scale[static_cast<size_t>((r / 128) * m.w.scale_cols + c / 128)] - 127);
      bad += out[static_cast<size_t>(r * C + c)] != static_cast<float>(ref);
    }
  CHECK(bad == 0);
}
