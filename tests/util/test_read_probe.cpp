// The bandwidth probes read what they say: the xor of exactly the words they cover.
#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "util/read_probe.hpp"

using namespace dsv4;

namespace {
uint64_t xor_words(const std::vector<uint64_t>& w, size_t b, size_t e) {
  uint64_t r = 0;
  for (size_t i = b; i < e; ++i) r ^= w[i];
  return r;
}
}  // namespace

TEST_CASE("read probes: the xor of the words covered, tails left out as documented") {
  for (const size_t words : {size_t{0}, size_t{1}, size_t{13}, size_t{137}, size_t{4096}, size_t{100003}}) {
    std::vector<uint64_t> w(words + 1);
    for (size_t i = 0; i < w.size(); ++i) w[i] = (i + 1) * 0x9E3779B97F4A7C15ull;
    const size_t bytes = words * 8;
    // read_linear: whole 64-byte lines only
    CHECK(read_linear(w.data(), bytes) == xor_words(w, 0, words / 8 * 8));
    // read_four_streams: four quarters of bytes/8/4 words from the quarter points
    const size_t q = words / 4;
    uint64_t want = 0;
    for (int k = 0; k < 4; ++k) want ^= xor_words(w, k * q, k * q + q);
    CHECK(read_four_streams(w.data(), bytes) == want);
  }
}
