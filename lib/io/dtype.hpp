// Storage dtypes of safetensors files.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace dsv4 {

enum class DType : uint8_t { F32, BF16, F16, F8_E4M3, F8_E8M0, I8, U8, I64, I32, BOOL };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: case DType::I32: return 4;
    case DType::BF16: case DType::F16: return 2;
    case DType::I64: return 8;
    default: return 1;
  }
}

inline std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::BF16: return "BF16";
    case DType::F16: return "F16";
    case DType::F8_E4M3: return "F8_E4M3";
    case DType::F8_E8M0: return "F8_E8M0";
    case DType::I8: return "I8";
    case DType::U8: return "U8";
    case DType::I64: return "I64";
    case DType::I32: return "I32";
    case DType::BOOL: return "BOOL";
  }
  return "?";
}

inline std::optional<DType> dtype_from_name(std::string_view s) {
  for (DType t : {DType::F32, DType::BF16, DType::F16, DType::F8_E4M3, DType::F8_E8M0, DType::I8, DType::U8,
                  DType::I64, DType::I32, DType::BOOL})
    if (dtype_name(t) == s) return t;
  return std::nullopt;
}

}  // namespace dsv4
