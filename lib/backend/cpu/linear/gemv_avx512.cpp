// AVX-512 fused decode + dot kernels (see gemv.hpp).
#include <cmath>
#include <cstring>
#include <limits>

#include "backend/cpu/linear/gemv.hpp"
#include "quant/formats.hpp"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__F16C__)
#include <immintrin.h>
#define DSV4_HAVE_GEMV 1
#if defined(__AVX512VNNI__) && defined(__AVX512VBMI__)
#define DSV4_FP4_INT 1  // the integer FP4 kernel (vpdpbusd, vpermb)
#endif
#endif

namespace dsv4::DSV4_CPU_NS {

#ifdef DSV4_HAVE_GEMV

namespace {

inline __mmask16 tail_mask(int64_t n) { return n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1); }

// 16 e4m3 bytes -> 16 floats (without the block scale and without the 2^8 exponent fix-up):
// e4m3 bits S EEEE MMM placed as fp16 S 0EEEE MMM0000000 equal the value times 2^-8, subnormals
// included, and F16C converts them exactly.
inline __m512 e4m3x16(__m128i b) {
  const __m256i w = _mm256_cvtepu8_epi16(b);
  const __m256i h = _mm256_or_si256(_mm256_slli_epi16(_mm256_and_si256(w, _mm256_set1_epi16(0x80)), 8),
                                    _mm256_slli_epi16(_mm256_and_si256(w, _mm256_set1_epi16(0x7F)), 7));
  return _mm512_cvtph_ps(h);
}

inline __m512 bf16x16(const uint8_t* p, __mmask16 m) {
  const __m256i h = _mm256_maskz_loadu_epi16(m, p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// Sum of the 16 lanes (GCC 12 warns falsely about _mm512_reduce_add_ps inside unrolled loops).
inline float hsum(__m512 v) {
  const __m256 h = _mm256_add_ps(_mm512_extractf32x8_ps(v, 0), _mm512_extractf32x8_ps(v, 1));
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  return _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)));
}

inline __m512 f16x16(const uint8_t* p, __mmask16 m) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p)); }

// The FP8 kernel reads its rows as one contiguous stream: asking for the line 4 KiB ahead keeps
// more misses in flight than the hardware prefetcher does on its own (measured: out_proj ~15%
// faster in `dsv4 bench`; 0.5-8 KiB tried). A prefetch past the end is harmless.
constexpr int64_t kPrefetchBytes = 4096;
inline void prefetch_ahead(const uint8_t* p) { _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetchBytes), _MM_HINT_T0); }

// Four independent accumulators per activation row keep the FMA latency chain off the
// critical path, so the loop runs at load / memory speed rather than one FMA per 4 cycles.
template <WFormat F>
inline __m512 load_plain(const uint8_t* row, int64_t i, __mmask16 m) {
  if constexpr (F == WFormat::F32) return _mm512_maskz_loadu_ps(m, row + 4 * i);
  else if constexpr (F == WFormat::BF16) return bf16x16(row + 2 * i, m);
  else return f16x16(row + 2 * i, m);
}

// Independent accumulators per activation row: enough to hide the FMA latency without running
// out of the 32 vector registers.
template <int S>
constexpr int kUnroll = S == 1 ? 4 : S == 2 ? 2 : 1;

template <int S, WFormat F>
void rows_plain(const MatW& w, int64_t r0, int64_t jb, int64_t je, const float* x, int64_t ldx, float* y, int64_t ldy) {
  constexpr int U = kUnroll<S>;
  const int64_t C = w.cols;
  const size_t esz = F == WFormat::F32 ? 4 : 2;
  const __mmask16 all = 0xFFFF;
  for (int64_t j = jb; j < je; ++j) {
    const uint8_t* row = w.data + static_cast<size_t>(r0 + j) * static_cast<size_t>(C) * esz;
    __m512 acc[S][U];
    for (int s = 0; s < S; ++s)
      for (int u = 0; u < U; ++u) acc[s][u] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 * U <= C; i += 16 * U) {
      __m512 wv[U];
      for (int u = 0; u < U; ++u) wv[u] = load_plain<F>(row, i + 16 * u, all);
      for (int s = 0; s < S; ++s)
        for (int u = 0; u < U; ++u) acc[s][u] = _mm512_fmadd_ps(wv[u], _mm512_loadu_ps(x + s * ldx + i + 16 * u), acc[s][u]);
    }
    for (; i < C; i += 16) {
      const __mmask16 m = tail_mask(C - i);
      const __m512 wv = load_plain<F>(row, i, m);
      for (int s = 0; s < S; ++s) acc[s][0] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x + s * ldx + i), acc[s][0]);
    }
    for (int s = 0; s < S; ++s) {
      __m512 t = acc[s][0];
      for (int u = 1; u < U; ++u) t = _mm512_add_ps(t, acc[s][u]);
      y[s * ldy + j] = _mm512_reduce_add_ps(t);
    }
  }
}

// G activation rows against NR weight rows at a time: a register tile of NR·G accumulators, so
// each load of x serves NR rows and each decoded weight vector G rows (the one-row-at-a-time loop
// reloads all of x, from L2 once it outgrows L1, for every weight row). Measured on the BF16 head
// at 16 rows, 2 threads: see gemv_rows.
template <int G, int NR, WFormat F>
void rows_plain_tile(const MatW& w, int64_t r0, int64_t jb, int64_t je, const float* x, int64_t ldx, float* y, int64_t ldy) {
  const int64_t C = w.cols;
  const size_t esz = F == WFormat::F32 ? 4 : 2;
  int64_t j = jb;
  for (; j + NR <= je; j += NR) {
    const uint8_t* rows[NR];
    for (int r = 0; r < NR; ++r) rows[r] = w.data + static_cast<size_t>(r0 + j + r) * static_cast<size_t>(C) * esz;
    __m512 acc[NR][G];
    for (int r = 0; r < NR; ++r)
      for (int g = 0; g < G; ++g) acc[r][g] = _mm512_setzero_ps();
    for (int64_t i = 0; i < C; i += 16) {
      const __mmask16 m = tail_mask(C - i);
      __m512 wv[NR];
      for (int r = 0; r < NR; ++r) wv[r] = load_plain<F>(rows[r], i, m);
      for (int g = 0; g < G; ++g) {
        const __m512 xv = _mm512_maskz_loadu_ps(m, x + g * ldx + i);
        for (int r = 0; r < NR; ++r) acc[r][g] = _mm512_fmadd_ps(wv[r], xv, acc[r][g]);
      }
    }
    for (int r = 0; r < NR; ++r)
      for (int g = 0; g < G; ++g) y[g * ldy + j + r] = hsum(acc[r][g]);
  }
  if (j < je) rows_plain<G, F>(w, r0, j, je, x, ldx, y, ldy);  // the rows left over
}

