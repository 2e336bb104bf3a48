// Prints the sampler's cost per token at vocabulary 129,280 and the per-decode-step time through
// the C++ API and the C ABI on one model (default: the official_a golden).
// Usage: bench_api MODEL_DIR [steps]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "dsv4.h"
#include "dsv4/model.hpp"

namespace {

using Clock = std::chrono::steady_clock;

double us_since(Clock::time_point t0, int n) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / n;
}

void bench_sampler() {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  std::vector<float> logits(129280);
  for (auto& x : logits) x = nd(rng);
  struct Case {
    const char* name;
    dsv4::SamplerParams p;
  };
  dsv4::SamplerParams greedy, topk, topp, full;
  greedy.temperature = 0;
  topk.top_k = 50;
  topk.temperature = 0.7f;
  topp.top_p = 0.95f;
  topp.temperature = 0.7f;
  full.top_k = 50;
  full.top_p = 0.95f;
  full.min_p = 0.05f;
  full.repetition_penalty = 1.1f;
  for (const Case& c : {Case{"greedy", greedy}, Case{"top-k 50", topk}, Case{"top-p 0.95", topp},
                        Case{"penalties+top-k+top-p+min-p", full}}) {
    dsv4::Sampler s = dsv4::Sampler::from_params(c.p);
    for (int i = 0; i < 20; ++i) s.sample(logits);
    const int n = 300;
    const auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) s.sample(logits);
    std::printf("sampler %-30s %8.1f us/token (vocab 129280)\n", c.name, us_since(t0, n));
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL_DIR [steps]\n", argv[0]);
    return 2;
  }
  const int steps = argc > 2 ? std::atoi(argv[2]) : 200;
  bench_sampler();
  auto model = dsv4::Model::load(argv[1]);
  const int32_t V = static_cast<int32_t>(model->config().vocab_size);
  std::vector<int32_t> prompt(32);
  for (int i = 0; i < 32; ++i) prompt[static_cast<size_t>(i)] = (i * 37 + 5) % V;
  dsv4::SessionOptions opt;
  opt.threads = 2;
  double cpp_us = 0, c_us = 0;
  for (int rep = 0; rep < 2; ++rep) {  // alternate to even out machine noise
    {
      dsv4::Session s(model, opt);
      s.forward(prompt);
      const auto t0 = Clock::now();
      for (int i = 0; i < steps; ++i) {
        const int32_t t = (i * 13 + 1) % V;
        s.forward({&t, 1});
      }
      cpp_us += us_since(t0, steps) / 2;
    }
    {
      dsv4_model* m = nullptr;
      dsv4_session* s = nullptr;
      dsv4_model_load(argv[1], &m);
      dsv4_session_params sp = dsv4_session_default_params();
      sp.threads = 2;
      dsv4_session_create(m, &sp, &s);
      const float* l;
      size_t n;
      dsv4_session_forward(s, prompt.data(), prompt.size(), 0, &l, &n);
      const auto t0 = Clock::now();
      for (int i = 0; i < steps; ++i) {
        const int32_t t = (i * 13 + 1) % V;
        dsv4_session_forward(s, &t, 1, 0, &l, &n);
      }
      c_us += us_since(t0, steps) / 2;
      dsv4_session_free(s);
      dsv4_model_free(m);
    }
  }
  std::printf("decode step C++ API  %8.1f us\n", cpp_us);
  std::printf("decode step C ABI    %8.1f us (overhead %+.1f us, %+.2f%%)\n", c_us, c_us - cpp_us, 100 * (c_us - cpp_us) / cpp_us);
  return 0;
}
