// The indexer's integer dot products for int8 keys (EntryFormat::I8): q_h · k for every head h
// and key k of a chunk, as exact int32 sums of int16 query values times int8 key values, then one
// float scaling. Included by indexer.cpp only (compiled once per CPU tier).
//
// Every tier computes the same int32 sums (they are exact) and scales them with the same two
// float multiplications, so every tier gives the same bits, as the f32 path does. The query of a
// row is rounded once to int16 per head (scale = max|q_h| / 32767: 2^-15 of the head's largest
// value, far below the keys' 8 bits).
//
// Kernels, lanes = heads (no horizontal sums): the query transposed to [ihd/2][heads][2] int16,
// each key's pair of values broadcast against it:
//   AVX-512 VNNI  vpdpwssd   (16 heads, 32 multiply-adds per instruction)
//   AVX-512       vpmaddwd + vpaddd
//   AVX2          vpmaddwd + vpaddd (8 heads)
//   otherwise     the naive loop below (also the reference for the others).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace dsv4::DSV4_CPU_NS {
namespace {

// One row's query as int16: qt[(i · hp + h) · 2 + j] = Q[h][2i + j]; heads padded to hp (a
// multiple of 16) with zeros; scale[h] = max|q_h| / 32767.
struct QInt16 {
  const int16_t* qt = nullptr;
  const float* scale = nullptr;
  int64_t nI = 0, ihd = 0, hp = 0;
};

inline int64_t qint16_heads(int64_t nI) { return (nI + 15) / 16 * 16; }
// Floats of scratch prepare_qint16 uses (64-byte multiple).
inline size_t qint16_floats(int64_t nI, int64_t ihd) {
  const size_t hp = static_cast<size_t>(qint16_heads(nI));
  return (hp + hp * static_cast<size_t>(ihd + 1) / 2 + 15) / 16 * 16;
}

inline QInt16 prepare_qint16(const float* q, int64_t nI, int64_t ihd, float* buf) {
  QInt16 r;
  r.nI = nI;
  r.ihd = ihd;
  r.hp = qint16_heads(nI);
  float* scale = buf;
  auto* qt = reinterpret_cast<int16_t*>(buf + r.hp);
  const int64_t pairs = (ihd + 1) / 2;
  std::memset(qt, 0, static_cast<size_t>(pairs * r.hp * 2) * sizeof(int16_t));
  for (int64_t h = 0; h < r.hp; ++h) {
    if (h >= nI) {
      scale[h] = 0;
      continue;
    }
    const float* qh = q + h * ihd;
    float amax = 0;
    for (int64_t d = 0; d < ihd; ++d) amax = std::max(amax, std::fabs(qh[d]));
    scale[h] = amax / 32767.0f;
    const float inv = amax > 0 ? 32767.0f / amax : 0.0f;
    for (int64_t d = 0; d < ihd; ++d) {
      const float v = std::nearbyint(qh[d] * inv);
      qt[((d / 2) * r.hp + h) * 2 + d % 2] = static_cast<int16_t>(v >= -32767.0f && v <= 32767.0f ? v : 0.0f);
    }
  }
  r.scale = scale;
  r.qt = qt;
  return r;
}

// The reference: dots[w · nI + h] = float(Σ_d Q[h][d] · k_w[d]) · (scale[h] · kscale_w) for the n
// keys at src (stride bytes apart, each ihd int8 then an f32 scale).
inline void int8_dots_naive(const QInt16& q, const unsigned char* src, int64_t stride, int64_t n, float* dots) {
  for (int64_t w = 0; w < n; ++w) {
    const auto* k = reinterpret_cast<const int8_t*>(src + w * stride);
    float ks;
    std::memcpy(&ks, src + w * stride + q.ihd, 4);
    for (int64_t h = 0; h < q.nI; ++h) {
      int64_t acc = 0;  // exact; the vector kernels' int32 sums are exact too for ihd <= 512
      for (int64_t d = 0; d < q.ihd; ++d) acc += static_cast<int32_t>(q.qt[((d / 2) * q.hp + h) * 2 + d % 2]) * k[d];
      dots[w * q.nI + h] = static_cast<float>(acc) * (q.scale[h] * ks);
    }
  }
}

#if defined(__AVX512F__) && defined(__AVX512BW__)
// KB keys at a time (G · KB independent accumulators: the multiply-add latency is hidden and each
// query vector loaded serves KB keys).
template <int G, int KB>
void int8_dots_avx512_block(const QInt16& q, const unsigned char* src, int64_t stride, float* dots) {
  alignas(64) int16_t k16[KB][512];
  const int64_t pairs = q.ihd / 2;
  for (int b = 0; b < KB; ++b)
    for (int64_t d = 0; d < q.ihd; d += 32)
      _mm512_store_si512(k16[b] + d, _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + b * stride + d))));
  __m512i acc[KB][G];
  for (int b = 0; b < KB; ++b)
    for (int g = 0; g < G; ++g) acc[b][g] = _mm512_setzero_si512();
  const int16_t* qt = q.qt;
  for (int64_t i = 0; i < pairs; ++i, qt += q.hp * 2) {
    __m512i qv[G];
    for (int g = 0; g < G; ++g) qv[g] = _mm512_loadu_si512(qt + 32 * g);
    for (int b = 0; b < KB; ++b) {
      int32_t pair;
      std::memcpy(&pair, k16[b] + 2 * i, 4);
      const __m512i kb = _mm512_set1_epi32(pair);
      for (int g = 0; g < G; ++g) {
#if defined(__AVX512VNNI__)
        acc[b][g] = _mm512_dpwssd_epi32(acc[b][g], qv[g], kb);
#else
        acc[b][g] = _mm512_add_epi32(acc[b][g], _mm512_madd_epi16(qv[g], kb));
#endif
      }
    }
  }
  for (int b = 0; b < KB; ++b) {
    float ks;
    std::memcpy(&ks, src + b * stride + q.ihd, 4);
    const __m512 ksv = _mm512_set1_ps(ks);
    for (int g = 0; g < G; ++g) {
      const int64_t h0 = 16 * g;
      if (h0 >= q.nI) break;
      const __m512 f = _mm512_mul_ps(_mm512_maskz_cvtepi32_ps(__mmask16(0xffff), acc[b][g]), _mm512_mul_ps(_mm512_loadu_ps(q.scale + h0), ksv));
      const __mmask16 m = q.nI - h0 >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << (q.nI - h0)) - 1);
      _mm512_mask_storeu_ps(dots + b * q.nI + h0, m, f);
    }
  }
}

