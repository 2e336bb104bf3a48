// The text-generation layer: stop strings across token boundaries (never emitted), UTF-8 safe
// streaming, the reasoning / answer split, stop tokens, max tokens, log-probabilities; driven by
// logits that force chosen tokens, and end to end on the embedded demo model.
#include <doctest/doctest.h>

#include <cmath>

#include "dsv4/error.hpp"
#include "dsv4/generate.hpp"
#include "support/support.hpp"

using namespace dsv4;

namespace {

const std::filesystem::path kDemo = std::filesystem::path(DSV4_TEST_DATA) / ".." / ".." / "models" / "demo-code";
const Tokenizer& tok() {
  static const Tokenizer t = Tokenizer::load(kDemo / "tokenizer.json");
  return t;
}

// Logits whose greedy choice is `id` (with a little mass elsewhere for the log-probabilities).
std::vector<float> force(int32_t id) {
  std::vector<float> l(static_cast<size_t>(tok().vocab_size()), 0.0f);
  l[static_cast<size_t>(id)] = 20.0f;
  l[7] = 5.0f;
  return l;
}

GenerationParams greedy(int max_tokens = 256) {
  GenerationParams p;
  p.sampling.temperature = 0;
  p.max_tokens = max_tokens;
  return p;
}

struct Out {
  std::string content, reasoning;
  std::vector<GenerationDelta> deltas;
  TextStream* ts = nullptr;
};

// Runs a stream over the forced token sequence until it finishes (or the tokens run out).
Out drive(TextStream& ts, const std::vector<int32_t>& ids) {
  Out o;
  for (int32_t id : ids) {
    if (ts.done()) break;
    const auto d = ts.step(force(id));
    CHECK(utf8_first_invalid(d.content) == std::string::npos);
    CHECK(utf8_first_invalid(d.reasoning) == std::string::npos);
    o.content += d.content;
    o.reasoning += d.reasoning;
    o.deltas.push_back(d);
  }
  if (!ts.done()) {
    const auto d = ts.end(FinishReason::Cancelled);
    o.content += d.content;
    o.reasoning += d.reasoning;
  }
  return o;
}

}  // namespace

TEST_CASE("stop strings end the answer before them, across token boundaries, and are never emitted") {
  const std::string text = "def main():\n    return stop_here + 1\n";
  const auto ids = tok().encode(text, false);
  REQUIRE(ids.size() > 6);
  for (const std::string stop : {"stop_here", "rn st", "\n", "1\n", "urn"}) {
    GenerationParams p = greedy();
    p.stop = {"never", stop};
    TextStream ts(tok(), nullptr, ThinkMode::None, p);
    const Out o = drive(ts, ids);
    INFO("stop " << stop);
    CHECK(ts.done());
    CHECK(ts.finish() == FinishReason::Stop);
    CHECK(o.content == text.substr(0, text.find(stop)));
    CHECK(ts.result().content == o.content);
  }
  // A stop string that only looks like it might start: everything comes out at the end.
  GenerationParams p = greedy(static_cast<int>(ids.size()));
  p.stop = {"return stop_here + 2"};
  TextStream ts(tok(), nullptr, ThinkMode::None, p);
  const Out o = drive(ts, ids);
  CHECK(ts.finish() == FinishReason::Length);
  CHECK(o.content == text);
}

TEST_CASE("streamed text is complete UTF-8 even when tokens split characters") {
  const std::string text = "x = '世界 → ✓ ñ'  # 🙂\n";
  const auto ids = tok().encode(text, false);
  TextStream ts(tok(), nullptr, ThinkMode::None, greedy(static_cast<int>(ids.size())));
  const Out o = drive(ts, ids);
  CHECK(o.content == text);
  CHECK(ts.finish() == FinishReason::Length);
}

TEST_CASE("reasoning and answer are kept apart at </think> and end-of-sentence stops and is not emitted") {
  const ChatFormat fmt(tok());
  std::vector<int32_t> ids = tok().encode("thinking about it", false);
  ids.push_back(fmt.end_think());
  const auto ans = tok().encode("the answer", false);
  ids.insert(ids.end(), ans.begin(), ans.end());
  ids.push_back(fmt.eos());
  ids.push_back(5);  // never reached
  TextStream ts(tok(), &fmt, ThinkMode::High, greedy());
  const Out o = drive(ts, ids);
  CHECK(o.reasoning == "thinking about it");
  CHECK(o.content == "the answer");
  CHECK(ts.finish() == FinishReason::Stop);
  CHECK(ts.result().tokens.size() == ids.size() - 1);
  CHECK(ts.result().tokens.back() == fmt.eos());
  // Non-think: everything is answer; a custom stop token also stops.
  GenerationParams p = greedy();
  p.stop_tokens = {ans[0]};
  TextStream t2(tok(), &fmt, ThinkMode::None, p);
  const Out o2 = drive(t2, ids);
  CHECK(o2.reasoning.empty());
  CHECK(o2.content == "thinking about it");  // </think> has no text of its own; stops at "the"
  CHECK(t2.finish() == FinishReason::Stop);
}

