// The tokenizer against Hugging Face `tokenizers` encodings; decoding; streaming UTF-8 safety.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "dsv4/error.hpp"
#include "dsv4/tokenizer.hpp"
#include "support/support.hpp"

using namespace dsv4;

namespace {
const Tokenizer& tok() {
  static const Tokenizer t = Tokenizer::load(test::data_dir() / "tokenizer" / "tokenizer.json");
  return t;
}
nlohmann::json encodings() {
  std::ifstream f(test::data_dir() / "tokenizer" / "encodings.json");
  return nlohmann::json::parse(f);
}
}  // namespace

TEST_CASE("encodings equal the HF tokenizers goldens and decode round-trips") {
  const auto cases = encodings();
  REQUIRE(cases.size() >= 100);
  int bad = 0, bad_decode = 0;
  for (const auto& c : cases) {
    const std::string text = c.at("text").get<std::string>();
    const auto want = c.at("ids").get<std::vector<int32_t>>();
    const auto got = tok().encode(text);
    if (got != want) {
      if (bad < 5) MESSAGE("mismatch for text: " << text.substr(0, 80));
      ++bad;
    }
    if (tok().decode(want) != c.at("decoded").get<std::string>()) ++bad_decode;
  }
  CHECK(bad == 0);
  CHECK(bad_decode == 0);
}

TEST_CASE("special tokens are matched first and can be disabled") {
  const int32_t bos = tok().require_token("<｜begin▁of▁sentence｜>");
  const int32_t user = tok().require_token("<｜User｜>");
  const auto ids = tok().encode("<｜begin▁of▁sentence｜><｜User｜>Hi");
  REQUIRE(ids.size() >= 3);
  CHECK(ids[0] == bos);
  CHECK(ids[1] == user);
  const auto plain = tok().encode("<｜User｜>", false);
  CHECK(std::find(plain.begin(), plain.end(), user) == plain.end());
  CHECK(tok().decode(plain) == "<｜User｜>");
  CHECK(tok().is_special(user));
  CHECK_FALSE(tok().token_to_id("<｜NoSuchToken｜>").has_value());
  CHECK_THROWS_AS(tok().require_token("<｜NoSuchToken｜>"), InvalidArgument);
}

TEST_CASE("invalid UTF-8 input is a clear error") {
  try {
    tok().encode(std::string("ok \xC3\x28 bad"));
    FAIL("no error");
  } catch (const InvalidArgument& e) {
    CHECK(std::string(e.what()).find("offset 3") != std::string::npos);
  }
  CHECK_THROWS_AS(tok().encode(std::string("\xED\xA0\x80")), InvalidArgument);  // surrogate
  CHECK_THROWS_AS(tok().decode(std::vector<int32_t>{static_cast<int32_t>(tok().vocab_size())}), InvalidArgument);
}

TEST_CASE("streaming decode never emits a broken UTF-8 sequence") {
  const std::string text = "emoji 👍🏽🎉 and 深度求索 naïve — done";
  const auto ids = tok().encode(text);
  // Some token must end inside a multi-byte character for this test to mean anything.
  int split = 0;
  for (int32_t id : ids) split += utf8_complete_prefix(tok().token_bytes(id)) != tok().token_bytes(id).size();
  CHECK(split > 0);
  StreamDecoder sd(tok());
  std::string all;
  for (int32_t id : ids) {
    const std::string piece = sd.push(id);
    CHECK(utf8_first_invalid(piece) == std::string::npos);
    all += piece;
  }
  all += sd.flush();
  CHECK(all == text);
  // A lone continuation byte token becomes U+FFFD, never raw.
  StreamDecoder sd2(tok());
  for (int32_t id = 0; id < tok().vocab_size(); ++id)
    if (tok().token_bytes(id) == "\x80") {
      CHECK(sd2.push(id) == "\xEF\xBF\xBD");
      break;
    }
}

TEST_CASE("merges in either spelling load the same tokenizer") {
  std::ifstream f(test::data_dir() / "tokenizer" / "tokenizer.json");
  auto j = nlohmann::json::parse(f);
  auto& merges = j["model"]["merges"];
  for (auto& m : merges)
    if (m.is_array()) m = m[0].get<std::string>() + " " + m[1].get<std::string>();
  const Tokenizer t2 = Tokenizer::from_json(j.dump());
  const std::string text = "def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1)";
  CHECK(t2.encode(text) == tok().encode(text));
  j["model"]["ignore_merges"] = true;
  const Tokenizer t3 = Tokenizer::from_json(j.dump());
  const auto ids3 = t3.encode(text);
  CHECK(t3.decode(ids3) == text);
  CHECK(ids3.size() <= tok().encode(text).size());
}