#if defined(__AVX512VNNI__)
#define DSV4_DOT16(acc, qv, kb) acc = _mm512_dpwssd_epi32(acc, qv, kb)
#else
#define DSV4_DOT16(acc, qv, kb) acc = _mm512_add_epi32(acc, _mm512_madd_epi16(qv, kb))
#endif

// 64 heads (V4's indexer) x 4 keys with sixteen named accumulators: the compiler keeps named
// vectors in registers where it copies the elements of an accumulator array every iteration.
void int8_dots_avx512_64x4(const QInt16& q, const unsigned char* src, int64_t stride, float* dots) {
  alignas(64) int16_t k16[4][512];
  const int64_t pairs = q.ihd / 2;
  for (int b = 0; b < 4; ++b)
    for (int64_t d = 0; d < q.ihd; d += 32)
      _mm512_store_si512(k16[b] + d, _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + b * stride + d))));
  const __m512i z = _mm512_setzero_si512();
  __m512i a00 = z, a01 = z, a02 = z, a03 = z, a10 = z, a11 = z, a12 = z, a13 = z;
  __m512i a20 = z, a21 = z, a22 = z, a23 = z, a30 = z, a31 = z, a32 = z, a33 = z;
  const int16_t* qt = q.qt;
  for (int64_t i = 0; i < pairs; ++i, qt += q.hp * 2) {
    const __m512i q0 = _mm512_loadu_si512(qt), q1 = _mm512_loadu_si512(qt + 32), q2 = _mm512_loadu_si512(qt + 64),
                  q3 = _mm512_loadu_si512(qt + 96);
#define DSV4_KEY(b)                                                    \
  {                                                                    \
    int32_t pair;                                                      \
    std::memcpy(&pair, k16[b] + 2 * i, 4);                             \
    const __m512i kb = _mm512_set1_epi32(pair);                        \
    DSV4_DOT16(a##b##0, q0, kb);                                       \
    DSV4_DOT16(a##b##1, q1, kb);                                       \
    DSV4_DOT16(a##b##2, q2, kb);                                       \
    DSV4_DOT16(a##b##3, q3, kb);                                       \
  }
    DSV4_KEY(0)
    DSV4_KEY(1)
    DSV4_KEY(2)
    DSV4_KEY(3)
#undef DSV4_KEY
  }
  auto store = [&](int b, __m512i x0, __m512i x1, __m512i x2, __m512i x3) {
    float ks;
    std::memcpy(&ks, src + b * stride + q.ihd, 4);
    const __m512 ksv = _mm512_set1_ps(ks);
    const __m512i x[4] = {x0, x1, x2, x3};
    for (int g = 0; g < 4; ++g) {
      const int64_t h0 = 16 * g;
      const __m512 f = _mm512_mul_ps(_mm512_maskz_cvtepi32_ps(__mmask16(0xffff), x[g]), _mm512_mul_ps(_mm512_loadu_ps(q.scale + h0), ksv));
      const __mmask16 m = q.nI - h0 >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << (q.nI - h0)) - 1);
      _mm512_mask_storeu_ps(dots + b * q.nI + h0, m, f);
    }
  };
  store(0, a00, a01, a02, a03);
  store(1, a10, a11, a12, a13);
  store(2, a20, a21, a22, a23);
  store(3, a30, a31, a32, a33);
}
#undef DSV4_DOT16

template <int G>  // 16-head groups
void int8_dots_avx512(const QInt16& q, const unsigned char* src, int64_t stride, int64_t n, float* dots) {
  constexpr int KB = G == 1 ? 8 : G == 2 ? 6 : 4;
  int64_t w = 0;
  if constexpr (G == 4)
    for (; w + 4 <= n; w += 4) int8_dots_avx512_64x4(q, src + w * stride, stride, dots + w * q.nI);
  for (; w + KB <= n; w += KB) int8_dots_avx512_block<G, KB>(q, src + w * stride, stride, dots + w * q.nI);
  for (; w < n; ++w) int8_dots_avx512_block<G, 1>(q, src + w * stride, stride, dots + w * q.nI);
}
#elif defined(__AVX2__)
template <int G>  // 8-head groups
void int8_dots_avx2(const QInt16& q, const unsigned char* src, int64_t stride, int64_t n, float* dots) {
  alignas(32) int16_t k16[512];
  alignas(32) float tmp[8];
  const int64_t pairs = q.ihd / 2;
  for (int64_t w = 0; w < n; ++w) {
    const unsigned char* row = src + w * stride;
    for (int64_t d = 0; d < q.ihd; d += 16)
      _mm256_store_si256(reinterpret_cast<__m256i*>(k16 + d), _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + d))));
    __m256i acc[G];
    for (int g = 0; g < G; ++g) acc[g] = _mm256_setzero_si256();
    const int16_t* qt = q.qt;
    for (int64_t i = 0; i < pairs; ++i, qt += q.hp * 2) {
      int32_t pair;
      std::memcpy(&pair, k16 + 2 * i, 4);
      const __m256i kb = _mm256_set1_epi32(pair);
      for (int g = 0; g < G; ++g)
        acc[g] = _mm256_add_epi32(acc[g], _mm256_madd_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(qt + 16 * g)), kb));
    }
    float ks;
    std::memcpy(&ks, row + q.ihd, 4);
    const __m256 ksv = _mm256_set1_ps(ks);
    for (int g = 0; g < G; ++g) {
      const int64_t h0 = 8 * g;
      if (h0 >= q.nI) break;
      const __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(acc[g]), _mm256_mul_ps(_mm256_loadu_ps(q.scale + h0), ksv));
      if (q.nI - h0 >= 8) {
        _mm256_storeu_ps(dots + w * q.nI + h0, f);
      } else {
        _mm256_store_ps(tmp, f);
        std::copy(tmp, tmp + (q.nI - h0), dots + w * q.nI + h0);
      }
    }
  }
}
#endif

