// The text-generation layer (dsv4/generate.hpp): sampling, incremental detokenization with the
// reasoning / answer split, stop strings across token boundaries, log-probabilities.
#include "dsv4/generate.hpp"

#include <algorithm>
#include <cmath>

#include "dsv4/error.hpp"

namespace dsv4 {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Cancelled: return "cancelled";
    case FinishReason::ContextFull: return "context_full";
  }
  return "?";
}

namespace {

constexpr size_t kMaxStops = 16, kMaxStopBytes = 512;
constexpr int kMaxLogprobs = 20;

void validate(const GenerationParams& p) {
  if (p.max_tokens < 0) throw InvalidArgument("max_tokens must be >= 0, got " + std::to_string(p.max_tokens));
  if (p.logprobs < -1 || p.logprobs > kMaxLogprobs)
    throw InvalidArgument("logprobs must be -1 (off) or in [0, " + std::to_string(kMaxLogprobs) + "], got " + std::to_string(p.logprobs));
  if (p.stop.size() > kMaxStops) throw InvalidArgument("at most " + std::to_string(kMaxStops) + " stop strings, got " + std::to_string(p.stop.size()));
  for (const auto& s : p.stop) {
    if (s.empty()) throw InvalidArgument("stop strings must not be empty");
    if (s.size() > kMaxStopBytes) throw InvalidArgument("a stop string is " + std::to_string(s.size()) + " bytes (at most " + std::to_string(kMaxStopBytes) + ")");
    if (utf8_first_invalid(s) != std::string::npos) throw InvalidArgument("a stop string is not valid UTF-8");
  }
}

}  // namespace

struct TextStream::Impl {
  const Tokenizer& tok;
  GenerationParams p;
  Sampler own;
  Sampler& sampler;
  StreamDecoder content_dec, reasoning_dec;
  bool in_reasoning;
  int32_t end_think = -1, eos = -1;
  std::string held;  // answer text not emitted yet: it may be the start of a stop string
  GenerationResult r;
  bool done = false;
  int32_t last = -1;
  std::vector<std::pair<float, int32_t>> top;  // scratch for log-probabilities

  Impl(const Tokenizer& t, const ChatFormat* fmt, ThinkMode mode, GenerationParams params, Sampler* external)
      : tok(t), p(std::move(params)), own(external != nullptr ? Sampler(0) : Sampler::from_params(p.sampling)),
        sampler(external != nullptr ? *external : own), content_dec(t), reasoning_dec(t),
        in_reasoning(fmt != nullptr && mode != ThinkMode::None) {
    validate(p);
    if (fmt != nullptr) {
      end_think = fmt->end_think();
      eos = fmt->eos();
    } else if (auto e = tok.token_to_id("<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>")) {
      eos = *e;
    }
    if (p.max_tokens == 0) done = true;
  }

  // Moves what can no longer be part of a stop string from `held` into `out`; ends the stream at a stop string.
  void release(std::string& out, bool all) {
    size_t cut = std::string::npos;
    for (const auto& s : p.stop) cut = std::min(cut, held.find(s));
    if (cut != std::string::npos) {
      out += held.substr(0, cut);
      held.clear();
      finish(FinishReason::Stop);
      return;
    }
    size_t keep = 0;
    if (!all)
      for (const auto& s : p.stop)
        for (size_t k = std::min(s.size() - 1, held.size()); k > keep; --k)
          if (held.compare(held.size() - k, k, s, 0, k) == 0) {
            keep = k;
            break;
          }
    out += held.substr(0, held.size() - keep);
    held.erase(0, held.size() - keep);
  }

  void finish(FinishReason why) {
    if (done) return;
    done = true;
    r.finish = why;
  }

  // Everything held back goes out (end of the stream).
  void drain(GenerationDelta& d) {
    d.reasoning += reasoning_dec.flush();
    held += content_dec.flush();
    release(d.content, true);
  }

