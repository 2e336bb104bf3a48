// DeepSeek-V4 chat encoding (model spec: tokenizer-chat.md).
#include "dsv4/chat.hpp"

#include "dsv4/error.hpp"

namespace dsv4 {

const char* const kThinkMaxInstruction =
    "Reasoning Effort: Absolute maximum with no shortcuts permitted.\n"
    "You MUST be very thorough in your thinking and comprehensively decompose the problem to resolve the root cause, "
    "rigorously stress-testing your logic against all potential paths, edge cases, and adversarial scenarios.\n"
    "Explicitly write out your entire deliberation process, documenting every intermediate step, considered "
    "alternative, and rejected hypothesis to ensure absolutely no assumption is left unchecked.\n";

ThinkMode parse_think_mode(const std::string& s) {
  if (s == "none") return ThinkMode::None;
  if (s == "high") return ThinkMode::High;
  if (s == "max") return ThinkMode::Max;
  throw InvalidArgument("think mode '" + s + "' is not one of none, high, max");
}

ChatFormat::ChatFormat(const Tokenizer& tok)
    : tok_(&tok),
      bos_(tok.require_token("<｜begin▁of▁sentence｜>")),
      eos_(tok.require_token("<｜end▁of▁sentence｜>")),
      user_(tok.require_token("<｜User｜>")),
      assistant_(tok.require_token("<｜Assistant｜>")),
      think_(tok.require_token("<think>")),
      end_think_(tok.require_token("</think>")) {}

std::vector<ChatFormat::Piece> ChatFormat::pieces(const std::vector<ChatMessage>& msgs, ThinkMode mode, bool gen) const {
  std::vector<Piece> p;
  auto special = [&](int32_t id) { p.push_back({true, id, tok_->id_to_token(id)}); };
  auto text = [&](const std::string& t) {
    if (!t.empty()) p.push_back({false, -1, t});
  };
  bool tools = false;
  for (const auto& m : msgs) tools |= m.role == "tool";
  special(bos_);
  if (mode == ThinkMode::Max) text(kThinkMaxInstruction);
  size_t i = 0;
  if (!msgs.empty() && msgs[0].role == "system") {
    text(msgs[0].content);
    i = 1;
  }
  for (; i < msgs.size(); ++i) {
    const ChatMessage& m = msgs[i];
    if (m.role == "user" || m.role == "tool") {
      special(user_);
      text(m.role == "tool" ? "<tool_result>" + m.content + "</tool_result>" : m.content);
      const bool last = i + 1 == msgs.size();
      if (last && gen) {
        special(assistant_);
        special(mode == ThinkMode::None ? end_think_ : think_);
      }
    } else if (m.role == "assistant") {
      special(assistant_);
      if (tools && !m.reasoning.empty()) {
        special(think_);
        text(m.reasoning);
      }
      special(end_think_);
      text(m.content);
      special(eos_);
    } else if (m.role == "system") {
      throw InvalidArgument("chat: a system message is only allowed first (message " + std::to_string(i) + ")");
    } else {
      throw InvalidArgument("chat: unknown role '" + m.role + "' (expected system, user, assistant or tool)");
    }
  }
  return p;
}

std::string ChatFormat::render(const std::vector<ChatMessage>& msgs, ThinkMode mode, bool gen) const {
  std::string s;
  for (const auto& p : pieces(msgs, mode, gen)) s += p.text;
  return s;
}

std::vector<int32_t> ChatFormat::encode(const std::vector<ChatMessage>& msgs, ThinkMode mode, bool gen) const {
  std::vector<int32_t> ids;
  for (const auto& p : pieces(msgs, mode, gen)) {
    if (p.special) {
      ids.push_back(p.id);
    } else {
      const auto t = tok_->encode(p.text, false);
      ids.insert(ids.end(), t.begin(), t.end());
    }
  }
  return ids;
}

}  // namespace dsv4
