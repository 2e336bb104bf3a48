// AVX2 + FMA + F16C fused decode + dot kernels (see gemv.hpp): most AMD Zen 1-3 and Intel client
// CPUs. Weights are decoded in registers; results stay at fp32-accumulation accuracy:
// - F32 / BF16 / F16: converted to fp32 and multiplied with FMA.
// - FP8 e4m3: 16 codes become fp16 words by shifts and masks, F16C converts them exactly (times
//   2^-8); the 128x128 block scale (and the 2^8) is folded into a per-thread copy of x once per
//   128-row tile.
// - FP4 e2m1: integer dot products. A code becomes 2·value + 12 (a byte in 0..24) with one
//   pshufb, then a 16-bit word; x is in block fixed point (22 bits, two 11-bit digits), and
//   vpmaddwd multiplies and pairs the digits with the codes; one float scale per 32-column block.
//   Exact integer sums, one float rounding per block and lane: the error stays below the float
//   kernels' own.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "backend/cpu/linear/gemv.hpp"
#include "quant/formats.hpp"

#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "gemv_avx2.cpp is the avx2 tier's kernel file: compile it with AVX2, FMA and F16C"
#endif

namespace dsv4::DSV4_CPU_NS {

namespace {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

// Each weight stream asks for its line this far ahead (as the AVX-512 kernels: more misses in
// flight than the hardware prefetcher keeps on its own).
constexpr int64_t kStreamPrefetch = 2048;
inline void prefetch(const uint8_t* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0); }

// ---- F32 / BF16 / F16 ----

template <WFormat F>
inline __m256 load8(const uint8_t* row, int64_t i) {
  if constexpr (F == WFormat::F32) return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + i);
  else if constexpr (F == WFormat::BF16)
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i))), 16));
  else return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i)));
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

