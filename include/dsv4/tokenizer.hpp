// dsv4/tokenizer.hpp: Hugging Face `tokenizer.json` byte-level BPE, and streaming detokenization.
//
// Supported: added/special tokens (matched before anything else), no normalizer, pre-tokenizers
// Sequence / Split (Isolated, Regex or String patterns, via PCRE2 with UTF + UCP) / ByteLevel,
// the BPE model (merges as "a b" strings or [a, b] pairs, ignore_merges), the ByteLevel decoder.
// Anything else in the file is a FormatError naming it.
//
// Thread-safety: a Tokenizer is immutable after load; encode/decode may run concurrently.
// Errors: encode() throws InvalidArgument on invalid UTF-8 (with the byte offset); lookups of
// unknown tokens return std::nullopt.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dsv4/export.hpp"

namespace dsv4 {

class DSV4_API Tokenizer {
 public:
  // `path`: a tokenizer.json file, or a model directory holding one.
  static Tokenizer load(const std::filesystem::path& path);
  static Tokenizer from_json(std::string_view json_text, const std::string& source = "tokenizer.json");
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // parse_special: recognise added tokens written in the text (as HF `encode` does); false
  // treats their text as ordinary characters (for untrusted user content in chat turns).
  std::vector<int32_t> encode(std::string_view text, bool parse_special = true) const;
  // Bytes of the tokens concatenated (added tokens as their text). Throws InvalidArgument on an
  // id outside the vocabulary.
  std::string decode(std::span<const int32_t> ids) const;
  // The raw bytes one token stands for.
  const std::string& token_bytes(int32_t id) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  // Like token_to_id but throws InvalidArgument naming the missing token.
  int32_t require_token(std::string_view token) const;
  std::string id_to_token(int32_t id) const;  // the vocabulary string (byte-level alphabet)
  int64_t vocab_size() const;                 // highest id + 1
  bool is_special(int32_t id) const;

  struct Impl;

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Turns a stream of token ids into text pieces that are always complete UTF-8: bytes of a
// character split across tokens are held back until the character is complete; bytes that can
// never form a valid character are replaced by U+FFFD.
class DSV4_API StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok) : tok_(&tok) {}
  std::string push(int32_t id);
  std::string flush();  // emits what is held back (as U+FFFD if incomplete)
  void reset() { pending_.clear(); }

 private:
  const Tokenizer* tok_;
  std::string pending_;
};

// Length of the longest prefix of `s` that is complete, valid UTF-8 (never splits a character).
DSV4_API size_t utf8_complete_prefix(std::string_view s);
// Offset of the first invalid UTF-8 byte, or npos when `s` is valid.
DSV4_API size_t utf8_first_invalid(std::string_view s);

}  // namespace dsv4
