// Pre-tokenization pipeline and byte-level BPE.
#include <limits>

#include "tokenizer/tokenizer_impl.hpp"

namespace dsv4 {

const std::array<uint32_t, 256>& byte_to_codepoint() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    uint32_t extra = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      t[b] = printable ? b : extra++;
    }
    return t;
  }();
  return table;
}

void append_utf8(std::string& s, uint32_t cp) {
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

void Tokenizer::Impl::bpe(std::string_view piece, std::vector<int32_t>& out, std::vector<int32_t>& sym) const {
  if (piece.empty()) return;
  if (ignore_merges) {
    std::string word;
    for (unsigned char c : piece) append_utf8(word, byte_to_codepoint()[c]);
    auto it = vocab.find(word);
    if (it != vocab.end()) {
      out.push_back(it->second);
      return;
    }
  }
  sym.clear();
  for (unsigned char c : piece)
    if (byte_token[c] >= 0) sym.push_back(byte_token[c]);  // unknown bytes are dropped (no unk token)
  // Repeatedly merge the lowest-ranked adjacent pair (leftmost on ties).
  for (;;) {
    int32_t best_rank = std::numeric_limits<int32_t>::max();
    size_t best_at = 0;
    int32_t best_id = -1;
    for (size_t i = 0; i + 1 < sym.size(); ++i) {
      auto it = merges.find((static_cast<uint64_t>(static_cast<uint32_t>(sym[i])) << 32) | static_cast<uint32_t>(sym[i + 1]));
      if (it != merges.end() && it->second.first < best_rank) {
        best_rank = it->second.first;
        best_at = i;
        best_id = it->second.second;
      }
    }
    if (best_id < 0) break;
    sym[best_at] = best_id;
    sym.erase(sym.begin() + static_cast<std::ptrdiff_t>(best_at) + 1);
  }
  out.insert(out.end(), sym.begin(), sym.end());
}

void Tokenizer::Impl::encode_text(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  std::string prefixed;
  if (add_prefix_space && text.front() != ' ') {
    prefixed = " ";
    prefixed += text;
    text = prefixed;
  }
  // Pieces as (begin, end) offsets into `text`, refined by each Split step in turn.
  std::vector<std::pair<size_t, size_t>> pieces{{0, text.size()}}, next;
  for (const PreStep& st : steps) {
    next.clear();
    for (auto [pb, pe] : pieces) {
      const std::string_view p = text.substr(pb, pe - pb);
      size_t last = 0;
      st.re->for_each_match(p, [&](size_t b, size_t e) {
        if (b > last) next.emplace_back(pb + last, pb + b);
        next.emplace_back(pb + b, pb + e);
        last = e;
      });
      if (last < p.size()) next.emplace_back(pb + last, pe);
    }
    pieces.swap(next);
  }
  std::vector<int32_t> scratch;
  for (auto [b, e] : pieces) bpe(text.substr(b, e - b), out, scratch);
}

}  // namespace dsv4
