// Session caches: blocks from the model's pool as the position advances, the pool's budget, and
// the cache types (f32 exact; bf16 and fp8 against f32 on the goldens, within derived tolerances).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <vector>

#include "dsv4/model.hpp"
#include "support/support.hpp"

using namespace dsv4;
using namespace dsv4::test;

namespace {

int64_t argmax(const float* p, int64_t n) { return std::max_element(p, p + n) - p; }

std::vector<float> run_all(const std::shared_ptr<const Model>& model, const Golden& g, CacheType type, int64_t chunk,
                           bool window = false) {
  SessionOptions o;
  o.cache_type = type;
  o.cache_window = window;
  Session s(model, o);
  std::vector<float> out;
  for (int64_t p = 0; p < g.N; p += chunk) {
    const int64_t n = std::min(chunk, g.N - p);
    auto lg = s.forward({g.ids.data() + p, static_cast<size_t>(n)}, Logits::All);
    out.insert(out.end(), lg.begin(), lg.end());
  }
  return out;
}

}  // namespace

TEST_CASE("cache blocks: the state grows a block at a time, block boundaries are exact, reset gives blocks back") {
  const Golden g = load_golden("mid_flash");  // 600 positions; ratios 4 and 128
  LoadOptions lo;
  lo.cache_block_tokens = 128;
  const auto model = Model::load(golden_dir("mid_flash"), lo);
  CHECK(model->cache_pool().block_tokens == 128);
  SessionOptions o;
  Session s(model, o);
  CHECK(s.max_context() == model->config().max_position_embeddings);
  const uint64_t fixed = s.memory().state_bytes;
  std::vector<float> got;
  uint64_t last = fixed;
  int grew = 0;
  for (int64_t p = 0; p < g.N; p += 50) {  // chunks that straddle block boundaries
    const int64_t n = std::min<int64_t>(50, g.N - p);
    auto lg = s.forward({g.ids.data() + p, static_cast<size_t>(n)}, Logits::All);
    got.insert(got.end(), lg.begin(), lg.end());
    const uint64_t now = s.memory().state_bytes;
    CHECK(now >= last);
    grew += now > last;
    last = now;
  }
  CHECK(rel_err(got.data(), g.logits.data(), got.size()) <= 1e-4);
  // Blocks of 128 positions: ceil((600 - 4 + 1) / 128) = 5 blocks, committed as the position passed them.
  CHECK(grew >= 4);
  const uint64_t block = (last - fixed) / 5;
  CHECK(last == fixed + 5 * block);
  CHECK(model->cache_pool().in_use_bytes == 5 * block);
  // The worst case is reported, not committed.
  CHECK(s.memory().state_max_bytes == model->session_state_bytes(s.max_context()));
  CHECK(s.memory().state_max_bytes > 100 * last);
  s.reset();
  CHECK(s.memory().state_bytes == fixed);
  CHECK(model->cache_pool().in_use_bytes == 0);
  CHECK(model->cache_pool().free_bytes == 5 * block);
  // A second session reuses the free blocks; trim gives the rest back.
  Session t(model, o);
  t.forward({g.ids.data(), 200});
  CHECK(model->cache_pool().free_bytes == 3 * block);
  model->trim_cache_pool();
  CHECK(model->cache_pool().free_bytes == 0);
  CHECK(model->cache_pool().peak_bytes == 5 * block);
}

