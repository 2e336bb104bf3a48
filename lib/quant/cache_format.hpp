// Codecs of the cache entry formats (backend/step.hpp EntryFormat): one f32 row <-> its stored
// bytes. Encoding runs once per entry (when a compressor window completes); decoding runs in
// the attention gather and the indexer scan, so it is inline and compiled by each CPU tier.
// Functions have internal linkage: every tier's translation unit keeps its own copy.
//
// Layouts (little-endian, `n` = width - rope):
//   F32   width f32                                   4·width bytes
//   BF16  width bf16 (round to nearest even)          2·width bytes, padded to 4
//   FP8   n e4m3fn, ceil(n/64) UE8M0 scales, pad to 2, rope bf16; padded to 4
//         (width 512, rope 64: 448 + 7 + 1 + 128 = 584 bytes, DeepSeek's layout)
//   I8    width int8, then one f32 scale (value = q · scale, |q| <= 127); padded to 4
//         (width 128: 132 bytes)
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "backend/step.hpp"
#include "quant/formats.hpp"

namespace dsv4::quant {

static inline int64_t fp8_groups(int64_t n) { return (n + 63) / 64; }
static inline size_t fp8_rope_offset(int64_t width, int64_t rope) {
  const int64_t n = width - rope;
  return static_cast<size_t>((n + fp8_groups(n) + 1) / 2 * 2);
}

// Bytes one entry of `width` values (the last `rope` of them rotary) takes in `fmt`.
static inline size_t entry_stride(EntryFormat fmt, int64_t width, int64_t rope) {
  auto up4 = [](size_t b) { return (b + 3) / 4 * 4; };
  switch (fmt) {
    case EntryFormat::F32: return static_cast<size_t>(width) * 4;
    case EntryFormat::BF16: return up4(static_cast<size_t>(width) * 2);
    case EntryFormat::FP8: return up4(fp8_rope_offset(width, rope) + static_cast<size_t>(rope) * 2);
    case EntryFormat::I8: return up4(static_cast<size_t>(width) + 4);
  }
  return 0;
}

static inline uint16_t f32_to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// e4m3fn (no infinities; 0x7f is NaN), round to nearest even, saturating at ±448.
static inline uint8_t f32_to_e4m3(float x) {
  const uint8_t sign = std::signbit(x) ? 0x80 : 0;
  const float a = std::fabs(x);
  if (std::isnan(a)) return sign | 0x7f;
  if (a >= 448.0f) return sign | 0x7e;
  if (a < 0.015625f) return sign | static_cast<uint8_t>(std::nearbyint(a * 512.0f));  // subnormals (8 -> 2^-6)
  int e = 0;
  const float f = std::frexp(a, &e);  // a = f · 2^e, f in [0.5, 1)
  int exp = e - 1;
  int m = static_cast<int>(std::nearbyint((f * 2.0f - 1.0f) * 8.0f));
  if (m == 8) {
    m = 0;
    ++exp;
  }
  const int code = ((exp + 7) << 3) | m;
  return sign | static_cast<uint8_t>(std::min(code, 0x7e));
}

static inline void encode_entry(EntryFormat fmt, const float* x, int64_t width, int64_t rope, unsigned char* dst) {
  switch (fmt) {
    case EntryFormat::F32: std::memcpy(dst, x, static_cast<size_t>(width) * 4); return;
    case EntryFormat::BF16:
      for (int64_t i = 0; i < width; ++i) {
        const uint16_t b = f32_to_bf16(x[i]);
        std::memcpy(dst + 2 * i, &b, 2);
      }
      return;
    case EntryFormat::FP8: {
      const int64_t n = width - rope, groups = fp8_groups(n);
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t i0 = g * 64, i1 = std::min(n, i0 + 64);
        float amax = 0;
        for (int64_t i = i0; i < i1; ++i) amax = std::max(amax, std::fabs(x[i]));
        // The smallest power of two s with amax / s <= 448 (UE8M0 holds 2^-127 … 2^127).
        int e = amax > 0 ? static_cast<int>(std::ceil(std::log2(amax / 448.0f))) : -127;
        e = std::clamp(e, -127, 127);
        if (amax > 0 && std::ldexp(448.0f, e) < amax) ++e;  // log2 rounding
        dst[n + g] = static_cast<uint8_t>(e + 127);
        const float inv = std::ldexp(1.0f, -e);
        for (int64_t i = i0; i < i1; ++i) dst[i] = f32_to_e4m3(x[i] * inv);
      }
      unsigned char* r = dst + fp8_rope_offset(width, rope);
      for (int64_t i = 0; i < rope; ++i) {
        const uint16_t b = f32_to_bf16(x[n + i]);
        std::memcpy(r + 2 * i, &b, 2);
      }
      return;
    }
    case EntryFormat::I8: {
      float amax = 0;
      for (int64_t i = 0; i < width; ++i) amax = std::max(amax, std::fabs(x[i]));
      const float scale = amax / 127.0f, inv = amax > 0 ? 127.0f / amax : 0.0f;
      for (int64_t i = 0; i < width; ++i) {
        const float q = std::nearbyint(x[i] * inv);
        dst[i] = static_cast<unsigned char>(static_cast<int8_t>(q >= -127.0f && q <= 127.0f ? q : 0.0f));  // NaN: 0
      }
      std::memcpy(dst + width, &scale, 4);
      return;
    }
  }
}

static inline void decode_entry(EntryFormat fmt, const unsigned char* src, int64_t width, int64_t rope, float* y) {
  switch (fmt) {
    case EntryFormat::F32: std::memcpy(y, src, static_cast<size_t>(width) * 4); return;
    case EntryFormat::BF16:
      for (int64_t i = 0; i < width; ++i) {
        uint16_t b;
        std::memcpy(&b, src + 2 * i, 2);
        y[i] = bf16_to_f32(b);
      }
      return;
    case EntryFormat::FP8: {
      const int64_t n = width - rope, groups = fp8_groups(n);
      for (int64_t g = 0; g < groups; ++g) {
        const float s = e8m0_to_f32(src[n + g]);
        for (int64_t i = g * 64, i1 = std::min(n, g * 64 + 64); i < i1; ++i) y[i] = e4m3_to_f32(src[i]) * s;
      }
      const unsigned char* r = src + fp8_rope_offset(width, rope);
      for (int64_t i = 0; i < rope; ++i) {
        uint16_t b;
        std::memcpy(&b, r + 2 * i, 2);
        y[n + i] = bf16_to_f32(b);
      }
      return;
    }
    case EntryFormat::I8: {
      float scale;
      std::memcpy(&scale, src + width, 4);
      for (int64_t i = 0; i < width; ++i) y[i] = static_cast<float>(static_cast<int8_t>(src[i])) * scale;
      return;
    }
  }
}

}  // namespace dsv4::quant
