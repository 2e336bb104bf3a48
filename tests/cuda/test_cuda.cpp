// dsv4_cuda_tests: the CUDA backend on a GPU. Every op case on the device against the double
// reference and against the CPU backend's error on the same case (err_gpu <= max(2·err_cpu, the
// case's tolerance)); every golden whole, chunked and token by token. Without a CUDA device every
// case prints "skipped: no CUDA device (…)" and ctest reports the test as skipped.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "backend/cuda/cuda_backend.hpp"
#include "backend/device/device_backend.hpp"
#include "model/model_impl.hpp"
#include "model/synthetic.hpp"
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

TEST_CASE("cuda graphs: decode steps replayed from a captured graph equal eager steps bitwise") {
  if (!have_device()) return;
  const Golden g = load_golden("mid_flash");
  auto graph_be = cuda::make_backend(0), eager_be = cuda::make_backend(0);
  auto* graphs = dynamic_cast<DeviceBackend*>(graph_be.get());
  REQUIRE(graphs != nullptr);
  dynamic_cast<DeviceBackend*>(eager_be.get())->set_step_recording(false);
  const auto gm = load_model_on(golden_dir("mid_flash"), LoadOptions{}, std::move(graph_be));
  const auto em = load_model_on(golden_dir("mid_flash"), LoadOptions{}, std::move(eager_be));
  for (int64_t start : {int64_t{120}, int64_t{383}}) {
    Session a(gm), b(em);
    a.forward({g.ids.data(), static_cast<size_t>(start)});
    b.forward({g.ids.data(), static_cast<size_t>(start)});
    int64_t differing = 0;
    for (int64_t t = start; t < start + 10; ++t) {
      const auto la = a.forward({g.ids.data() + t, 1});
      const auto lb = b.forward({g.ids.data() + t, 1});
      differing += std::memcmp(la.data(), lb.data(), la.size() * sizeof(float)) != 0;
      CHECK(rel_err(la.data(), g.logits.data() + t * g.V, la.size()) <= 1e-4);
    }
    CHECK(differing == 0);
  }
  MESSAGE("cuda: " << graphs->replays() << " decode steps replayed from captured graphs");
  std::printf("NOTE graph replays %llu, bitwise equal to eager\n", static_cast<unsigned long long>(graphs->replays()));
  CHECK(graphs->replays() >= 16);
}

TEST_CASE("cuda memcheck probe: official_a prefill and token by token") {
  if (!have_device()) return;
  const Golden g = load_golden("official_a");
  LoadOptions o;
  o.backend = "cuda";
  const auto model = Model::load(golden_dir("official_a"), o);
  Session s(model);
  s.forward({g.ids.data(), 5});
  for (int64_t t = 5; t < std::min<int64_t>(g.N, 12); ++t) {
    const auto lg = s.forward({g.ids.data() + t, 1});
    CHECK(rel_err(lg.data(), g.logits.data() + t * g.V, lg.size()) <= 1e-4);
  }
}

TEST_CASE("cuda speed probe: device copy bandwidth; four real-size V4-Flash layers against the CPU backend, and their decode speed") {
  if (!have_device()) return;
  auto be = cuda::make_backend(0);
  const size_t n = size_t{1} << 30;
  void* a = be->alloc(n);
  void* b = be->alloc(n);
  be->copy(b, a, n);
  float sink = 0;
  be->download(&sink, b, sizeof sink);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) be->copy(b, a, n);
  be->download(&sink, b, sizeof sink);
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double copy_gbs = 5.0 * 2.0 * static_cast<double>(n) / sec / 1e9;  // read + write
  be->release(a);
  be->release(b);
  std::printf("NOTE d2d copy %.0f GB/s (read + write)\n", copy_gbs);
  CHECK(copy_gbs > 0);

  const ModelConfig cfg = ModelConfig::parse(preset_config_json("flash", 4));
  LoadOptions o;
  o.backend = "cuda";
  o.threads = 0;
  uint64_t bytes = 0;
  const auto model = make_synthetic_model(cfg, 1, o, &bytes);
  SessionOptions so;
  so.max_context = 4096;
  Session s(model, so);
  std::vector<int32_t> ids(256);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 7919) % 1000);
  // The same layers on the CPU backend (same seed, same weights): logits of the prefill's last
  // row and of the first decode steps must agree.
  const auto cpu_model = make_synthetic_model(cfg, 1, LoadOptions{});
  Session c(cpu_model, so);
  const auto g0 = s.forward(ids), c0 = c.forward(ids);
  double worst = rel_err(g0.data(), c0.data(), g0.size());
  for (int i = 0; i < 3; ++i) {  // eager, capture, first replay
    const auto g = s.forward({ids.data() + i, 1}), r = c.forward({ids.data() + i, 1});
    worst = std::max(worst, rel_err(g.data(), r.data(), g.size()));
  }
  std::printf("NOTE 4 real-size layers (sliding, CSA, HCA; hash and top-k routing): cuda vs cpu logits rel err %.2e\n", worst);
  CHECK(worst <= 1e-4);
  const auto t1 = std::chrono::steady_clock::now();
  constexpr int kSteps = 8;
  for (int i = 0; i < kSteps; ++i) s.forward({ids.data() + i, 1});
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count() / kSteps;
  std::printf("NOTE 4 real layers + head decode %.2f ms/token at position ~270 (weights %.2f GiB on the device)\n", ms,
              static_cast<double>(bytes) / (1 << 30));
  CHECK(ms > 0);
}

