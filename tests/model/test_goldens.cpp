// End-to-end logits against the Hugging Face goldens, for every way of feeding the tokens.
#include <doctest/doctest.h>

#include <vector>

#include "dsv4/model.hpp"
#include "support/support.hpp"

using namespace dsv4;
using namespace dsv4::test;

namespace {

constexpr double kTol = 1e-4;  // relative L2 error; the reference itself agrees with float64 to ~2e-6

// Feeds `g.ids` in runs of the given sizes (the remainder one token at a time), collecting all logits.
std::vector<float> run(const std::shared_ptr<const Model>& m, const Golden& g, const std::vector<int64_t>& runs,
                       int64_t max_batch = 512) {
  SessionOptions opt;
  opt.max_batch = max_batch;
  Session s(m, opt);
  std::vector<float> out;
  out.reserve(g.logits.size());
  int64_t done = 0;
  auto feed = [&](int64_t n) {
    auto lg = s.forward({g.ids.data() + done, static_cast<size_t>(n)}, Logits::All);
    REQUIRE(lg.size() == static_cast<size_t>(n * g.V));
    out.insert(out.end(), lg.begin(), lg.end());
    done += n;
  };
  for (auto r : runs) feed(r);
  while (done < g.N) feed(1);
  CHECK(s.position() == g.N);
  return out;
}

void check_case(const std::string& name) {
  const Golden g = load_golden(name);
  const auto model = Model::load(golden_dir(name));
  REQUIRE(model->config().vocab_size == g.V);
  const int64_t seq = g.meta.at("seq").get<int64_t>();
  std::vector<int64_t> chunks = g.meta.at("chunks").get<std::vector<int64_t>>();

  struct Mode {
    const char* what;
    std::vector<float> logits;
  };
  std::vector<Mode> modes;
  modes.push_back({"whole sequence in one call", run(model, g, {g.N}, g.N)});
  modes.push_back({"meta chunks then one at a time", run(model, g, chunks)});
  modes.push_back({"prefill seq then one at a time", run(model, g, {seq})});
  for (const auto& m : modes) {
    const double err = rel_err(m.logits.data(), g.logits.data(), g.logits.size());
    const int64_t bad = argmax_mismatches(m.logits.data(), g.logits.data(), g.N, g.V);
    MESSAGE(name << " / " << std::string(m.what) << ": rel err " << err << ", argmax mismatches " << bad);
    INFO(name << " / " << m.what << ": " << worst(m.logits.data(), g.logits.data(), g.N, g.V));
    CHECK(err <= kTol);
    CHECK(bad == 0);
  }
}

}  // namespace

TEST_CASE("golden tiny_a (HF layout with F32 weights)") { check_case("tiny_a"); }
TEST_CASE("golden tiny_a_bf16 (HF layout / BF16 matrices)") { check_case("tiny_a_bf16"); }
TEST_CASE("golden mid_flash (real ratios over 640 tokens)") { check_case("mid_flash"); }
TEST_CASE("golden official_a (published sharded FP8/FP4 layout)") { check_case("official_a"); }

TEST_CASE("golden tiny_a per-layer hidden states") {
  const Golden g = load_golden("tiny_a");
  REQUIRE(g.hidden.size() == 7);
  const auto model = Model::load(golden_dir("tiny_a"));
  const int64_t L = model->config().num_layers;
  Session s(model);
  std::vector<std::vector<float>> seen(static_cast<size_t>(L + 2));
  s.set_observer([&](int stage, const float* data, int64_t rows, int64_t width) {
    seen[static_cast<size_t>(stage)].assign(data, data + rows * width);
  });
  s.forward(g.ids, Logits::All);
  // hidden_00 = embedding streams; hidden_0k = streams after layer k-1 (k = 1..5); hidden_06 = final normed state.
  for (int k = 0; k <= 5; ++k) {
    REQUIRE(seen[k].size() == g.hidden[k].size());
    const double err = rel_err(seen[k].data(), g.hidden[k].data(), g.hidden[k].size());
    INFO("hidden_0" << k << " rel err " << err);
    CHECK(err <= kTol);
  }
  const auto& last = seen[static_cast<size_t>(L + 1)];
  REQUIRE(last.size() == g.hidden[6].size());
  CHECK(rel_err(last.data(), g.hidden[6].data(), last.size()) <= kTol);
}
