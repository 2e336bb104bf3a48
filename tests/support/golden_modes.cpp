// check_golden_modes (support/golden_modes.hpp).
#include "support/golden_modes.hpp"

#include <doctest/doctest.h>

namespace dsv4::test {

// Feeds g.ids whole, in the golden's chunks, and prefill + one at a time; checks every mode.
void check_golden_modes(const std::shared_ptr<const Model>& model, const Golden& g, const std::string& name, const std::string& on) {
  constexpr double kTol = 1e-4;  // as the goldens
  const int64_t seq = g.meta.at("seq").get<int64_t>();
  const auto chunks = g.meta.at("chunks").get<std::vector<int64_t>>();
  auto run = [&](const std::vector<int64_t>& runs, int64_t max_batch) {
    SessionOptions opt;
    opt.max_batch = max_batch;
    Session s(model, opt);
    std::vector<float> out;
    int64_t done = 0;
    auto feed = [&](int64_t n) {
      auto lg = s.forward({g.ids.data() + done, static_cast<size_t>(n)}, Logits::All);
      out.insert(out.end(), lg.begin(), lg.end());
      done += n;
    };
    for (auto r : runs) feed(r);
    while (done < g.N) feed(1);
    return out;
  };
  const std::pair<const char*, std::vector<float>> modes[] = {
      {"whole", run({g.N}, g.N)}, {"chunks", run(chunks, 512)}, {"token by token after the prefill", run({seq}, 512)}};
  for (const auto& [what, lg] : modes) {
    const double err = rel_err(lg.data(), g.logits.data(), g.logits.size());
    const int64_t bad = argmax_mismatches(lg.data(), g.logits.data(), g.N, g.V);
    MESSAGE(name << " on " << on << " / " << std::string(what) << ": rel err " << err << ", argmax mismatches " << bad);
    CHECK(err <= kTol);
    CHECK(bad == 0);
  }
}

}  // namespace dsv4::test