// One activation row, NR weight rows far apart (j, j+q, j+2q, ... of the range) read together:
// several independent streams keep more reads in flight than one (measured on the 1 GB BF16 head,
// 2 threads: 49 GB/s against 40 for one row at a time), and asking for each stream's line 2 KiB
// ahead adds about 15% more (8 streams, or 8 KiB ahead, measured slower). The prefetch goes to L2
// only, leaving L1 to x (16 KiB for the head): bench_gemv, 2 threads, 3 interleaved runs, BF16
// head 20.6-28.7 -> 35.7-37.5 GB/s.
constexpr int64_t kStreamPrefetch = 2048;
template <WFormat F, int NR>
void rows_plain_streams(const MatW& w, int64_t r0, int64_t jb, int64_t je, const float* x, float* y) {
  const int64_t C = w.cols, q = (je - jb) / NR;
  const size_t esz = F == WFormat::F32 ? 4 : 2;
  for (int64_t j = jb; j < jb + q; ++j) {
    __m512 acc[NR][2];
    for (int r = 0; r < NR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= C; i += 32) {
      const __m512 x0 = _mm512_loadu_ps(x + i), x1 = _mm512_loadu_ps(x + i + 16);
      for (int r = 0; r < NR; ++r) {
        const uint8_t* row = w.data + static_cast<size_t>(r0 + j + r * q) * static_cast<size_t>(C) * esz;
        _mm_prefetch(reinterpret_cast<const char*>(row + static_cast<size_t>(i) * esz + kStreamPrefetch), _MM_HINT_T1);
        acc[r][0] = _mm512_fmadd_ps(load_plain<F>(row, i, 0xFFFF), x0, acc[r][0]);
        acc[r][1] = _mm512_fmadd_ps(load_plain<F>(row, i + 16, 0xFFFF), x1, acc[r][1]);
      }
    }
    for (; i < C; i += 16) {
      const __mmask16 m = tail_mask(C - i);
      const __m512 xv = _mm512_maskz_loadu_ps(m, x + i);
      for (int r = 0; r < NR; ++r) {
        const uint8_t* row = w.data + static_cast<size_t>(r0 + j + r * q) * static_cast<size_t>(C) * esz;
        acc[r][0] = _mm512_fmadd_ps(load_plain<F>(row, i, m), xv, acc[r][0]);
      }
    }
    for (int r = 0; r < NR; ++r) y[j + r * q] = hsum(_mm512_add_ps(acc[r][0], acc[r][1]));
  }
  // the rows left over (fewer than NR) one at a time
  if (jb + NR * q < je) rows_plain<1, F>(w, r0, jb + NR * q, je, x, C, y, 1);
}

// 32 e4m3 bytes -> two vectors of 16 floats (times 2^-8, see e4m3x16).
inline void e4m3x32(const uint8_t* p, __m512& lo, __m512& hi) {
  const __m512i w = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  const __m512i h = _mm512_or_si512(_mm512_slli_epi16(_mm512_and_si512(w, _mm512_set1_epi16(0x80)), 8),
                                    _mm512_slli_epi16(_mm512_and_si512(w, _mm512_set1_epi16(0x7F)), 7));
  lo = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
  hi = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1));
}

template <int S>
void rows_fp8(const MatW& w, int64_t r0, int64_t jb, int64_t je, const float* x, int64_t ldx, float* y, int64_t ldy) {
  const int64_t C = w.cols;
  for (int64_t j = jb; j < je; ++j) {
    const int64_t r = r0 + j;
    const uint8_t* row = w.data + r * C;
    const uint8_t* sc = w.scale + (r / 128) * w.scale_cols;
    __m512 acc[S];
    for (int s = 0; s < S; ++s) acc[s] = _mm512_setzero_ps();
    for (int64_t b0 = 0; b0 < C; b0 += 128) {
      const int64_t be = std::min<int64_t>(C, b0 + 128);
      constexpr int U = S <= 2 ? 4 : 2;
      __m512 blk[S][U];
      for (int s = 0; s < S; ++s)
        for (int u = 0; u < U; ++u) blk[s][u] = _mm512_setzero_ps();
      int64_t i = b0;
      for (; i + 64 <= be; i += 64) {
        __m512 wv[4];
        e4m3x32(row + i, wv[0], wv[1]);
        e4m3x32(row + i + 32, wv[2], wv[3]);
        for (int s = 0; s < S; ++s)
          for (int u = 0; u < 4; ++u) blk[s][u % U] = _mm512_fmadd_ps(wv[u], _mm512_loadu_ps(x + s * ldx + i + 16 * u), blk[s][u % U]);
      }
      for (; i < be; i += 16) {
        const __mmask16 m = tail_mask(be - i);
        const __m512 wv = e4m3x16(_mm_maskz_loadu_epi8(m, row + i));
        for (int s = 0; s < S; ++s) blk[s][0] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x + s * ldx + i), blk[s][0]);
      }
      const __m512 scale = _mm512_set1_ps(quant::e8m0_to_f32(sc[b0 / 128]) * 256.0f);
      for (int s = 0; s < S; ++s) {
        __m512 t = blk[s][0];
        for (int u = 1; u < U; ++u) t = _mm512_add_ps(t, blk[s][u]);
        acc[s] = _mm512_fmadd_ps(t, scale, acc[s]);
      }
    }
    for (int s = 0; s < S; ++s) y[s * ldy + j] = _mm512_reduce_add_ps(acc[s]);
  }
}

// FP4: xp holds x regrouped per 32-column block as [16 even-index values, 16 odd-index values],
// matching the low / high nibbles of the 16 bytes that encode the block. Two blocks per step
// with separate accumulators.
constexpr int64_t kFp4PrefetchRows = 4;

template <int S>
void rows_fp4(const MatW& w, int64_t r0, int64_t jb, int64_t je, const float* xp, float* y, int64_t ldy) {
  const int64_t C = w.cols, nb = C / 32;
  const __m512 lut = _mm512_loadu_ps(quant::kE2M1.data());
  const __m512i nib = _mm512_set1_epi32(15);
  for (int64_t j = jb; j < je; ++j) {
    const int64_t r = r0 + j;
    const uint8_t* row = w.data + r * (C / 2);
    const uint8_t* sc = w.scale + r * w.scale_cols;
    __m512 acc[S][2];
    for (int s = 0; s < S; ++s) acc[s][0] = acc[s][1] = _mm512_setzero_ps();
    auto block = [&](int64_t b, int u) {
      const __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 16 * b)));
      const __m512 lo = _mm512_permutexvar_ps(_mm512_and_si512(bytes, nib), lut);
      const __m512 hi = _mm512_permutexvar_ps(_mm512_srli_epi32(bytes, 4), lut);
      const __m512 scale = _mm512_set1_ps(quant::e8m0_to_f32(sc[b]));
      for (int s = 0; s < S; ++s) {
        const float* xs = xp + s * C + 32 * b;
        const __m512 d = _mm512_fmadd_ps(hi, _mm512_loadu_ps(xs + 16), _mm512_mul_ps(lo, _mm512_loadu_ps(xs)));
        acc[s][u] = _mm512_fmadd_ps(d, scale, acc[s][u]);
      }
    };
    // Small expert matrices are read cold: prefetch a few rows ahead (one line per 4 blocks).
    const uint8_t* ahead = row + kFp4PrefetchRows * (C / 2);
    const bool pf = j + kFp4PrefetchRows < je;
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
      if (pf && (b & 3) == 0) _mm_prefetch(reinterpret_cast<const char*>(ahead + 16 * b), _MM_HINT_T0);
      block(b, 0);
      block(b + 1, 1);
    }
    if (b < nb) block(b, 0);
    for (int s = 0; s < S; ++s) y[s * ldy + j] = _mm512_reduce_add_ps(_mm512_add_ps(acc[s][0], acc[s][1]));
  }
}