// G activation rows against NR weight rows: NR·G accumulators (at most 8), each x load serves NR
// rows and each converted weight vector G rows.
template <WFormat F, int G, int NR>
inline void plain_block(const MatW& w, int64_t r0, int64_t j, const float* x, int64_t ldx, float* y, int64_t ldy) {
  const int64_t C = w.cols;
  const uint8_t* rows[NR];
  for (int r = 0; r < NR; ++r) rows[r] = w.data + static_cast<size_t>(r0 + j + r) * static_cast<size_t>(C) * kEsz<F>;
  __m256 acc[NR][G];
  for (int r = 0; r < NR; ++r)
    for (int g = 0; g < G; ++g) acc[r][g] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= C; i += 8) {
    __m256 wv[NR];
    for (int r = 0; r < NR; ++r) wv[r] = load8<F>(rows[r], i);
    for (int g = 0; g < G; ++g) {
      const __m256 xv = _mm256_loadu_ps(x + g * ldx + i);
      for (int r = 0; r < NR; ++r) acc[r][g] = _mm256_fmadd_ps(wv[r], xv, acc[r][g]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int g = 0; g < G; ++g) {
      float t = hsum(acc[r][g]);
      for (int64_t k = i; k < C; ++k) t += elem<F>(rows[r], k) * x[g * ldx + k];
      y[g * ldy + j + r] = t;
    }
}

template <WFormat F, int G>
void plain_tile(const MatW& w, int64_t r0, int64_t jb, int64_t je, const float* x, int64_t ldx, float* y, int64_t ldy) {
  constexpr int NR = G <= 2 ? 4 : 2;
  int64_t j = jb;
  for (; j + NR <= je; j += NR) plain_block<F, G, NR>(w, r0, j, x, ldx, y, ldy);
  for (; j < je; ++j) plain_block<F, G, 1>(w, r0, j, x, ldx, y, ldy);
}

// One activation row: four weight rows far apart (j, j+q, j+2q, j+3q of the range) read together,
// two accumulators each. Each stream's line 2 KiB ahead is prefetched into L2 only, leaving L1 to
// x (16 KiB for the head; a prefetch into L1 was slower than none). bench_gemv BF16 head, 6
// interleaved runs: 2 threads median 27.7 -> 34.5 GB/s, 1 thread 16.1-16.6 -> 19.9-20.8.
template <WFormat F>
void plain_streams(const MatW& w, int64_t r0, int64_t jb, int64_t je, const float* x, float* y) {
  constexpr int NR = 4;
  const int64_t C = w.cols, q = (je - jb) / NR;
  for (int64_t j = jb; j < jb + q; ++j) {
    const uint8_t* rows[NR];
    for (int r = 0; r < NR; ++r) rows[r] = w.data + static_cast<size_t>(r0 + j + r * q) * static_cast<size_t>(C) * kEsz<F>;
    __m256 acc[NR][2];
    for (int r = 0; r < NR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= C; i += 16) {
      const __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
      if ((i * static_cast<int64_t>(kEsz<F>)) % 64 == 0)  // each stream's line 2 KiB ahead, into L2 only
        for (int r = 0; r < NR; ++r) _mm_prefetch(reinterpret_cast<const char*>(rows[r] + i * static_cast<int64_t>(kEsz<F>) + kStreamPrefetch), _MM_HINT_T1);
      for (int r = 0; r < NR; ++r) {
        acc[r][0] = _mm256_fmadd_ps(load8<F>(rows[r], i), x0, acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(load8<F>(rows[r], i + 8), x1, acc[r][1]);
      }
    }
    for (; i + 8 <= C; i += 8) {
      const __m256 xv = _mm256_loadu_ps(x + i);
      for (int r = 0; r < NR; ++r) acc[r][0] = _mm256_fmadd_ps(load8<F>(rows[r], i), xv, acc[r][0]);
    }
    for (int r = 0; r < NR; ++r) {
      float t = hsum(_mm256_add_ps(acc[r][0], acc[r][1]));
      for (int64_t k = i; k < C; ++k) t += elem<F>(rows[r], k) * x[k];
      y[j + r * q] = t;
    }
  }
  plain_tile<F, 1>(w, r0, jb + NR * q, je, x, C, y, 1);  // the rows left over
}

// ---- FP8 e4m3 (128x128 E8M0 blocks) ----

// 16 codes -> two vectors of 8 floats in order, times 2^-8: e4m3 S EEEE MMM placed as fp16
// S 0EEEE MMM0000000 (subnormals included), converted exactly by F16C. (b + (b & 0x80)) << 7
// moves the sign from bit 14 to bit 15 with the carry: three operations per 16 codes.
inline void e4m3x16(const uint8_t* p, __m256& lo, __m256& hi) {
  const __m256i w = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  const __m256i h = _mm256_slli_epi16(_mm256_add_epi16(w, _mm256_and_si256(w, _mm256_set1_epi16(0x80))), 7);
  lo = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
  hi = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
}

// xs[s, i] = x[s, i] · scale(tile, block of i) · 2^8 for the rows of one 128-row tile.
void fp8_scale_x(const MatW& w, int64_t tile, const float* xp, int64_t S, float* xs) {
  const int64_t C = w.cols;
  const uint8_t* sc = w.scale + tile * w.scale_cols;
  for (int64_t b0 = 0; b0 < C; b0 += 128) {
    const float f = quant::e8m0_to_f32(sc[b0 / 128]) * 256.0f;
    const __m256 scale = _mm256_set1_ps(f);
    const int64_t be = std::min<int64_t>(C, b0 + 128);
    for (int64_t s = 0; s < S; ++s) {
      int64_t i = b0;
      for (; i + 8 <= be; i += 8) _mm256_storeu_ps(xs + s * C + i, _mm256_mul_ps(_mm256_loadu_ps(xp + s * C + i), scale));
      for (; i < be; ++i) xs[s * C + i] = xp[s * C + i] * f;
    }
  }
}

constexpr int64_t kFp8Prefetch = 4096;

template <int S>
void rows_fp8(const MatW& w, int64_t r0, int64_t jb, int64_t je, const float* xs, float* y, int64_t ldy) {
  constexpr int A = S <= 2 ? 4 : 2;  // accumulators per activation row
  const int64_t C = w.cols;
  for (int64_t j = jb; j < je; ++j) {
    const uint8_t* row = w.data + (r0 + j) * C;
    __m256 acc[S][A];
    for (int s = 0; s < S; ++s)
      for (int a = 0; a < A; ++a) acc[s][a] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= C; i += 32) {
      prefetch(row + i + kFp8Prefetch);
      __m256 f[4];
      e4m3x16(row + i, f[0], f[1]);
      e4m3x16(row + i + 16, f[2], f[3]);
      for (int s = 0; s < S; ++s)
        for (int u = 0; u < 4; ++u) acc[s][u % A] = _mm256_fmadd_ps(f[u], _mm256_loadu_ps(xs + s * C + i + 8 * u), acc[s][u % A]);
    }
    for (; i + 16 <= C; i += 16) {
      __m256 f0, f1;
      e4m3x16(row + i, f0, f1);
      for (int s = 0; s < S; ++s) {
        acc[s][0] = _mm256_fmadd_ps(f0, _mm256_loadu_ps(xs + s * C + i), acc[s][0]);
        acc[s][1] = _mm256_fmadd_ps(f1, _mm256_loadu_ps(xs + s * C + i + 8), acc[s][1]);
      }
    }
    for (int s = 0; s < S; ++s) {
      __m256 t = acc[s][0];
      for (int a = 1; a < A; ++a) t = _mm256_add_ps(t, acc[s][a]);
      float v = hsum(t);
      for (int64_t k = i; k < C; ++k) v += quant::kE4M3[row[k]] * (1.0f / 256.0f) * xs[s * C + k];
      y[s * ldy + j] = v;
    }
  }
}

// ---- FP4 e2m1 (1x32 E8M0 blocks), integer dot products ----
//
// A weight code becomes u = 2·value + 12, an unsigned byte in 0..24 (one pshufb for the 32 codes
// of a block: the 16 bytes go to both 128-bit lanes, the upper one shifted by a nibble), then a
// 16-bit word (unpack with zero: two registers of 16). x is in block fixed point: X = round(x ·
// 2^(22 - e_b)) with 2^e_b > max|x| of the block, |X| <= 2^22, as two 16-bit digits X = H·2^11 + L
// (L in [0, 2^11), |H| <= 2^11). vpmaddwd multiplies u with each digit and pairs the products: four
// per block and weight row (three digit bytes with vpmaddubsw took six multiplies: vpmaddwd and
// vpmaddubsw share one port on many AMD cores, which bounded this kernel); the 32-bit lanes hold
// Σ u·X over 4 elements exactly, and the 12·Σ X of those elements (computed with x) takes the bias
// out again.
//
// Prepared x per activation row: per 32-column block 160 bytes: the H digits in the word order of
// the low and high unpacks (32 bytes each), then the L digits likewise, then 8 int32 bias terms;
// after all blocks, one float per block: 2^(e_b - 23).
constexpr int64_t kFp4BlockBytes = 160;
inline size_t fp4_row_floats(int64_t C) { return static_cast<size_t>(C / 32 * (kFp4BlockBytes / 4 + 1)); }
inline const float* fp4_xscales(const uint8_t* xs, int64_t C) { return reinterpret_cast<const float*>(xs + C / 32 * kFp4BlockBytes); }

// 2·e2m1(code) + 12, twice (one table per 128-bit lane)
alignas(32) constexpr uint8_t kFp4Biased[32] = {12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0,
                                                12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0};
constexpr int32_t kFp4Bias = 12;

// Where element i of a block lands after the lookup and the two unpacks: register (0: low
// unpack, 1: high) and word. The low lane holds the even elements, the high lane the odd ones;
// the low unpack takes the first 8 bytes of each lane, the high unpack the last 8.
inline void fp4_word_of(int i, int& reg, int& word) {
  const int e = i / 2, lane = i & 1;  // byte e of lane `lane`
  reg = e / 8;
  word = lane * 8 + e % 8;
}

inline float pow2f(int k) {  // 2^k for k in [-126, 127]
  const uint32_t bits = static_cast<uint32_t>(k + 127) << 23;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

void fp4_quantize_x(const float* x, int64_t C, uint8_t* out) {
  float* xscale = const_cast<float*>(fp4_xscales(out, C));
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  for (int64_t b = 0; b < C / 32; ++b) {
    const float* xb = x + 32 * b;
    __m256 v[4], mx = _mm256_setzero_ps();
    bool finite = true;
    for (int k = 0; k < 4; ++k) {
      v[k] = _mm256_loadu_ps(xb + 8 * k);
      finite = finite && _mm256_movemask_ps(_mm256_cmp_ps(v[k], v[k], _CMP_UNORD_Q)) == 0;
      mx = _mm256_max_ps(mx, _mm256_and_ps(v[k], abs_mask));
    }
    const float m = [&] {
      __m128 t = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
      t = _mm_max_ps(t, _mm_movehl_ps(t, t));
      return _mm_cvtss_f32(_mm_max_ss(t, _mm_movehdup_ps(t)));
    }();
    finite = finite && std::isfinite(m);
    int e = 0;
    if (m > 0 && finite) std::frexp(m, &e);  // m < 2^e
    const int k = 22 - e, k1 = k / 2;
    const __m256 f1 = _mm256_set1_ps(pow2f(k1)), f2 = _mm256_set1_ps(pow2f(k - k1));
    alignas(32) int32_t X[32];
    for (int q = 0; q < 4; ++q)
      _mm256_store_si256(reinterpret_cast<__m256i*>(X + 8 * q),
                         finite ? _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_mul_ps(v[q], f1), f2)) : _mm256_setzero_si256());
    const int ke = e - 23, ke1 = ke / 2;
    xscale[b] = finite ? pow2f(ke1) * pow2f(ke - ke1) : std::numeric_limits<float>::quiet_NaN();
    auto* o = reinterpret_cast<int16_t*>(out + b * kFp4BlockBytes);
    int32_t bias[8] = {};
    for (int i = 0; i < 32; ++i) {
      int reg, word;
      fp4_word_of(i, reg, word);
      const int32_t hi = X[i] >> 11, lo = X[i] - hi * 2048;  // floor division: lo in [0, 2048)
      o[16 * reg + word] = static_cast<int16_t>(hi);
      o[32 + 16 * reg + word] = static_cast<int16_t>(lo);
      bias[word / 2] += kFp4Bias * X[i];  // the 32-bit lane vpmaddwd pairs this word into
    }
    std::memcpy(o + 64, bias, sizeof bias);
  }
}

