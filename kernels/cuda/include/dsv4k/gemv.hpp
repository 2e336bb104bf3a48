// dsv4k decode products: one warp per weight row, the row streamed in 16-byte chunks (32 lanes
// read 512 contiguous bytes per step), each chunk decoded exactly in registers and multiplied
// with fp32 accumulation; the lanes' sums are added by the warp butterfly (hd.hpp). Rows whose
// start is not 16-byte aligned, and a row's tail past its last whole chunk, go value by value.
#pragma once
#include "dsv4k/formats.hpp"

namespace dsv4k {

// Weights per 16-byte chunk of a row in format F.
template <int32_t F>
constexpr int kChunkWeights = F == kF32 ? 4 : F == kFP8 ? 16 : F == kFP4 ? 32 : 8;
template <int32_t F>
DSV4_HD constexpr int64_t row_bytes(int64_t cols) {
  return F == kF32 ? cols * 4 : F == kFP8 ? cols : F == kFP4 ? cols / 2 : cols * 2;
}

struct Chunk16 {
  uint32_t u[4];
};
DSV4_HDI Chunk16 load16(const uint8_t* p) {  // p is 16-byte aligned
  Chunk16 c;
#if defined(__CUDA_ARCH__)
  const uint4 v = __ldg(reinterpret_cast<const uint4*>(p));
  c.u[0] = v.x, c.u[1] = v.y, c.u[2] = v.z, c.u[3] = v.w;
#else
  memcpy(c.u, p, 16);
#endif
  return c;
}

// Decodes chunk ch of row r (kChunkWeights<F> values from column ch · that) into out.
template <int32_t F>
DSV4_HDI void decode_chunk(const Mat& w, int64_t r, int64_t ch, const uint8_t* row, float* out) {
  const Chunk16 c = load16(row + ch * 16);
  if constexpr (F == kF32) {
    for (int k = 0; k < 4; ++k) out[k] = bits_f32(c.u[k]);
  } else if constexpr (F == kBF16) {
    for (int k = 0; k < 8; ++k) out[k] = bf16_f32(static_cast<uint16_t>(c.u[k / 2] >> (16 * (k % 2))));
  } else if constexpr (F == kF16) {
    for (int k = 0; k < 8; ++k) out[k] = f16_f32(static_cast<uint16_t>(c.u[k / 2] >> (16 * (k % 2))));
  } else if constexpr (F == kFP8) {
    const float sc = e8m0_f32(w.scale[(r / 128) * w.scale_cols + (ch * 16) / 128]);  // 16 | 128: one block
    for (int k = 0; k < 16; ++k) out[k] = e4m3_f32(static_cast<uint8_t>(c.u[k / 4] >> (8 * (k % 4)))) * sc;
  } else {
    const float sc = e8m0_f32(w.scale[r * w.scale_cols + ch]);  // 32 values: exactly one scale block
    for (int k = 0; k < 32; ++k) out[k] = e2m1_f32(static_cast<uint8_t>(c.u[k / 8] >> (4 * (k % 8)) & 15u)) * sc;
  }
}

template <int32_t F>
DSV4_HDI void row_dots_lane_fmt(const Mat& w, int64_t r, const float* const* xs, int nx, int lane, float* acc) {
  constexpr int wpc = kChunkWeights<F>;
  const uint8_t* row = w.data + r * row_bytes<F>(w.cols);
  const bool aligned = (reinterpret_cast<uintptr_t>(row) & 15u) == 0 && (F != kFP4 || w.cols % 32 == 0);
  const int64_t nch = aligned ? w.cols / wpc : 0;
  for (int64_t ch = lane; ch < nch; ch += kLanes) {
    float wv[wpc];
    decode_chunk<F>(w, r, ch, row, wv);
    const int64_t c0 = ch * wpc;
    for (int i = 0; i < nx; ++i) {
      const float* x = xs[i] + c0;
      float a = acc[i];
      for (int k = 0; k < wpc; ++k) a = fmaf(wv[k], x[k], a);
      acc[i] = a;
    }
  }
  for (int64_t c = nch * wpc + lane; c < w.cols; c += kLanes) {
    const float v = weight_at(w, r, c);
    for (int i = 0; i < nx; ++i) acc[i] = fmaf(v, xs[i][c], acc[i]);
  }
}

// acc[i] += lane's share of W[r, :] · xs[i] for i < nx (xs[i]: fp32 rows of w.cols values).
DSV4_HDI void row_dots_lane(const Mat& w, int64_t r, const float* const* xs, int nx, int lane, float* acc) {
  switch (w.fmt) {
    case kF32: row_dots_lane_fmt<kF32>(w, r, xs, nx, lane, acc); return;
    case kBF16: row_dots_lane_fmt<kBF16>(w, r, xs, nx, lane, acc); return;
    case kF16: row_dots_lane_fmt<kF16>(w, r, xs, nx, lane, acc); return;
    case kFP8: row_dots_lane_fmt<kFP8>(w, r, xs, nx, lane, acc); return;
    default: row_dots_lane_fmt<kFP4>(w, r, xs, nx, lane, acc); return;
  }
}

// y[s, j] = x[s] · W[r0 + j] as Linear, one warp item per (row j, block of up to kSums rows s).
struct LinearRows {
  static constexpr int kSums = 4;
  Mat w;
  int64_t r0 = 0, n = 0, S = 0;
  const float* x = nullptr;
  int64_t ldx = 0;
  float* y = nullptr;
  int64_t ldy = 0;
  int64_t count() const { return n * ((S + kSums - 1) / kSums); }
  DSV4_HD void lanes(int64_t item, int lane, float* acc) const {
    const int64_t j = item % n, s0 = item / n * kSums;
    const int nx = static_cast<int>(min_<int64_t>(kSums, S - s0));
    const float* xs[kSums];
    for (int i = 0; i < nx; ++i) xs[i] = x + (s0 + i) * ldx;
    row_dots_lane(w, r0 + j, xs, nx, lane, acc);
  }
  DSV4_HD void finish(int64_t item, const float* sums) const {
    const int64_t j = item % n, s0 = item / n * kSums;
    for (int64_t i = 0; i < kSums && s0 + i < S; ++i) y[(s0 + i) * ldy + j] = sums[i];
  }
};

}  // namespace dsv4k