// ---- Fast paths for the shapes V4 uses (FP8 with cols % 64 == 0, FP4 with cols % 128 == 0).

// FP8: x is permuted per 64-column group to the element order of e4m3x64's four vectors
// (fp8_element). The block scale is shared by a 128-row tile, so each thread multiplies it (and
// the 2^8 that e4m3x64 leaves out, see e4m3x16) into its own copy of x once per tile: no
// per-block scaling in the loop.
inline bool fp8_fast(const MatW& w) { return w.cols % 64 == 0; }
#ifdef DSV4_FP4_INT
inline bool fp4_fast(const MatW& w) { return w.cols % 128 == 0; }
#else
inline bool fp4_fast(const MatW&) { return false; }  // the integer FP4 kernel needs AVX512-VNNI and -VBMI
#endif

// Load into a register once: folded into each of the three shifts as a memory operand (what the
// compiler does otherwise) the loop runs at less than half the speed on Zen 5.
inline __m512i load_once(const uint8_t* p) {
  __m512i v = _mm512_loadu_si512(p);
  asm("" : "+v"(v));
  return v;
}

#ifdef __AVX512VBMI__
// 64 e4m3 bytes -> four vectors of 16 floats (times 2^-8) through bf16 (measured ~10% faster
// than building fp16 words and converting them): two 128-entry byte
// tables (vpermi2b reads 7 index bits, so the sign needs no masking) give the high and low byte
// of each magnitude's bf16 word, the sign is or-ed in, and interleaving with zero words makes
// the floats. Lane i of vector u holds element 16·(i/4) + 4·u + i%4.
// Built at compile time: a tier must not run code at static initialisation (it would run, with
// this tier's instructions, on every CPU).
struct Fp8Tables {
  alignas(64) uint8_t hi[128], lo[128];
};
// Bits of the float e4m3(i) · 2^-8 for a magnitude code i (exponent field e = i >> 3, mantissa m).
constexpr uint32_t fp8_scaled_bits(int i) {
  const int e = i >> 3, m = i & 7;
  if (e > 0) return (static_cast<uint32_t>(e + 112) << 23) | (static_cast<uint32_t>(m) << 20);  // (1 + m/8) 2^(e-15)
  if (m == 0) return 0;
  int top = 2;  // m · 2^-17 with m in 1..7: normalise at its highest set bit
  while ((m >> top) == 0) --top;
  return (static_cast<uint32_t>(110 + top) << 23) | (static_cast<uint32_t>(m - (1 << top)) << (23 - top));
}
constexpr Fp8Tables make_fp8_tables() {
  Fp8Tables t{};
  for (int i = 0; i < 128; ++i) {
    t.hi[i] = static_cast<uint8_t>(fp8_scaled_bits(i) >> 24);
    t.lo[i] = static_cast<uint8_t>(fp8_scaled_bits(i) >> 16);
  }
  return t;
}
constexpr Fp8Tables kFp8Tables = make_fp8_tables();
inline int fp8_element(int u, int i) { return 16 * (i / 4) + 4 * u + i % 4; }
inline void e4m3x64(const uint8_t* p, __m512& f0, __m512& f1, __m512& f2, __m512& f3) {
  const __m512i w = load_once(p);
  const __m512i hi = _mm512_ternarylogic_epi32(
      _mm512_permutex2var_epi8(_mm512_load_si512(kFp8Tables.hi), w, _mm512_load_si512(kFp8Tables.hi + 64)), w,
      _mm512_set1_epi8(static_cast<char>(0x80)), 0xF8);  // A | (B & C)
  const __m512i lo = _mm512_permutex2var_epi8(_mm512_load_si512(kFp8Tables.lo), w, _mm512_load_si512(kFp8Tables.lo + 64));
  const __m512i h0 = _mm512_unpacklo_epi8(lo, hi), h1 = _mm512_unpackhi_epi8(lo, hi), z = _mm512_setzero_si512();
  f0 = _mm512_castsi512_ps(_mm512_unpacklo_epi16(z, h0));
  f1 = _mm512_castsi512_ps(_mm512_unpackhi_epi16(z, h0));
  f2 = _mm512_castsi512_ps(_mm512_unpacklo_epi16(z, h1));
  f3 = _mm512_castsi512_ps(_mm512_unpackhi_epi16(z, h1));
}
#else
// Without VBMI: fp16 words from shifts and masks, converted by F16C; two vectors from the low and
// two from the high byte of each 16-bit word (0xD8 = C ? B : A).
inline int fp8_element(int u, int i) { return (u == 0 ? 0 : u == 1 ? 32 : u == 2 ? 1 : 33) + 2 * i; }
inline void e4m3x64(const uint8_t* p, __m512& f0, __m512& f1, __m512& f2, __m512& f3) {
  const __m512i w = load_once(p);
  const __m512i m3f80 = _mm512_set1_epi16(0x3F80), m8000 = _mm512_set1_epi16(static_cast<short>(0x8000));
  const __m512i lo = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_slli_epi16(w, 7), m3f80), _mm512_slli_epi16(w, 8), m8000, 0xD8);
  const __m512i hi = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(w, 1), m3f80), w, m8000, 0xD8);
  f0 = _mm512_cvtph_ps(_mm512_castsi512_si256(lo));
  f1 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(lo, 1));
  f2 = _mm512_cvtph_ps(_mm512_castsi512_si256(hi));
  f3 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(hi, 1));
}
#endif

void fp8_scale_x(const MatW& w, int64_t tile, const float* xp, int64_t S, float* xs) {
  const int64_t C = w.cols;
  const uint8_t* sc = w.scale + tile * w.scale_cols;
  for (int64_t b0 = 0; b0 < C; b0 += 128) {
    const __m512 scale = _mm512_set1_ps(quant::e8m0_to_f32(sc[b0 / 128]) * 256.0f);
    const int64_t be = std::min<int64_t>(C, b0 + 128);
    for (int64_t s = 0; s < S; ++s)
      for (int64_t i = b0; i < be; i += 16) _mm512_storeu_ps(xs + s * C + i, _mm512_mul_ps(_mm512_loadu_ps(xp + s * C + i), scale));
  }
}

