#include "quant/decode.hpp"

#include <algorithm>
#include <cstring>

#include "quant/formats.hpp"

namespace dsv4 {

namespace {

void decode_row(const MatW& w, int64_t r, float* out) {
  const int64_t C = w.cols;
  switch (w.fmt) {
    case WFormat::F32:
      std::memcpy(out, w.data + r * C * 4, static_cast<size_t>(C) * 4);
      return;
    case WFormat::BF16: {
      const uint8_t* p = w.data + r * C * 2;
      for (int64_t i = 0; i < C; ++i) {
        uint16_t b;
        std::memcpy(&b, p + 2 * i, 2);
        out[i] = quant::bf16_to_f32(b);
      }
      return;
    }
    case WFormat::F16: {
      const uint8_t* p = w.data + r * C * 2;
      for (int64_t i = 0; i < C; ++i) {
        uint16_t b;
        std::memcpy(&b, p + 2 * i, 2);
        out[i] = quant::f16_to_f32(b);
      }
      return;
    }
    case WFormat::FP8: {
      const uint8_t* p = w.data + r * C;
      const uint8_t* s = w.scale + (r / 128) * w.scale_cols;
      for (int64_t b0 = 0; b0 < C; b0 += 128) {
        const float sc = quant::e8m0_to_f32(s[b0 / 128]);
        const int64_t e = std::min<int64_t>(C, b0 + 128);
        for (int64_t i = b0; i < e; ++i) out[i] = quant::kE4M3[p[i]] * sc;
      }
      return;
    }
    case WFormat::FP4: {
      const uint8_t* p = w.data + r * (C / 2);
      const uint8_t* s = w.scale + r * w.scale_cols;
      for (int64_t b0 = 0; b0 < C; b0 += 32) {
        const float sc = quant::e8m0_to_f32(s[b0 / 32]);
        for (int64_t i = b0; i < b0 + 32; i += 2) {
          const uint8_t byte = p[i / 2];
          out[i] = quant::kE2M1[byte & 15] * sc;
          out[i + 1] = quant::kE2M1[byte >> 4] * sc;
        }
      }
      return;
    }
  }
}

}  // namespace

void decode_rows(const MatW& w, int64_t r, int64_t count, float* out) {
  for (int64_t i = 0; i < count; ++i) decode_row(w, r + i, out + i * w.cols);
}

}  // namespace dsv4
