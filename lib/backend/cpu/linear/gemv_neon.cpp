// AArch64 NEON fused decode + dot kernels (see gemv.hpp), for the neon and neondot tiers.
// Weights are decoded in registers; results stay at fp32-accumulation accuracy:
// - F32 / BF16 / F16: converted to fp32 (BF16 by a shift, F16 natively) and multiplied with FMA.
// - FP8 e4m3: codes become fp16 words by shifts ((b + (b & 0x80)) << 7) and convert exactly
//   (times 2^-8); the 128x128 block scale (and the 2^8) is folded into a per-thread copy of x
//   once per 128-row tile.
// - FP4 e2m1, neon: a table lookup (tbl) turns codes into 2·value bytes, widened to fp32 for FMA
//   against x regrouped per block into the even / odd element order of the nibbles.
// - FP4 e2m1, neondot (ARMv8.2 dot product): integer dot products (sdot) of those bytes with x
//   in block fixed point (22 bits, three signed byte limbs), one float scale per block.
#include <arm_neon.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "backend/cpu/linear/gemv.hpp"
#include "quant/formats.hpp"

#if !defined(__aarch64__)
#error "gemv_neon.cpp is the AArch64 tiers' kernel file"
#endif
#if defined(__ARM_FEATURE_DOTPROD)
#define DSV4_NEON_DOT 1
#endif

namespace dsv4::DSV4_CPU_NS {

namespace {

inline void prefetch(const uint8_t* p) { __builtin_prefetch(p, 0, 3); }
constexpr int64_t kStreamPrefetch = 2048;

// ---- F32 / BF16 / F16 ----

template <WFormat F>
inline float32x4_t load4(const uint8_t* row, int64_t i) {
  if constexpr (F == WFormat::F32) return vld1q_f32(reinterpret_cast<const float*>(row) + i);
  else if constexpr (F == WFormat::BF16)
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(reinterpret_cast<const uint16_t*>(row) + i), 16));
  else return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(reinterpret_cast<const uint16_t*>(row) + i)));
}

template <WFormat F>
inline float elem(const uint8_t* row, int64_t i) {
  if constexpr (F == WFormat::F32) {
    float v;
    std::memcpy(&v, row + 4 * i, 4);
    return v;
  } else {
    uint16_t b;
    std::memcpy(&b, row + 2 * i, 2);
    return F == WFormat::BF16 ? quant::bf16_to_f32(b) : quant::f16_to_f32(b);
  }
}

template <WFormat F>
constexpr size_t kEsz = F == WFormat::F32 ? 4 : 2;

