// dsv4k reference kernels: RMSNorm, RoPE tables from the step's positions, interleaved RoPE.
#pragma once
#include "dsv4k/hd.hpp"
#include "backend/step.hpp"

namespace dsv4k {

// In place over `rows` rows of n (stride ld): x · (1 / sqrt(mean(x²) + eps)) · weight (weight may
// be null). One item per row; the sum of squares in double.
struct RmsNorm {
  float* x = nullptr;
  int64_t rows = 0, n = 0, ld = 0;
  const float* weight = nullptr;
  float eps = 0;
  int64_t count() const { return rows; }
  DSV4_HD void operator()(int64_t r) const {
    float* v = x + r * ld;
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(v[i]) * v[i];
    const float inv = static_cast<float>(1.0 / sqrt(ss / static_cast<double>(n) + eps));
    if (weight != nullptr)
      for (int64_t i = 0; i < n; ++i) v[i] = v[i] * inv * weight[i];
    else
      for (int64_t i = 0; i < n; ++i) v[i] *= inv;
  }
};

// cos/sin [S, half] of pos[r] · freqs[i], computed in double.
struct RopeTables {
  dsv4::StepRef step;
  int64_t S = 0, half = 0;
  const double* freqs = nullptr;
  float* cos_ = nullptr;
  float* sin_ = nullptr;
  int64_t count() const { return S * half; }
  DSV4_HD void operator()(int64_t k) const {
    const int64_t r = k / half, i = k % half;
    const double a = static_cast<double>(step.pos[r]) * freqs[i];
    cos_[k] = static_cast<float>(cos(a));
    sin_[k] = static_cast<float>(sin(a));
  }
};

// Rotates the rd channels at `offset` of each of `heads` heads (stride hs) of each row (stride ld)
// by the row's angles; inverse rotates back. One item per (row, head, pair).
struct Rope {
  float* x = nullptr;
  int64_t rows = 0, ld = 0, heads = 0, hs = 0, offset = 0, rd = 0;
  const float* cos_ = nullptr;
  const float* sin_ = nullptr;
  bool inverse = false;
  int64_t count() const { return rows * heads * (rd / 2); }
  DSV4_HD void operator()(int64_t k) const {
    const int64_t half = rd / 2, i = k % half, h = (k / half) % heads, r = k / half / heads;
    float* v = x + r * ld + h * hs + offset;
    const float c = cos_[r * half + i], sn = (inverse ? -1.0f : 1.0f) * sin_[r * half + i];
    const float a = v[2 * i], b = v[2 * i + 1];
    v[2 * i] = a * c - b * sn;
    v[2 * i + 1] = b * c + a * sn;
  }
};

}  // namespace dsv4k
