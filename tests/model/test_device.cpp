// The device backend (lib/backend/device: the CUDA backend's host side and its dsv4k kernels)
// over the emulated device (tests/support/emulated_device.hpp): every golden, batched sessions,
// and the backend's memory behaviour. What runs here is what the CUDA backend runs, less the
// launches themselves.
#include <doctest/doctest.h>

#include <cstring>
#include <memory>

#include "dsv4/error.hpp"
#include "dsv4/model.hpp"
#include "model/model_impl.hpp"
#include "ops/harness.hpp"
#include "support/emulated_device.hpp"
#include "support/golden_modes.hpp"
#include "support/support.hpp"

using namespace dsv4;
using namespace dsv4::test;

TEST_CASE("device kernels (emulated): every golden runs whole, chunked and token by token") {
  for (const char* name : {"tiny_a", "tiny_a_bf16", "official_a", "mid_flash"}) {
    const Golden g = load_golden(name);
    auto be = std::make_unique<EmulatedDevice>();
    EmulatedDevice* dev = be.get();
    const auto model = load_model_on(golden_dir(name), LoadOptions{}, std::move(be));
    CHECK(dev->contains(model_engine(*model).weights().layers[0].attn.wq_a.data));
    CHECK(dev->contains(model_engine(*model).weights().norm.data()));
    CHECK(model->backend_info().name == "device-emu");
    CHECK(model->backend_info().weight_bytes > 0);
    const uint64_t before = dev->launches();
    check_golden_modes(model, g, name, "the emulated device");
    CHECK(dev->launches() > before);
    MESSAGE(name << ": " << dev->gemm_products() << " products took the split-bf16 GEMM");
    if (std::string(name) != "tiny_a") CHECK(dev->gemm_products() > 0);  // (tiny_a's weights are F32: always the GEMV)
  }
}

TEST_CASE("device kernels (emulated): batched sessions at different positions get what they get alone") {
  const Golden g = load_golden("mid_flash");
  const auto model = load_model_on(golden_dir("mid_flash"), LoadOptions{}, std::make_unique<EmulatedDevice>());
  const int64_t V = g.V;
  const int64_t starts[] = {17, 250, 402};
  std::vector<std::unique_ptr<Session>> batch, alone;
  for (int64_t p : starts)
    for (auto* v : {&batch, &alone}) {
      v->push_back(std::make_unique<Session>(model));
      v->back()->forward({g.ids.data(), static_cast<size_t>(p)});
    }
  double worst = 0;
  for (int step = 0; step < 4; ++step) {
    std::vector<BatchItem> items;
    std::vector<std::vector<int32_t>> toks(3);
    for (size_t i = 0; i < 3; ++i) {
      const int64_t at = batch[i]->position(), n = step == 2 && i == 1 ? 3 : 1;
      toks[i].assign(g.ids.begin() + at, g.ids.begin() + at + n);
      items.push_back({batch[i].get(), toks[i]});
    }
    forward_batch(items);
    for (size_t i = 0; i < 3; ++i) {
      auto ref = alone[i]->forward(toks[i]);
      const auto got = batch[i]->last_logits();
      REQUIRE(got.size() == static_cast<size_t>(V));
      const double e = rel_err(got.data(), ref.data(), got.size());
      worst = std::max(worst, e);
      CHECK(e <= 1e-5);
      CHECK(rel_err(got.data(), g.logits.data() + (batch[i]->position() - 1) * V, got.size()) <= 1e-4);
    }
  }
  MESSAGE("emulated device, forward_batch vs alone: worst relative difference " << worst);
}

TEST_CASE("device backend: weights that do not fit are a CapacityError naming the shortfall, before any upload") {
  try {
    load_model_on(golden_dir("tiny_a"), LoadOptions{}, std::make_unique<EmulatedDevice>(size_t{1} << 20));
    FAIL("a 1 MiB device took tiny_a's weights");
  } catch (const CapacityError& e) {
    const std::string m = e.what();
    INFO(m);
    CHECK(m.find("the weights need") != std::string::npos);
    CHECK(m.find("short by") != std::string::npos);
  }
}

