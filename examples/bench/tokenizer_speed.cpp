// Prints tokenizer encode/decode throughput (MB/s) on a large text.
// Usage: bench_tokenizer TOKENIZER_JSON [TEXT_FILE] (default text: Python-like source, 8 MB)
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "dsv4/tokenizer.hpp"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s TOKENIZER_JSON [TEXT_FILE]\n", argv[0]);
    return 2;
  }
  const auto tok = dsv4::Tokenizer::load(argv[1]);
  std::string text;
  if (argc > 2) {
    std::ifstream f(argv[2], std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    text = ss.str();
  } else {
    const std::string unit =
        "def fibonacci(n: int) -> int:\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    a, b = 0, 1\n"
        "    for _ in range(n):\n        a, b = b, a + b  # 深度求索 naïve café 👍\n    return a\n\n"
        "class Matrix:\n    def __init__(self, rows=3, cols=3):\n        self.data = [[0.0] * cols for _ in range(rows)]\n\n";
    while (text.size() < (8u << 20)) text += unit;
  }
  const auto t0 = std::chrono::steady_clock::now();
  const auto ids = tok.encode(text);
  const auto t1 = std::chrono::steady_clock::now();
  const std::string back = tok.decode(ids);
  const auto t2 = std::chrono::steady_clock::now();
  const double mb = static_cast<double>(text.size()) / 1e6;
  std::printf("text %.1f MB -> %zu tokens (%.2f bytes/token)\n", mb, ids.size(), static_cast<double>(text.size()) / static_cast<double>(ids.size()));
  std::printf("encode %.2f MB/s (1 thread)\n", mb / std::chrono::duration<double>(t1 - t0).count());
  std::printf("decode %.1f MB/s, round trip %s\n", mb / std::chrono::duration<double>(t2 - t1).count(), back == text ? "exact" : "DIFFERS");
  return back == text ? 0 : 1;
}