// The scales of 8 consecutive blocks (n < 8: the first n) as floats: 2^(e-127), NaN for 255.
inline __m256 e8m0x8(const uint8_t* p, int64_t n) {
  uint64_t bytes = 0;
  std::memcpy(&bytes, p, static_cast<size_t>(std::min<int64_t>(n, 8)));
  const __m256i e = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(bytes)));
  __m256i f = _mm256_slli_epi32(e, 23);
  f = _mm256_blendv_epi8(f, _mm256_set1_epi32(0x00400000), _mm256_cmpeq_epi32(e, _mm256_setzero_si256()));  // 2^-127
  f = _mm256_blendv_epi8(f, _mm256_set1_epi32(0x7FC00000), _mm256_cmpeq_epi32(e, _mm256_set1_epi32(255)));  // NaN
  return _mm256_castsi256_ps(f);
}

// NR weight rows (rows j, j+rstep, ...) against S activation rows. Per 8 blocks, the products of
// weight and x scales go to a small table; per block the codes are looked up once per weight row
// and multiplied with the three digits of every activation row.
template <int S, int NR>
inline void fp4_rows_block(const MatW& w, int64_t r0, int64_t j, int64_t rstep, const uint8_t* xb, float* y, int64_t ldy) {
  const int64_t C = w.cols, nb = C / 32, rb = C / 2;
  const size_t xstride = fp4_row_floats(C) * 4;
  const __m256i tbl = _mm256_load_si256(reinterpret_cast<const __m256i*>(kFp4Biased)), m0f = _mm256_set1_epi8(0x0F),
                nibble = _mm256_setr_epi64x(0, 0, 4, 4), zero = _mm256_setzero_si256();
  const int64_t ahead = rstep == 1 ? NR * rb : kStreamPrefetch;
  const uint8_t* row[NR];
  const uint8_t* sc[NR];
  for (int r = 0; r < NR; ++r) {
    row[r] = w.data + (r0 + j + r * rstep) * rb;
    sc[r] = w.scale + (r0 + j + r * rstep) * w.scale_cols;
  }
  __m256 acc[S][NR];
  for (int s = 0; s < S; ++s)
    for (int r = 0; r < NR; ++r) acc[s][r] = _mm256_setzero_ps();
  alignas(32) float sx[S][NR][8];
  for (int64_t b0 = 0; b0 < nb; b0 += 8) {
    const int64_t n8 = std::min<int64_t>(8, nb - b0);
    for (int r = 0; r < NR; ++r) {
      const __m256 sw = e8m0x8(sc[r] + b0, n8);
      for (int s = 0; s < S; ++s) {
        const float* xs = fp4_xscales(xb + s * xstride, C) + b0;
        __m256 xv;
        if (n8 == 8) {
          xv = _mm256_loadu_ps(xs);
        } else {
          alignas(32) float t[8] = {};
          std::memcpy(t, xs, static_cast<size_t>(n8) * sizeof(float));
          xv = _mm256_load_ps(t);
        }
        _mm256_store_ps(sx[s][r], _mm256_mul_ps(sw, xv));
      }
    }
    for (int64_t b = b0; b < b0 + n8; ++b) {
      __m256i ua[NR], ub[NR];
      for (int r = 0; r < NR; ++r) {
        const uint8_t* p = row[r] + 16 * b;
        if ((b & 3) == 0) prefetch(p + ahead);
        const __m256i bytes = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        const __m256i u = _mm256_shuffle_epi8(tbl, _mm256_and_si256(_mm256_srlv_epi64(bytes, nibble), m0f));
        ua[r] = _mm256_unpacklo_epi8(u, zero);
        ub[r] = _mm256_unpackhi_epi8(u, zero);
      }
      for (int s = 0; s < S; ++s) {
        const uint8_t* xg = xb + s * xstride + b * kFp4BlockBytes;
        const __m256i ha = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xg)),
                      hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xg + 32)),
                      la = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xg + 64)),
                      lb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xg + 96)),
                      bias = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xg + 128));
        for (int r = 0; r < NR; ++r) {
          const __m256i sh = _mm256_add_epi32(_mm256_madd_epi16(ua[r], ha), _mm256_madd_epi16(ub[r], hb));
          const __m256i sl = _mm256_add_epi32(_mm256_madd_epi16(ua[r], la), _mm256_madd_epi16(ub[r], lb));
          const __m256i t = _mm256_sub_epi32(_mm256_add_epi32(_mm256_slli_epi32(sh, 11), sl), bias);
          acc[s][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(t), _mm256_broadcast_ss(&sx[s][r][b - b0]), acc[s][r]);
        }
      }
    }
  }
  for (int s = 0; s < S; ++s)
    for (int r = 0; r < NR; ++r) y[s * ldy + j + r * rstep] = hsum(acc[s][r]);
}