TEST_CASE("device kernels (emulated): decode steps replayed from a recording give the eager steps' bits, across positions and sessions") {
  const Golden g = load_golden("mid_flash");
  auto rec_be = std::make_unique<EmulatedDevice>();
  auto eager_be = std::make_unique<EmulatedDevice>();
  EmulatedDevice* rec = rec_be.get();
  eager_be->set_step_recording(false);
  const auto rec_model = load_model_on(golden_dir("mid_flash"), LoadOptions{}, std::move(rec_be));
  const auto eager_model = load_model_on(golden_dir("mid_flash"), LoadOptions{}, std::move(eager_be));
  CHECK(rec_model->backend_info().graphs);
  // Two sessions at different depths; the second reuses the first one's recording.
  for (int64_t start : {int64_t{120}, int64_t{383}}) {
    Session a(rec_model), b(eager_model);
    a.forward({g.ids.data(), static_cast<size_t>(start)});
    b.forward({g.ids.data(), static_cast<size_t>(start)});
    int64_t differing = 0;
    for (int64_t t = start; t < start + 10; ++t) {  // crosses compressor windows (ratios 4 and 128 at 383..392)
      const auto la = a.forward({g.ids.data() + t, 1});
      const auto lb = b.forward({g.ids.data() + t, 1});
      REQUIRE(la.size() == lb.size());
      differing += std::memcmp(la.data(), lb.data(), la.size() * sizeof(float)) != 0;
      CHECK(rel_err(la.data(), g.logits.data() + t * g.V, la.size()) <= 1e-4);
    }
    CHECK(differing == 0);
  }
  MESSAGE("emulated device: " << rec->replays() << " decode steps replayed from a recording");
  CHECK(rec->replays() >= 16);  // 10 steps a session, less the first run and the recording run of the first
}

TEST_CASE("device kernels (emulated): prefill-size products take the split-bf16 GEMM and agree with the warp GEMV") {
  EmulatedDevice dev;
  for (WFormat fmt : {WFormat::BF16, WFormat::FP8, WFormat::FP4})
    for (int64_t S : {int64_t{16}, int64_t{37}}) {
      const int64_t rows = 300, cols = 384, r0 = 129, n = 150, ldx = cols + 5, ldy = n + 3;
      const OwnedMat host = make_mat(fmt, rows, cols, 21);
      const DevMat w = to_backend(dev, host.w);
      const DevBuf x = to_backend(dev, random_floats(static_cast<size_t>(S * ldx), 4));
      const DevBuf a = to_backend(dev, std::vector<float>(static_cast<size_t>(S * ldy), 9.0f)), b = to_backend(dev, std::vector<float>(static_cast<size_t>(S * ldy), 9.0f));
      const uint64_t before = dev.gemm_products();
      dev.linear(w.w, r0, n, x.as<const float>(), ldx, S, a.as<float>(), ldy);
      CHECK(dev.gemm_products() == before + 1);
      dev.set_gemm_min_rows(0);
      dev.linear(w.w, r0, n, x.as<const float>(), ldx, S, b.as<float>(), ldy);
      dev.set_gemm_min_rows(DeviceBackend::kGemmMinRows);
      CHECK(dev.gemm_products() == before + 1);
      const auto ya = from_backend(dev, a, static_cast<size_t>(S * ldy)), yb = from_backend(dev, b, static_cast<size_t>(S * ldy));
      INFO(wformat_name(fmt) << " S=" << S);
      CHECK(rel_err(ya.data(), yb.data(), ya.size()) <= 1e-6);
      int pad = 0;
      for (int64_t s = 0; s < S; ++s)
        for (int64_t j = n; j < ldy; ++j) pad += ya[static_cast<size_t>(s * ldy + j)] != 9.0f;
      CHECK(pad == 0);
    }
}

