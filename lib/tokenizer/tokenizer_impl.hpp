// Tokenizer internals: the pre-tokenizer pipeline (PCRE2) and the BPE tables.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "dsv4/tokenizer.hpp"

namespace dsv4 {

// One compiled regex (PCRE2, UTF + UCP, JIT when available). Thread-safe to use.
class Regex {
 public:
  Regex(const std::string& pattern, bool literal, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // Calls f(begin, end) for each non-overlapping match in s (byte offsets).
  template <class F>
  void for_each_match(std::string_view s, F&& f) const;
  struct Code;

 private:
  Code* code_;
  bool next(std::string_view s, size_t from, size_t& b, size_t& e, void* md) const;
  void* new_match_data() const;
  static void free_match_data(void* md);
};

template <class F>
void Regex::for_each_match(std::string_view s, F&& f) const {
  void* md = new_match_data();
  size_t from = 0, b = 0, e = 0;
  while (from <= s.size() && next(s, from, b, e, md)) {
    if (e == b) {  // empty match: step over one character
      if (b >= s.size()) break;
      from = b + 1;
      while (from < s.size() && (static_cast<unsigned char>(s[from]) & 0xC0) == 0x80) ++from;
      continue;
    }
    f(b, e);
    from = e;
  }
  free_match_data(md);
}

// A pre-tokenizer step: splits pieces into smaller pieces.
struct PreStep {
  enum Kind { SplitIsolated, ByteLevelRegex } kind;
  std::unique_ptr<Regex> re;
};

struct Tokenizer::Impl {
  // pre-tokenization
  std::vector<PreStep> steps;
  bool byte_level = false;      // pieces are mapped to the byte-level alphabet before BPE
  bool add_prefix_space = false;
  // BPE
  std::unordered_map<std::string, int32_t> vocab;  // token string -> id
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;  // (left id, right id) -> (rank, merged id)
  bool ignore_merges = false;
  std::array<int32_t, 256> byte_token{};  // id of the single byte-level character of each byte (-1 if absent)
  // added tokens, longest first
  struct Added {
    std::string content;
    int32_t id;
    bool special;
  };
  std::vector<Added> added;
  // decoding
  std::vector<std::string> id_bytes;    // raw bytes per id
  std::vector<std::string> id_string;   // vocabulary string per id
  std::vector<uint8_t> id_special;

  // Pieces recur constantly (identifiers, indentation, words): their BPE results are cached.
  mutable std::mutex cache_mu;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;
  static constexpr size_t kCacheMax = 1 << 16;

  static constexpr size_t kShortPiece = 48;  // symbols; longer pieces merge through a heap
  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  void bpe(std::string_view piece, std::vector<int32_t>& out, std::vector<int32_t>& scratch) const;
  void merge_long(std::vector<int32_t>& sym, std::vector<int32_t>& out) const;
  void bpe_cached(std::string_view piece, std::vector<int32_t>& out, std::vector<int32_t>& scratch) const;
  void encode_text(std::string_view text, std::vector<int32_t>& out) const;  // no added tokens
  void split(std::string_view text, size_t step, std::vector<int32_t>& out, std::vector<int32_t>& scratch) const;
  std::array<bool, 256> added_first{};  // bytes that can start an added token
};

// GPT-2 byte <-> unicode alphabet.
const std::array<uint32_t, 256>& byte_to_codepoint();
void append_utf8(std::string& s, uint32_t cp);

}  // namespace dsv4
