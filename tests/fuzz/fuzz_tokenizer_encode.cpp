// libFuzzer: encoding arbitrary bytes with the demo model's tokenizer (DSV4_FUZZ_TOKENIZER, a
// tokenizer.json path, compiled in). Valid UTF-8 round-trips exactly through encode/decode
// without special-token parsing; invalid UTF-8 is an InvalidArgument.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "dsv4/error.hpp"
#include "dsv4/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const dsv4::Tokenizer tok = dsv4::Tokenizer::load(DSV4_FUZZ_TOKENIZER);
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const auto ids = tok.encode(text, false);
    for (int32_t id : ids)
      if (id < 0 || id >= tok.vocab_size()) __builtin_trap();
    if (tok.decode(ids) != text) __builtin_trap();  // byte-level BPE is lossless
    (void)tok.encode(text, true);
  } catch (const dsv4::InvalidArgument&) {
  }
  return 0;
}
