// Session behaviour: Last vs All, reset, memory report, failed calls leave the session intact.
#include <doctest/doctest.h>

#include <thread>
#include <vector>

#include "dsv4/model.hpp"
#include "support/support.hpp"

using namespace dsv4;
using namespace dsv4::test;

TEST_CASE("Logits::Last equals the last row of Logits::All and reset() restarts the sequence") {
  const Golden g = load_golden("official_a");
  const auto model = Model::load(golden_dir("official_a"));
  Session s(model);
  const std::span<const int32_t> prompt(g.ids.data(), 40);
  auto all = s.forward(prompt, Logits::All);
  std::vector<float> last_row(all.end() - g.V, all.end());
  s.reset();
  CHECK(s.position() == 0);
  auto last = s.forward(prompt, Logits::Last);
  REQUIRE(last.size() == static_cast<size_t>(g.V));
  CHECK(rel_err(last.data(), last_row.data(), last.size()) < 1e-6);
  CHECK(rel_err(last.data(), g.logits.data() + 39 * g.V, last.size()) <= 1e-4);
}

TEST_CASE("rejected calls leave the session unchanged and usable") {
  const Golden g = load_golden("tiny_a");
  const auto model = Model::load(golden_dir("tiny_a"));
  SessionOptions opt;
  opt.max_context = 40;
  Session s(model, opt);
  s.forward({g.ids.data(), 10});
  const std::vector<int32_t> bad = {g.ids[10], static_cast<int32_t>(g.V)};
  CHECK_THROWS_AS(s.forward(bad), InvalidArgument);
  const std::vector<int32_t> neg = {-1};
  CHECK_THROWS_AS(s.forward(neg), InvalidArgument);
  CHECK_THROWS_AS(s.forward(std::span<const int32_t>{}), InvalidArgument);
  std::vector<int32_t> too_long(31, 0);
  CHECK_THROWS_AS(s.forward(too_long), CapacityError);
  CHECK(s.position() == 10);
  auto lg = s.forward({g.ids.data() + 10, 5}, Logits::All);
  CHECK(rel_err(lg.data(), g.logits.data() + 10 * g.V, lg.size()) <= 1e-4);
  try {
    s.forward(bad);
  } catch (const InvalidArgument& e) {
    CHECK(std::string(e.what()).find("outside the vocabulary") != std::string::npos);
  }
}

TEST_CASE("session memory is reported and fixed after the first decode step") {
  const Golden g = load_golden("mid_flash");
  const auto model = Model::load(golden_dir("mid_flash"));
  SessionOptions opt;
  opt.max_context = 1024;
  Session s(model, opt);
  const auto m0 = s.memory();
  CHECK(m0.state_bytes > 0);
  CHECK(m0.state_bytes == model->session_state_bytes(1024));
  s.forward({g.ids.data(), 100});
  s.forward({g.ids.data() + 100, 1});
  const auto m1 = s.memory();
  for (int i = 0; i < 20; ++i) s.forward({g.ids.data() + 101 + i, 1});
  const auto m2 = s.memory();
  CHECK(m2.total() == m1.total());
  CHECK(m2.state_bytes == m0.state_bytes);
}

TEST_CASE("one model shared by sessions on several threads") {
  const Golden g = load_golden("official_a");
  const auto model = Model::load(golden_dir("official_a"));
  std::vector<std::vector<float>> out(3);
  std::vector<std::thread> th;
  for (int t = 0; t < 3; ++t)
    th.emplace_back([&, t] {
      SessionOptions opt;
      opt.threads = 1;
      Session s(model, opt);
      auto lg = s.forward({g.ids.data(), 64}, Logits::All);
      out[t].assign(lg.begin(), lg.end());
    });
  for (auto& x : th) x.join();
  for (int t = 0; t < 3; ++t) CHECK(rel_err(out[t].data(), g.logits.data(), out[t].size()) <= 1e-4);
}
