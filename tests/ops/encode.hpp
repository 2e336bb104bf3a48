// Builders of weight matrices in every stored format, for the op tests.
#pragma once
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "model/weights.hpp"

namespace dsv4::test {

// Owns the bytes behind a MatW.
struct OwnedMat {
  std::vector<uint8_t> data, scale;
  MatW w;
};

inline OwnedMat make_mat(WFormat fmt, int64_t rows, int64_t cols, uint64_t seed) {
  std::mt19937_64 rng(seed);
  OwnedMat m;
  m.w.fmt = fmt;
  m.w.rows = rows;
  m.w.cols = cols;
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  switch (fmt) {
    case WFormat::F32:
      m.data.resize(static_cast<size_t>(rows * cols * 4));
      for (int64_t i = 0; i < rows * cols; ++i) {
        const float v = u(rng);
        std::memcpy(m.data.data() + 4 * i, &v, 4);
      }
      break;
    case WFormat::BF16:
    case WFormat::F16:
      m.data.resize(static_cast<size_t>(rows * cols * 2));
      for (int64_t i = 0; i < rows * cols; ++i) {
        // Random sign/mantissa with exponents near 1.0 (no inf/NaN/denormal surprises).
        uint16_t b = fmt == WFormat::BF16 ? static_cast<uint16_t>(((rng() & 1) << 15) | ((120 + rng() % 10) << 7) | (rng() & 0x7f))
                                          : static_cast<uint16_t>(((rng() & 1) << 15) | ((10 + rng() % 8) << 10) | (rng() & 0x3ff));
        std::memcpy(m.data.data() + 2 * i, &b, 2);
      }
      break;
    case WFormat::FP8:
      m.data.resize(static_cast<size_t>(rows * cols));
      for (auto& b : m.data) {
        do b = static_cast<uint8_t>(rng()); while ((b & 0x7f) == 0x7f);
      }
      m.w.scale_cols = (cols + 127) / 128;
      m.scale.resize(static_cast<size_t>((rows + 127) / 128 * m.w.scale_cols));
      for (auto& s : m.scale) s = static_cast<uint8_t>(118 + rng() % 8);
      break;
    case WFormat::FP4:
      m.data.resize(static_cast<size_t>(rows * cols / 2));
      for (auto& b : m.data) b = static_cast<uint8_t>(rng());
      m.w.scale_cols = cols / 32;
      m.scale.resize(static_cast<size_t>(rows * m.w.scale_cols));
      for (auto& s : m.scale) s = static_cast<uint8_t>(122 + rng() % 6);
      break;
  }
  m.w.data = m.data.data();
  m.w.scale = m.scale.empty() ? nullptr : m.scale.data();
  return m;
}

// An F32 MatW viewing `v` (which must outlive it).
inline MatW f32_view(const std::vector<float>& v, int64_t rows, int64_t cols) {
  MatW w;
  w.fmt = WFormat::F32;
  w.rows = rows;
  w.cols = cols;
  w.data = reinterpret_cast<const uint8_t*>(v.data());
  return w;
}

}  // namespace dsv4::test
