// Saturating size arithmetic for sizes computed from configuration and options: an overflow gives
// SIZE_MAX, which no allocation satisfies, so the caller reports a CapacityError instead of
// computing a small wrapped size (or undefined behaviour on signed overflow).
#pragma once
#include <cstddef>
#include <cstdint>

namespace dsv4 {

inline size_t sat_size(int64_t v) { return v < 0 ? SIZE_MAX : static_cast<size_t>(v); }

inline size_t sat_mul(size_t a, size_t b) {
  size_t r;
  return __builtin_mul_overflow(a, b, &r) ? SIZE_MAX : r;
}

inline size_t sat_add(size_t a, size_t b) {
  size_t r;
  return __builtin_add_overflow(a, b, &r) ? SIZE_MAX : r;
}

}  // namespace dsv4
