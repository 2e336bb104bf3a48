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