template <int S>
void rows_fp8_fast(const MatW& w, int64_t r0, int64_t jb, int64_t je, const float* xs, float* y, int64_t ldy) {
  constexpr int U = S <= 2 ? 4 : S <= 4 ? 2 : 1;
  const int64_t C = w.cols;
  for (int64_t j = jb; j < je; ++j) {
    const uint8_t* row = w.data + (r0 + j) * C;
    __m512 acc[S][U];
    for (int s = 0; s < S; ++s)
      for (int u = 0; u < U; ++u) acc[s][u] = _mm512_setzero_ps();
    for (int64_t g = 0; g < C; g += 64) {
      prefetch_ahead(row + g);
      __m512 f[4];
      e4m3x64(row + g, f[0], f[1], f[2], f[3]);
      for (int s = 0; s < S; ++s)
        for (int u = 0; u < 4; ++u) acc[s][u % U] = _mm512_fmadd_ps(f[u], _mm512_loadu_ps(xs + s * C + g + 16 * u), acc[s][u % U]);
    }
    for (int s = 0; s < S; ++s) {
      __m512 t = acc[s][0];
      for (int u = 1; u < U; ++u) t = _mm512_add_ps(t, acc[s][u]);
      y[s * ldy + j] = _mm512_reduce_add_ps(t);
    }
  }
}

// One activation row, four weight rows at a time: each x vector loaded serves all of them (wo_b's
// x is 32 KiB, all of L1: read once per four rows, not once per row), and the weights are
// prefetched into L2 only, leaving L1 to x. Measured 2 threads, cold (bench_gemv, 3 interleaved
// runs): wo_b 4096x8192 15.4-16.1 -> 21.9-27.1 GB/s, wq_a 1024x4096 16.2-19.9 -> 20.2-23.6.
template <int NR>
inline void rows_fp8_fast_multi(const MatW& w, int64_t r0, int64_t jb, int64_t je, const float* xs, float* y) {
  const int64_t C = w.cols;
  int64_t j = jb;
  for (; j + NR <= je; j += NR) {
    const uint8_t* row = w.data + (r0 + j) * C;
    __m512 acc[NR][2];
    for (int r = 0; r < NR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int64_t g = 0; g < C; g += 64) {
      __m512 f[NR][4];
      for (int r = 0; r < NR; ++r) {
        _mm_prefetch(reinterpret_cast<const char*>(row + r * C + g + kPrefetchBytes), _MM_HINT_T1);
        e4m3x64(row + r * C + g, f[r][0], f[r][1], f[r][2], f[r][3]);
      }
      for (int u = 0; u < 4; ++u) {
        __m512 xv = _mm512_loadu_ps(xs + g + 16 * u);
        asm("" : "+v"(xv));  // one load for all rows
        for (int r = 0; r < NR; ++r) acc[r][u % 2] = _mm512_fmadd_ps(f[r][u], xv, acc[r][u % 2]);
      }
    }
    for (int r = 0; r < NR; ++r) y[j + r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]));
  }
  if constexpr (NR > 1)  // the rows left over, each summed in the same order as in a group
    if (j < je) rows_fp8_fast_multi<1>(w, r0, j, je, xs, y);
}

// The scales of 16 consecutive FP4 blocks as floats (n < 16: the first n).
inline __m512 e8m0x16(const uint8_t* p, int64_t n) {
  const __m512i e = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1), p));
  __m512i f = _mm512_slli_epi32(e, 23);
  f = _mm512_mask_mov_epi32(f, _mm512_testn_epi32_mask(e, e), _mm512_set1_epi32(0x00400000));  // 2^-127
  f = _mm512_mask_mov_epi32(f, _mm512_cmpeq_epi32_mask(e, _mm512_set1_epi32(255)), _mm512_set1_epi32(0x7FC00000));  // NaN
  return _mm512_castsi512_ps(f);
}

#ifdef DSV4_FP4_INT
// FP4 (cols % 128 == 0), integer dot products. Each 128-column group is 64 bytes; byte p holds
// elements 2p (low nibble) and 2p+1 (high nibble). One vpermb per 64 nibbles maps a code to
// 2·value + 12 in 0..24 (2·e2m1 is an integer in -12..12; vpermb reads the low 6 bits of each
// index byte, so a 16-entry table repeated four times needs no masking), and vpdpbusd multiplies
// those bytes by signed bytes of x, four per 32-bit lane: lane i covers elements 8i..8i+7, all in
// block i/4.
//
// x is turned into block fixed point once per call (gemv_prepare_x): per 32-column block b,
// X = round(x · 2^(22-e_b)) with 2^e_b > max|x| (|X| <= 2^22), split into three signed byte limbs
// X = q2·2^16 + q1·2^8 + q0. The rounding error is at most 2^-23 of the block's largest |x|,
// below the float kernel's own accumulation error. The +12 offset is removed with a per-lane
// correction -12·ΣX that seeds the limb-0 accumulator; the 32-bit sums cannot overflow
// (|Σ| < 8·24·2^22·(1 + 2^-8 + 2^-16)). Per row s of x the prepared buffer (4·cols bytes) holds,
// per group, 3 limbs × (64 low-nibble bytes, 64 high-nibble bytes) and 16 int32 corrections
// (448 bytes), then after all groups one float per block: its scale 2^(e_b-23).
constexpr int64_t kFp4GroupBytes = 448;
inline const float* fp4_xscales(const uint8_t* xs, int64_t C) { return reinterpret_cast<const float*>(xs + C / 128 * kFp4GroupBytes); }

alignas(64) constexpr uint8_t kFp4Codes[64] = {12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0,
                                               12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0,
                                               12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0,
                                               12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0};

