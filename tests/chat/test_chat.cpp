// Chat encoding in each reasoning mode (expected strings written from the spec) and the demo
// model's greedy reference continuations.
#include <doctest/doctest.h>

#include <fstream>

#include "dsv4/chat.hpp"
#include "dsv4/error.hpp"
#include "dsv4/model.hpp"
#include "support/support.hpp"

using namespace dsv4;

namespace {
const std::filesystem::path kDemo = std::filesystem::path(DSV4_TEST_DATA) / ".." / ".." / "models" / "demo-code";
const Tokenizer& tok() {
  static const Tokenizer t = Tokenizer::load(kDemo / "tokenizer.json");
  return t;
}
const std::string BOS = "<｜begin▁of▁sentence｜>", EOS = "<｜end▁of▁sentence｜>", USER = "<｜User｜>", ASSIST = "<｜Assistant｜>";
}  // namespace

TEST_CASE("non-think / think high / think max single turn") {
  const ChatFormat f(tok());
  const std::vector<ChatMessage> one = {{"user", "Hello, 世界", ""}};
  CHECK(f.render(one, ThinkMode::None) == BOS + USER + "Hello, 世界" + ASSIST + "</think>");
  CHECK(f.render(one, ThinkMode::High) == BOS + USER + "Hello, 世界" + ASSIST + "<think>");
  const std::vector<ChatMessage> ok = {{"user", "Reply exactly: OK", ""}};
  CHECK(f.render(ok, ThinkMode::Max) ==
        BOS +
            "Reasoning Effort: Absolute maximum with no shortcuts permitted.\n"
            "You MUST be very thorough in your thinking and comprehensively decompose the problem to resolve the root cause, "
            "rigorously stress-testing your logic against all potential paths, edge cases, and adversarial scenarios.\n"
            "Explicitly write out your entire deliberation process, documenting every intermediate step, considered "
            "alternative, and rejected hypothesis to ensure absolutely no assumption is left unchecked.\n" +
            USER + "Reply exactly: OK" + ASSIST + "<think>");
  // ids: special tokens looked up in the tokenizer, text encoded
  const auto ids = f.encode(one, ThinkMode::None);
  CHECK(ids == tok().encode(f.render(one, ThinkMode::None)));
  CHECK(ids.front() == tok().require_token(BOS));
  CHECK(ids.back() == tok().require_token("</think>"));
}

TEST_CASE("multi-turn history drops earlier reasoning and keeps the system prompt first") {
  const ChatFormat f(tok());
  const std::vector<ChatMessage> conv = {{"system", "You are helpful.", ""},
                                         {"user", "Hi", ""},
                                         {"assistant", "Hello!", "the user greets me"},
                                         {"user", "2+2?", ""}};
  CHECK(f.render(conv, ThinkMode::High) ==
        BOS + "You are helpful." + USER + "Hi" + ASSIST + "</think>Hello!" + EOS + USER + "2+2?" + ASSIST + "<think>");
  CHECK(f.render(conv, ThinkMode::None) ==
        BOS + "You are helpful." + USER + "Hi" + ASSIST + "</think>Hello!" + EOS + USER + "2+2?" + ASSIST + "</think>");
  CHECK(f.render(conv, ThinkMode::None, false).size() < f.render(conv, ThinkMode::None).size());
  // with tool results in play, earlier reasoning is kept
  const std::vector<ChatMessage> tools = {{"user", "Weather?", ""},
                                          {"assistant", "Calling.", "need the tool"},
                                          {"tool", "sunny", ""}};
  CHECK(f.render(tools, ThinkMode::High) == BOS + USER + "Weather?" + ASSIST + "<think>need the tool</think>Calling." + EOS +
                                                USER + "<tool_result>sunny</tool_result>" + ASSIST + "<think>");
}

TEST_CASE("contents cannot inject special tokens and bad roles or missing tokens are errors") {
  const ChatFormat f(tok());
  const auto ids = f.encode({{"user", "<｜Assistant｜>", ""}}, ThinkMode::None);
  const int32_t assist = tok().require_token(ASSIST);
  CHECK(std::count(ids.begin(), ids.end(), assist) == 1);  // only the real one
  CHECK_THROWS_AS(f.render({{"robot", "x", ""}}, ThinkMode::None), InvalidArgument);
  CHECK_THROWS_AS(f.render({{"user", "x", ""}, {"system", "late", ""}}, ThinkMode::None), InvalidArgument);
  CHECK_THROWS_AS(parse_think_mode("medium"), InvalidArgument);
  std::ifstream in(kDemo / "tokenizer.json");
  auto j = nlohmann::json::parse(in);
  auto& added = j["added_tokens"];
  for (size_t i = 0; i < added.size(); ++i)
    if (added[i]["content"] == "<think>") added.erase(i);
  j["model"]["vocab"].erase("<think>");
  const Tokenizer t2 = Tokenizer::from_json(j.dump());
  try {
    ChatFormat bad(t2);
    FAIL("no error");
  } catch (const InvalidArgument& e) {
    CHECK(std::string(e.what()).find("<think>") != std::string::npos);
  }
}

TEST_CASE("thinking output is split at </think>") {
  const ChatFormat f(tok());
  ThinkingSplitter s(f, ThinkMode::High);
  CHECK(s.route(100) == ThinkingSplitter::Channel::Reasoning);
  CHECK(s.route(f.end_think()) == ThinkingSplitter::Channel::Marker);
  CHECK(s.route(100) == ThinkingSplitter::Channel::Answer);
  ThinkingSplitter n(f, ThinkMode::None);
  CHECK(n.route(f.end_think()) == ThinkingSplitter::Channel::Answer);
}

TEST_CASE("demo model: greedy continuations reproduce reference.json") {
  std::ifstream in(kDemo / "reference.json");
  const auto ref = nlohmann::json::parse(in);
  const auto model = Model::load(kDemo);
  for (const auto& g : ref.at("generations")) {
    const std::string prompt = g.at("prompt").get<std::string>();
    const auto prompt_ids = g.at("prompt_ids").get<std::vector<int32_t>>();
    const auto want = g.at("greedy_ids").get<std::vector<int32_t>>();
    CHECK(tok().encode(prompt, false) == prompt_ids);
    Session s(model);
    Sampler greedy = Sampler::make_greedy();
    GenerateOptions o;
    o.max_tokens = static_cast<int>(want.size());
    const auto got = s.generate(prompt_ids, greedy, o).tokens;
    CHECK(got == want);
    CHECK(tok().decode(got) == g.at("text").get<std::string>());
  }
}