template <int S>
void rows_fp4(const MatW& w, int64_t r0, int64_t jb, int64_t je, const float* xp, float* y, int64_t ldy) {
  constexpr int NR = S == 1 ? 2 : 1;
  const uint8_t* xb = reinterpret_cast<const uint8_t*>(xp);
  int64_t j = jb;
  if (S == 1) {  // two streams far apart (rows j, j+q): more reads in flight than one
    const int64_t q = (je - jb) / NR;
    for (; j < jb + q; ++j) fp4_rows_block<S, NR>(w, r0, j, q, xb, y, ldy);
    j = jb + NR * q;
  }
  for (; j < je; ++j) fp4_rows_block<S, 1>(w, r0, j, 1, xb, y, ldy);
}

// ---- FP4 for several activation rows: decoded to floats in registers, fp32 FMA ----
//
// From kFp4FloatRows activation rows on, the integer kernel's per-row work (four digit products,
// their sum and a conversion per 32 weights) costs more than decoding the weights to floats once
// and using FMA: 32 codes become 32 floats with two byte lookups and unpacks (fp4_block_floats;
// a variable shift and a permute per 8 codes cost twice as much on Zen 2). Rows go in tiles of kFp4TileRows and the columns
// in slices of kFp4SliceCols, so the x slice of a group of activation rows stays in L1 while
// every row of the tile passes over it (copied out first: rows of x are often 2^k floats apart,
// and eight of them at one column would fill a set of L1); the accumulators wait in a small
// table between slices.
constexpr int64_t kFp4FloatRows = 3, kFp4Group = 12, kFp4TileRows = 64, kFp4SliceCols = 256;

