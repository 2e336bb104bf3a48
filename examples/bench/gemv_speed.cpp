// Decode-kernel speed: y = x·Wᵀ for S activation rows (one by default) through the CPU backend's
// linear(), per stored format at V4 shapes, with W hot (one matrix again and again) and cold (a
// random matrix from a pool far larger than the caches, as routed experts are read). Prints GB/s
// of weights and the ratio to the read bandwidth measured in the same run, and for S > 1 the
// GFLOP/s (an expert's share of a 512-token prefill step is about 12 rows).
//
//   bench_gemv [pool GiB = 2] [threads = all] [cpu tier = best] [shape filter = all] [S = 1]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "backend/cpu/select.hpp"
#include "util/arena.hpp"
#include "util/read_probe.hpp"

using namespace dsv4;
using Clock = std::chrono::steady_clock;

namespace {

double secs(Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); }

struct Shape {
  const char* name;
  WFormat fmt;
  int64_t rows, cols;
};

size_t weight_bytes(const Shape& s) {
  switch (s.fmt) {
    case WFormat::FP4: return static_cast<size_t>(s.rows * s.cols / 2);
    case WFormat::FP8: return static_cast<size_t>(s.rows * s.cols);
    default: return static_cast<size_t>(s.rows * s.cols * 2);
  }
}
size_t scale_bytes(const Shape& s) {
  if (s.fmt == WFormat::FP4) return static_cast<size_t>(s.rows * s.cols / 32);
  if (s.fmt == WFormat::FP8) return static_cast<size_t>((s.rows + 127) / 128 * ((s.cols + 127) / 128));
  return 0;
}