  void add_logprob(std::span<const float> logits, int32_t token, GenerationDelta& d) {
    double mx = -INFINITY;
    for (float v : logits) mx = std::max(mx, static_cast<double>(v));
    double sum = 0;
    for (float v : logits) sum += std::exp(static_cast<double>(v) - mx);
    const double lse = mx + std::log(sum);
    TokenLogprob lp;
    lp.token = token;
    if (token < tok.vocab_size()) lp.bytes = tok.token_bytes(token);
    lp.logprob = static_cast<float>(static_cast<double>(logits[static_cast<size_t>(token)]) - lse);
    if (p.logprobs > 0) {
      const size_t k = std::min<size_t>(static_cast<size_t>(p.logprobs), logits.size());
      top.clear();
      for (size_t i = 0; i < logits.size(); ++i) {
        const std::pair<float, int32_t> e{logits[i], static_cast<int32_t>(i)};
        auto better = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
          return a.first > b.first || (a.first == b.first && a.second < b.second);
        };
        if (top.size() < k) {
          top.push_back(e);
          std::push_heap(top.begin(), top.end(), better);
        } else if (better(e, top.front())) {
          std::pop_heap(top.begin(), top.end(), better);
          top.back() = e;
          std::push_heap(top.begin(), top.end(), better);
        }
      }
      std::sort_heap(top.begin(), top.end(), [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
        return a.first > b.first || (a.first == b.first && a.second < b.second);
      });
      for (const auto& [v, id] : top) lp.top.emplace_back(id, static_cast<float>(static_cast<double>(v) - lse));
    }
    d.logprob = lp;
    r.logprobs.push_back(std::move(lp));
  }

  GenerationDelta step(std::span<const float> logits) {
    if (done) throw InvalidArgument("TextStream::step: the stream has finished (" + std::string(finish_reason_name(r.finish)) + ")");
    if (logits.empty()) throw InvalidArgument("TextStream::step: no logits");
    GenerationDelta d;
    const int32_t t = sampler.sample(logits);
    last = t;
    r.tokens.push_back(t);
    ++r.completion_tokens;
    if (p.logprobs >= 0) add_logprob(logits, t, d);
    const bool stop_token = t == eos || std::find(p.stop_tokens.begin(), p.stop_tokens.end(), t) != p.stop_tokens.end();
    if (t >= tok.vocab_size()) {
      // a model row past the tokenizer's vocabulary (padding): no text
    } else if (stop_token) {
      finish(FinishReason::Stop);
    } else if (in_reasoning && t == end_think) {
      in_reasoning = false;
      d.reasoning += reasoning_dec.flush();
    } else if (tok.is_special(t)) {
      // special tokens (BOS, role markers, a stray </think>) carry no text of the answer
    } else if (in_reasoning) {
      d.reasoning += reasoning_dec.push(t);
    } else {
      held += content_dec.push(t);
      release(d.content, false);
    }
    if (!done && r.completion_tokens >= p.max_tokens) finish(FinishReason::Length);
    if (done) drain(d);
    r.content += d.content;
    r.reasoning += d.reasoning;
    return d;
  }

  GenerationDelta end(FinishReason why) {
    GenerationDelta d;
    if (done) return d;
    finish(why);
    drain(d);
    r.content += d.content;
    r.reasoning += d.reasoning;
    return d;
  }
};

TextStream::TextStream(const Tokenizer& tok, const ChatFormat* fmt, ThinkMode mode, GenerationParams params)
    : impl_(std::make_unique<Impl>(tok, fmt, mode, std::move(params), nullptr)) {}
TextStream::TextStream(const Tokenizer& tok, const ChatFormat* fmt, ThinkMode mode, GenerationParams params, Sampler& sampler)
    : impl_(std::make_unique<Impl>(tok, fmt, mode, std::move(params), &sampler)) {}
TextStream::~TextStream() = default;
TextStream::TextStream(TextStream&&) noexcept = default;
TextStream& TextStream::operator=(TextStream&&) noexcept = default;
GenerationDelta TextStream::step(std::span<const float> logits) { return impl_->step(logits); }
bool TextStream::done() const { return impl_->done; }
FinishReason TextStream::finish() const { return impl_->r.finish; }
int32_t TextStream::token() const { return impl_->last; }
int64_t TextStream::generated() const { return impl_->r.completion_tokens; }
GenerationDelta TextStream::end(FinishReason why) { return impl_->end(why); }
const GenerationResult& TextStream::result() const { return impl_->r; }

GenerationResult generate_tokens(Session& session, const Tokenizer& tok, const ChatFormat* fmt, ThinkMode mode,
                                 std::span<const int32_t> prompt, const GenerationParams& params,
                                 const std::function<bool(const GenerationDelta&)>& on_delta) {
  TextStream ts(tok, fmt, mode, params);  // validates before anything is fed
  if (!prompt.empty()) session.forward(prompt, Logits::Last);
  if (session.last_logits().empty()) throw InvalidArgument("generate: empty prompt and nothing fed yet (no logits to sample from)");
  while (!ts.done()) {
    const GenerationDelta d = ts.step(session.last_logits());
    if (on_delta && !on_delta(d)) {
      ts.end(FinishReason::Cancelled);
      break;
    }
    if (ts.done()) break;
    if (session.position() >= session.max_context()) {
      const GenerationDelta last = ts.end(FinishReason::ContextFull);
      if (on_delta) on_delta(last);
      break;
    }
    const int32_t t = ts.token();
    session.forward({&t, 1}, Logits::Last);
  }
  GenerationResult r = ts.result();
  r.prompt_tokens = static_cast<int64_t>(prompt.size());
  return r;
}

GenerationResult generate_chat(Session& session, const Tokenizer& tok, const std::vector<ChatMessage>& messages, ThinkMode mode,
                               const GenerationParams& params, const std::function<bool(const GenerationDelta&)>& on_delta) {
  if (messages.empty()) throw InvalidArgument("generate_chat: no messages");
  const ChatFormat fmt(tok);
  const std::vector<int32_t> ids = fmt.encode(messages, mode);
  return generate_tokens(session, tok, &fmt, mode, ids, params, on_delta);
}

GenerationResult generate_text(Session& session, const Tokenizer& tok, const std::string& prompt, const GenerationParams& params,
                               const std::function<bool(const GenerationDelta&)>& on_delta) {
  const std::vector<int32_t> ids = tok.encode(prompt, false);
  if (ids.empty()) throw InvalidArgument("generate_text: the prompt encodes to no tokens");
  return generate_tokens(session, tok, nullptr, ThinkMode::None, ids, params, on_delta);
}

}  // namespace dsv4