// e2m1 code -> the two bytes of its value as bf16 (exact: at most two significant bits), for
// pshufb: low bytes, high bytes (codes 8-15 are the negatives).
alignas(32) constexpr uint8_t kFp4Bf16Lo[32] = {0x00, 0x00, 0x80, 0xC0, 0x00, 0x40, 0x80, 0xC0, 0x00, 0x00, 0x80, 0xC0, 0x00, 0x40, 0x80, 0xC0,
                                                0x00, 0x00, 0x80, 0xC0, 0x00, 0x40, 0x80, 0xC0, 0x00, 0x00, 0x80, 0xC0, 0x00, 0x40, 0x80, 0xC0};
alignas(32) constexpr uint8_t kFp4Bf16Hi[32] = {0x00, 0x3F, 0x3F, 0x3F, 0x40, 0x40, 0x40, 0x40, 0x80, 0xBF, 0xBF, 0xBF, 0xC0, 0xC0, 0xC0, 0xC0,
                                                0x00, 0x3F, 0x3F, 0x3F, 0x40, 0x40, 0x40, 0x40, 0x80, 0xBF, 0xBF, 0xBF, 0xC0, 0xC0, 0xC0, 0xC0};

// The 32 weights of one block as four vectors of floats, times the block's scale. Two lookups give
// each code's value as bf16 bytes (the even elements in the low 128-bit lane, the odd ones in the
// high lane), unpacks make them bf16 words and then floats: vector q holds elements 8q..8q+7 in
// the order 0 2 4 6 1 3 5 7 (fp4_float_tile stores x in that order too).
inline void fp4_block_floats(const uint8_t* codes16, float scale, __m256 f[4]) {
  const __m256i tlo = _mm256_load_si256(reinterpret_cast<const __m256i*>(kFp4Bf16Lo)),
                thi = _mm256_load_si256(reinterpret_cast<const __m256i*>(kFp4Bf16Hi)), m0f = _mm256_set1_epi8(0x0F),
                nibble = _mm256_setr_epi64x(0, 0, 4, 4), zero = _mm256_setzero_si256();
  const __m256i bytes = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes16)));
  const __m256i idx = _mm256_and_si256(_mm256_srlv_epi64(bytes, nibble), m0f);
  const __m256i lo = _mm256_shuffle_epi8(tlo, idx), hi = _mm256_shuffle_epi8(thi, idx);
  const __m256i w0 = _mm256_unpacklo_epi8(lo, hi), w1 = _mm256_unpackhi_epi8(lo, hi);
  const __m256 sv = _mm256_set1_ps(scale);
  f[0] = _mm256_mul_ps(_mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, w0)), sv);  // exact: powers of two
  f[1] = _mm256_mul_ps(_mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, w0)), sv);
  f[2] = _mm256_mul_ps(_mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, w1)), sv);
  f[3] = _mm256_mul_ps(_mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, w1)), sv);
}