TEST_CASE("a tokenizer.json nested 10^5 levels deep (Sequence in Sequence) is a FormatError, not a stack overflow") {
  std::ifstream f(test::data_dir() / "tokenizer" / "tokenizer.json");
  nlohmann::json j = nlohmann::json::parse(f);
  j["pre_tokenizer"] = "@";
  std::string text = j.dump();
  std::string deep;
  for (int i = 0; i < 100000; ++i) deep += "{\"type\":\"Sequence\",\"pretokenizers\":[";
  for (int i = 0; i < 100000; ++i) deep += "]}";
  text.replace(text.find("\"@\""), 3, deep);
  std::string msg;
  try {
    Tokenizer::from_json(text, "deep.json");
  } catch (const FormatError& e) {
    msg = e.what();
  }
  CHECK(msg.find("nests deeper than") != std::string::npos);
}

TEST_CASE("token ids that are negative, huge, not integers or far sparser than the vocabulary are a FormatError") {
  std::ifstream f(test::data_dir() / "tokenizer" / "tokenizer.json");
  const nlohmann::json base = nlohmann::json::parse(f);
  const std::vector<nlohmann::json> bad_ids = {-5, int64_t{1} << 31, (int64_t{1} << 31) + 3, 100000000, uint64_t{1} << 63, 1.5, "7", nullptr};
  for (const auto& id : bad_ids) {
    for (const bool added : {true, false}) {
      nlohmann::json j = base;
      if (added)
        j["added_tokens"][0]["id"] = id;
      else
        j["model"]["vocab"].begin().value() = id;
      CAPTURE(id.dump());
      CAPTURE(added);
      CHECK_THROWS_AS(Tokenizer::from_json(j.dump(), "bad.json"), FormatError);
    }
  }
  // In range, but a 6000-token vocabulary with one id of 10^6 would size every table by 10^6.
  nlohmann::json sparse = base;
  sparse["added_tokens"][0]["id"] = 1000000;
  std::string msg;
  try {
    Tokenizer::from_json(sparse.dump(), "sparse.json");
  } catch (const FormatError& e) {
    msg = e.what();
  }
  CHECK(msg.find("largest token id is 1000000") != std::string::npos);
  // A few unused ids (padding) are fine.
  nlohmann::json padded = base;
  padded["added_tokens"][0]["id"] = base["model"]["vocab"].size() + base["added_tokens"].size() + 100;
  CHECK(Tokenizer::from_json(padded.dump(), "padded.json").vocab_size() == static_cast<int64_t>(padded["added_tokens"][0]["id"].get<int64_t>() + 1));
}

namespace {
// The textbook BPE on one piece of lowercase letters (their byte-level spelling is themselves):
// rescan for the lowest-ranked adjacent pair, leftmost on ties, until none is left.
std::vector<int32_t> naive_bpe(const std::string& word, const nlohmann::json& tj) {
  const auto& vocab = tj["model"]["vocab"];
  std::map<std::pair<std::string, std::string>, int> rank;
  int r = 0;
  for (const auto& m : tj["model"]["merges"]) {
    std::string a, b;
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ', 1);
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else {
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    }
    rank.emplace(std::make_pair(a, b), r++);
  }
  std::vector<std::string> sym;
  for (char c : word) sym.emplace_back(1, c);
  for (;;) {
    int best = INT32_MAX;
    size_t at = 0;
    for (size_t i = 0; i + 1 < sym.size(); ++i) {
      auto it = rank.find({sym[i], sym[i + 1]});
      if (it != rank.end() && it->second < best && vocab.contains(sym[i] + sym[i + 1])) {
        best = it->second;
        at = i;
      }
    }
    if (best == INT32_MAX) break;
    sym[at] += sym[at + 1];
    sym.erase(sym.begin() + static_cast<std::ptrdiff_t>(at) + 1);
  }
  std::vector<int32_t> ids;
  for (const auto& s : sym) ids.push_back(vocab[s].get<int32_t>());
  return ids;
}
}  // namespace

TEST_CASE("long pieces merge exactly as the textbook BPE does, and a 200k-letter word encodes at all") {
  std::ifstream f(test::data_dir() / "tokenizer" / "tokenizer.json");
  const nlohmann::json tj = nlohmann::json::parse(f);
  std::mt19937 rng(7);
  for (const std::string alphabet : {"ab", "abc", "aeinst", "abcdefghijklmnopqrstuvwxyz"}) {
    for (const size_t n : {size_t{1}, size_t{13}, size_t{47}, size_t{48}, size_t{49}, size_t{137}, size_t{1000}, size_t{3000}}) {
      std::string w;
      for (size_t i = 0; i < n; ++i) w += alphabet[rng() % alphabet.size()];
      CAPTURE(alphabet);
      CAPTURE(n);
      // The test tokenizer does not add a prefix space; a run of letters is one piece.
      CHECK(tok().encode(w) == naive_bpe(w, tj));
    }
  }
  CHECK(tok().encode(std::string(3001, 'a')) == naive_bpe(std::string(3001, 'a'), tj));
  // The rescanning merge is quadratic: this took minutes before the heap (now milliseconds).
  std::string big;
  for (size_t i = 0; i < 200000; ++i) big += static_cast<char>('a' + rng() % 26);
  const auto ids = tok().encode(big);
  CHECK(tok().decode(ids) == big);
}
