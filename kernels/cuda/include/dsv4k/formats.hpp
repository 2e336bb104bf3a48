// dsv4k: the stored number formats, decoded and encoded exactly on host and device.
//   weights: F32, BF16, F16, FP8 e4m3fn with an E8M0 scale per 128x128 block, FP4 e2m1 (two per
//   byte, low nibble first) with an E8M0 scale per 1x32 block (checkpoint.md);
//   cache entries: the EntryFormat layouts of lib/quant/cache_format.hpp, bit for bit.
// Decoders build the float's bits (no tables, no rounding: every code is a float exactly).
#pragma once
#include "backend/step.hpp"
#include "dsv4k/hd.hpp"

namespace dsv4k {

// ---- scalar codes ----
DSV4_HDI float bf16_f32(uint16_t b) { return bits_f32(static_cast<uint32_t>(b) << 16); }

DSV4_HDI float f16_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0) {
    const float v = static_cast<float>(man) * 5.9604644775390625e-8f;  // man · 2^-24, exact
    return bits_f32(f32_bits(v) | sign);
  }
  if (exp == 31) return bits_f32(sign | 0x7f800000u | (man << 13) | (man != 0 ? 0x400000u : 0u));
  return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

// e4m3fn: no infinities, 0x7f / 0xff are NaN.
DSV4_HDI float e4m3_f32(uint8_t c) {
  const uint32_t sign = static_cast<uint32_t>(c & 0x80u) << 24, exp = (c >> 3) & 15u, man = c & 7u;
  if ((c & 0x7fu) == 0x7fu) return bits_f32(0x7fc00000u | sign);
  if (exp == 0) return bits_f32(f32_bits(static_cast<float>(man) * 0.001953125f) | sign);  // man · 2^-9
  return bits_f32(sign | ((exp + 120) << 23) | (man << 20));
}

// UE8M0: 2^(c - 127); 255 is NaN.
DSV4_HDI float e8m0_f32(uint8_t c) {
  if (c == 255) return bits_f32(0x7fc00000u);
  if (c == 0) return bits_f32(0x00400000u);  // 2^-127, a subnormal float
  return bits_f32(static_cast<uint32_t>(c) << 23);
}

// e2m1 (s e e m): 0, 0.5, 1, 1.5, 2, 3, 4, 6 and negatives.
DSV4_HDI float e2m1_f32(uint8_t c) {
  const uint32_t e = (c >> 1) & 3u, m = c & 1u;
  const float v = e == 0 ? 0.5f * static_cast<float>(m) : static_cast<float>(2 + m) * static_cast<float>(1u << e) * 0.25f;
  return bits_f32(f32_bits(v) | (static_cast<uint32_t>(c & 8u) << 28));
}