#if (defined(__AVX512F__) && defined(__AVX512BW__)) || defined(__AVX2__)
// The tier's kernel for G16 groups of 16 heads.
template <int G16>
void int8_dots_tier(const QInt16& q, const unsigned char* src, int64_t stride, int64_t n, float* dots) {
#if defined(__AVX512F__) && defined(__AVX512BW__)
  int8_dots_avx512<G16>(q, src, stride, n, dots);
#else
  int8_dots_avx2<2 * G16>(q, src, stride, n, dots);
#endif
}
#endif

// The tier's kernel where the shape suits it (ihd a multiple of 32, up to 512; up to 64 heads),
// else the naive loop: both give the same bits.
inline void int8_dots(const QInt16& q, const unsigned char* src, int64_t stride, int64_t n, float* dots) {
#if (defined(__AVX512F__) && defined(__AVX512BW__)) || defined(__AVX2__)
  if (q.ihd % 32 == 0 && q.ihd <= 512) {
    switch (q.hp / 16) {
      case 1: return int8_dots_tier<1>(q, src, stride, n, dots);
      case 2: return int8_dots_tier<2>(q, src, stride, n, dots);
      case 3: return int8_dots_tier<3>(q, src, stride, n, dots);
      case 4: return int8_dots_tier<4>(q, src, stride, n, dots);
      default: break;
    }
  }
#endif
  int8_dots_naive(q, src, stride, n, dots);
}

}  // namespace
}  // namespace dsv4::DSV4_CPU_NS