// NR consecutive rows (r0 + j ...) at once: the limbs of x are loaded once per group for all of
// them, and each row's stream is prefetched one block of NR rows ahead, into L2 only (L1 is left
// to the x limbs: bench_gemv, 2 threads, cold, expert w1 21.7-24.1 -> 27.6-28.6 GB/s; dsv4 bench
// moe 18.2-18.5 -> 15.4-17.0 ms over 4 layers). Loop order and the scale
// table in memory keep S·NR accumulators, one row of x limbs and the decoded weights in registers
// (GCC spilled the accumulators otherwise, halving the speed for S > 2).
template <int S, int NR>
inline void fp4_rows_block(const MatW& w, int64_t r0, int64_t j, int64_t rstep, const uint8_t* xb, float* y, int64_t ldy) {
  const int64_t C = w.cols, nb = C / 32, rb = C / 2, xstride = 4 * C;
  const __m512i tbl = _mm512_load_si512(kFp4Codes);
  const __m512i lane4 = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3), four = _mm512_set1_epi32(4);
  const uint8_t* row = w.data + (r0 + j) * rb;
  const uint8_t* sc = w.scale + (r0 + j) * w.scale_cols;
  const int64_t ahead = rstep == 1 ? NR * rb : kStreamPrefetch;  // prefetch: the next block of rows, or 2 KiB on in each stream
  __m512 acc[S][NR];
  for (int s = 0; s < S; ++s)
    for (int r = 0; r < NR; ++r) acc[s][r] = _mm512_setzero_ps();
  alignas(64) float sx[S][NR][16];  // per block of the span: weight scale · x scale
  for (int64_t b0 = 0; b0 < nb; b0 += 16) {
    const int64_t n16 = std::min<int64_t>(16, nb - b0);
    for (int r = 0; r < NR; ++r) {
      const __m512 sw = e8m0x16(sc + r * rstep * w.scale_cols + b0, n16);
      for (int s = 0; s < S; ++s)
        _mm512_store_ps(sx[s][r], _mm512_mul_ps(sw, _mm512_maskz_loadu_ps(tail_mask(n16), fp4_xscales(xb + s * xstride, C) + b0)));
    }
    __m512i lane = lane4;
    for (int64_t b = b0; b < b0 + n16; b += 4, lane = _mm512_add_epi32(lane, four)) {
      __m512i wl[NR], wh[NR];
      for (int r = 0; r < NR; ++r) {
        const uint8_t* p = row + r * rstep * rb + 16 * b;
        _mm_prefetch(reinterpret_cast<const char*>(p + ahead), _MM_HINT_T1);
        const __m512i d = load_once(p);
        wl[r] = _mm512_permutexvar_epi8(d, tbl);
        wh[r] = _mm512_permutexvar_epi8(_mm512_srli_epi16(d, 4), tbl);
      }
      for (int s = 0; s < S; ++s) {
        const uint8_t* xg = xb + s * xstride + (b / 4) * kFp4GroupBytes;
        const __m512i x0 = _mm512_loadu_si512(xg), x1 = _mm512_loadu_si512(xg + 64), x2 = _mm512_loadu_si512(xg + 128),
                      x3 = _mm512_loadu_si512(xg + 192), x4 = _mm512_loadu_si512(xg + 256), x5 = _mm512_loadu_si512(xg + 320),
                      cr = _mm512_loadu_si512(xg + 384);
        for (int r = 0; r < NR; ++r) {
          __m512i a0 = _mm512_dpbusd_epi32(cr, wl[r], x0);
          __m512i a1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wl[r], x2);
          __m512i a2 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wl[r], x4);
          a0 = _mm512_dpbusd_epi32(a0, wh[r], x1);
          a1 = _mm512_dpbusd_epi32(a1, wh[r], x3);
          a2 = _mm512_dpbusd_epi32(a2, wh[r], x5);
          const __m512i t = _mm512_add_epi32(_mm512_slli_epi32(_mm512_add_epi32(_mm512_slli_epi32(a2, 8), a1), 8), a0);
          acc[s][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), _mm512_permutexvar_ps(lane, _mm512_load_ps(sx[s][r])), acc[s][r]);
        }
      }
    }
  }
  for (int s = 0; s < S; ++s)
    for (int r = 0; r < NR; ++r) y[s * ldy + j + r * rstep] = hsum(acc[s][r]);
}

// Rows per pass: four for one activation row (measured: +20-50% cold over one row at a time, from
// fewer loads of x per weight and the longer prefetch reach), two up to four rows of x, one above.
template <int S>
void rows_fp4_fast(const MatW& w, int64_t r0, int64_t jb, int64_t je, const float* xp, float* y, int64_t ldy) {
  constexpr int NR = S == 1 ? 4 : S <= 4 ? 2 : 1;
  const uint8_t* xb = reinterpret_cast<const uint8_t*>(xp);
  int64_t j = jb;
  if (S == 1) {  // NR streams far apart (rows j, j+q, ...): more reads in flight than one stream
    const int64_t q = (je - jb) / NR;
    for (; j < jb + q; ++j) fp4_rows_block<S, NR>(w, r0, j, q, xb, y, ldy);
    j = jb + NR * q;
  }
  for (; j + NR <= je; j += NR) fp4_rows_block<S, NR>(w, r0, j, 1, xb, y, ldy);
  for (; j < je; ++j) fp4_rows_block<S, 1>(w, r0, j, 1, xb, y, ldy);
}

// 2^k as a float for k in [-126, 127].
inline float pow2f(int k) {
  const uint32_t bits = static_cast<uint32_t>(k + 127) << 23;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Block fixed point for rows_fp4_fast (layout above). A block holding inf or NaN gets a NaN scale
// (its products become NaN, as in the float kernels).
void fp4_quantize_x(const float* x, int64_t C, uint8_t* out) {
  float* xscale = const_cast<float*>(fp4_xscales(out, C));
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  for (int64_t b = 0; b < C / 32; ++b) {
    uint8_t* o = out + (b / 4) * kFp4GroupBytes;
    const int64_t p0 = 16 * (b % 4);  // this block's first byte in the group
    const __m512 v0 = _mm512_loadu_ps(x + 32 * b), v1 = _mm512_loadu_ps(x + 32 * b + 16);
    const float m = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const bool finite = _mm512_cmp_ps_mask(v0, v0, _CMP_UNORD_Q) == 0 && _mm512_cmp_ps_mask(v1, v1, _CMP_UNORD_Q) == 0 &&
                        std::isfinite(m);
    int e = 0;
    if (m > 0 && finite) std::frexp(m, &e);  // m < 2^e, e in [-148, 128]
    // X = round(x · 2^(22-e)) in two exact steps (each factor is a normal float).
    const int k = 22 - e, k1 = k / 2;
    const __m512 f1 = _mm512_set1_ps(pow2f(k1)), f2 = _mm512_set1_ps(pow2f(k - k1));
    __m512i X0 = _mm512_setzero_si512(), X1 = _mm512_setzero_si512();
    if (finite) {
      X0 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_mul_ps(v0, f1), f2));
      X1 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_mul_ps(v1, f1), f2));
    }
    const int ke = e - 23, ke1 = ke / 2;  // x scale 2^(e-23): the 1/2 undoes the doubled weights
    xscale[b] = finite ? pow2f(ke1) * pow2f(ke - ke1) : std::numeric_limits<float>::quiet_NaN();
    // Even elements pair with low nibbles, odd with high: signed byte limbs, low limb first.
    const __m512i halves[2] = {_mm512_permutex2var_epi32(X0, even, X1), _mm512_permutex2var_epi32(X0, odd, X1)};
    for (int h = 0; h < 2; ++h) {
      __m512i v = halves[h];
      for (int l = 0; l < 3; ++l) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(o + l * 128 + h * 64 + p0), _mm512_cvtepi32_epi8(v));
        const __m512i q = _mm512_srai_epi32(_mm512_slli_epi32(v, 24), 24);
        v = _mm512_srai_epi32(_mm512_sub_epi32(v, q), 8);
      }
    }
    // Lane 4·(b%4) + i sums elements 8i..8i+7 of this block.
    int32_t* corr = reinterpret_cast<int32_t*>(o + 384) + 4 * (b % 4);
    corr[0] = -12 * _mm512_mask_reduce_add_epi32(0x00FF, X0);
    corr[1] = -12 * _mm512_mask_reduce_add_epi32(0xFF00, X0);
    corr[2] = -12 * _mm512_mask_reduce_add_epi32(0x00FF, X1);
    corr[3] = -12 * _mm512_mask_reduce_add_epi32(0xFF00, X1);
  }
}