// G activation rows against NR weight rows, two accumulators per pair (32 vector registers).
template <WFormat F, int G, int NR>
inline void plain_block(const MatW& w, int64_t r0, int64_t j, const float* x, int64_t ldx, float* y, int64_t ldy) {
  const int64_t C = w.cols;
  const uint8_t* rows[NR];
  for (int r = 0; r < NR; ++r) rows[r] = w.data + static_cast<size_t>(r0 + j + r) * static_cast<size_t>(C) * kEsz<F>;
  float32x4_t acc[NR][G][2];
  for (int r = 0; r < NR; ++r)
    for (int g = 0; g < G; ++g) acc[r][g][0] = acc[r][g][1] = vdupq_n_f32(0.0f);
  int64_t i = 0;
  for (; i + 8 <= C; i += 8) {
    float32x4_t w0[NR], w1[NR];
    for (int r = 0; r < NR; ++r) {
      if (NR == 1 && G == 1) prefetch(rows[r] + static_cast<size_t>(i) * kEsz<F> + kStreamPrefetch);
      w0[r] = load4<F>(rows[r], i);
      w1[r] = load4<F>(rows[r], i + 4);
    }
    for (int g = 0; g < G; ++g) {
      const float32x4_t x0 = vld1q_f32(x + g * ldx + i), x1 = vld1q_f32(x + g * ldx + i + 4);
      for (int r = 0; r < NR; ++r) {
        acc[r][g][0] = vfmaq_f32(acc[r][g][0], w0[r], x0);
        acc[r][g][1] = vfmaq_f32(acc[r][g][1], w1[r], x1);
      }
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int g = 0; g < G; ++g) {
      float t = vaddvq_f32(vaddq_f32(acc[r][g][0], acc[r][g][1]));
      for (int64_t k = i; k < C; ++k) t += elem<F>(rows[r], k) * x[g * ldx + k];
      y[g * ldy + j + r] = t;
    }
}

template <WFormat F, int G>
void plain_rows(const MatW& w, int64_t r0, int64_t jb, int64_t je, const float* x, int64_t ldx, float* y, int64_t ldy) {
  constexpr int NR = G == 1 ? 4 : 2;
  int64_t j = jb;
  for (; j + NR <= je; j += NR) plain_block<F, G, NR>(w, r0, j, x, ldx, y, ldy);
  for (; j < je; ++j) plain_block<F, G, 1>(w, r0, j, x, ldx, y, ldy);
}

// ---- FP8 e4m3 (128x128 E8M0 blocks) ----

inline void e4m3x8(const uint8_t* p, float32x4_t& lo, float32x4_t& hi) {
  const uint16x8_t b = vmovl_u8(vld1_u8(p));
  const uint16x8_t h = vshlq_n_u16(vaddq_u16(b, vandq_u16(b, vdupq_n_u16(0x80))), 7);
  const float16x8_t f = vreinterpretq_f16_u16(h);
  lo = vcvt_f32_f16(vget_low_f16(f));
  hi = vcvt_high_f32_f16(f);
}

void fp8_scale_x(const MatW& w, int64_t tile, const float* xp, int64_t S, float* xs) {
  const int64_t C = w.cols;
  const uint8_t* sc = w.scale + tile * w.scale_cols;
  for (int64_t b0 = 0; b0 < C; b0 += 128) {
    const float f = quant::e8m0_to_f32(sc[b0 / 128]) * 256.0f;
    const int64_t be = std::min<int64_t>(C, b0 + 128);
    for (int64_t s = 0; s < S; ++s)
      for (int64_t i = b0; i < be; ++i) xs[s * C + i] = xp[s * C + i] * f;
  }
}

template <int S>
void rows_fp8(const MatW& w, int64_t r0, int64_t jb, int64_t je, const float* xs, float* y, int64_t ldy) {
  constexpr int A = S <= 2 ? 4 : 2;
  const int64_t C = w.cols;
  for (int64_t j = jb; j < je; ++j) {
    const uint8_t* row = w.data + (r0 + j) * C;
    float32x4_t acc[S][A];
    for (int s = 0; s < S; ++s)
      for (int a = 0; a < A; ++a) acc[s][a] = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 16 <= C; i += 16) {
      prefetch(row + i + 4096);
      float32x4_t f[4];
      e4m3x8(row + i, f[0], f[1]);
      e4m3x8(row + i + 8, f[2], f[3]);
      for (int s = 0; s < S; ++s)
        for (int u = 0; u < 4; ++u) acc[s][u % A] = vfmaq_f32(acc[s][u % A], f[u], vld1q_f32(xs + s * C + i + 4 * u));
    }
    for (int s = 0; s < S; ++s) {
      float32x4_t t = acc[s][0];
      for (int a = 1; a < A; ++a) t = vaddq_f32(t, acc[s][a]);
      float v = vaddvq_f32(t);
      for (int64_t k = i; k < C; ++k) v += quant::kE4M3[row[k]] * (1.0f / 256.0f) * xs[s * C + k];
      y[s * ldy + j] = v;
    }
  }
}

// ---- FP4 e2m1 (1x32 E8M0 blocks) ----

alignas(16) constexpr int8_t kFp4Doubled[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};  // 2·e2m1(code)

