// A custom sampling loop in C++: the same chain as the C and Python examples (ban ids divisible
// by 7, temperature 0.8, top-k 20, seeded draw), so all three print the same tokens and hash.
// Usage: custom_sampling_cpp MODEL_DIR
#include <cmath>
#include <cstdio>
#include <cstring>

#include "dsv4/model.hpp"

namespace {

class BanMultiplesOf7 final : public dsv4::SamplerStage {
 public:
  void apply(dsv4::Candidates& c, dsv4::SamplerContext&) override {
    for (size_t i = 0; i < c.size(); ++i)
      if (c.ids()[i] % 7 == 0) c.logits()[i] = -INFINITY;
  }
  std::string name() const override { return "ban_multiples_of_7"; }
};

uint64_t fnv1a(std::span<const float> x) {
  uint64_t h = 1469598103934665603ull;
  const auto* p = reinterpret_cast<const unsigned char*>(x.data());
  for (size_t i = 0; i < x.size_bytes(); ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL_DIR\n", argv[0]);
    return 2;
  }
  try {
    auto model = dsv4::Model::load(argv[1]);
    dsv4::SessionOptions opt;
    opt.threads = 2;
    dsv4::Session session(model, opt);
    dsv4::Sampler sampler(1234);
    sampler.add(std::make_unique<BanMultiplesOf7>())
        .add(dsv4::stages::temperature(0.8f))
        .add(dsv4::stages::top_k(20))
        .add(dsv4::stages::dist());
    const std::vector<int32_t> prompt = {0, 5, 7, 9, 11, 300, 42, 17};
    auto logits = session.forward(prompt);
    std::printf("tokens:");
    for (int i = 0; i < 16; ++i) {
      const int32_t tok = sampler.sample(logits);
      std::printf(" %d", tok);
      logits = session.forward({&tok, 1});
    }
    std::printf("\nlogits_hash: %016llx\n", static_cast<unsigned long long>(fnv1a(logits)));
  } catch (const dsv4::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
