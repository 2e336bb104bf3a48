// RMSNorm, RoPE angle tables from the step's positions, and interleaved RoPE on the trailing slice.
#include <cmath>

#include "backend/cpu/cpu_backend.hpp"

namespace dsv4::DSV4_CPU_NS {

void CpuBackend::rms_norm(float* x, int64_t rows, int64_t n, int64_t ld, const float* weight, float eps) {
  par(rows, 16, [&](int, int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      float* v = x + r * ld;
      double ss = 0;
      for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(v[i]) * v[i];
      const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
      if (weight != nullptr)
        for (int64_t i = 0; i < n; ++i) v[i] = v[i] * inv * weight[i];
      else
        for (int64_t i = 0; i < n; ++i) v[i] *= inv;
    }
  });
}

void CpuBackend::rope_tables(const StepRef& step, int64_t S, const double* freqs, int64_t half, float* cos, float* sin) {
  for (int64_t r = 0; r < S; ++r) {
    const double p = static_cast<double>(step.pos[r]);
    for (int64_t i = 0; i < half; ++i) {
      const double a = p * freqs[i];
      cos[r * half + i] = static_cast<float>(std::cos(a));
      sin[r * half + i] = static_cast<float>(std::sin(a));
    }
  }
}

void CpuBackend::rope(float* x, int64_t rows, int64_t ld, int64_t heads, int64_t hs, int64_t offset, int64_t rd,
                      const float* cos, const float* sin, bool inverse) {
  const int64_t half = rd / 2;
  const float sign = inverse ? -1.0f : 1.0f;
  par(rows, 8, [&](int, int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* c = cos + r * half;
      const float* s = sin + r * half;
      for (int64_t h = 0; h < heads; ++h) {
        float* v = x + r * ld + h * hs + offset;
        for (int64_t i = 0; i < half; ++i) {
          const float a = v[2 * i], bb = v[2 * i + 1], sn = sign * s[i];
          v[2 * i] = a * c[i] - bb * sn;
          v[2 * i + 1] = bb * c[i] + a * sn;
        }
      }
    }
  });
}

}  // namespace dsv4::DSV4_CPU_NS