#endif  // DSV4_FP4_INT


// ---- FP4 for several activation rows: decoded to floats in registers, fp32 FMA ----
//
// From kFp4FloatRows activation rows on, decoding the weights to floats once and using FMA costs
// less than the integer kernel's per-row work (six digit products, their sum and a conversion per
// 128 weights and row of x). One block of 32 codes becomes two vectors of floats with one widening
// load, a shift and two permutes of a 16-entry table that already holds the block's scale (exact:
// the scale is a power of two); vpermps reads the low four bits of each index, so the low nibble
// needs no mask. The even elements land in one vector and the odd ones in the other, and the x
// slice is stored in that order. Rows go in tiles of kFp4TileRows and the
// columns in slices of kFp4SliceCols, so the x slice of a group of up to kFp4Group activation rows
// stays in L1 while every row of the tile passes over it (copied out first: rows of x are often
// 2^k floats apart, and several of them at one column would share a set of L1); the accumulators
// wait in a small table between slices. NR weight rows per pass share each load of x.
// Thresholds measured with bench_gemv (2 threads, cold, expert w1 2048x4096, best of 5 interleaved
// runs): with VNNI the integer kernel is as fast up to 4 rows (S=4 134 vs 133 GFLOP/s) and the
// float one faster from 5 (144 vs 134; S=12 190 vs 138); without VNNI the float kernel wins from
// 3 rows (S=3 114 vs 83 GFLOP/s; S=2 88 vs 99).
#ifdef DSV4_FP4_INT
constexpr int64_t kFp4FloatRows = 5;
#else
constexpr int64_t kFp4FloatRows = 3;
#endif
constexpr int64_t kFp4Group = 12, kFp4TileRows = 128, kFp4SliceCols = 512, kFp4WeightRows = 2;
static_assert(kFp4SliceCols == 16 * 32, "one vector of block scales per slice");
// x slices one line apart more than a multiple of 4 KiB: loads of several rows in one cycle then
// fall in different sets and banks of L1.
constexpr int64_t kFp4XsFloats = kFp4SliceCols + 16;
// The tile's tables live in the calling thread's scratch (about 125 KB: too much for the stack of
// a host application's thread): the accumulators of each row and of the rows a short last pass
// repeats, the x slices, the block scales of a pass.
constexpr size_t kFp4PartFloats = static_cast<size_t>((kFp4TileRows + kFp4WeightRows) * kFp4Group * 16);
constexpr size_t kFp4ScratchFloats = kFp4PartFloats + static_cast<size_t>(kFp4Group * kFp4XsFloats + kFp4WeightRows * 16);

template <int G, int NR>
void fp4_float_tile(const MatW& w, int64_t r0, int64_t j0, int64_t nr, const float* x, int64_t ldx, float* y, int64_t ldy, float* scratch) {
  const int64_t C = w.cols, rb = C / 2;
  const __m512 lut = _mm512_loadu_ps(quant::kE2M1.data());
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  static_assert(G <= kFp4Group && NR <= kFp4WeightRows);
  constexpr int64_t kXs = kFp4XsFloats;
  auto part = reinterpret_cast<float (*)[G][16]>(scratch);  // zero to begin with
  auto xs = reinterpret_cast<float (*)[kXs]>(scratch + kFp4PartFloats);
  auto scales = reinterpret_cast<float (*)[kFp4SliceCols / 32]>(scratch + kFp4PartFloats + kFp4Group * kXs);
  std::memset(part, 0, sizeof(float) * 16 * G * static_cast<size_t>(nr + NR));
  for (int64_t c0 = 0; c0 < C; c0 += kFp4SliceCols) {
    const int64_t c1 = std::min(C, c0 + kFp4SliceCols);
    for (int g = 0; g < G; ++g)
      for (int64_t c = c0; c < c1; c += 32) {
        const __m512 a = _mm512_loadu_ps(x + g * ldx + c), b = _mm512_loadu_ps(x + g * ldx + c + 16);
        _mm512_store_ps(&xs[g][c - c0], _mm512_permutex2var_ps(a, even, b));
        _mm512_store_ps(&xs[g][c - c0 + 16], _mm512_permutex2var_ps(a, odd, b));
      }
    for (int64_t r = 0; r < nr; r += NR) {
      const uint8_t* rows[NR];
      for (int k = 0; k < NR; ++k) {
        const int64_t rr = r0 + j0 + std::min(r + k, nr - 1);  // a short last pass repeats its last row
        rows[k] = w.data + rr * rb;
        const uint8_t* sc = w.scale + rr * w.scale_cols;
        _mm512_store_ps(scales[k], e8m0x16(sc + c0 / 32, (c1 - c0) / 32));
        // The weights come from memory in an order the hardware prefetcher does not follow (one
        // slice of each row of the tile, then the next slice): ask for this row's next slice now.
        for (int64_t p = c1 / 2; p < std::min(C, c1 + kFp4SliceCols) / 2; p += 64) _mm_prefetch(reinterpret_cast<const char*>(rows[k] + p), _MM_HINT_T0);
      }
      float(*pr)[G][16] = part + r;
      __m512 acc[NR * G];
      for (int k = 0; k < NR; ++k)
        for (int g = 0; g < G; ++g) acc[k * G + g] = _mm512_setzero_ps();
      const int64_t nblk = (c1 - c0) / 32;
      const uint8_t* codes[NR];
      for (int k = 0; k < NR; ++k) codes[k] = rows[k] + c0 / 2;
      for (int64_t q = 0; q < nblk; ++q) {
        __m512 ev[NR], od[NR];
        for (int k = 0; k < NR; ++k) {
          const __m512 t = _mm512_mul_ps(lut, _mm512_set1_ps(scales[k][q]));
          const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes[k] + 16 * q)));
          ev[k] = _mm512_permutexvar_ps(b, t);
          od[k] = _mm512_permutexvar_ps(_mm512_srli_epi32(b, 4), t);
        }
        const float* xi = &xs[0][32 * q];
        // Unrolled early, or GCC 12 keeps a copy of the accumulators in memory, stored every block.
#pragma GCC unroll 16
        for (int g = 0; g < G; ++g) {
          const __m512 xe = _mm512_load_ps(xi + g * kXs), xo = _mm512_load_ps(xi + g * kXs + 16);
          for (int k = 0; k < NR; ++k) acc[k * G + g] = _mm512_fmadd_ps(od[k], xo, _mm512_fmadd_ps(ev[k], xe, acc[k * G + g]));
        }
      }
      for (int k = 0; k < NR; ++k)
        for (int g = 0; g < G; ++g) _mm512_store_ps(pr[k][g], _mm512_add_ps(_mm512_load_ps(pr[k][g]), acc[k * G + g]));
    }
  }
  for (int64_t r = 0; r < nr; ++r)
    for (int g = 0; g < G; ++g) y[g * ldy + j0 + r] = hsum(_mm512_load_ps(part[r][g]));
}

