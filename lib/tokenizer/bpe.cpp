// Pre-tokenization pipeline and byte-level BPE.
#include <functional>
#include <limits>
#include <queue>
#include <utility>

#include "tokenizer/tokenizer_impl.hpp"

namespace dsv4 {

const std::array<uint32_t, 256>& byte_to_codepoint() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    uint32_t extra = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      t[b] = printable ? b : extra++;
    }
    return t;
  }();
  return table;
}

void append_utf8(std::string& s, uint32_t cp) {
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

void Tokenizer::Impl::bpe(std::string_view piece, std::vector<int32_t>& out, std::vector<int32_t>& sym) const {
  if (piece.empty()) return;
  if (ignore_merges) {
    std::string word;
    for (unsigned char c : piece) append_utf8(word, byte_to_codepoint()[c]);
    auto it = vocab.find(word);
    if (it != vocab.end()) {
      out.push_back(it->second);
      return;
    }
  }
  sym.clear();
  for (unsigned char c : piece)
    if (byte_token[c] >= 0) sym.push_back(byte_token[c]);  // unknown bytes are dropped (no unk token)
  // Repeatedly merge the lowest-ranked adjacent pair (leftmost on ties).
  if (sym.size() <= kShortPiece) {
    // Short pieces (nearly all): rescan after each merge; fastest at this size.
    for (;;) {
      int32_t best_rank = std::numeric_limits<int32_t>::max();
      size_t best_at = 0;
      int32_t best_id = -1;
      for (size_t i = 0; i + 1 < sym.size(); ++i) {
        auto it = merges.find(pair_key(sym[i], sym[i + 1]));
        if (it != merges.end() && it->second.first < best_rank) {
          best_rank = it->second.first;
          best_at = i;
          best_id = it->second.second;
        }
      }
      if (best_id < 0) break;
      sym[best_at] = best_id;
      sym.erase(sym.begin() + static_cast<std::ptrdiff_t>(best_at) + 1);
    }
    out.insert(out.end(), sym.begin(), sym.end());
    return;
  }
  merge_long(sym, out);
}

// The same merges in O(n log n) for long pieces (a 160k-letter word): symbols in a linked list,
// candidate pairs in a min-heap ordered by (rank, position); entries made stale by a merge next to
// them are skipped when popped. Positions keep the list's order, so ties go leftmost as above.
void Tokenizer::Impl::merge_long(std::vector<int32_t>& sym, std::vector<int32_t>& out) const {
  const auto n = static_cast<int32_t>(sym.size());
  std::vector<int32_t> next(static_cast<size_t>(n)), prev(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) {
    next[static_cast<size_t>(i)] = i + 1 < n ? i + 1 : -1;
    prev[static_cast<size_t>(i)] = i - 1;
  }
  using Cand = std::pair<int32_t, int32_t>;  // (rank, left position)
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto rank_at = [&](int32_t left) -> int32_t {
    const int32_t right = next[static_cast<size_t>(left)];
    if (right < 0) return -1;
    auto it = merges.find(pair_key(sym[static_cast<size_t>(left)], sym[static_cast<size_t>(right)]));
    return it == merges.end() ? -1 : it->second.first;
  };
  auto push = [&](int32_t left) {
    const int32_t r = rank_at(left);
    if (r >= 0) heap.emplace(r, left);
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);
  std::vector<uint8_t> dead(static_cast<size_t>(n), 0);
  while (!heap.empty()) {
    const auto [rank, left] = heap.top();
    heap.pop();
    if (dead[static_cast<size_t>(left)] || rank_at(left) != rank) continue;  // stale
    const int32_t right = next[static_cast<size_t>(left)];
    sym[static_cast<size_t>(left)] = merges.find(pair_key(sym[static_cast<size_t>(left)], sym[static_cast<size_t>(right)]))->second.second;
    dead[static_cast<size_t>(right)] = 1;
    next[static_cast<size_t>(left)] = next[static_cast<size_t>(right)];
    if (next[static_cast<size_t>(right)] >= 0) prev[static_cast<size_t>(next[static_cast<size_t>(right)])] = left;
    push(left);
    if (prev[static_cast<size_t>(left)] >= 0) push(prev[static_cast<size_t>(left)]);
  }
  for (int32_t i = 0; i >= 0; i = next[static_cast<size_t>(i)]) out.push_back(sym[static_cast<size_t>(i)]);
}

void Tokenizer::Impl::bpe_cached(std::string_view piece, std::vector<int32_t>& out, std::vector<int32_t>& scratch) const {
  if (piece.size() > 64) {  // long pieces are rare and would bloat the cache
    bpe(piece, out, scratch);
    return;
  }
  const std::string key(piece);
  {
    std::lock_guard<std::mutex> lk(cache_mu);
    auto it = cache.find(key);
    if (it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t start = out.size();
  bpe(piece, out, scratch);
  std::lock_guard<std::mutex> lk(cache_mu);
  if (cache.size() >= kCacheMax) cache.clear();
  cache.emplace(key, std::vector<int32_t>(out.begin() + static_cast<std::ptrdiff_t>(start), out.end()));
}

void Tokenizer::Impl::split(std::string_view text, size_t step, std::vector<int32_t>& out, std::vector<int32_t>& scratch) const {
  if (step == steps.size()) {
    bpe_cached(text, out, scratch);
    return;
  }
  // Depth first: each piece of this step is refined by the next steps before moving on, so no
  // list of pieces of the whole text is ever built.
  size_t last = 0;
  steps[step].re->for_each_match(text, [&](size_t b, size_t e) {
    if (b > last) split(text.substr(last, b - last), step + 1, out, scratch);
    split(text.substr(b, e - b), step + 1, out, scratch);
    last = e;
  });
  if (last < text.size()) split(text.substr(last), step + 1, out, scratch);
}

void Tokenizer::Impl::encode_text(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  std::string prefixed;
  if (add_prefix_space && text.front() != ' ') {
    prefixed = " ";
    prefixed += text;
    text = prefixed;
  }
  std::vector<int32_t> scratch;
  split(text, 0, out, scratch);
}

}  // namespace dsv4
