// libFuzzer target for the safetensors header parser. Build with clang and -DDSV4_FUZZ=ON:
//   cmake -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DDSV4_FUZZ=ON && cmake --build build-fuzz --target fuzz_safetensors_header
//   ./build-fuzz/tests/fuzz_safetensors_header -max_total_time=60
// Any input must either parse or throw dsv4::Error; crashes, leaks and UB are findings.
#include <cstddef>
#include <cstdint>

#include "dsv4/error.hpp"
#include "io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto h = dsv4::parse_safetensors_header(data, size, size, "fuzz");
    for (const auto& [name, t] : h.tensors)
      if (h.data_offset + t.end > size) __builtin_trap();  // the parser promised in-bounds offsets
  } catch (const dsv4::Error&) {
  }
  return 0;
}
