// libFuzzer: chat rendering and encoding of arbitrary conversations with the demo tokenizer.
// The input is split at 0xFF bytes into messages; each message's first byte picks the role and,
// for assistant turns, a 0xFE byte separates reasoning from content. Roles outside the four are
// an InvalidArgument; everything else renders, and encode() gives in-vocabulary ids that start
// with BOS.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "dsv4/chat.hpp"
#include "dsv4/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const dsv4::Tokenizer tok = dsv4::Tokenizer::load(DSV4_FUZZ_TOKENIZER);
  static const dsv4::ChatFormat fmt(tok);
  static const char* const roles[] = {"system", "user", "assistant", "tool", "bogus"};
  std::vector<dsv4::ChatMessage> msgs;
  size_t i = 0;
  while (i < size && msgs.size() < 64) {
    size_t j = i;
    while (j < size && data[j] != 0xFF) ++j;
    if (j > i) {
      dsv4::ChatMessage m;
      m.role = roles[data[i] % 5];
      std::string body(reinterpret_cast<const char*>(data + i + 1), j - i - 1);
      if (const size_t k = body.find('\xFE'); k != std::string::npos && m.role == "assistant") {
        m.reasoning = body.substr(0, k);
        body = body.substr(k + 1);
      }
      m.content = body;
      msgs.push_back(std::move(m));
    }
    i = j + 1;
  }
  const dsv4::ThinkMode mode = size > 0 ? static_cast<dsv4::ThinkMode>(data[0] % 3) : dsv4::ThinkMode::None;
  try {
    (void)fmt.render(msgs, mode, size % 2 == 0);
    const auto ids = fmt.encode(msgs, mode, size % 2 == 0);
    if (ids.empty() || ids[0] != fmt.bos()) __builtin_trap();
    for (int32_t id : ids)
      if (id < 0 || id >= tok.vocab_size()) __builtin_trap();
  } catch (const dsv4::InvalidArgument&) {
  }
  return 0;
}
