// Writes a float32 C-order .npy file (format version 1.0).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dsv4::cli {

// Throws std::runtime_error if the file cannot be written.
void write_npy_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape);

}  // namespace dsv4::cli