inline float pow2f(int k) {  // 2^k for k in [-126, 127]
  const uint32_t bits = static_cast<uint32_t>(k + 127) << 23;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// The 16 bytes of a block: codes of the even elements (low nibbles) and of the odd ones (high).
inline void fp4_codes(const uint8_t* p, int8x16_t tbl, int8x16_t& even, int8x16_t& odd) {
  const uint8x16_t b = vld1q_u8(p);
  even = vqtbl1q_s8(tbl, vandq_u8(b, vdupq_n_u8(0x0F)));
  odd = vqtbl1q_s8(tbl, vshrq_n_u8(b, 4));
}

#ifdef DSV4_NEON_DOT
// Prepared x per activation row: per 32-column block, three signed byte limbs (q0, q1, q2 with
// X = q2·2^16 + q1·2^8 + q0), each as [16 even elements, 16 odd elements] (96 bytes); after all
// blocks one float per block, 2^(e_b - 23). X = round(x · 2^(22 - e_b)), 2^e_b > max|x|.
constexpr int64_t kFp4BlockBytes = 96;
#else
// Prepared x per activation row: per 32-column block, [16 even elements, 16 odd elements] as floats.
constexpr int64_t kFp4BlockBytes = 128;
#endif
inline size_t fp4_row_floats(int64_t C) { return static_cast<size_t>(C / 32 * (kFp4BlockBytes / 4 + 1)); }
inline const float* fp4_xscales(const uint8_t* xs, int64_t C) { return reinterpret_cast<const float*>(xs + C / 32 * kFp4BlockBytes); }

void fp4_prepare_row(const float* x, int64_t C, uint8_t* out) {
  float* xscale = const_cast<float*>(fp4_xscales(out, C));
  for (int64_t b = 0; b < C / 32; ++b) {
    const float* xb = x + 32 * b;
#ifdef DSV4_NEON_DOT
    float m = 0;
    bool finite = true;
    for (int i = 0; i < 32; ++i) {
      finite = finite && !std::isnan(xb[i]);
      m = std::max(m, std::fabs(xb[i]));
    }
    finite = finite && std::isfinite(m);
    int e = 0;
    if (m > 0 && finite) std::frexp(m, &e);
    const int k = 22 - e, k1 = k / 2;
    const float f1 = pow2f(k1), f2 = pow2f(k - k1);
    int8_t* o = reinterpret_cast<int8_t*>(out + b * kFp4BlockBytes);
    for (int i = 0; i < 32; ++i) {
      int32_t v = finite ? static_cast<int32_t>(std::nearbyint(xb[i] * f1 * f2)) : 0;
      const int pos = (i % 2) * 16 + i / 2;  // even elements first, then odd
      for (int l = 0; l < 3; ++l) {
        const int32_t q = static_cast<int8_t>(static_cast<uint8_t>(v & 0xFF));
        o[l * 32 + pos] = static_cast<int8_t>(q);
        v = (v - q) >> 8;
      }
    }
    const int ke = e - 23, ke1 = ke / 2;
    xscale[b] = finite ? pow2f(ke1) * pow2f(ke - ke1) : std::numeric_limits<float>::quiet_NaN();
#else
    float* o = reinterpret_cast<float*>(out + b * kFp4BlockBytes);
    for (int i = 0; i < 32; ++i) o[(i % 2) * 16 + i / 2] = xb[i];
    xscale[b] = 0.5f;  // the codes are doubled values
#endif
  }
}

template <int S, int NR>
inline void fp4_rows_block(const MatW& w, int64_t r0, int64_t j, int64_t rstep, const uint8_t* xb, float* y, int64_t ldy) {
  const int64_t C = w.cols, nb = C / 32, rb = C / 2;
  const size_t xstride = fp4_row_floats(C) * 4;
  const int8x16_t tbl = vld1q_s8(kFp4Doubled);
  const int64_t ahead = rstep == 1 ? NR * rb : kStreamPrefetch;
  const uint8_t* row[NR];
  const uint8_t* sc[NR];
  for (int r = 0; r < NR; ++r) {
    row[r] = w.data + (r0 + j + r * rstep) * rb;
    sc[r] = w.scale + (r0 + j + r * rstep) * w.scale_cols;
  }
  float32x4_t acc[S][NR];
  for (int s = 0; s < S; ++s)
    for (int r = 0; r < NR; ++r) acc[s][r] = vdupq_n_f32(0.0f);
  for (int64_t b = 0; b < nb; ++b) {
    int8x16_t ce[NR], co[NR];
    float ws[NR];
    for (int r = 0; r < NR; ++r) {
      const uint8_t* p = row[r] + 16 * b;
      if ((b & 3) == 0) prefetch(p + ahead);
      fp4_codes(p, tbl, ce[r], co[r]);
      ws[r] = quant::kE8M0[sc[r][b]];
    }
    for (int s = 0; s < S; ++s) {
      const uint8_t* xg = xb + s * xstride + b * kFp4BlockBytes;
      const float xs = fp4_xscales(xb + s * xstride, C)[b];
#ifdef DSV4_NEON_DOT
      const int8x16_t l0e = vld1q_s8(reinterpret_cast<const int8_t*>(xg)), l0o = vld1q_s8(reinterpret_cast<const int8_t*>(xg + 16)),
                      l1e = vld1q_s8(reinterpret_cast<const int8_t*>(xg + 32)), l1o = vld1q_s8(reinterpret_cast<const int8_t*>(xg + 48)),
                      l2e = vld1q_s8(reinterpret_cast<const int8_t*>(xg + 64)), l2o = vld1q_s8(reinterpret_cast<const int8_t*>(xg + 80));
      for (int r = 0; r < NR; ++r) {
        const int32x4_t z = vdupq_n_s32(0);
        const int32x4_t a0 = vdotq_s32(vdotq_s32(z, ce[r], l0e), co[r], l0o);
        const int32x4_t a1 = vdotq_s32(vdotq_s32(z, ce[r], l1e), co[r], l1o);
        const int32x4_t a2 = vdotq_s32(vdotq_s32(z, ce[r], l2e), co[r], l2o);
        const int32x4_t t = vaddq_s32(vshlq_n_s32(vaddq_s32(vshlq_n_s32(a2, 8), a1), 8), a0);
        acc[s][r] = vfmaq_n_f32(acc[s][r], vcvtq_f32_s32(t), ws[r] * xs);
      }
#else
      const float* xf = reinterpret_cast<const float*>(xg);
      for (int r = 0; r < NR; ++r) {
        const int16x8_t e0 = vmovl_s8(vget_low_s8(ce[r])), e1 = vmovl_s8(vget_high_s8(ce[r]));
        const int16x8_t o0 = vmovl_s8(vget_low_s8(co[r])), o1 = vmovl_s8(vget_high_s8(co[r]));
        float32x4_t blk = vmulq_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(e0))), vld1q_f32(xf));
        blk = vfmaq_f32(blk, vcvtq_f32_s32(vmovl_high_s16(e0)), vld1q_f32(xf + 4));
        blk = vfmaq_f32(blk, vcvtq_f32_s32(vmovl_s16(vget_low_s16(e1))), vld1q_f32(xf + 8));
        blk = vfmaq_f32(blk, vcvtq_f32_s32(vmovl_high_s16(e1)), vld1q_f32(xf + 12));
        blk = vfmaq_f32(blk, vcvtq_f32_s32(vmovl_s16(vget_low_s16(o0))), vld1q_f32(xf + 16));
        blk = vfmaq_f32(blk, vcvtq_f32_s32(vmovl_high_s16(o0)), vld1q_f32(xf + 20));
        blk = vfmaq_f32(blk, vcvtq_f32_s32(vmovl_s16(vget_low_s16(o1))), vld1q_f32(xf + 24));
        blk = vfmaq_f32(blk, vcvtq_f32_s32(vmovl_high_s16(o1)), vld1q_f32(xf + 28));
        acc[s][r] = vfmaq_n_f32(acc[s][r], blk, ws[r] * xs);
      }
#endif
    }
  }
  for (int s = 0; s < S; ++s)
    for (int r = 0; r < NR; ++r) y[s * ldy + j + r * rstep] = vaddvq_f32(acc[s][r]);
}

