// Cancelling long calls (Session::set_cancel_callback) and the log sink (dsv4/log.hpp).
#include <doctest/doctest.h>

#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "dsv4/log.hpp"
#include "dsv4/model.hpp"
#include "support/support.hpp"

using namespace dsv4;
using namespace dsv4::test;

TEST_CASE("a cancelled forward stops between steps, keeps what it fed, and the session continues exactly") {
  const Golden g = load_golden("official_a");
  const auto model = Model::load(golden_dir("official_a"));
  SessionOptions opt;
  opt.max_batch = 4;
  const std::span<const int32_t> prompt(g.ids.data(), 13);

  Session ref(model, opt);
  ref.forward(prompt.first(8));
  const std::vector<float> ref8(ref.last_logits().begin(), ref.last_logits().end());
  ref.forward(prompt.subspan(8));
  const std::vector<float> ref13(ref.last_logits().begin(), ref.last_logits().end());

  Session s(model, opt);
  int asked = 0;
  s.set_cancel_callback([&] { return ++asked == 2; });  // asked before steps 2 and 3: stop before rows 8..11
  CHECK_THROWS_AS(s.forward(prompt), CancelledError);
  CHECK(asked == 2);
  CHECK(s.position() == 8);
  REQUIRE(s.last_logits().size() == ref8.size());
  CHECK(rel_err(s.last_logits().data(), ref8.data(), ref8.size()) < 1e-6);
  s.set_cancel_callback({});
  s.forward(prompt.subspan(8));
  CHECK(s.position() == 13);
  CHECK(rel_err(s.last_logits().data(), ref13.data(), ref13.size()) < 1e-6);
  CHECK(rel_err(s.last_logits().data(), g.logits.data() + 12 * g.V, ref13.size()) <= 1e-4);

  // All logits: the rows fed are written and last_logits() is the last of them.
  s.reset();
  asked = 0;
  s.set_cancel_callback([&] { return ++asked == 1; });
  CHECK_THROWS_AS(s.forward(prompt, Logits::All), CancelledError);
  CHECK(s.position() == 4);
  Session r4(model, opt);
  r4.forward(prompt.first(4));
  CHECK(rel_err(s.last_logits().data(), r4.last_logits().data(), ref8.size()) < 1e-6);

  // A throwing callback stops the call the same way; its exception reaches the caller.
  s.reset();
  s.set_cancel_callback([] () -> bool { throw std::runtime_error("host says stop"); });
  CHECK_THROWS_WITH_AS(s.forward(prompt), "host says stop", std::runtime_error);
  CHECK(s.position() == 4);
  s.set_cancel_callback({});
  s.forward(prompt.subspan(4));
  CHECK(rel_err(s.last_logits().data(), ref13.data(), ref13.size()) < 1e-6);

  // A call that fits one step is never asked.
  s.reset();
  asked = 0;
  s.set_cancel_callback([&] { ++asked; return true; });
  s.forward(prompt.first(4));
  CHECK(asked == 0);
  CHECK(s.position() == 4);
}

TEST_CASE("generate stops with StopReason::Cancelled when the cancel callback says so") {
  const Golden g = load_golden("official_a");
  const auto model = Model::load(golden_dir("official_a"));
  Session s(model);
  Sampler greedy = Sampler::make_greedy();
  int asked = 0;
  s.set_cancel_callback([&] { return ++asked == 3; });
  GenerateOptions o;
  o.max_tokens = 10;
  const auto r = s.generate({g.ids.data(), 5}, greedy, o);
  CHECK(r.reason == StopReason::Cancelled);
  CHECK(r.tokens.size() == 3);
  CHECK(s.position() == 5 + 2);  // the last returned token is not fed yet
}

TEST_CASE("log messages go to the host callback at or above the level, else to stderr") {
  struct Restore {
    ~Restore() {
      set_log_callback({});
      set_log_level(LogLevel::Warning);
    }
  } restore;
  CHECK(log_level() == LogLevel::Warning);
  std::vector<std::pair<LogLevel, std::string>> got;
  set_log_callback([&](LogLevel l, std::string_view m) { got.emplace_back(l, std::string(m)); });
  (void)Model::load(golden_dir("official_a"));
  CHECK(got.empty());  // loading logs at info only
  set_log_level(LogLevel::Info);
  (void)Model::load(golden_dir("official_a"));
  REQUIRE(got.size() >= 2);
  CHECK(got[0].first == LogLevel::Info);
  CHECK(got[0].second.find("loaded") != std::string::npos);
  got.clear();
  LoadOptions lo;
  lo.threads = static_cast<int>(std::thread::hardware_concurrency()) + 3;
  (void)Model::load(golden_dir("official_a"), lo);
  bool warned = false;
  for (const auto& [l, m] : got) warned |= l == LogLevel::Warning && m.find("hardware threads") != std::string::npos;
  CHECK(warned);
  got.clear();
  set_log_level(LogLevel::Off);
  (void)Model::load(golden_dir("official_a"), lo);
  CHECK(got.empty());
  CHECK(std::strcmp(log_level_name(LogLevel::Debug), "debug") == 0);
}