TEST_CASE("max tokens, log-probabilities, bad parameters") {
  const auto ids = tok().encode("abc def ghi", false);
  GenerationParams p = greedy(2);
  p.logprobs = 3;
  TextStream ts(tok(), nullptr, ThinkMode::None, p);
  const Out o = drive(ts, ids);
  CHECK(ts.finish() == FinishReason::Length);
  CHECK(ts.generated() == 2);
  REQUIRE(ts.result().logprobs.size() == 2);
  const auto& lp = ts.result().logprobs[0];
  // log softmax of a 20 among zeros and one 5: the chosen token is the most likely one.
  const double V = static_cast<double>(tok().vocab_size());
  const double lse = std::log(std::exp(20.0) + std::exp(5.0) + (V - 2));
  CHECK(lp.token == ids[0]);
  CHECK(lp.logprob == doctest::Approx(20.0 - lse).epsilon(1e-5));
  REQUIRE(lp.top.size() == 3);
  CHECK(lp.top[0].first == ids[0]);
  CHECK(lp.top[1].first == 7);
  CHECK(lp.top[1].second == doctest::Approx(5.0 - lse).epsilon(1e-5));
  CHECK(lp.bytes == tok().token_bytes(ids[0]));
  CHECK_THROWS_AS(ts.step(force(1)), InvalidArgument);  // finished
  auto bad = [](auto edit) {
    GenerationParams q = greedy();
    edit(q);
    return q;
  };
  CHECK_THROWS_AS(TextStream(tok(), nullptr, ThinkMode::None, bad([](GenerationParams& q) { q.max_tokens = -1; })), InvalidArgument);
  CHECK_THROWS_AS(TextStream(tok(), nullptr, ThinkMode::None, bad([](GenerationParams& q) { q.logprobs = 21; })), InvalidArgument);
  CHECK_THROWS_AS(TextStream(tok(), nullptr, ThinkMode::None, bad([](GenerationParams& q) { q.stop = {""}; })), InvalidArgument);
  CHECK_THROWS_AS(TextStream(tok(), nullptr, ThinkMode::None, bad([](GenerationParams& q) { q.sampling.temperature = NAN; })), InvalidArgument);
  CHECK_THROWS_AS(TextStream(tok(), nullptr, ThinkMode::None, bad([](GenerationParams& q) { q.sampling.top_p = 1.5f; })), InvalidArgument);
  CHECK_THROWS_AS(TextStream(tok(), nullptr, ThinkMode::None, bad([](GenerationParams& q) { q.sampling.top_k = -2; })), InvalidArgument);
  // max_tokens 0: nothing is sampled.
  TextStream zero(tok(), nullptr, ThinkMode::None, greedy(0));
  CHECK(zero.done());
  CHECK(zero.finish() == FinishReason::Length);
}

TEST_CASE("generate_text and generate_chat on the demo model: greedy text equals greedy tokens decoded, and cancellation works") {
  const auto model = Model::load(kDemo);
  Session s(model);
  const std::string prompt = "import os\nimport sys\n\n\ndef read_config(path):\n";
  GenerationParams p = greedy(40);
  std::string streamed;
  const GenerationResult r = generate_text(s, tok(), prompt, p, [&](const GenerationDelta& d) {
    streamed += d.content;
    return true;
  });
  CHECK(r.finish == FinishReason::Length);
  CHECK(r.completion_tokens == 40);
  CHECK(streamed == r.content);
  CHECK(r.content == tok().decode(r.tokens));
  // The same tokens as argmax over forward().
  Session ref(model);
  auto l = ref.forward(tok().encode(prompt, false));
  for (int32_t t : r.tokens) {
    CHECK(t == static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin()));
    l = ref.forward({&t, 1});
  }
  // Cancel after three deltas; the session stays usable.
  s.reset();
  int n = 0;
  const auto c = generate_text(s, tok(), prompt, p, [&](const GenerationDelta&) { return ++n < 3; });
  CHECK(c.finish == FinishReason::Cancelled);
  CHECK(c.completion_tokens == 3);
  s.reset();
  const auto chat = generate_chat(s, tok(), {{"user", "def add(a, b):", ""}}, ThinkMode::None, greedy(8));
  CHECK(chat.completion_tokens >= 1);
  CHECK(chat.prompt_tokens > 3);
}
