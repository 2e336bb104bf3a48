// dsv4k tensor-core products (prefill): y = x·Wᵀ with bf16 operands and fp32 sums, at fp32
// accuracy rather than bf16's:
//   - W: BF16 weights as stored; FP8 and FP4 values times their E8M0 block scales decoded into a
//     bf16 tile (DecodeBf16). e4m3 and e2m1 values have at most 4 significant bits and bf16 has
//     8 and fp32's exponent range, so the decode is exact: the same numbers the CPU backend
//     multiplies. (The one exception: a decoded weight below 2^-126 in magnitude keeps fewer
//     bits, bf16 subnormals ending at 2^-133 where fp32's end at 2^-149; that needs a block scale
//     under 2^-117, which no checkpoint has.)
//   - x: split into three bf16 planes hi + mid + lo == x exactly for |x| >= 2^-110 (SplitBf16: hi
//     and mid truncated, 8 significant bits each, the rest fits lo's 8; smaller x within 2^-134),
//     each multiplied by W with fp32
//     sums and added into y. Every product is exact in fp32; what remains is fp32 summation, as in
//     the GEMV kernels. Three times bf16's work, which tensor cores have to spare.
// Bf16Gemm is the product itself: a reference kernel here (one item per output; the emulated
// device and GPU tests run it); the CUDA backend runs the same parameters through cuBLASLt.
#pragma once
#include "dsv4k/formats.hpp"

namespace dsv4k {

constexpr int kSplitPlanes = 3;

// The three planes of x (round toward zero twice, then the exact rest). Inf and NaN go whole
// into hi (a NaN stays a NaN).
DSV4_HDI void split_bf16(float v, uint16_t* hi, uint16_t* mid, uint16_t* lo) {
  const uint32_t u = f32_bits(v);
  if ((u & 0x7f800000u) == 0x7f800000u) {
    *hi = (u & 0x7fffffu) != 0 ? static_cast<uint16_t>((u >> 16) | 0x40) : static_cast<uint16_t>(u >> 16);
    *mid = *lo = 0;
    return;
  }
  *hi = static_cast<uint16_t>(u >> 16);
  const float r = v - bf16_f32(*hi);  // exact: the low 16 bits of v's significand
  *mid = static_cast<uint16_t>(f32_bits(r) >> 16);
  *lo = f32_bf16(r - bf16_f32(*mid));  // exact for |v| >= 2^-110; below, bf16's last bit (2^-133) rounds it
}

// planes[p · plane + s · K + c] for p < 3: x[s, c] split (row-major S x K planes).
struct SplitBf16 {
  const float* x = nullptr;
  int64_t ldx = 0, S = 0, K = 0;
  uint16_t* planes = nullptr;
  int64_t plane = 0;  // elements per plane (>= S · K)
  int64_t count() const { return S * K; }
  DSV4_HD void operator()(int64_t i) const {
    const int64_t s = i / K, c = i % K;
    split_bf16(x[s * ldx + c], planes + i, planes + plane + i, planes + 2 * plane + i);
  }
};

// out[j · w.cols + c] = bf16(W[r0 + j, c]) for j < n: 32 columns per item.
struct DecodeBf16 {
  Mat w;
  int64_t r0 = 0, n = 0;
  uint16_t* out = nullptr;
  int64_t count() const { return n * ((w.cols + 31) / 32); }
  DSV4_HD void operator()(int64_t i) const {
    const int64_t per = (w.cols + 31) / 32, j = i / per, c0 = i % per * 32, c1 = min_<int64_t>(w.cols, c0 + 32);
    uint16_t* o = out + j * w.cols;
    for (int64_t c = c0; c < c1; ++c) o[c] = f32_bf16(weight_at(w, r0 + j, c));
  }
};

// y[s · ldy + j] = Σ_c a[j · lda + c] · b[s · ldb + c] (+ y[s · ldy + j] when accumulate) for
// j < n, s < S: bf16 inputs, fp32 sums. (cuBLASLt's TN product: column-major A = Wᵀ, B = xᵀ.)
struct Bf16Gemm {
  const uint16_t* a = nullptr;  // n rows of K
  int64_t lda = 0;
  const uint16_t* b = nullptr;  // S rows of K
  int64_t ldb = 0;
  float* y = nullptr;
  int64_t ldy = 0;
  int64_t n = 0, S = 0, K = 0;
  bool accumulate = false;
  int64_t count() const { return S * n; }
  DSV4_HD void operator()(int64_t i) const {
    const int64_t s = i / n, j = i % n;
    const uint16_t* ar = a + j * lda;
    const uint16_t* br = b + s * ldb;
    float acc = 0;
    for (int64_t c = 0; c < K; ++c) acc = fmaf(bf16_f32(ar[c]), bf16_f32(br[c]), acc);
    float* o = y + s * ldy + j;
    *o = accumulate ? *o + acc : acc;
  }
};

}  // namespace dsv4k
