#include "util/read_probe.hpp"

namespace dsv4 {

uint64_t read_four_streams(const void* p, size_t bytes) {
  const uint64_t* w = static_cast<const uint64_t*>(p);
  const size_t q = bytes / 8 / 4;
  uint64_t x0 = 0, x1 = 0, x2 = 0, x3 = 0;
  for (size_t i = 0; i < q; ++i) {
    x0 ^= w[i];
    x1 ^= w[i + q];
    x2 ^= w[i + 2 * q];
    x3 ^= w[i + 3 * q];
  }
  return x0 ^ x1 ^ x2 ^ x3;
}

uint64_t read_linear(const void* p, size_t bytes) {
  const uint64_t* w = static_cast<const uint64_t*>(p);
  const size_t lines = bytes / 64;
  uint64_t x[8] = {};
  for (size_t i = 0; i < lines; ++i)
    for (int k = 0; k < 8; ++k) x[k] ^= w[8 * i + k];
  uint64_t r = 0;
  for (uint64_t v : x) r ^= v;
  return r;
}

}  // namespace dsv4
