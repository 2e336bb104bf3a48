// libFuzzer: tokenizer.json loading, then a short encode/decode with whatever loaded. Any input
// loads or throws dsv4::Error.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "dsv4/error.hpp"
#include "dsv4/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto tok = dsv4::Tokenizer::from_json(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
    const auto ids = tok.encode("def f(x):\n    return x  # 深度 <｜User｜>", true);
    for (int32_t id : ids)
      if (id < 0 || id >= tok.vocab_size()) __builtin_trap();  // encode yields ids of this vocabulary
    (void)tok.decode(ids);
  } catch (const dsv4::Error&) {
  }
  return 0;
}
