// dsv4_cuda_tests: the CUDA backend on a GPU. Every op case on the device against the double
// reference and against the CPU backend's error on the same case (err_gpu <= max(2·err_cpu, the
// case's tolerance)); every golden whole, chunked and token by token. Without a CUDA device every
// case prints "skipped: no CUDA device (…)" and ctest reports the test as skipped.
#include <doctest/doctest.h>

#include <cstdio>
#include <string>

#include "backend/cuda/cuda_backend.hpp"
#include "dsv4/model.hpp"
#include "ops/harness.hpp"
#include "support/golden_modes.hpp"
#include "support/support.hpp"

using namespace dsv4;
using namespace dsv4::test;

namespace {

bool have_device() {
  std::string why;
  if (cuda::device_count(&why) > 0) return true;
  MESSAGE("skipped: no CUDA device (" << why << ")");
  std::printf("skipped: no CUDA device (%s)\n", why.c_str());
  return false;
}

void check_family_on_cuda(const std::string& op) {
  if (!have_device()) return;
  int ran = 0;
  for (const auto& c : all_cases()) {
    if (c.op != op) continue;
    auto gpu = cuda::make_backend(0);
    auto cpu = make_cpu_backend(2);
    const CaseResult g = run_case(c, *gpu, false);
    const CaseResult r = run_case(c, *cpu, false);
    INFO("cuda / " << c.op << " / " << c.shape << ": error " << g.error << " (cpu " << r.error << ", tolerance " << g.tol << ") " << g.failure);
    if (!g.supported) continue;
    ++ran;
    CHECK(g.failure.empty());
    CHECK(g.error <= std::max(2 * r.error, g.tol));
  }
  CHECK(ran > 0);
}

}  // namespace

TEST_CASE("cuda op harness: linear") { check_family_on_cuda("linear"); }
TEST_CASE("cuda op harness: linear_multi") { check_family_on_cuda("linear_multi"); }
TEST_CASE("cuda op harness: embed and gather_rows") { check_family_on_cuda("embed"); }
TEST_CASE("cuda op harness: rms_norm") { check_family_on_cuda("rms_norm"); }
TEST_CASE("cuda op harness: rope") { check_family_on_cuda("rope"); }
TEST_CASE("cuda op harness: mhc") { check_family_on_cuda("mhc"); }
TEST_CASE("cuda op harness: attention") { check_family_on_cuda("attention"); }
TEST_CASE("cuda op harness: compressor") { check_family_on_cuda("compressor"); }
TEST_CASE("cuda op harness: indexer") { check_family_on_cuda("indexer"); }
TEST_CASE("cuda op harness: moe") { check_family_on_cuda("moe"); }

TEST_CASE("cuda goldens: whole, chunked and token by token") {
  if (!have_device()) return;
  for (const char* name : {"tiny_a", "tiny_a_bf16", "official_a", "mid_flash"}) {
    LoadOptions o;
    o.backend = "cuda";
    const auto model = Model::load(golden_dir(name), o);
    CHECK(model->backend_info().name == "cuda");
    check_golden_modes(model, load_golden(name), name, "cuda");
  }
}
