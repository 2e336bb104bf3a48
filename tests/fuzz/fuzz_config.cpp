// libFuzzer: config.json parsing and validation. Any input parses into a config that passed every
// range check, or throws dsv4::Error; crashes, hangs, leaks and UB are findings.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "dsv4/config.hpp"
#include "dsv4/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto c = dsv4::ModelConfig::parse(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
    if (c.vocab_size <= 0 || c.num_layers <= 0) __builtin_trap();  // validated configs are usable
  } catch (const dsv4::Error&) {
  }
  return 0;
}