DSV4_HDI uint16_t f32_bf16(float x) {  // round to nearest even; NaN stays a quiet NaN
  uint32_t u = f32_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// e4m3fn, round to nearest even, saturating at ±448 (as lib/quant/cache_format.hpp).
DSV4_HDI uint8_t f32_e4m3(float x) {
  const uint8_t sign = (f32_bits(x) >> 31) ? 0x80 : 0;
  const float a = fabsf(x);
  if (a != a) return sign | 0x7f;
  if (a >= 448.0f) return sign | 0x7e;
  if (a < 0.015625f) return sign | static_cast<uint8_t>(rintf(a * 512.0f));
  int e = 0;
  const float f = frexpf(a, &e);
  int exp = e - 1;
  int m = static_cast<int>(rintf((f * 2.0f - 1.0f) * 8.0f));
  if (m == 8) {
    m = 0;
    ++exp;
  }
  const int code = ((exp + 7) << 3) | m;
  return sign | static_cast<uint8_t>(code < 0x7e ? code : 0x7e);
}

// ---- weight matrices ----
enum WFmt : int32_t { kF32 = 0, kBF16 = 1, kF16 = 2, kFP8 = 3, kFP4 = 4 };  // the order of dsv4::WFormat

// W[rows, cols] in its stored format (device memory), used as y = x · Wᵀ.
struct Mat {
  int32_t fmt = kF32;
  int64_t rows = 0, cols = 0;
  const uint8_t* data = nullptr;
  const uint8_t* scale = nullptr;  // FP8: [ceil(rows/128), scale_cols]; FP4: [rows, scale_cols = cols/32]
  int64_t scale_cols = 0;
};

// W[r, c] as float, exactly.
DSV4_HDI float weight_at(const Mat& w, int64_t r, int64_t c) {
  switch (w.fmt) {
    case kF32: return load<float>(w.data + (r * w.cols + c) * 4);
    case kBF16: return bf16_f32(load<uint16_t>(w.data + (r * w.cols + c) * 2));
    case kF16: return f16_f32(load<uint16_t>(w.data + (r * w.cols + c) * 2));
    case kFP8: return e4m3_f32(w.data[r * w.cols + c]) * e8m0_f32(w.scale[(r / 128) * w.scale_cols + c / 128]);
    default: {
      const uint8_t b = w.data[r * (w.cols / 2) + c / 2];
      return e2m1_f32(c & 1 ? static_cast<uint8_t>(b >> 4) : static_cast<uint8_t>(b & 15)) * e8m0_f32(w.scale[r * w.scale_cols + c / 32]);
    }
  }
}

// ---- cache entries (EntryFormat) ----
DSV4_HDI int64_t fp8_groups(int64_t n) { return (n + 63) / 64; }
DSV4_HDI int64_t fp8_rope_offset(int64_t width, int64_t rope) {
  const int64_t n = width - rope;
  return (n + fp8_groups(n) + 1) / 2 * 2;
}

// The UE8M0 exponent of a group with largest magnitude amax: the smallest e with amax / 2^e <= 448.
DSV4_HDI int fp8_group_exponent(float amax) {
  if (!(amax > 0)) return -127;
  int k = 0;
  const float f = frexpf(amax / 448.0f, &k);  // the quotient as the reference rounds it, f in [0.5, 1)
  int e = f == 0.5f ? k - 1 : k;
  e = e < -127 ? -127 : (e > 127 ? 127 : e);
  if (ldexpf(448.0f, e) < amax) ++e;
  return e;
}

// Value d of the entry at src.
DSV4_HDI float entry_value(dsv4::EntryFormat fmt, const unsigned char* src, int64_t width, int64_t rope, int64_t d) {
  switch (fmt) {
    case dsv4::EntryFormat::F32: return load<float>(src + 4 * d);
    case dsv4::EntryFormat::BF16: return bf16_f32(load<uint16_t>(src + 2 * d));
    case dsv4::EntryFormat::FP8: {
      const int64_t n = width - rope;
      if (d < n) return e4m3_f32(src[d]) * e8m0_f32(src[n + d / 64]);
      return bf16_f32(load<uint16_t>(src + fp8_rope_offset(width, rope) + 2 * (d - n)));
    }
    default: return static_cast<float>(static_cast<int8_t>(src[d])) * load<float>(src + width);
  }
}

// Stores the width values x as one entry at dst (the layout of quant::encode_entry, bit for bit).
DSV4_HDI void encode_entry(dsv4::EntryFormat fmt, const float* x, int64_t width, int64_t rope, unsigned char* dst) {
  switch (fmt) {
    case dsv4::EntryFormat::F32:
      for (int64_t i = 0; i < width; ++i) store<float>(dst + 4 * i, x[i]);
      return;
    case dsv4::EntryFormat::BF16:
      for (int64_t i = 0; i < width; ++i) store<uint16_t>(dst + 2 * i, f32_bf16(x[i]));
      return;
    case dsv4::EntryFormat::FP8: {
      const int64_t n = width - rope, groups = fp8_groups(n);
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t i0 = g * 64, i1 = min_<int64_t>(n, i0 + 64);
        float amax = 0;
        for (int64_t i = i0; i < i1; ++i) amax = max_(amax, fabsf(x[i]));
        const int e = fp8_group_exponent(amax);
        dst[n + g] = static_cast<uint8_t>(e + 127);
        const float inv = ldexpf(1.0f, -e);
        for (int64_t i = i0; i < i1; ++i) dst[i] = f32_e4m3(x[i] * inv);
      }
      unsigned char* r = dst + fp8_rope_offset(width, rope);
      for (int64_t i = 0; i < rope; ++i) store<uint16_t>(r + 2 * i, f32_bf16(x[n + i]));
      return;
    }
    default: {
      float amax = 0;
      for (int64_t i = 0; i < width; ++i) amax = max_(amax, fabsf(x[i]));
      const float scale = amax / 127.0f, inv = amax > 0 ? 127.0f / amax : 0.0f;
      for (int64_t i = 0; i < width; ++i) {
        const float q = rintf(x[i] * inv);
        dst[i] = static_cast<unsigned char>(static_cast<int8_t>(q >= -127.0f && q <= 127.0f ? q : 0.0f));
      }
      store<float>(dst + width, scale);
      return;
    }
  }
}

// The address of entry w of a table (EntryTable::at).
DSV4_HDI unsigned char* entry_at(const dsv4::EntryTable& t, int64_t w) {
  return t.blocks[w / t.per_block] + t.offset + static_cast<size_t>(w % t.per_block) * static_cast<size_t>(t.stride);
}

}  // namespace dsv4k