void fp4_float_rows(const MatW& w, int64_t r0, int64_t jb, int64_t je, const float* x, int64_t ldx, int64_t S, float* y, int64_t ldy,
                    float* scratch) {
  // Groups of up to kFp4Group rows, of nearly equal size (20 rows: 10 + 10, not 12 + 8): every
  // group decodes the weights again.
  const int64_t groups = (S + kFp4Group - 1) / kFp4Group;
  for (int64_t j = jb; j < je; j += kFp4TileRows) {
    const int64_t nr = std::min(kFp4TileRows, je - j);
    for (int64_t r = j + nr; r < std::min(je, j + nr + kFp4TileRows); ++r)  // the next tile's first slice
      for (int64_t p = 0; p < std::min(w.cols, kFp4SliceCols) / 2; p += 64)
        _mm_prefetch(reinterpret_cast<const char*>(w.data + (r0 + r) * (w.cols / 2) + p), _MM_HINT_T0);
    for (int64_t k = 0, s0 = 0; k < groups; ++k) {
      const int64_t s1 = S * (k + 1) / groups;
      const float* xs = x + s0 * ldx;
      float* ys = y + s0 * ldy;
      switch (s1 - s0) {
        case 1: fp4_float_tile<1, kFp4WeightRows>(w, r0, j, nr, xs, ldx, ys, ldy, scratch); break;
        case 2: fp4_float_tile<2, kFp4WeightRows>(w, r0, j, nr, xs, ldx, ys, ldy, scratch); break;
        case 3: fp4_float_tile<3, kFp4WeightRows>(w, r0, j, nr, xs, ldx, ys, ldy, scratch); break;
        case 4: fp4_float_tile<4, kFp4WeightRows>(w, r0, j, nr, xs, ldx, ys, ldy, scratch); break;
        case 5: fp4_float_tile<5, kFp4WeightRows>(w, r0, j, nr, xs, ldx, ys, ldy, scratch); break;
        case 6: fp4_float_tile<6, kFp4WeightRows>(w, r0, j, nr, xs, ldx, ys, ldy, scratch); break;
        case 7: fp4_float_tile<7, kFp4WeightRows>(w, r0, j, nr, xs, ldx, ys, ldy, scratch); break;
        case 8: fp4_float_tile<8, kFp4WeightRows>(w, r0, j, nr, xs, ldx, ys, ldy, scratch); break;
        case 9: fp4_float_tile<9, kFp4WeightRows>(w, r0, j, nr, xs, ldx, ys, ldy, scratch); break;
        case 10: fp4_float_tile<10, kFp4WeightRows>(w, r0, j, nr, xs, ldx, ys, ldy, scratch); break;
        case 11: fp4_float_tile<11, kFp4WeightRows>(w, r0, j, nr, xs, ldx, ys, ldy, scratch); break;
        default: fp4_float_tile<12, kFp4WeightRows>(w, r0, j, nr, xs, ldx, ys, ldy, scratch); break;
      }
      s0 = s1;
    }
  }
}

template <int S>
void dispatch(const MatW& w, int64_t r0, int64_t jb, int64_t je, const float* x, int64_t ldx, float* y, int64_t ldy, const float* xp) {
  if constexpr (S == 1) {
    switch (w.fmt) {
      case WFormat::F32: rows_plain_streams<WFormat::F32, 4>(w, r0, jb, je, x, y); return;
      case WFormat::BF16: rows_plain_streams<WFormat::BF16, 4>(w, r0, jb, je, x, y); return;
      case WFormat::F16: rows_plain_streams<WFormat::F16, 4>(w, r0, jb, je, x, y); return;
      default: break;
    }
  }
  constexpr int NR = S <= 4 ? 4 : 2;  // NR·S accumulators: at most 16, leaving registers for w and x
  switch (w.fmt) {
    case WFormat::F32: rows_plain_tile<S, NR, WFormat::F32>(w, r0, jb, je, x, ldx, y, ldy); return;
    case WFormat::BF16: rows_plain_tile<S, NR, WFormat::BF16>(w, r0, jb, je, x, ldx, y, ldy); return;
    case WFormat::F16: rows_plain_tile<S, NR, WFormat::F16>(w, r0, jb, je, x, ldx, y, ldy); return;
    case WFormat::FP8:
      if (fp8_fast(w) && S == 1) rows_fp8_fast_multi<4>(w, r0, jb, je, xp, y);
      else if (fp8_fast(w)) rows_fp8_fast<S>(w, r0, jb, je, xp, y, ldy);  // xp: the tile-scaled copy
      else rows_fp8<S>(w, r0, jb, je, x, ldx, y, ldy);
      return;
    case WFormat::FP4:
#ifdef DSV4_FP4_INT
      if (fp4_fast(w)) {
        rows_fp4_fast<S>(w, r0, jb, je, xp, y, ldy);
        return;
      }
#endif
      rows_fp4<S>(w, r0, jb, je, xp, y, ldy);
      return;
  }
}

}  // namespace

bool gemv_available() { return true; }
// Up to how many activation rows the fused kernel beats decode + GEMM (2 threads, 2048x4096 in
// cache: FP4 fused 180-190 GFLOP/s at 8-32 rows against 88-176 for decode + GEMM; FP8 fused 133 vs
// 85 at 12 rows, 120 vs 124 at 24, 121 vs 142 at 32).
int64_t gemv_max_batch(const MatW& w) { return w.fmt == WFormat::FP8 ? 24 : kGemvMaxBatch; }
size_t gemv_scratch_floats(const MatW& w, int64_t S) {
  // FP4: whatever S, so that the first decode step sizes it for all later ones (an expert's rows
  // change with the routing; the float kernel's tables must not be allocated mid-decode).
  if (w.fmt == WFormat::FP4) return kFp4ScratchFloats;
  return w.fmt == WFormat::FP8 ? static_cast<size_t>(S * w.cols) : 1;
}
size_t gemv_prepared_floats(const MatW& w, int64_t S) {
  if (w.fmt == WFormat::FP4 && S >= kFp4FloatRows) return 0;  // the float kernel reads x as it is
  return gemv_needs_prepared_x(w) ? static_cast<size_t>(S * w.cols) : 0;
}
bool gemv_needs_prepared_x(const MatW& w) { return w.fmt == WFormat::FP4 || w.fmt == WFormat::FP8; }
const char* gemv_tier() {
#if defined(DSV4_FP4_INT)
  return "avx512+vnni+vbmi";
#else
  return "avx512";
#endif
}