TEST_CASE("cache pool budget: a session that would pass it gets a CapacityError and nothing changes") {
  const Golden g = load_golden("mid_flash");
  LoadOptions lo;
  lo.cache_block_tokens = 128;
  const auto probe = Model::load(golden_dir("mid_flash"), lo);
  const uint64_t block = probe->session_state_bytes(132) - probe->session_state_bytes(4 + 0) ;  // one block more
  REQUIRE(block > 0);
  lo.cache_pool_bytes = 3 * block;  // three blocks for every session together
  const auto model = Model::load(golden_dir("mid_flash"), lo);
  Session a(model), b(model);
  a.forward({g.ids.data(), 200});  // 2 blocks
  const std::vector<float> before(a.last_logits().begin(), a.last_logits().end());
  CHECK_THROWS_AS(a.forward({g.ids.data() + 200, 200}), CapacityError);  // would need 4
  CHECK(a.position() == 200);
  CHECK(rel_err(a.last_logits().data(), before.data(), before.size()) == 0.0);
  CHECK(model->cache_pool().in_use_bytes == 2 * block);
  b.forward({g.ids.data(), 100});  // the third
  CHECK_THROWS_AS(b.forward({g.ids.data() + 100, 100}), CapacityError);
  std::vector<int32_t> one = {g.ids[200]};
  std::vector<int32_t> two(g.ids.begin() + 100, g.ids.begin() + 200);
  // A batch is all or nothing: a's token fits, b's 100 do not.
  std::vector<BatchItem> batch = {{&a, one}, {&b, two}};
  CHECK_THROWS_AS(forward_batch(batch), CapacityError);
  CHECK(a.position() == 200);
  CHECK(b.position() == 100);
  CHECK(model->cache_pool().in_use_bytes == 3 * block);
  // Giving blocks back lets the other session continue, to the golden.
  a.reset();
  b.forward(two);
  auto lg = b.forward({g.ids.data() + 200, 56}, Logits::All);
  CHECK(rel_err(lg.data(), g.logits.data() + 200 * g.V, lg.size()) <= 1e-4);
  // The limit applies to max_context itself only through growth: a huge max_context is fine.
  CHECK_THROWS_AS(Session(model, SessionOptions{0, model->config().max_position_embeddings + 1}), CapacityError);
}

TEST_CASE("cache types: bf16 and fp8 against f32 on the goldens (logit error and argmax agreement)") {
  // Derived tolerances. A stored value's relative rounding is at most u: bf16 2^-8, e4m3 2^-4 (its
  // rms over a row about u/sqrt(3) for uniform mantissas), int8 keys 1/254 of a row's largest. The
  // entries enter the attention of the compressed layers only, as keys (logit shift <= u·|q·k|)
  // and values (an average, error <= u relative); each compressed layer adds its share to the
  // residual stream, so the logits move by about u·sqrt(compressed layers) relative. The indexer
  // keys are rounded too, and a selection flips where two scores are within rounding (the goldens'
  // min_topk_gap is 1e-5 … 2e-3): a factor 2 for that (measured on tiny_a, top 3: bf16 error
  // 0.018 with bf16 keys, 0.00075 with f32 keys) and a factor 2 of headroom.
  struct Case {
    const char* golden;
    int64_t chunk;
  };
  for (const Case c : {Case{"tiny_a", 13}, Case{"mid_flash", 257}, Case{"official_a", 97}}) {
    const Golden g = load_golden(c.golden);
    const auto model = Model::load(golden_dir(c.golden));
    int64_t compressed = 0;
    for (AttnKind k : model->config().attn_kind) compressed += k != AttnKind::Sliding;
    const auto f32 = run_all(model, g, CacheType::F32, c.chunk);
    CHECK(rel_err(f32.data(), g.logits.data(), f32.size()) <= 1e-4);
    for (CacheType t : {CacheType::BF16, CacheType::FP8}) {
      const double u = t == CacheType::BF16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -4) / std::sqrt(3.0);
      const double tol = 4 * u * std::sqrt(static_cast<double>(compressed));
      const auto got = run_all(model, g, t, c.chunk);
      const double err = rel_err(got.data(), f32.data(), got.size());
      int64_t agree = 0;
      for (int64_t i = 0; i < g.N; ++i) agree += argmax(got.data() + i * g.V, g.V) == argmax(f32.data() + i * g.V, g.V);
      const double agreement = static_cast<double>(agree) / static_cast<double>(g.N);
      MESSAGE(std::string(c.golden) << " " << std::string(cache_type_name(t)) << ": logit error vs f32 " << err << " (tolerance " << tol << "), argmax agreement "
                       << agreement);
      CAPTURE(std::string(c.golden));
      CAPTURE(std::string(cache_type_name(t)));
      CHECK(err <= tol);
      CHECK(agreement >= (t == CacheType::BF16 ? 0.98 : 0.9));
    }
  }
}

