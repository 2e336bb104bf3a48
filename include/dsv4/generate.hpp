// dsv4/generate.hpp: text in, text out. The one text-generation layer of the library, used by the
// CLI, the server, the C ABI and Python.
//
//   auto model = dsv4::Model::load(dir);
//   auto tok = dsv4::Tokenizer::load(dir / "tokenizer.json");
//   dsv4::Session session(model);
//   dsv4::GenerationParams p;
//   p.max_tokens = 200;
//   p.stop = {"\n\n"};
//   auto r = dsv4::generate_chat(session, tok, {{"user", "Hello", ""}}, dsv4::ThinkMode::None, p,
//                                [](const dsv4::GenerationDelta& d) { std::cout << d.content; return true; });
//
// TextStream is the per-request state machine underneath: it turns logits into a sampled token
// and the text that token adds (complete UTF-8 only; reasoning and answer kept apart at
// </think>; stop strings matched across token boundaries and never emitted). It does not feed the
// session itself, so a server can run many of them over batched steps (forward_batch).
//
// Thread-safety: a TextStream is used by one thread at a time; the Tokenizer and ChatFormat it
// reads must outlive it. Errors: InvalidArgument for bad parameters (checked in the constructor).
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "dsv4/chat.hpp"
#include "dsv4/export.hpp"
#include "dsv4/model.hpp"
#include "dsv4/sampler.hpp"
#include "dsv4/tokenizer.hpp"

namespace dsv4 {

struct GenerationParams {
  SamplerParams sampling;              // seed, temperature (<= 0: greedy), top_k, top_p, min_p, penalties
  int max_tokens = 256;                // tokens to generate at most (>= 0)
  std::vector<std::string> stop;       // stop strings (answer text): generation ends before the first one, which is not emitted
  std::vector<int32_t> stop_tokens;    // stop tokens besides end-of-sentence (which always stops); not emitted
  int logprobs = -1;                   // -1: none; 0: the chosen token's log-probability; N (<= 20): and the N most likely tokens
};

enum class FinishReason { Stop, Length, Cancelled, ContextFull };
DSV4_API const char* finish_reason_name(FinishReason r);  // "stop", "length", "cancelled", "context_full"

struct TokenLogprob {
  int32_t token = 0;
  std::string bytes;                               // the token's bytes (may be part of a character)
  float logprob = 0;                               // log softmax of the model's logits
  std::vector<std::pair<int32_t, float>> top;      // the most likely tokens, best first
};

// What one step adds. Both texts may be empty (bytes held back for UTF-8 or a possible stop string).
struct GenerationDelta {
  std::string content;    // answer text
  std::string reasoning;  // reasoning text (think modes)
  std::optional<TokenLogprob> logprob;
};

struct GenerationResult {
  std::string content, reasoning;
  std::vector<int32_t> tokens;       // every sampled token (a stop token included)
  std::vector<TokenLogprob> logprobs;
  FinishReason finish = FinishReason::Length;
  int64_t prompt_tokens = 0, completion_tokens = 0;
};

class DSV4_API TextStream {
 public:
  // `fmt` may be null (plain-text completion: no reasoning split, EOS = the tokenizer's
  // <｜end▁of▁sentence｜> if it has one). `mode` != None: generation starts in the reasoning channel.
  TextStream(const Tokenizer& tok, const ChatFormat* fmt, ThinkMode mode, GenerationParams params);
  // The same with a caller's sampler (custom stages; it must outlive the stream); params.sampling
  // is then unused.
  TextStream(const Tokenizer& tok, const ChatFormat* fmt, ThinkMode mode, GenerationParams params, Sampler& sampler);
  ~TextStream();
  TextStream(TextStream&&) noexcept;
  TextStream& operator=(TextStream&&) noexcept;

  // Samples the next token from the logits of the last token fed and returns the text it adds.
  // Afterwards token() is the sampled token (feed it unless done()). Calling after done() throws.
  GenerationDelta step(std::span<const float> logits);
  bool done() const;
  FinishReason finish() const;
  int32_t token() const;              // the last sampled token
  int64_t generated() const;          // tokens sampled so far
  // Ends the stream early (context full, cancellation): the text held back is released.
  GenerationDelta end(FinishReason why);
  const GenerationResult& result() const;  // the accumulated content, reasoning, tokens, finish

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Feeds `prompt` to the session, then samples and feeds until a stop condition; `on_delta`
// (may be empty) receives each delta and may return false to cancel. The session ends holding
// every fed token (the final sampled token is not fed). Errors leave the session usable.
DSV4_API GenerationResult generate_tokens(Session& session, const Tokenizer& tok, const ChatFormat* fmt, ThinkMode mode,
                                          std::span<const int32_t> prompt, const GenerationParams& params,
                                          const std::function<bool(const GenerationDelta&)>& on_delta = {});
// The chat conversation rendered in the V4 chat format (generation prompt for `mode`), then generate_tokens.
DSV4_API GenerationResult generate_chat(Session& session, const Tokenizer& tok, const std::vector<ChatMessage>& messages, ThinkMode mode,
                                        const GenerationParams& params,
                                        const std::function<bool(const GenerationDelta&)>& on_delta = {});
// A plain-text prompt (no chat format, no BOS), then generate_tokens.
DSV4_API GenerationResult generate_text(Session& session, const Tokenizer& tok, const std::string& prompt, const GenerationParams& params,
                                        const std::function<bool(const GenerationDelta&)>& on_delta = {});

}  // namespace dsv4
