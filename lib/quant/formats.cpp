#include "quant/formats.hpp"

#include <cmath>
#include <limits>

namespace dsv4::quant {

float f16_to_f32(uint16_t h) {
  const int sign = (h >> 15) & 1;
  const int exp = (h >> 10) & 0x1f;
  const int man = h & 0x3ff;
  float v;
  if (exp == 0) v = std::ldexp(static_cast<float>(man), -24);
  else if (exp == 31) v = man ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  else v = std::ldexp(static_cast<float>(man | 0x400), exp - 25);
  return sign ? -v : v;
}

static std::array<float, 256> make_e4m3() {
  std::array<float, 256> t{};
  for (int c = 0; c < 256; ++c) {
    const int exp = (c >> 3) & 15, man = c & 7;
    float v;
    if ((c & 0x7f) == 0x7f) v = std::numeric_limits<float>::quiet_NaN();
    else if (exp == 0) v = std::ldexp(static_cast<float>(man), -9);  // subnormal: man/8 * 2^-6
    else v = std::ldexp(static_cast<float>(8 + man), exp - 10);     // (1 + man/8) * 2^(exp-7)
    t[c] = (c & 0x80) ? -v : v;
  }
  return t;
}

static std::array<float, 256> make_e8m0() {
  std::array<float, 256> t{};
  for (int c = 0; c < 256; ++c) t[c] = c == 255 ? std::numeric_limits<float>::quiet_NaN() : std::ldexp(1.0f, c - 127);
  return t;
}

const std::array<float, 256> kE4M3 = make_e4m3();
const std::array<float, 256> kE8M0 = make_e8m0();
const std::array<float, 16> kE2M1 = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                                     -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

}  // namespace dsv4::quant