template <int S>
void rows_fp4(const MatW& w, int64_t r0, int64_t jb, int64_t je, const float* xp, float* y, int64_t ldy) {
  constexpr int NR = S == 1 ? 4 : S <= 2 ? 2 : 1;
  const uint8_t* xb = reinterpret_cast<const uint8_t*>(xp);
  int64_t j = jb;
  if (S == 1) {  // streams far apart (rows j, j+q, ...): more reads in flight than one
    const int64_t q = (je - jb) / NR;
    for (; j < jb + q; ++j) fp4_rows_block<S, NR>(w, r0, j, q, xb, y, ldy);
    j = jb + NR * q;
  }
  for (; j + NR <= je; j += NR) fp4_rows_block<S, NR>(w, r0, j, 1, xb, y, ldy);
  for (; j < je; ++j) fp4_rows_block<S, 1>(w, r0, j, 1, xb, y, ldy);
}

template <int S>
void dispatch(const MatW& w, int64_t r0, int64_t jb, int64_t je, const float* x, int64_t ldx, float* y, int64_t ldy, const float* xp) {
  switch (w.fmt) {
    case WFormat::F32: plain_rows<WFormat::F32, S>(w, r0, jb, je, x, ldx, y, ldy); return;
    case WFormat::BF16: plain_rows<WFormat::BF16, S>(w, r0, jb, je, x, ldx, y, ldy); return;
    case WFormat::F16: plain_rows<WFormat::F16, S>(w, r0, jb, je, x, ldx, y, ldy); return;
    case WFormat::FP8: rows_fp8<S>(w, r0, jb, je, xp, y, ldy); return;
    case WFormat::FP4: rows_fp4<S>(w, r0, jb, je, xp, y, ldy); return;
  }
}

}  // namespace

