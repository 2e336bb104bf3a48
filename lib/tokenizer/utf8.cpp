#include <string_view>

#include "dsv4/tokenizer.hpp"

namespace dsv4 {

namespace {
// Length of the sequence starting with lead byte c, or 0 if c cannot start one.
int seq_len(unsigned char c) {
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return 2;
  if (c >= 0xE0 && c <= 0xEF) return 3;
  if (c >= 0xF0 && c <= 0xF4) return 4;
  return 0;
}
// Whether the continuation bytes s[1..n) are valid for lead s[0] (overlongs, surrogates, > U+10FFFF).
// `avail` may be shorter than n: then only the available bytes are checked.
bool valid_prefix(const unsigned char* s, int n, int avail) {
  for (int i = 1; i < avail; ++i) {
    const unsigned char c = s[i];
    unsigned char lo = 0x80, hi = 0xBF;
    if (i == 1) {
      if (s[0] == 0xE0) lo = 0xA0;
      else if (s[0] == 0xED) hi = 0x9F;
      else if (s[0] == 0xF0) lo = 0x90;
      else if (s[0] == 0xF4) hi = 0x8F;
    }
    if (c < lo || c > hi) return false;
  }
  (void)n;
  return true;
}
}  // namespace

size_t utf8_first_invalid(std::string_view sv) {
  const auto* s = reinterpret_cast<const unsigned char*>(sv.data());
  size_t i = 0;
  while (i < sv.size()) {
    const int n = seq_len(s[i]);
    if (n == 0 || i + static_cast<size_t>(n) > sv.size() || !valid_prefix(s + i, n, n)) return i;
    i += static_cast<size_t>(n);
  }
  return std::string_view::npos;
}

size_t utf8_complete_prefix(std::string_view sv) {
  const auto* s = reinterpret_cast<const unsigned char*>(sv.data());
  size_t i = 0;
  while (i < sv.size()) {
    const int n = seq_len(s[i]);
    if (n == 0 || i + static_cast<size_t>(n) > sv.size()) break;
    if (!valid_prefix(s + i, n, n)) break;
    i += static_cast<size_t>(n);
  }
  return i;
}

std::string StreamDecoder::push(int32_t id) {
  pending_ += tok_->token_bytes(id);
  std::string out;
  const auto* s = reinterpret_cast<const unsigned char*>(pending_.data());
  size_t i = 0;
  while (i < pending_.size()) {
    const int n = seq_len(s[i]);
    const size_t avail = pending_.size() - i;
    if (n == 0) {  // cannot start a character
      out += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    const int check = static_cast<int>(std::min<size_t>(avail, static_cast<size_t>(n)));
    if (!valid_prefix(s + i, n, check)) {  // broken sequence: replace its lead byte
      out += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    if (avail < static_cast<size_t>(n)) break;  // incomplete: hold back
    out.append(pending_, i, static_cast<size_t>(n));
    i += static_cast<size_t>(n);
  }
  pending_.erase(0, i);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  if (!pending_.empty()) out = "\xEF\xBF\xBD";
  pending_.clear();
  return out;
}

}  // namespace dsv4
