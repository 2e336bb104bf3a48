// Sampler stages keep exactly the right sets; distributions and determinism.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "dsv4/error.hpp"
#include "dsv4/sampler.hpp"
#include "support/support.hpp"

using namespace dsv4;

namespace {

// Records the candidate set (ids) and logits it sees, then lets the chain continue.
class Record final : public SamplerStage {
 public:
  std::set<int32_t> ids;
  std::vector<std::pair<int32_t, float>> seen;
  void apply(Candidates& c, SamplerContext&) override {
    ids.clear();
    seen.clear();
    for (size_t i = 0; i < c.size(); ++i) {
      ids.insert(c.ids()[i]);
      seen.emplace_back(c.ids()[i], c.logits()[i]);
    }
  }
  std::string name() const override { return "record"; }
};

std::set<int32_t> kept(std::unique_ptr<SamplerStage> stage, const std::vector<float>& logits) {
  Sampler s(1);
  auto rec = std::make_unique<Record>();
  Record* r = rec.get();
  s.add(std::move(stage)).add(std::move(rec));
  s.sample(logits);
  return r->ids;
}

std::vector<float> log_probs(std::initializer_list<double> p) {
  std::vector<float> l;
  for (double x : p) l.push_back(static_cast<float>(std::log(x)));
  return l;
}

}  // namespace

TEST_CASE("top_k keeps exactly the k highest") {
  const std::vector<float> l = {0.1f, 3, 2, 5, -1, 4};
  CHECK(kept(stages::top_k(3), l) == std::set<int32_t>{1, 3, 5});
  CHECK(kept(stages::top_k(1), l) == std::set<int32_t>{3});
  CHECK(kept(stages::top_k(100), l).size() == 6);
  // at vocabulary size with random logits
  auto big = test::random_floats(129280, 3, -10, 10);
  auto sorted = big;
  std::sort(sorted.begin(), sorted.end(), std::greater<>());
  const auto k50 = kept(stages::top_k(50), big);
  REQUIRE(k50.size() == 50);
  for (int32_t id : k50) CHECK(big[static_cast<size_t>(id)] >= sorted[49]);
}

TEST_CASE("top_p keeps the smallest prefix whose mass reaches p") {
  const auto l = log_probs({0.0625, 0.5, 0.125, 0.25, 0.03125, 0.03125});
  CHECK(kept(stages::top_p(0.4f), l) == std::set<int32_t>{1});
  CHECK(kept(stages::top_p(0.74f), l) == std::set<int32_t>{1, 3});
  CHECK(kept(stages::top_p(0.76f), l) == std::set<int32_t>{1, 3, 2});
  CHECK(kept(stages::top_p(0.9f), l) == std::set<int32_t>{1, 3, 2, 0});
  CHECK(kept(stages::top_p(1.0f), l).size() == 6);
}

TEST_CASE("min_p keeps tokens with probability at least p times the best") {
  const auto l = log_probs({0.0625, 0.5, 0.125, 0.25, 0.03125, 0.03125});
  CHECK(kept(stages::min_p(0.3f), l) == std::set<int32_t>{1, 3});
  CHECK(kept(stages::min_p(0.2f), l) == std::set<int32_t>{1, 3, 2});
  CHECK(kept(stages::min_p(1.0f), l) == std::set<int32_t>{1});
}

TEST_CASE("temperature to 0 equals greedy") {
  for (uint64_t seed = 0; seed < 20; ++seed) {
    auto l = test::random_floats(1000, seed, -5, 5);
    const int32_t best = static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
    Sampler zero(seed);
    zero.add(stages::temperature(0.0f)).add(stages::dist());
    Sampler tiny(seed);
    tiny.add(stages::temperature(1e-4f)).add(stages::dist());
    Sampler greedy = Sampler::make_greedy();
    CHECK(zero.sample(l) == best);
    CHECK(tiny.sample(l) == best);
    CHECK(greedy.sample(l) == best);
  }
}

TEST_CASE("penalties change exactly the penalised logits") {
  std::vector<float> l = {1.0f, -2.0f, 3.0f, 0.5f, -0.5f, 2.0f};
  Sampler s(0);
  auto rec = std::make_unique<Record>();
  Record* r = rec.get();
  s.add(stages::penalties(4, 2.0f, 0.25f, 0.5f)).add(std::move(rec)).add(stages::greedy());
  for (int32_t t : {5, 1, 1, 1, 4}) s.accept(t);  // window 4 sees 1, 1, 1, 4 (token 5 fell out)
  s.sample(l);
  std::vector<float> got(6);
  for (auto [id, v] : r->seen) got[static_cast<size_t>(id)] = v;
  CHECK(got[0] == 1.0f);
  CHECK(got[2] == 3.0f);
  CHECK(got[3] == 0.5f);
  CHECK(got[5] == 2.0f);                                     // outside the window: untouched
  CHECK(got[1] == doctest::Approx(-2.0f * 2 - 0.25f - 3 * 0.5f));  // negative: multiplied; 3 occurrences
  CHECK(got[4] == doctest::Approx(-0.5f * 2 - 0.25f - 1 * 0.5f));
  Sampler s2(0);
  auto rec2 = std::make_unique<Record>();
  Record* r2 = rec2.get();
  s2.add(stages::penalties(8, 2.0f, 0.0f, 0.0f)).add(std::move(rec2));
  s2.accept(2);
  s2.sample(l);
  for (auto [id, v] : r2->seen)
    if (id == 2) CHECK(v == 1.5f);  // positive: divided
}

