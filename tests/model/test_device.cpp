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