bool decode_rows_fast(const MatW& w, int64_t r, int64_t count, float* out) {
  const int64_t C = w.cols;
  for (int64_t k = 0; k < count; ++k) {
    const int64_t row_i = r + k;
    float* o = out + k * C;
    switch (w.fmt) {
      case WFormat::F32:
        std::memcpy(o, w.data + static_cast<size_t>(row_i * C) * 4, static_cast<size_t>(C) * 4);
        break;
      case WFormat::BF16:
      case WFormat::F16: {
        const uint8_t* row = w.data + static_cast<size_t>(row_i * C) * 2;
        for (int64_t i = 0; i < C; i += 16) {
          const __mmask16 m = tail_mask(C - i);
          _mm512_mask_storeu_ps(o + i, m, w.fmt == WFormat::BF16 ? bf16x16(row + 2 * i, m) : f16x16(row + 2 * i, m));
        }
        break;
      }
      case WFormat::FP8: {
        const uint8_t* row = w.data + row_i * C;
        const uint8_t* sc = w.scale + (row_i / 128) * w.scale_cols;
        for (int64_t i = 0; i < C; i += 16) {
          const __mmask16 m = tail_mask(C - i);
          const __m512 scale = _mm512_set1_ps(quant::e8m0_to_f32(sc[i / 128]) * 256.0f);
          _mm512_mask_storeu_ps(o + i, m, _mm512_mul_ps(e4m3x16(_mm_maskz_loadu_epi8(m, row + i)), scale));
        }
        break;
      }
      case WFormat::FP4: {
        const uint8_t* row = w.data + row_i * (C / 2);
        const uint8_t* sc = w.scale + row_i * w.scale_cols;
        const __m512 lut = _mm512_loadu_ps(quant::kE2M1.data());
        const __m512i nib = _mm512_set1_epi32(15);
        // element 2k is the low nibble of byte k: interleave low / high results back into order
        const __m512i even_idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        const __m512i odd_idx = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
        for (int64_t b = 0; b < C / 32; ++b) {
          const __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 16 * b)));
          const __m512 scale = _mm512_set1_ps(quant::e8m0_to_f32(sc[b]));
          const __m512 lo = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_and_si512(bytes, nib), lut), scale);
          const __m512 hi = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(bytes, 4), lut), scale);
          _mm512_storeu_ps(o + 32 * b, _mm512_permutex2var_ps(lo, even_idx, hi));
          _mm512_storeu_ps(o + 32 * b + 16, _mm512_permutex2var_ps(lo, odd_idx, hi));
        }
        break;
      }
    }
  }
  return true;
}

void gemv_prepare_x(const MatW& w, const float* x, int64_t ldx, int64_t S, float* xp) {
  const int64_t C = w.cols;
  if (w.fmt == WFormat::FP8 && fp8_fast(w)) {
    for (int64_t s = 0; s < S; ++s)
      for (int64_t g = 0; g < C; g += 64)
        for (int u = 0; u < 4; ++u)
          for (int i = 0; i < 16; ++i) xp[s * C + g + 16 * u + i] = x[s * ldx + g + fp8_element(u, i)];
    return;
  }
  if (w.fmt == WFormat::FP4 && S >= kFp4FloatRows) return;
#ifdef DSV4_FP4_INT
  if (w.fmt == WFormat::FP4 && fp4_fast(w)) {
    for (int64_t s = 0; s < S; ++s) fp4_quantize_x(x + s * ldx, C, reinterpret_cast<uint8_t*>(xp + s * C));
    return;
  }
#endif
  if (w.fmt != WFormat::FP4) return;
  for (int64_t s = 0; s < S; ++s)
    for (int64_t b = 0; b < C; b += 32)
      for (int64_t k = 0; k < 16; ++k) {
        xp[s * C + b + k] = x[s * ldx + b + 2 * k];
        xp[s * C + b + 16 + k] = x[s * ldx + b + 2 * k + 1];
      }
}

void gemv_rows(const MatW& w, int64_t r0, int64_t jb, int64_t je, const float* x, int64_t ldx, int64_t S, float* y,
               int64_t ldy, const float* xp, float* scratch) {
  if (w.fmt == WFormat::FP4 && S >= kFp4FloatRows) {
    fp4_float_rows(w, r0, jb, je, x, ldx, S, y, ldy, scratch);
    return;
  }
  // Rows in blocks that stay in L2 while every group of up to 8 activation rows passes over them.
  constexpr int64_t kRowBlock = 32;
  const bool tiled = w.fmt == WFormat::FP8 && fp8_fast(w);
  // Activation rows per pass over a block of W rows: the integer FP4 kernel runs four at most
  // (measured, one thread, weights in L2: 110 GFLOP/s for four rows, 53 for eight in one pass).
  const bool plain = w.fmt == WFormat::F32 || w.fmt == WFormat::BF16 || w.fmt == WFormat::F16;
  const int64_t group = (w.fmt == WFormat::FP4 && fp4_fast(w)) || plain ? 4 : 8;
  int64_t tile = -1;
  const float* xin = xp;
  for (int64_t b = jb, e = jb; b < je; b = e) {
    // One activation row reuses nothing across blocks: give the kernel the whole range, so that it
    // can read several streams far apart.
    e = S == 1 && !tiled ? je : std::min(je, b + kRowBlock);
    if (tiled) {  // stay inside one 128-row scale tile; scale x for it once
      e = std::min(e, ((r0 + b) / 128 + 1) * 128 - r0);
      if ((r0 + b) / 128 != tile) {
        tile = (r0 + b) / 128;
        fp8_scale_x(w, tile, xp, S, scratch);
      }
      xin = scratch;
    }
    for (int64_t s0 = 0; s0 < S; s0 += group) {
      const float* xs = x + s0 * ldx;
      const float* xps = xin + s0 * w.cols;
      float* ys = y + s0 * ldy;
      switch (std::min<int64_t>(group, S - s0)) {
        case 1: dispatch<1>(w, r0, b, e, xs, ldx, ys, ldy, xps); break;
        case 2: dispatch<2>(w, r0, b, e, xs, ldx, ys, ldy, xps); break;
        case 3: dispatch<3>(w, r0, b, e, xs, ldx, ys, ldy, xps); break;
        case 4: dispatch<4>(w, r0, b, e, xs, ldx, ys, ldy, xps); break;
        case 5: dispatch<5>(w, r0, b, e, xs, ldx, ys, ldy, xps); break;
        case 6: dispatch<6>(w, r0, b, e, xs, ldx, ys, ldy, xps); break;
        case 7: dispatch<7>(w, r0, b, e, xs, ldx, ys, ldy, xps); break;
        default: dispatch<8>(w, r0, b, e, xs, ldx, ys, ldy, xps); break;
      }
    }
  }
}

#else
#error "gemv_avx512.cpp is the avx512 tiers' kernel file: compile it with AVX-512 F/BW/VL and F16C"
#endif

}  // namespace dsv4::DSV4_CPU_NS
