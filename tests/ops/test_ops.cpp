// Every op of every backend under test against its naive double-precision reference (the cases
// live in ops/cases_*.cpp; `dsv4_ops` runs the same cases as a support matrix and benchmark).
#include <doctest/doctest.h>

#include <set>

#include "ops/harness.hpp"

using namespace dsv4;
using namespace dsv4::test;

namespace {

void check_family(const std::string& op) {
  const auto cases = all_cases();
  int64_t ran = 0;
  for (const auto& b : backends_under_test())
    for (const auto& c : cases) {
      if (c.op != op) continue;
      auto be = b.make();  // a fresh backend per case: its memory goes with it
      const CaseResult r = run_case(c, *be, false);
      INFO(b.name << " / " << c.op << " / " << c.shape << ": error " << r.error << " (tolerance " << r.tol << ")" << r.failure);
      if (!r.supported) continue;
      ++ran;
      CHECK(r.failure.empty());
      CHECK(r.error <= r.tol);
    }
  CHECK(ran > 0);
}

}  // namespace

TEST_CASE("op harness: linear") { check_family("linear"); }
TEST_CASE("op harness: linear_multi") { check_family("linear_multi"); }
TEST_CASE("op harness: embed and gather_rows") { check_family("embed"); }
TEST_CASE("op harness: rms_norm") { check_family("rms_norm"); }
TEST_CASE("op harness: rope_tables and rope") { check_family("rope"); }
TEST_CASE("op harness: mhc (hc_pre with Sinkhorn, hc_post, hc_head)") { check_family("mhc"); }
TEST_CASE("op harness: attention and store_window") { check_family("attention"); }
TEST_CASE("op harness: compressor") { check_family("compressor"); }
TEST_CASE("op harness: indexer") { check_family("indexer"); }
TEST_CASE("op harness: moe") { check_family("moe"); }

TEST_CASE("op harness: every registered case belongs to a family checked above") {
  const std::set<std::string> families = {"linear", "linear_multi", "embed", "rms_norm", "rope", "mhc", "attention", "compressor", "indexer", "moe"};
  for (const auto& c : all_cases()) {
    INFO(c.op << " / " << c.shape);
    CHECK(families.count(c.op) == 1);
  }
}
