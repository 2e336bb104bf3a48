// Shared helpers for the tests: golden data, comparisons, tiny safetensors writer, naive math.
#pragma once
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/dtype.hpp"

namespace dsv4::test {

std::filesystem::path data_dir();
std::filesystem::path golden_dir(const std::string& name);
std::filesystem::path temp_dir(const std::string& tag);  // fresh, empty; removed when the process exits

struct Golden {
  std::vector<int32_t> ids;
  std::vector<float> logits;  // [N, V]
  int64_t N = 0, V = 0;
  nlohmann::json meta;
  std::vector<std::vector<float>> hidden;  // tiny_a only
};
Golden load_golden(const std::string& name);

// ‖a − b‖ / ‖b‖ over n elements (double accumulation); NaN anywhere gives +inf.
double rel_err(const float* a, const float* b, size_t n);
// Number of rows whose argmax differs.
int64_t argmax_mismatches(const float* a, const float* b, int64_t rows, int64_t cols);
// "max |a-b| = x at [r, c]" for failure messages.
std::string worst(const float* a, const float* b, int64_t rows, int64_t cols);

struct RawTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};
// Writes a valid safetensors file.
void write_safetensors(const std::filesystem::path& path, const std::vector<RawTensor>& tensors);
// Every tensor of a safetensors file, copied.
std::vector<RawTensor> read_all(const std::filesystem::path& path);

std::vector<float> random_floats(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f);

}  // namespace dsv4::test
