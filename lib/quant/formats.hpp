// Scalar decoders for the stored weight formats: BF16, F16, FP8 e4m3fn, FP4 e2m1, E8M0 scales.
// Tables are built once at static-initialisation time; lookups are branch-free.
#pragma once
#include <array>
#include <cstdint>
#include <cstring>

namespace dsv4::quant {

inline float bf16_to_f32(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

float f16_to_f32(uint16_t h);

// 256-entry tables: e4m3fn code -> value (0x7F / 0xFF are NaN); e8m0 code -> 2^(code-127) (255 NaN).
extern const std::array<float, 256> kE4M3;
extern const std::array<float, 256> kE8M0;
// 16-entry table: e2m1 code (s e e m) -> value.
extern const std::array<float, 16> kE2M1;

inline float e4m3_to_f32(uint8_t c) { return kE4M3[c]; }
inline float e8m0_to_f32(uint8_t c) { return kE8M0[c]; }
inline float e2m1_to_f32(uint8_t c) { return kE2M1[c & 15]; }

}  // namespace dsv4::quant