bool gemv_available() { return true; }
const char* gemv_tier() {
#ifdef DSV4_NEON_DOT
  return "neon+dotprod";
#else
  return "neon";
#endif
}

int64_t gemv_max_batch(const MatW& w) { return w.fmt == WFormat::FP8 ? 16 : kGemvMaxBatch; }
size_t gemv_scratch_floats(const MatW& w, int64_t S) { return w.fmt == WFormat::FP8 ? static_cast<size_t>(S * w.cols) : 1; }
bool gemv_needs_prepared_x(const MatW& w) { return w.fmt == WFormat::FP4 || w.fmt == WFormat::FP8; }
size_t gemv_prepared_floats(const MatW& w, int64_t S) {
  if (w.fmt == WFormat::FP8) return static_cast<size_t>(S * w.cols);
  if (w.fmt == WFormat::FP4) return static_cast<size_t>(S) * fp4_row_floats(w.cols);
  return 0;
}

void gemv_prepare_x(const MatW& w, const float* x, int64_t ldx, int64_t S, float* xp) {
  const int64_t C = w.cols;
  if (w.fmt == WFormat::FP8) {
    for (int64_t s = 0; s < S; ++s) std::memcpy(xp + s * C, x + s * ldx, static_cast<size_t>(C) * sizeof(float));
  } else if (w.fmt == WFormat::FP4) {
    const size_t stride = fp4_row_floats(C);
    for (int64_t s = 0; s < S; ++s) fp4_prepare_row(x + s * ldx, C, reinterpret_cast<uint8_t*>(xp + static_cast<size_t>(s) * stride));
  }
}

