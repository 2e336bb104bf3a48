// dsv4/chat.hpp: the DeepSeek-V4 chat encoding with its three reasoning modes.
//
//   BOS [Think-Max instruction] [system prompt]
//   <｜User｜>text<｜Assistant｜></think>answer<｜end▁of▁sentence｜>     (finished turns)
//   <｜User｜>text<｜Assistant｜>T                                      (generation prompt)
// with T = </think> (ThinkMode::None) or <think> (High, Max). Earlier assistant turns drop their
// reasoning unless tool results are in the conversation. Special token ids are looked up in the
// tokenizer by name; a tokenizer lacking one makes ChatFormat's constructor throw
// InvalidArgument naming it. Message contents are encoded as plain text: special-token strings
// inside them are not interpreted (no prompt injection through contents).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "dsv4/export.hpp"
#include "dsv4/tokenizer.hpp"

namespace dsv4 {

enum class ThinkMode { None, High, Max };
DSV4_API ThinkMode parse_think_mode(const std::string& s);  // "none" | "high" | "max"; throws InvalidArgument

struct ChatMessage {
  std::string role;       // "system", "user", "assistant" or "tool"
  std::string content;
  std::string reasoning;  // assistant turns: the thinking text (dropped from earlier turns)
};

// The fixed instruction Think Max puts right after BOS (three lines, each ending in '\n').
DSV4_API extern const char* const kThinkMaxInstruction;

class DSV4_API ChatFormat {
 public:
  explicit ChatFormat(const Tokenizer& tok);
  // The conversation as text with the special tokens spelled out (for display and tests).
  std::string render(const std::vector<ChatMessage>& msgs, ThinkMode mode, bool add_generation_prompt = true) const;
  // The token ids of render(), with contents encoded as plain text.
  std::vector<int32_t> encode(const std::vector<ChatMessage>& msgs, ThinkMode mode, bool add_generation_prompt = true) const;

  int32_t bos() const { return bos_; }
  int32_t eos() const { return eos_; }
  int32_t think() const { return think_; }
  int32_t end_think() const { return end_think_; }

 private:
  struct Piece {
    bool special;
    int32_t id;
    std::string text;
  };
  std::vector<Piece> pieces(const std::vector<ChatMessage>& msgs, ThinkMode mode, bool gen) const;
  const Tokenizer* tok_;
  int32_t bos_, eos_, user_, assistant_, think_, end_think_;
};

// Splits generated tokens into reasoning and answer at </think>.
class DSV4_API ThinkingSplitter {
 public:
  ThinkingSplitter(const ChatFormat& fmt, ThinkMode mode) : end_think_(fmt.end_think()), in_reasoning_(mode != ThinkMode::None) {}
  enum class Channel { Reasoning, Answer, Marker };
  // Where token `id` belongs; the </think> token itself is the Marker between the two.
  Channel route(int32_t id) {
    if (in_reasoning_ && id == end_think_) {
      in_reasoning_ = false;
      return Channel::Marker;
    }
    return in_reasoning_ ? Channel::Reasoning : Channel::Answer;
  }
  bool in_reasoning() const { return in_reasoning_; }

 private:
  int32_t end_think_;
  bool in_reasoning_;
};

}  // namespace dsv4
