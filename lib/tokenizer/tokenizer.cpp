// Loading tokenizer.json and the public Tokenizer API.
#include <algorithm>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "dsv4/error.hpp"
#include "tokenizer/tokenizer_impl.hpp"
#include "util/json.hpp"

namespace dsv4 {

namespace {

using json = nlohmann::json;

constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

void add_pretokenizer(Tokenizer::Impl& t, const json& p, const std::string& src) {
  if (p.is_null()) return;
  const std::string type = p.value("type", "");
  if (type == "Sequence") {
    for (const auto& s : p.at("pretokenizers")) add_pretokenizer(t, s, src);
  } else if (type == "Split") {
    const std::string behavior = p.value("behavior", "");
    if (behavior != "Isolated") throw FormatError(src + ": Split behavior '" + behavior + "' is not supported (only Isolated)");
    if (p.value("invert", false)) throw FormatError(src + ": inverted Split is not supported");
    const json& pat = p.at("pattern");
    PreStep st{PreStep::SplitIsolated, nullptr};
    if (pat.contains("Regex")) st.re = std::make_unique<Regex>(pat["Regex"].get<std::string>(), false, src);
    else if (pat.contains("String")) st.re = std::make_unique<Regex>(pat["String"].get<std::string>(), true, src);
    else throw FormatError(src + ": Split pattern must be Regex or String");
    t.steps.push_back(std::move(st));
  } else if (type == "ByteLevel") {
    t.byte_level = true;
    t.add_prefix_space = p.value("add_prefix_space", false);
    if (p.value("use_regex", true)) t.steps.push_back({PreStep::ByteLevelRegex, std::make_unique<Regex>(kGpt2Pattern, false, src)});
  } else {
    throw FormatError(src + ": pre_tokenizer type '" + type + "' is not supported");
  }
}

}  // namespace

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const std::filesystem::path& given) {
  std::error_code ec;
  const std::filesystem::path path = std::filesystem::is_directory(given, ec) ? given / "tokenizer.json" : given;
  std::ifstream f(path, std::ios::binary);
  if (!f) throw IoError("cannot open tokenizer " + path.string() + ": no such file or not readable");
  std::stringstream ss;
  ss << f.rdbuf();
  return from_json(ss.str(), path.string());
}