bool decode_rows_fast(const MatW& w, int64_t r, int64_t count, float* out) {
  const int64_t C = w.cols;
  for (int64_t k = 0; k < count; ++k) {
    const int64_t ri = r + k;
    float* o = out + k * C;
    switch (w.fmt) {
      case WFormat::F32:
        std::memcpy(o, w.data + static_cast<size_t>(ri * C) * 4, static_cast<size_t>(C) * 4);
        break;
      case WFormat::BF16:
      case WFormat::F16: {
        const uint8_t* row = w.data + static_cast<size_t>(ri * C) * 2;
        int64_t i = 0;
        for (; i + 4 <= C; i += 4) vst1q_f32(o + i, w.fmt == WFormat::BF16 ? load4<WFormat::BF16>(row, i) : load4<WFormat::F16>(row, i));
        for (; i < C; ++i) o[i] = w.fmt == WFormat::BF16 ? elem<WFormat::BF16>(row, i) : elem<WFormat::F16>(row, i);
        break;
      }
      case WFormat::FP8: {
        const uint8_t* row = w.data + ri * C;
        const uint8_t* sc = w.scale + (ri / 128) * w.scale_cols;
        int64_t i = 0;
        for (; i + 8 <= C; i += 8) {  // 8 | 128: one block
          const float f = quant::e8m0_to_f32(sc[i / 128]) * 256.0f;
          float32x4_t lo, hi;
          e4m3x8(row + i, lo, hi);
          vst1q_f32(o + i, vmulq_n_f32(lo, f));
          vst1q_f32(o + i + 4, vmulq_n_f32(hi, f));
        }
        for (; i < C; ++i) o[i] = quant::kE4M3[row[i]] * quant::e8m0_to_f32(sc[i / 128]);
        break;
      }
      case WFormat::FP4: {
        const uint8_t* row = w.data + ri * (C / 2);
        const uint8_t* sc = w.scale + ri * w.scale_cols;
        const int8x16_t tbl = vld1q_s8(kFp4Doubled);
        for (int64_t b = 0; b < C / 32; ++b) {
          int8x16_t ce, co;
          fp4_codes(row + 16 * b, tbl, ce, co);
          const int8x16x2_t z = vzipq_s8(ce, co);  // back to element order
          const float f = quant::e8m0_to_f32(sc[b]) * 0.5f;
          for (int h = 0; h < 2; ++h) {
            const int16x8_t lo = vmovl_s8(vget_low_s8(z.val[h])), hi = vmovl_s8(vget_high_s8(z.val[h]));
            float* d = o + 32 * b + 16 * h;
            vst1q_f32(d, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))), f));
            vst1q_f32(d + 4, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(lo)), f));
            vst1q_f32(d + 8, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))), f));
            vst1q_f32(d + 12, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(hi)), f));
          }
        }
        break;
      }
    }
  }
  return true;
}

void gemv_rows(const MatW& w, int64_t r0, int64_t jb, int64_t je, const float* x, int64_t ldx, int64_t S, float* y,
               int64_t ldy, const float* xp, float* scratch) {
  constexpr int64_t kRowBlock = 32, kGroup = 4;
  const bool tiled = w.fmt == WFormat::FP8;
  const size_t xstride = w.fmt == WFormat::FP4 ? fp4_row_floats(w.cols) : static_cast<size_t>(w.cols);
  int64_t tile = -1;
  const float* xin = xp;
  for (int64_t b = jb, e = jb; b < je; b = e) {
    e = S == 1 && !tiled ? je : std::min(je, b + kRowBlock);
    if (tiled) {
      e = std::min(e, ((r0 + b) / 128 + 1) * 128 - r0);
      if ((r0 + b) / 128 != tile) {
        tile = (r0 + b) / 128;
        fp8_scale_x(w, tile, xp, S, scratch);
      }
      xin = scratch;
    }
    for (int64_t s0 = 0; s0 < S; s0 += kGroup) {
      const float* xs = x + s0 * ldx;
      const float* xps = xin + static_cast<size_t>(s0) * xstride;
      float* ys = y + s0 * ldy;
      switch (std::min<int64_t>(kGroup, S - s0)) {
        case 1: dispatch<1>(w, r0, b, e, xs, ldx, ys, ldy, xps); break;
        case 2: dispatch<2>(w, r0, b, e, xs, ldx, ys, ldy, xps); break;
        case 3: dispatch<3>(w, r0, b, e, xs, ldx, ys, ldy, xps); break;
        default: dispatch<4>(w, r0, b, e, xs, ldx, ys, ldy, xps); break;
      }
    }
  }
}

}  // namespace dsv4::DSV4_CPU_NS