TEST_CASE("cache_window: the window rows in the cache type too (reported, loosely bounded)") {
  // Every layer reads the window, so rounding it reaches every layer's attention, the sliding
  // ones included; measured, not derived: the bound below only guards against a broken path.
  for (const char* name : {"tiny_a", "official_a"}) {
    const Golden g = load_golden(name);
    const auto model = Model::load(golden_dir(name));
    const auto f32 = run_all(model, g, CacheType::F32, 97);
    for (CacheType t : {CacheType::BF16, CacheType::FP8}) {
      const auto got = run_all(model, g, t, 97, true);
      const double err = rel_err(got.data(), f32.data(), got.size());
      MESSAGE(std::string(name) << " " << std::string(cache_type_name(t)) << " with the window: logit error vs f32 " << err);
      CHECK(err < 0.5);
      // The session holds less: the ring is in the type.
      SessionOptions a, b;
      a.cache_type = b.cache_type = t;
      b.cache_window = true;
      CHECK(Session(model, b).memory().state_bytes < Session(model, a).memory().state_bytes);
    }
  }
}

TEST_CASE("cache types: snapshots, state files and forks keep the type, another type is refused") {
  const Golden g = load_golden("mid_flash");
  const auto model = Model::load(golden_dir("mid_flash"));
  const auto dir = std::filesystem::temp_directory_path() / "dsv4_test_cache_types";
  std::filesystem::create_directories(dir);
  for (CacheType t : {CacheType::BF16, CacheType::FP8}) {
    SessionOptions o;
    o.cache_type = t;
    Session s(model, o);
    s.forward({g.ids.data(), 300});
    const auto snap = s.snapshot();
    auto cont = s.forward({g.ids.data() + 300, 20}, Logits::All);
    const std::vector<float> want(cont.begin(), cont.end());
    const auto file = dir / (std::string(cache_type_name(t)) + ".state");
    Session r(model, o);
    r.restore(snap);
    s.reset();
    s.forward({g.ids.data(), 300});
    s.save_state(file);
    auto fk = s.fork();
    for (Session* x : {&r, fk.get()}) {
      auto lg = x->forward({g.ids.data() + 300, 20}, Logits::All);
      CHECK(rel_err(lg.data(), want.data(), want.size()) == 0.0);
    }
    Session l(model, o);
    l.load_state(file);
    auto lg = l.forward({g.ids.data() + 300, 20}, Logits::All);
    CHECK(rel_err(lg.data(), want.data(), want.size()) == 0.0);
    Session other(model);  // f32
    CHECK_THROWS_AS(other.restore(snap), InvalidArgument);
    CHECK_THROWS_AS(other.load_state(file), InvalidArgument);
    CHECK(other.position() == 0);
    CHECK(other.memory().state_bytes < s.memory().state_bytes * 2);
  }
  std::filesystem::remove_all(dir);
  // Memory at a long context: bf16 about half of f32, fp8 about a third here (head_dim 128 of which
  // 64 rotary dims stay bf16; V4-Flash's 512-wide entries take 584 bytes, 0.29 of f32).
  const int64_t ctx = 1 << 20;
  const double f32 = static_cast<double>(model->session_state_bytes(ctx, CacheType::F32));
  CHECK(static_cast<double>(model->session_state_bytes(ctx, CacheType::BF16)) < 0.55 * f32);
  CHECK(static_cast<double>(model->session_state_bytes(ctx, CacheType::FP8)) < 0.4 * f32);
}

TEST_CASE("a long prompt is processed in steps of max_batch: scratch does not grow with the prompt") {
  const auto model = Model::load(golden_dir("mid_flash"));
  const int64_t V = model->config().vocab_size;
  std::vector<int32_t> ids(16384);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 7919 + 13) % static_cast<size_t>(V));
  SessionOptions o;
  o.max_batch = 64;
  Session s(model, o);
  s.forward({ids.data(), 4096});
  const uint64_t scratch4k = s.memory().scratch_bytes;
  s.reset();
  s.forward(ids);  // 16K tokens in one call
  const uint64_t scratch16k = s.memory().scratch_bytes;
  MESSAGE("scratch after a 4K prompt " << scratch4k << " B, after a 16K prompt " << scratch16k << " B");
  // What may grow with the context: a row's indexer scores and order (2 floats per visible
  // entry) and attention's gathered entries, per thread; never a buffer per prompt row (16K rows
  // of the hidden state alone would be 16K x hidden x 4 bytes).
  const uint64_t per_row = static_cast<uint64_t>(model->config().hidden_size) * 4;
  CHECK(scratch16k - scratch4k < 12288 * per_row / 4);
  CHECK(s.position() == 16384);
}