template <int G>
void fp4_float_tile(const MatW& w, int64_t r0, int64_t j0, int64_t nr, const float* x, int64_t ldx, float* y, int64_t ldy) {
  const int64_t C = w.cols, rb = C / 2;
  const __m256i perm = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);  // the decoded weights' element order
  alignas(32) float part[kFp4TileRows][G][8];
  alignas(32) float xs[G][kFp4SliceCols];
  for (int64_t c0 = 0; c0 < C; c0 += kFp4SliceCols) {
    const int64_t c1 = std::min(C, c0 + kFp4SliceCols);
    for (int g = 0; g < G; ++g)
      for (int64_t c = c0; c < c1; c += 8)
        _mm256_store_ps(&xs[g][c - c0], _mm256_permutevar8x32_ps(_mm256_loadu_ps(x + g * ldx + c), perm));
    for (int64_t r = 0; r < nr; ++r) {
      const uint8_t* row = w.data + (r0 + j0 + r) * rb;
      const uint8_t* sc = w.scale + (r0 + j0 + r) * w.scale_cols;
      // The weights come from memory in an order the hardware prefetcher does not follow (one
      // slice of each row of the tile, then the next slice): ask for this row's next slice now
      // (MoE prefill -30%).
      if (c1 < C) {
        prefetch(row + c1 / 2);
        prefetch(row + c1 / 2 + 64);
      }
      __m256 acc[G];
      for (int g = 0; g < G; ++g) acc[g] = c0 == 0 ? _mm256_setzero_ps() : _mm256_load_ps(part[r][g]);
      for (int64_t i = c0; i < c1; i += 32) {
        __m256 v[4];
        fp4_block_floats(row + i / 2, quant::e8m0_to_f32(sc[i / 32]), v);
        for (int q = 0; q < 4; ++q)
          for (int g = 0; g < G; ++g) acc[g] = _mm256_fmadd_ps(v[q], _mm256_load_ps(&xs[g][i - c0 + 8 * q]), acc[g]);
      }
      for (int g = 0; g < G; ++g) _mm256_store_ps(part[r][g], acc[g]);
    }
  }
  for (int64_t r = 0; r < nr; ++r)
    for (int g = 0; g < G; ++g) y[g * ldy + j0 + r] = hsum(_mm256_load_ps(part[r][g]));
}