// Read bandwidth over `bytes` with `threads` threads: the best of three runs of each of the two
// read patterns, the same reads as `dsv4 bench`'s ceiling.
double read_gbps(const uint8_t* p, size_t bytes, int threads) {
  double best = 0;
  for (int rep = 0; rep < 6; ++rep) {
    const bool streams = rep % 2 == 0;
    std::vector<std::thread> th;
    std::vector<uint64_t> sink(static_cast<size_t>(threads));
    const auto t0 = Clock::now();
    for (int t = 0; t < threads; ++t)
      th.emplace_back([&, t] {
        const size_t b = bytes / 64 * static_cast<size_t>(t) / static_cast<size_t>(threads) * 64,
                     e = bytes / 64 * static_cast<size_t>(t + 1) / static_cast<size_t>(threads) * 64;
        sink[static_cast<size_t>(t)] = streams ? read_four_streams(p + b, e - b) : read_linear(p + b, e - b);
      });
    for (auto& x : th) x.join();
    best = std::max(best, static_cast<double>(bytes) / secs(t0) / 1e9);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const double pool_gib = argc > 1 ? std::atof(argv[1]) : 2.0;
  const int threads = argc > 2 ? std::atoi(argv[2]) : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const Shape shapes[] = {{"bf16 head slice 4096x4096", WFormat::BF16, 4096, 4096},
                          {"bf16 head 129280x4096", WFormat::BF16, 129280, 4096},
                          {"fp8 wq_a 1024x4096", WFormat::FP8, 1024, 4096},
                          {"fp8 wo_b 4096x8192", WFormat::FP8, 4096, 8192},
                          {"fp4 expert w1 2048x4096", WFormat::FP4, 2048, 4096},
                          {"fp4 expert w2 4096x2048", WFormat::FP4, 4096, 2048}};
  const std::string tier = argc > 3 ? argv[3] : "";
  auto backend = make_cpu_backend(threads, tier);
  Backend& be = *backend;
  std::mt19937_64 rng(1);
  Arena arena;
  const size_t pool = static_cast<size_t>(pool_gib * (1u << 30));
  uint8_t* mem = arena.alloc(pool);
  for (size_t i = 0; i < pool; i += 8) {
    // Every byte in 0x10..0x37: e4m3 exponents well inside the range, and BF16/F16/F32 words
    // finite and normal (no subnormal weight: Intel cores take a microcode assist for each FMA
    // with a subnormal input, which made the BF16 rows read 10x slower than real weights).
    const uint64_t v = (rng() & 0x3737373737373737ull) | 0x1010101010101010ull;
    std::copy_n(reinterpret_cast<const uint8_t*>(&v), 8, mem + i);
  }
  const double bw = read_gbps(mem, pool, threads);
  std::printf("threads %d, pool %.1f GiB, read bandwidth %.1f GB/s (same run)\n\n", threads, pool_gib, bw);
  std::printf("%-28s %12s %10s %12s %10s\n", "shape", "hot GB/s", "vs read", "cold GB/s", "vs read");
  const std::string filter = argc > 4 ? argv[4] : "";
  const int64_t S = argc > 5 ? std::clamp<int64_t>(std::atoll(argv[5]), 1, 512) : 1;
  std::vector<float> x(static_cast<size_t>(8192 * S)), y(static_cast<size_t>(129280 * S));
  for (auto& v : x) v = static_cast<float>(rng() % 2001) / 1000.0f - 1.0f;
  if (S > 1) std::printf("%lld activation rows\n", static_cast<long long>(S));
  for (const Shape& s : shapes) {
    if (std::string(s.name).find(filter) == std::string::npos) continue;
    const size_t wb = weight_bytes(s), sb = scale_bytes(s), stride = (wb + sb + 4095) / 4096 * 4096;
    const size_t count = std::max<size_t>(1, pool / stride);
    auto mat = [&](size_t k) {
      MatW w;
      w.fmt = s.fmt;
      w.rows = s.rows;
      w.cols = s.cols;
      w.data = mem + k * stride;
      w.scale = sb ? w.data + wb : nullptr;
      w.scale_cols = s.fmt == WFormat::FP4 ? s.cols / 32 : (s.cols + 127) / 128;
      if (sb) std::fill(const_cast<uint8_t*>(w.scale), const_cast<uint8_t*>(w.scale) + sb, uint8_t{120});
      return w;
    };
    std::vector<MatW> ws;
    for (size_t k = 0; k < count; ++k) ws.push_back(mat(k));
    const int hot_n = std::max(20, static_cast<int>(4e9 / static_cast<double>(wb + sb) / static_cast<double>(S)));
    double hot = 0, cold = 0;
    for (int rep = 0; rep < 3; ++rep) {
      auto t0 = Clock::now();
      for (int i = 0; i < hot_n; ++i) be.linear(ws[0], 0, s.rows, x.data(), s.cols, S, y.data(), s.rows);
      hot = std::max(hot, static_cast<double>(wb + sb) * hot_n / secs(t0) / 1e9);
      std::uniform_int_distribution<size_t> pick(0, count - 1);
      const int cold_n = static_cast<int>(std::min<size_t>(count * 2, static_cast<size_t>(std::max<int64_t>(20, 600 / S))));
      t0 = Clock::now();
      for (int i = 0; i < cold_n; ++i) be.linear(ws[pick(rng)], 0, s.rows, x.data(), s.cols, S, y.data(), s.rows);
      cold = std::max(cold, static_cast<double>(wb + sb) * cold_n / secs(t0) / 1e9);
    }
    std::printf("%-28s %12.1f %9.0f%% %12.1f %9.0f%%", s.name, hot, 100 * hot / bw, cold, 100 * cold / bw);
    if (S > 1) {  // 2·S flops per weight
      const double per_byte = 2.0 * static_cast<double>(S) * static_cast<double>(s.rows * s.cols) / static_cast<double>(wb + sb);
      std::printf("   %7.1f / %7.1f GFLOP/s hot / cold", hot * per_byte, cold * per_byte);
    }
    std::printf("\n");
  }
  return 0;
}