Tokenizer Tokenizer::from_json(std::string_view text, const std::string& src) {
  const json j = parse_json<FormatError>(text, src);
  auto t = std::make_unique<Impl>();
  try {
    if (j.contains("normalizer") && !j["normalizer"].is_null())
      throw FormatError(src + ": normalizer '" + j["normalizer"].value("type", "?") + "' is not supported");
    add_pretokenizer(*t, j.value("pre_tokenizer", json()), src);
    const json& m = j.at("model");
    if (m.value("type", "") != "BPE") throw FormatError(src + ": model type '" + m.value("type", "") + "' is not supported (only BPE)");
    if (m.value("byte_fallback", false)) throw FormatError(src + ": BPE byte_fallback is not supported");
    t->ignore_merges = m.value("ignore_merges", false);
    // Ids index tables sized by the largest one: each must be an integer in [0, kMaxTokenId), and
    // the id space may not be much sparser than the tokens that fill it (a 150-byte file with one
    // id of 10^8 must not allocate gigabytes).
    constexpr int64_t kMaxTokenId = int64_t{1} << 24;
    auto shown = [](const std::string& x) {  // at most 64 bytes, cut at a character boundary
      size_t n = std::min<size_t>(x.size(), 64);
      while (n > 0 && n < x.size() && (static_cast<unsigned char>(x[n]) & 0xC0) == 0x80) --n;
      return x.substr(0, n);
    };
    auto read_id = [&](const json& v, const std::string& token) -> int32_t {
      if (!v.is_number_integer() || (v.is_number_unsigned() ? v.get<uint64_t>() >= static_cast<uint64_t>(kMaxTokenId)
                                                            : v.get<int64_t>() < 0 || v.get<int64_t>() >= kMaxTokenId))
        throw FormatError(src + ": token '" + shown(token) + "' has id " + shown(v.dump()) + "; ids are integers in [0, " +
                          std::to_string(kMaxTokenId) + ")");
      return static_cast<int32_t>(v.get<int64_t>());
    };
    int32_t max_id = -1;
    int64_t entries = 0;
    for (auto it = m.at("vocab").begin(); it != m.at("vocab").end(); ++it) {
      const int32_t id = read_id(it.value(), it.key());
      t->vocab.emplace(it.key(), id);
      max_id = std::max(max_id, id);
      ++entries;
    }
    for (const auto& a : j.value("added_tokens", json::array())) {
      const std::string content = a.at("content").get<std::string>();
      const int32_t id = read_id(a.at("id"), content);
      t->added.push_back({content, id, a.value("special", false)});
      max_id = std::max(max_id, id);
      ++entries;
    }
    if (static_cast<int64_t>(max_id) + 1 > 2 * entries + 4096)
      throw FormatError(src + ": the largest token id is " + std::to_string(max_id) + " but only " + std::to_string(entries) +
                        " tokens are defined; the id space may be at most twice the tokens plus 4096");
    std::stable_sort(t->added.begin(), t->added.end(), [](const auto& x, const auto& y) { return x.content.size() > y.content.size(); });
    for (const auto& a : t->added)
      if (!a.content.empty()) t->added_first[static_cast<unsigned char>(a.content[0])] = true;
    const auto& b2c = byte_to_codepoint();
    for (int b = 0; b < 256; ++b) {
      std::string s;
      append_utf8(s, b2c[static_cast<size_t>(b)]);
      auto it = t->vocab.find(s);
      t->byte_token[static_cast<size_t>(b)] = it == t->vocab.end() ? -1 : it->second;
    }
    int32_t rank = 0;
    for (const auto& mg : m.at("merges")) {
      std::string a, b;
      if (mg.is_string()) {
        const std::string s = mg.get<std::string>();
        const size_t sp = s.find(' ', 1);
        if (sp == std::string::npos) throw FormatError(src + ": merge '" + s + "' is not 'a b'");
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else {
        a = mg.at(0).get<std::string>();
        b = mg.at(1).get<std::string>();
      }
      auto ia = t->vocab.find(a), ib = t->vocab.find(b), iab = t->vocab.find(a + b);
      if (ia != t->vocab.end() && ib != t->vocab.end() && iab != t->vocab.end()) {
        const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(ia->second)) << 32) | static_cast<uint32_t>(ib->second);
        t->merges.emplace(key, std::make_pair(rank, iab->second));
      }
      ++rank;
    }
    const std::string dec = j.contains("decoder") && !j["decoder"].is_null() ? j["decoder"].value("type", "") : "";
    if (!dec.empty() && dec != "ByteLevel") throw FormatError(src + ": decoder '" + dec + "' is not supported (only ByteLevel)");
    // id -> bytes / string
    t->id_bytes.assign(static_cast<size_t>(max_id + 1), std::string());
    t->id_string.assign(static_cast<size_t>(max_id + 1), std::string());
    t->id_special.assign(static_cast<size_t>(max_id + 1), 0);
    std::unordered_map<uint32_t, uint8_t> c2b;
    for (int b = 0; b < 256; ++b) c2b[b2c[static_cast<size_t>(b)]] = static_cast<uint8_t>(b);
    for (const auto& [s, id] : t->vocab) {
      t->id_string[static_cast<size_t>(id)] = s;
      // Map each character of the byte-level string back to its byte; fall back to the raw text.
      std::string bytes;
      bool ok = true;
      for (size_t i = 0; i < s.size();) {
        const auto c = static_cast<unsigned char>(s[i]);
        const int n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
        for (int k = 1; k < n && i + static_cast<size_t>(k) < s.size(); ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
        auto it = c2b.find(cp);
        if (it == c2b.end()) {
          ok = false;
          break;
        }
        bytes += static_cast<char>(it->second);
        i += static_cast<size_t>(n);
      }
      t->id_bytes[static_cast<size_t>(id)] = ok ? bytes : s;
    }
    for (const auto& a : t->added) {
      t->id_bytes[static_cast<size_t>(a.id)] = a.content;
      t->id_string[static_cast<size_t>(a.id)] = a.content;
      t->id_special[static_cast<size_t>(a.id)] = a.special ? 1 : 0;
    }
  } catch (const json::exception& e) {
    throw FormatError(src + ": unexpected structure (" + e.what() + ")");
  }
  return Tokenizer(std::move(t));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool parse_special) const {
  const size_t bad = utf8_first_invalid(text);
  if (bad != std::string_view::npos)
    throw InvalidArgument("tokenizer: input is not valid UTF-8 (first bad byte at offset " + std::to_string(bad) + ")");
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (!parse_special || impl_->added.empty()) {
    impl_->encode_text(text, out);
    return out;
  }
  // Added tokens are matched first (leftmost, then longest); the text between them is encoded.
  size_t start = 0, i = 0;
  while (i < text.size()) {
    if (!impl_->added_first[static_cast<unsigned char>(text[i])]) {
      ++i;
      continue;
    }
    const Impl::Added* hit = nullptr;
    for (const auto& a : impl_->added)
      if (!a.content.empty() && text.compare(i, a.content.size(), a.content) == 0) {
        hit = &a;
        break;
      }
    if (hit == nullptr) {
      ++i;
      continue;
    }
    impl_->encode_text(text.substr(start, i - start), out);
    out.push_back(hit->id);
    i += hit->content.size();
    start = i;
  }
  impl_->encode_text(text.substr(start), out);
  return out;
}

const std::string& Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= impl_->id_bytes.size())
    throw InvalidArgument("tokenizer: token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                          std::to_string(impl_->id_bytes.size()) + ")");
  return impl_->id_bytes[static_cast<size_t>(id)];
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string s;
  for (int32_t id : ids) s += token_bytes(id);
  return s;
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  for (const auto& a : impl_->added)
    if (a.content == token) return a.id;
  auto it = impl_->vocab.find(std::string(token));
  if (it == impl_->vocab.end()) return std::nullopt;
  return it->second;
}

int32_t Tokenizer::require_token(std::string_view token) const {
  auto id = token_to_id(token);
  if (!id) throw InvalidArgument("tokenizer: token '" + std::string(token) + "' is not in this tokenizer's vocabulary");
  return *id;
}

std::string Tokenizer::id_to_token(int32_t id) const {
  token_bytes(id);  // range check
  return impl_->id_string[static_cast<size_t>(id)];
}

int64_t Tokenizer::vocab_size() const { return static_cast<int64_t>(impl_->id_bytes.size()); }

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->id_special.size() && impl_->id_special[static_cast<size_t>(id)] != 0;
}

}  // namespace dsv4