void fp4_float_rows(const MatW& w, int64_t r0, int64_t jb, int64_t je, const float* x, int64_t ldx, int64_t S, float* y, int64_t ldy) {
  // Groups of up to 12 rows (12 accumulators, the decoded weights, the block's table and two
  // temporaries fill the 16 registers), of nearly equal size (20 rows: 10 + 10, not 12 + 8):
  // every group decodes the weights again. 12-row groups against 8-row ones: MoE prefill -6%.
  const int64_t groups = (S + kFp4Group - 1) / kFp4Group;
  for (int64_t j = jb; j < je; j += kFp4TileRows) {
    const int64_t nr = std::min(kFp4TileRows, je - j);
    for (int64_t r = j + nr; r < std::min(je, j + nr + kFp4TileRows); ++r) {  // the next tile's first slice
      prefetch(w.data + (r0 + r) * (w.cols / 2));
      prefetch(w.data + (r0 + r) * (w.cols / 2) + 64);
    }
    for (int64_t k = 0, s0 = 0; k < groups; ++k) {
      const int64_t s1 = S * (k + 1) / groups;
      const float* xs = x + s0 * ldx;
      float* ys = y + s0 * ldy;
      switch (s1 - s0) {
        case 1: fp4_float_tile<1>(w, r0, j, nr, xs, ldx, ys, ldy); break;
        case 2: fp4_float_tile<2>(w, r0, j, nr, xs, ldx, ys, ldy); break;
        case 3: fp4_float_tile<3>(w, r0, j, nr, xs, ldx, ys, ldy); break;
        case 4: fp4_float_tile<4>(w, r0, j, nr, xs, ldx, ys, ldy); break;
        case 5: fp4_float_tile<5>(w, r0, j, nr, xs, ldx, ys, ldy); break;
        case 6: fp4_float_tile<6>(w, r0, j, nr, xs, ldx, ys, ldy); break;
        case 7: fp4_float_tile<7>(w, r0, j, nr, xs, ldx, ys, ldy); break;
        case 8: fp4_float_tile<8>(w, r0, j, nr, xs, ldx, ys, ldy); break;
        case 9: fp4_float_tile<9>(w, r0, j, nr, xs, ldx, ys, ldy); break;
        case 10: fp4_float_tile<10>(w, r0, j, nr, xs, ldx, ys, ldy); break;
        case 11: fp4_float_tile<11>(w, r0, j, nr, xs, ldx, ys, ldy); break;
        default: fp4_float_tile<12>(w, r0, j, nr, xs, ldx, ys, ldy); break;
      }
      s0 = s1;
    }
  }
}

// ---- dispatch ----

template <int S>
void dispatch(const MatW& w, int64_t r0, int64_t jb, int64_t je, const float* x, int64_t ldx, float* y, int64_t ldy, const float* xp) {
  switch (w.fmt) {
    case WFormat::F32:
      if (S == 1) plain_streams<WFormat::F32>(w, r0, jb, je, x, y);
      else plain_tile<WFormat::F32, S>(w, r0, jb, je, x, ldx, y, ldy);
      return;
    case WFormat::BF16:
      if (S == 1) plain_streams<WFormat::BF16>(w, r0, jb, je, x, y);
      else plain_tile<WFormat::BF16, S>(w, r0, jb, je, x, ldx, y, ldy);
      return;
    case WFormat::F16:
      if (S == 1) plain_streams<WFormat::F16>(w, r0, jb, je, x, y);
      else plain_tile<WFormat::F16, S>(w, r0, jb, je, x, ldx, y, ldy);
      return;
    case WFormat::FP8: rows_fp8<S>(w, r0, jb, je, xp, y, ldy); return;  // xp: the tile-scaled copy
    case WFormat::FP4: rows_fp4<S>(w, r0, jb, je, xp, y, ldy); return;
  }
}

}  // namespace

bool gemv_available() { return true; }
const char* gemv_tier() { return "avx2"; }

int64_t gemv_max_batch(const MatW& w) { return w.fmt == WFormat::FP8 ? 16 : kGemvMaxBatch; }
size_t gemv_scratch_floats(const MatW& w, int64_t S) { return w.fmt == WFormat::FP8 ? static_cast<size_t>(S * w.cols) : 1; }
bool gemv_needs_prepared_x(const MatW& w) { return w.fmt == WFormat::FP4 || w.fmt == WFormat::FP8; }
size_t gemv_prepared_floats(const MatW& w, int64_t S) {
  if (w.fmt == WFormat::FP8) return static_cast<size_t>(S * w.cols);
  if (w.fmt == WFormat::FP4) return S < kFp4FloatRows ? static_cast<size_t>(S) * fp4_row_floats(w.cols) : 0;
  return 0;
}

