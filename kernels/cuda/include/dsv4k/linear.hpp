// dsv4k reference kernels: matrix products, embedding rows, row gathers.
#pragma once
#include "dsv4k/formats.hpp"

namespace dsv4k {

// y[s, j] = Σ_c x[s, c] · W[r0 + j, c] for s < S, j < n: one item per output, the weight decoded
// exactly, the sum in double (rounded once to float).
struct Linear {
  Mat w;
  int64_t r0 = 0, n = 0, S = 0;
  const float* x = nullptr;
  int64_t ldx = 0;
  float* y = nullptr;
  int64_t ldy = 0;
  int64_t count() const { return S * n; }
  DSV4_HD void operator()(int64_t i) const {
    const int64_t s = i / n, j = i % n;
    const float* xs = x + s * ldx;
    double acc = 0;
    for (int64_t c = 0; c < w.cols; ++c) acc += static_cast<double>(weight_at(w, r0 + j, c)) * xs[c];
    y[s * ldy + j] = static_cast<float>(acc);
  }
};

// X[s, j, :] = table[ids[s]] for each of nc streams.
struct Embed {
  Mat table;
  dsv4::StepRef step;
  int64_t S = 0, nc = 0;
  float* X = nullptr;
  int64_t count() const { return S * nc * table.cols; }
  DSV4_HD void operator()(int64_t i) const {
    const int64_t D = table.cols, d = i % D, s = i / D / nc;
    X[i] = weight_at(table, step.ids[s], d);
  }
};

// dst[k, :] = src[out[k], :].
struct GatherRows {
  const float* src = nullptr;
  int64_t ld = 0;
  dsv4::StepRef step;
  int64_t n = 0, width = 0;
  float* dst = nullptr;
  int64_t count() const { return n * width; }
  DSV4_HD void operator()(int64_t i) const {
    const int64_t k = i / width, c = i % width;
    dst[i] = src[static_cast<int64_t>(step.out[k]) * ld + c];
  }
};

}  // namespace dsv4k
