// Parsing JSON from untrusted files (config.json, tokenizer.json, safetensors headers, index
// files) with bounded nesting: nlohmann's parser is iterative, but copying, dumping and our
// own walkers recurse once per level, so a file of 10^5 nested brackets would overflow the stack.
#pragma once
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace dsv4 {

// Deeper than any checkpoint or tokenizer file needs (they nest fewer than 10 levels).
inline constexpr int kMaxJsonDepth = 64;

// Throws E(prefix + ": " + reason) for text that is not JSON or nests deeper than max_depth.
template <class E>
nlohmann::json parse_json(std::string_view text, const std::string& prefix, int max_depth = kMaxJsonDepth) {
  struct TooDeep {};
  try {
    return nlohmann::json::parse(text, [max_depth](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
      if (depth > max_depth) throw TooDeep{};
      return true;
    });
  } catch (const TooDeep&) {
    throw E(prefix + ": JSON nests deeper than " + std::to_string(max_depth) + " levels");
  } catch (const nlohmann::json::exception& e) {
    throw E(prefix + ": not valid JSON (" + e.what() + ")");
  }
}

}  // namespace dsv4