void gemv_prepare_x(const MatW& w, const float* x, int64_t ldx, int64_t S, float* xp) {
  const int64_t C = w.cols;
  if (w.fmt == WFormat::FP8) {
    for (int64_t s = 0; s < S; ++s) std::memcpy(xp + s * C, x + s * ldx, static_cast<size_t>(C) * sizeof(float));
  } else if (w.fmt == WFormat::FP4 && S < kFp4FloatRows) {
    const size_t stride = fp4_row_floats(C);
    for (int64_t s = 0; s < S; ++s) fp4_quantize_x(x + s * ldx, C, reinterpret_cast<uint8_t*>(xp + static_cast<size_t>(s) * stride));
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
        for (; i + 8 <= C; i += 8) _mm256_storeu_ps(o + i, w.fmt == WFormat::BF16 ? load8<WFormat::BF16>(row, i) : load8<WFormat::F16>(row, i));
        for (; i < C; ++i) o[i] = w.fmt == WFormat::BF16 ? elem<WFormat::BF16>(row, i) : elem<WFormat::F16>(row, i);
        break;
      }
      case WFormat::FP8: {
        const uint8_t* row = w.data + ri * C;
        const uint8_t* sc = w.scale + (ri / 128) * w.scale_cols;
        int64_t i = 0;
        for (; i + 16 <= C; i += 16) {
          const float f = quant::e8m0_to_f32(sc[i / 128]) * 256.0f;  // 16 | 128: one block
          __m256 lo, hi;
          e4m3x16(row + i, lo, hi);
          _mm256_storeu_ps(o + i, _mm256_mul_ps(lo, _mm256_set1_ps(f)));
          _mm256_storeu_ps(o + i + 8, _mm256_mul_ps(hi, _mm256_set1_ps(f)));
        }
        for (; i < C; ++i) o[i] = quant::kE4M3[row[i]] * quant::e8m0_to_f32(sc[i / 128]);
        break;
      }
      case WFormat::FP4: {
        const uint8_t* row = w.data + ri * (C / 2);
        const uint8_t* sc = w.scale + ri * w.scale_cols;
        // codes -> floats: the magnitude from an 8-entry table (low 3 bits), the sign from bit 3
        const __m256 mag = _mm256_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f);
        const __m256i m15 = _mm256_set1_epi32(15), sign = _mm256_set1_epi32(static_cast<int>(0x80000000u));
        auto value = [&](__m256i code) {
          return _mm256_xor_ps(_mm256_permutevar8x32_ps(mag, code), _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(code, 28), sign)));
        };
        for (int64_t b = 0; b < C / 32; ++b) {
          const __m256 s = _mm256_set1_ps(quant::e8m0_to_f32(sc[b]));
          for (int h = 0; h < 2; ++h) {  // bytes 8h..8h+7: elements 16h..16h+15
            const __m256i bytes = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + 16 * b + 8 * h)));
            const __m256 lo = _mm256_mul_ps(value(_mm256_and_si256(bytes, m15)), s);
            const __m256 hi = _mm256_mul_ps(value(_mm256_srli_epi32(bytes, 4)), s);
            const __m256 a = _mm256_unpacklo_ps(lo, hi), c = _mm256_unpackhi_ps(lo, hi);  // per 128-bit half: pairs 0,1 | 2,3
            _mm256_storeu_ps(o + 32 * b + 16 * h, _mm256_permute2f128_ps(a, c, 0x20));
            _mm256_storeu_ps(o + 32 * b + 16 * h + 8, _mm256_permute2f128_ps(a, c, 0x31));
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
  if (w.fmt == WFormat::FP4 && S >= kFp4FloatRows) {
    fp4_float_rows(w, r0, jb, je, x, ldx, S, y, ldy);
    return;
  }
  // Rows in blocks that stay in L2 while every group of activation rows passes over them.
  constexpr int64_t kRowBlock = 32, kGroup = 4;
  const bool tiled = w.fmt == WFormat::FP8;
  const size_t xstride = w.fmt == WFormat::FP4 ? fp4_row_floats(w.cols) : static_cast<size_t>(w.cols);
  int64_t tile = -1;
  const float* xin = xp;
  for (int64_t b = jb, e = jb; b < je; b = e) {
    e = S == 1 && !tiled ? je : std::min(je, b + kRowBlock);
    if (tiled) {  // stay inside one 128-row scale tile; scale x for it once
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