TEST_CASE("device backend (emulated): experts that do not fit stay in host memory the kernels read, and the goldens still match") {
  const char* name = "mid_flash";
  const Golden g = load_golden(name);
  uint64_t all = 0;
  {
    const auto m = load_model_on(golden_dir(name), LoadOptions{}, std::make_unique<EmulatedDevice>());
    all = m->backend_info().weight_bytes;
    CHECK(m->backend_info().host_weight_bytes == 0);
  }
  constexpr size_t kReserve = size_t{64} << 20;  // caches and scratch of the golden runs
  const size_t limit = static_cast<size_t>(static_cast<double>(all) * 0.7) + kReserve;  // 70% of the weights + the reserve
  {  // host experts off: the weights must fit in the free memory (70% of them do)
    auto be = std::make_unique<EmulatedDevice>(size_t{16} << 30, 2, static_cast<size_t>(static_cast<double>(all) * 0.7));
    be->set_placement({false, kReserve});
    try {
      load_model_on(golden_dir(name), LoadOptions{}, std::move(be));
      FAIL("weights past the device memory loaded with host experts off");
    } catch (const CapacityError& e) {
      INFO(e.what());
      CHECK(std::string(e.what()).find("host-resident experts are off") != std::string::npos);
    }
  }
  auto be = std::make_unique<EmulatedDevice>(size_t{16} << 30, 2, limit);
  be->set_placement({true, kReserve});
  EmulatedDevice* dev = be.get();
  const auto model = load_model_on(golden_dir(name), LoadOptions{}, std::move(be));
  const BackendInfo b = model->backend_info();
  MESSAGE(std::string(name) << ": " << b.weight_bytes << " bytes of weights on the device, " << b.host_weight_bytes << " in host memory (device limit " << limit << ")");
  CHECK(b.host_weight_bytes > 0);
  CHECK(b.weight_bytes + kReserve <= limit);
  CHECK(b.weight_bytes + b.host_weight_bytes >= all);
  const auto& w = model_engine(*model).weights();
  int host = 0, device = 0;
  for (const auto& l : w.layers)
    for (const auto& e : l.moe.experts) (dev->in_host_block(e.w1.data) ? host : device) += 1;
  CHECK(host > 0);
  CHECK(device > 0);
  CHECK(!dev->in_host_block(w.layers[0].attn.wq_a.data));
  CHECK(!dev->in_host_block(w.embed.data));
  check_golden_modes(model, g, name, "the emulated device, experts partly in host memory");
}

TEST_CASE("device kernels (emulated): the parallel compressor gives the reference kernel's bits, in chunks that end inside and across windows") {
  const Golden g = load_golden("mid_flash");
  auto par_be = std::make_unique<EmulatedDevice>();
  auto ref_be = std::make_unique<EmulatedDevice>();
  ref_be->set_reference_compressor(true);
  const auto par = load_model_on(golden_dir("mid_flash"), LoadOptions{}, std::move(par_be));
  const auto ref = load_model_on(golden_dir("mid_flash"), LoadOptions{}, std::move(ref_be));
  // Chunk sizes that start and end at every offset within a window of 4, and cross 128-windows.
  const int64_t chunks[] = {1, 2, 3, 5, 130, 7, 1, 1, 1, 1, 127, 129, 6, 1};
  Session a(par), b(ref);
  int64_t t = 0, steps = 0, differing = 0;
  for (int64_t n : chunks) {
    if (t + n > g.N) break;
    const auto la = a.forward({g.ids.data() + t, static_cast<size_t>(n)});
    const auto lb = b.forward({g.ids.data() + t, static_cast<size_t>(n)});
    REQUIRE(la.size() == lb.size());
    differing += std::memcmp(la.data(), lb.data(), la.size() * sizeof(float)) != 0;
    t += n;
    ++steps;
  }
  // Two sessions in shared steps, at different window offsets, several rows each.
  Session c(par), d(ref), e(par), f(ref);
  for (Session* s : {&c, &d}) s->forward({g.ids.data(), 6});
  for (Session* s : {&e, &f}) s->forward({g.ids.data(), 125});
  for (int64_t n : {int64_t{1}, int64_t{3}, int64_t{5}, int64_t{2}}) {
    const std::span<const int32_t> x(g.ids.data() + c.position(), static_cast<size_t>(n)), y(g.ids.data() + e.position(), static_cast<size_t>(n + 1));
    forward_batch(std::vector<BatchItem>{{&c, x}, {&e, y}});
    forward_batch(std::vector<BatchItem>{{&d, x}, {&f, y}});
    for (auto [u, w] : {std::pair{&c, &d}, std::pair{&e, &f}}) {
      const auto lu = u->last_logits(), lw = w->last_logits();
      differing += std::memcmp(lu.data(), lw.data(), lu.size() * sizeof(float)) != 0;
    }
    steps += 2;
  }
  MESSAGE("parallel vs reference compressor: " << steps << " steps to position " << t << ", " << differing << " with different logits");
  CHECK(t > 400);
  CHECK(differing == 0);
}