TEST_CASE("logit bias adds to exactly the named tokens") {
  std::vector<float> l = {0, 0, 0, 0};
  Sampler s(0);
  auto rec = std::make_unique<Record>();
  Record* r = rec.get();
  s.add(stages::logit_bias({{2, 5.0f}, {3, -1.0f}})).add(std::move(rec)).add(stages::greedy());
  CHECK(s.sample(l) == 2);
  for (auto [id, v] : r->seen) CHECK(v == (id == 2 ? 5.0f : id == 3 ? -1.0f : 0.0f));
}

TEST_CASE("draws follow softmax (chi-square, fixed seed)") {
  const auto l = log_probs({0.1, 0.2, 0.3, 0.4});
  Sampler s(2024);
  s.add(stages::dist());
  const int N = 40000;
  std::vector<int> count(4);
  for (int i = 0; i < N; ++i) ++count[static_cast<size_t>(s.sample(l))];
  double chi2 = 0;
  const double p[4] = {0.1, 0.2, 0.3, 0.4};
  for (int k = 0; k < 4; ++k) chi2 += std::pow(count[static_cast<size_t>(k)] - N * p[k], 2) / (N * p[k]);
  CHECK(chi2 < 16.27);  // df = 3, p = 0.001

  // temperature 2 flattens: p_i ∝ sqrt(p_i)
  Sampler t(7);
  t.add(stages::temperature(2.0f)).add(stages::dist());
  std::fill(count.begin(), count.end(), 0);
  for (int i = 0; i < N; ++i) ++count[static_cast<size_t>(t.sample(l))];
  double z = 0, chi2t = 0;
  for (double x : p) z += std::sqrt(x);
  for (int k = 0; k < 4; ++k) chi2t += std::pow(count[static_cast<size_t>(k)] - N * std::sqrt(p[k]) / z, 2) / (N * std::sqrt(p[k]) / z);
  CHECK(chi2t < 16.27);
}

TEST_CASE("same seed gives the same tokens and different seeds differ") {
  auto run = [](uint64_t seed) {
    SamplerParams p;
    p.seed = seed;
    p.temperature = 0.9f;
    p.top_p = 0.95f;
    p.repetition_penalty = 1.1f;
    Sampler s = Sampler::from_params(p);
    std::vector<int32_t> out;
    for (int i = 0; i < 50; ++i) {
      auto l = test::random_floats(129280, 1000 + static_cast<uint64_t>(i), -3, 3);
      out.push_back(s.sample(l));
    }
    return out;
  };
  CHECK(run(42) == run(42));
  CHECK(run(42) != run(43));
}

TEST_CASE("RNG is xoshiro256** seeded by SplitMix64") {
  // SplitMix64 from 0 yields 0xe220a8397b1dcdaf first (a published reference value); the first
  // xoshiro256** output is then rotl(s1 * 5, 7) * 9 of the seeded state.
  Rng r(0);
  uint64_t z = 0x9e3779b97f4a7c15ull * 2, x = z;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  const uint64_t s1 = x ^ (x >> 31);
  const uint64_t m = s1 * 5;
  CHECK(r.next() == ((m << 7) | (m >> 57)) * 9);
  uint64_t y = 0x9e3779b97f4a7c15ull;
  y = (y ^ (y >> 30)) * 0xbf58476d1ce4e5b9ull;
  y = (y ^ (y >> 27)) * 0x94d049bb133111ebull;
  CHECK((y ^ (y >> 31)) == 0xe220a8397b1dcdafull);
  Rng a(5), b(5);
  for (int i = 0; i < 100; ++i) {
    const double u = a.uniform();
    CHECK(u >= 0.0);
    CHECK(u < 1.0);
    CHECK(u == b.uniform());
  }
}

TEST_CASE("bad sampler parameters are InvalidArgument") {
  CHECK_THROWS_AS(stages::top_k(0), InvalidArgument);
  CHECK_THROWS_AS(stages::top_p(0.0f), InvalidArgument);
  CHECK_THROWS_AS(stages::min_p(2.0f), InvalidArgument);
  CHECK_THROWS_AS(stages::penalties(-1, 1, 0, 0), InvalidArgument);
  Sampler s(0);
  CHECK_THROWS_AS(s.sample(std::span<const float>{}), InvalidArgument);
}

TEST_CASE("edits after a sorting stage are seen by later stages (the sorted flag cannot go stale)") {
  // logits l[5]=3, l[7]=2, l[9]=1: top-3 sorts them, the bias lifts 9 above all, greedy must pick 9.
  std::vector<float> l(12, -10.0f);
  l[5] = 3;
  l[7] = 2;
  l[9] = 1;
  {
    Sampler s(0);
    s.add(stages::top_k(3)).add(stages::logit_bias({{9, 100.0f}})).add(stages::greedy());
    CHECK(s.sample(l) == 9);
  }
  {
    Sampler s(0);  // penalties after top-k: the penalised best token loses
    s.add(stages::top_k(3)).add(stages::penalties(4, 100.0f, 0, 0)).add(stages::greedy());
    s.accept(5);
    CHECK(s.sample(l) == 7);
  }
  {
    // A custom stage that writes through logits() without saying anything about order.
    struct Flip final : SamplerStage {
      void apply(Candidates& c, SamplerContext&) override {
        float* lg = c.logits();
        for (size_t i = 0; i < c.size(); ++i) lg[i] = -lg[i];
      }
      std::string name() const override { return "flip"; }
    };
    Sampler s(0);
    s.add(stages::top_k(3)).add(std::make_unique<Flip>()).add(stages::greedy());
    CHECK(s.sample(l) == 9);
  }
  {
    // Order-keeping stages keep the fast path correct: temperature and min-p after top-k.
    Sampler s(0);
    s.add(stages::top_k(3)).add(stages::temperature(0.5f)).add(stages::min_p(0.01f)).add(stages::greedy());
    CHECK(s.sample(l) == 5);
  }
}
