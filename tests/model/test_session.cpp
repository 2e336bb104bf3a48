// Session behaviour: Last vs All, reset, memory report, failed calls leave the session intact.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
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
  std::string msg;
  try {
    s.forward(bad);
  } catch (const InvalidArgument& e) {
    msg = e.what();
  }
  CHECK(msg.find("outside the vocabulary") != std::string::npos);
}

TEST_CASE("a max_context too large for this machine is a CapacityError, and sessions still work after it") {
  const Golden g = load_golden("tiny_a");
  const auto model = Model::load(golden_dir("tiny_a"));
  // Sizes past the address space (the session state, the backend's context scratch) and sizes
  // whose arithmetic would overflow: each is refused with a typed error, never bad_alloc or a wrap.
  for (const int64_t ctx : {int64_t{1} << 48, int64_t{1} << 55, int64_t{1} << 62, INT64_MAX}) {
    SessionOptions opt;
    opt.max_context = ctx;
    CAPTURE(ctx);
    CHECK_THROWS_AS(Session(model, opt), CapacityError);
  }
  SessionOptions opt;
  opt.max_context = 40;
  Session s(model, opt);
  auto lg = s.forward({g.ids.data(), 10}, Logits::All);
  CHECK(rel_err(lg.data(), g.logits.data(), lg.size()) <= 1e-4);
}

TEST_CASE("session memory is reported and fixed after the first decode step") {
  const Golden g = load_golden("mid_flash");
  const auto model = Model::load(golden_dir("mid_flash"));
  SessionOptions opt;
  opt.max_context = 1024;
  Session s(model, opt);
  const auto m0 = s.memory();
  CHECK(m0.state_bytes > 0);
  CHECK(m0.state_bytes < model->session_state_bytes(1024));
  s.forward({g.ids.data(), 100});
  s.forward({g.ids.data() + 100, 1});
  const auto m1 = s.memory();
  CHECK(m1.state_bytes > m0.state_bytes);
  // Within one cache block (1024 positions) nothing grows.
  for (int i = 0; i < 20; ++i) s.forward({g.ids.data() + 101 + i, 1});
  const auto m2 = s.memory();
  CHECK(m2.total() == m1.total());
  CHECK(m2.state_bytes == m1.state_bytes);
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

TEST_CASE("snapshot / restore / fork continue exactly like recomputing the prefix") {
  const Golden g = load_golden("official_a");
  const auto model = Model::load(golden_dir("official_a"));
  Session s(model);
  s.forward({g.ids.data(), 100});
  const SessionSnapshot snap = s.snapshot();
  CHECK(snap.position() == 100);
  CHECK(snap.bytes() > 0);
  auto f = s.fork();
  CHECK(f->position() == 100);
  // the fork continues like the golden
  auto lf = f->forward({g.ids.data() + 100, 60}, Logits::All);
  CHECK(rel_err(lf.data(), g.logits.data() + 100 * g.V, lf.size()) <= 1e-4);
  // the original is independent: feed something else, then restore and continue
  std::vector<int32_t> other(37, 3);
  s.forward(other);
  CHECK(s.position() == 137);
  s.restore(snap);
  CHECK(s.position() == 100);
  CHECK(rel_err(s.last_logits().data(), g.logits.data() + 99 * g.V, static_cast<size_t>(g.V)) <= 1e-4);
  auto ls = s.forward({g.ids.data() + 100, 60}, Logits::All);
  CHECK(rel_err(ls.data(), g.logits.data() + 100 * g.V, ls.size()) <= 1e-4);
  // snapshots of another model are refused
  const auto other_model = Model::load(golden_dir("official_a"));
  Session t(other_model);
  CHECK_THROWS_AS(t.restore(snap), InvalidArgument);
}

namespace {
GenerateOptions max_tokens(int n) {
  GenerateOptions o;
  o.max_tokens = n;
  return o;
}
}  // namespace

TEST_CASE("generate: stop token, predicate, cancellation, max tokens") {
  const Golden g = load_golden("official_a");
  const auto model = Model::load(golden_dir("official_a"));
  Session s(model);
  Sampler greedy = Sampler::make_greedy();
  const std::span<const int32_t> prompt(g.ids.data(), 20);
  auto r = s.generate(prompt, greedy, max_tokens(8));
  CHECK(r.tokens.size() == 8);
  CHECK(r.reason == StopReason::MaxTokens);
  CHECK(s.position() == 20 + 7);  // the last token is not fed yet
  // greedy generation equals argmax of forward
  Session ref(model);
  auto l = ref.forward(prompt);
  for (int32_t t : r.tokens) {
    CHECK(t == static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin()));
    l = ref.forward({&t, 1});
  }
  s.reset();
  auto o2 = max_tokens(8);
  o2.stop_tokens = {r.tokens[2]};
  auto r2 = s.generate(prompt, greedy, o2);
  CHECK(r2.tokens.size() == 3);
  CHECK(r2.reason == StopReason::StopToken);
  s.reset();
  int seen = 0;
  auto o3 = max_tokens(8);
  o3.on_token = [&](int32_t) { return ++seen < 4; };
  auto r3 = s.generate(prompt, greedy, o3);
  CHECK(r3.reason == StopReason::Cancelled);
  CHECK(r3.tokens.size() == 4);
  // still usable after cancellation: continue from where it stopped
  auto r4 = s.generate({&r3.tokens.back(), 1}, greedy, max_tokens(4));
  CHECK(r4.tokens == std::vector<int32_t>(r.tokens.begin() + 4, r.tokens.end()));
  s.reset();
  auto o5 = max_tokens(8);
  o5.stop_when = [](std::span<const int32_t> t) { return t.size() == 5; };
  auto r5 = s.generate(prompt, greedy, o5);
  CHECK(r5.reason == StopReason::StopPredicate);
  CHECK(r5.tokens.size() == 5);
}
