// The safetensors header parser on valid and malformed inputs, plus a mutation smoke run
// (the libFuzzer target in tests/fuzz explores the same entry point further).
#include <doctest/doctest.h>

#include <cstring>
#include <random>
#include <string>

#include "dsv4/error.hpp"
#include "io/safetensors.hpp"
#include "io/tensor_store.hpp"
#include "support/support.hpp"

using namespace dsv4;

namespace {

std::vector<uint8_t> file_bytes(const std::string& header, size_t data_bytes) {
  std::vector<uint8_t> b(8 + header.size() + data_bytes, 0);
  const uint64_t n = header.size();
  std::memcpy(b.data(), &n, 8);
  std::memcpy(b.data() + 8, header.data(), header.size());
  return b;
}

SafetensorsHeader parse(const std::vector<uint8_t>& b) { return parse_safetensors_header(b.data(), b.size(), b.size(), "t"); }

std::string error_of(const std::vector<uint8_t>& b) {
  try {
    parse(b);
  } catch (const FormatError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("a valid header parses with dtypes / shapes and offsets") {
  auto b = file_bytes(R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
                      R"("b":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[24,28]},"c":{"dtype":"I64","shape":[],"data_offsets":[28,36]}})",
                      36);
  const auto h = parse(b);
  REQUIRE(h.tensors.size() == 3);
  CHECK(h.tensors.at("a").dtype == DType::F32);
  CHECK(h.tensors.at("a").shape == std::vector<int64_t>{2, 3});
  CHECK(h.tensors.at("b").begin == 24);
  CHECK(h.tensors.at("c").numel() == 1);
}

TEST_CASE("malformed headers are FormatErrors with a useful message") {
  CHECK(error_of({1, 2, 3}).find("too short") != std::string::npos);
  {
    auto b = file_bytes("{}", 0);
    const uint64_t n = 1000;
    std::memcpy(b.data(), &n, 8);
    CHECK(error_of(b).find("past the end") != std::string::npos);  // truncated
  }
  {
    auto b = file_bytes("{}", 0);
    const uint64_t n = ~0ull;
    std::memcpy(b.data(), &n, 8);
    CHECK(error_of(b).find("exceeds") != std::string::npos);  // oversized length
  }
  CHECK(error_of(file_bytes("{not json", 0)).find("not valid JSON") != std::string::npos);
  CHECK(error_of(file_bytes(R"({"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}})", 4)).find("unknown dtype 'F33'") !=
        std::string::npos);
  CHECK(error_of(file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4)).find("past the data section") !=
        std::string::npos);
  CHECK(error_of(file_bytes(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8)).find("needs 12 bytes") !=
        std::string::npos);
  CHECK(error_of(file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                            12))
            .find("overlap") != std::string::npos);
  CHECK(error_of(file_bytes(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4)).find("non-negative") !=
        std::string::npos);
  CHECK(error_of(file_bytes(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}})", 4))
            .find("too large") != std::string::npos);
  CHECK(error_of(file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8)).find("begin > end") !=
        std::string::npos);
  CHECK(error_of(file_bytes(R"([1,2])", 0)).find("JSON object") != std::string::npos);
}

TEST_CASE("random mutations of a valid file never escape as anything but dsv4::Error") {
  const auto base = file_bytes(R"({"a":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]},"b":{"dtype":"I8","shape":[3],"data_offsets":[8,11]}})", 11);
  std::mt19937 rng(7);
  int ok = 0, rejected = 0;
  for (int it = 0; it < 3000; ++it) {
    auto b = base;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) b[rng() % b.size()] = static_cast<uint8_t>(rng());
    if (rng() % 5 == 0) b.resize(rng() % b.size());
    try {
      parse(b);
      ++ok;
    } catch (const dsv4::Error&) {
      ++rejected;
    }
  }
  CHECK(ok + rejected == 3000);
  CHECK(rejected > 0);
}

TEST_CASE("sharded checkpoints resolve through the index") {
  const TensorStore st(dsv4::test::golden_dir("official_a"));
  CHECK(st.has("embed.weight"));
  CHECK(st.has("mtp.0.e_proj.weight"));
  CHECK(st.get("layers.0.attn.wq_a.weight").info->dtype == DType::F8_E4M3);
  CHECK_THROWS_AS(st.get("layers.99.attn.wq_a.weight"), MissingTensorError);
}