TEST_CASE("cuda tensor-core products: cuBLASLt behind prefill-size products, agreeing with the warp GEMV, and their speed") {
  if (!have_device()) return;
  auto be = cuda::make_backend(0);
  auto* dev = dynamic_cast<DeviceBackend*>(be.get());
  REQUIRE(dev != nullptr);
  const std::string tier = be->info().kernel_tier;
  std::printf("NOTE kernels: %s\n", tier.c_str());
  CHECK(tier.find("cuBLASLt ") != std::string::npos);  // loaded (the device machine has it)
  struct Shape {
    WFormat fmt;
    int64_t rows, cols, S;
    const char* what;
  };
  for (const Shape& sh : {Shape{WFormat::FP8, 4096, 4096, 512, "FP8 wq_a-like 4096x4096, 512 rows"},
                          Shape{WFormat::FP4, 2048, 4096, 512, "FP4 expert w1 2048x4096, 512 rows"},
                          Shape{WFormat::BF16, 4096, 4096, 137, "BF16 4096x4096, 137 rows"}}) {
    const OwnedMat host = make_mat(sh.fmt, sh.rows, sh.cols, 17);
    const DevMat w = to_backend(*be, host.w);
    const std::vector<float> x = random_floats(static_cast<size_t>(sh.S * sh.cols), 3);
    const DevBuf xd = to_backend(*be, x);
    DevBuf y_mm(*be, static_cast<size_t>(sh.S * sh.rows) * sizeof(float)), y_gv(*be, static_cast<size_t>(sh.S * sh.rows) * sizeof(float));
    auto timed = [&](int64_t min_rows, const DevBuf& y) {
      dev->set_gemm_min_rows(min_rows);
      be->linear(w.w, 0, sh.rows, xd.as<const float>(), sh.cols, sh.S, y.as<float>(), sh.rows);
      be->sync();
      const auto t0 = std::chrono::steady_clock::now();
      constexpr int kReps = 5;
      for (int i = 0; i < kReps; ++i) be->linear(w.w, 0, sh.rows, xd.as<const float>(), sh.cols, sh.S, y.as<float>(), sh.rows);
      be->sync();
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / kReps;
    };
    const double t_mm = timed(DeviceBackend::kGemmMinRows, y_mm), t_gv = timed(0, y_gv);
    dev->set_gemm_min_rows(DeviceBackend::kGemmMinRows);
    const auto a = from_backend(*be, y_mm, static_cast<size_t>(sh.S * sh.rows)), b = from_backend(*be, y_gv, static_cast<size_t>(sh.S * sh.rows));
    const double d = rel_err(a.data(), b.data(), a.size());
    const double flop = 2.0 * static_cast<double>(sh.S * sh.rows * sh.cols);
    std::printf("NOTE %s: split-bf16 GEMM %.3f ms (%.1f TFLOP/s useful), warp GEMV %.3f ms (%.2f TFLOP/s); rel diff %.2e\n", sh.what, t_mm * 1e3,
                flop / t_mm / 1e12, t_gv * 1e3, flop / t_gv / 1e12, d);
    INFO(sh.what);
    CHECK(d <= 1e-5);
  }
  CHECK(be->info().kernel_tier.find("reference kernel)") == std::string::npos);  // no shape fell back
}
