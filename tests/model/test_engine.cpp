// The engine's contract: the forward pass never touches backend memory (host-isolation backend),
// decode steps are identical op sequences (recording backend), batched steps give each session
// what it gets alone, one backend and thread pool serve all sessions, and selection errors are typed.
#include <doctest/doctest.h>

#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>

#include <cstring>
#include <thread>

#include "dsv4/model.hpp"
#include "model/model_impl.hpp"
#include "support/golden_modes.hpp"
#include "support/isolated_backend.hpp"
#include "support/recording_backend.hpp"
#include "support/support.hpp"

using namespace dsv4;
using namespace dsv4::test;

namespace {

constexpr double kTol = 1e-4;  // as the goldens

int thread_count() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/task")) {
    while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
    closedir(d);
  }
  return n;
}

}  // namespace

TEST_CASE("host isolation: every golden runs whole, chunked and token by token with backend memory closed to the host") {
  for (const char* name : {"tiny_a", "tiny_a_bf16", "official_a", "mid_flash"}) {
    const Golden g = load_golden(name);
    auto be = std::make_unique<IsolatedBackend>(2);
    IsolatedBackend* iso = be.get();
    const auto model = load_model_on(golden_dir(name), LoadOptions{}, std::move(be));
    // The weights the ops read are the backend's copies, not the mapped file.
    CHECK(iso->contains(model_engine(*model).weights().layers[0].attn.wq_a.data));
    CHECK(iso->contains(model_engine(*model).weights().norm.data()));
    const uint64_t before = iso->opens();
    check_golden_modes(model, g, name, "the host-isolation backend");
    CHECK(iso->opens() > before);
  }
}

TEST_CASE("host isolation catches a host access to backend memory") {
  // The same region the engine uses: a host read outside an op faults (checked in a child process).
  IsolatedBackend be(1, size_t{1} << 24);
  auto* p = static_cast<volatile float*>(be.alloc(4096));
  const float one = 1.0f;
  be.upload(const_cast<float*>(p), &one, sizeof one);
  float back = 0;
  be.download(&back, const_cast<float*>(p), sizeof back);
  CHECK(back == 1.0f);
  const pid_t pid = fork();
  if (pid == 0) {
    std::signal(SIGSEGV, SIG_DFL);  // die by the signal (not through doctest's or a sanitizer's handler)
    const float v = p[0];  // must fault
    _exit(v == 1.0f ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGSEGV);
}

TEST_CASE("two consecutive decode steps issue identical op sequences with identical arguments") {
  const Golden g = load_golden("mid_flash");
  auto be = std::make_unique<RecordingBackend>(make_cpu_backend(2));
  RecordingBackend* rec = be.get();
  const auto model = load_model_on(golden_dir("mid_flash"), LoadOptions{}, std::move(be));
  Session s(model);
  s.forward({g.ids.data(), 300});
  s.forward({g.ids.data() + 300, 1});  // first decode step: buffers settle
  std::vector<std::vector<std::string>> logs;
  // Positions 301 … 304: a compressor window ends at 303 (m = 4), so the logs also cover a step that emits an entry.
  for (int i = 0; i < 4; ++i) {
    rec->start();
    s.forward({g.ids.data() + 301 + i, 1});
    logs.push_back(rec->stop());
  }
  REQUIRE(logs[0].size() > 50);
  for (size_t i = 1; i < logs.size(); ++i) {
    INFO("decode step " << i);
    REQUIRE(logs[i].size() == logs[0].size());
    for (size_t k = 0; k < logs[0].size(); ++k) {
      INFO("op " << k << ": " << logs[0][k] << " vs " << logs[i][k]);
      CHECK(logs[i][k] == logs[0][k]);
    }
  }
  // A position leaking into an argument would show: the recorder does see argument changes.
  rec->start();
  s.forward({g.ids.data() + 305, 2});
  const auto two = rec->stop();
  CHECK(two != logs[0]);
  // And the logits are still right.
  CHECK(rel_err(s.last_logits().data(), g.logits.data() + 306 * g.V, static_cast<size_t>(g.V)) <= kTol);
}

TEST_CASE("forward_batch: each session gets the logits it gets alone, at different positions and prompt lengths") {
  const Golden g = load_golden("mid_flash");
  const auto model = Model::load(golden_dir("mid_flash"));
  const int64_t V = g.V;
  // Three sessions at different depths (prefilled alone), plus one fresh session with a long prompt.
  const int64_t starts[] = {17, 250, 402};
  std::vector<std::unique_ptr<Session>> batch, alone;
  for (int64_t p : starts) {
    for (auto* v : {&batch, &alone}) {
      v->push_back(std::make_unique<Session>(model));
      v->back()->forward({g.ids.data(), static_cast<size_t>(p)});
    }
  }
  batch.push_back(std::make_unique<Session>(model));
  alone.push_back(std::make_unique<Session>(model));
  double worst = 0;
  bool bitwise = true;
  for (int step = 0; step < 12; ++step) {
    std::vector<BatchItem> items;
    std::vector<std::vector<int32_t>> toks(4);
    for (size_t i = 0; i < 4; ++i) {
      const int64_t at = batch[i]->position();
      const int64_t n = i == 3 && step == 0 ? 100 : (step % 5 == 4 && i == 1 ? 3 : 1);  // a long prompt joins; a short chunk
      toks[i].assign(g.ids.begin() + at, g.ids.begin() + at + n);
      items.push_back({batch[i].get(), toks[i]});
    }
    forward_batch(items);
    for (size_t i = 0; i < 4; ++i) {
      auto ref = alone[i]->forward(toks[i]);
      const auto got = batch[i]->last_logits();
      REQUIRE(got.size() == static_cast<size_t>(V));
      CHECK(batch[i]->position() == alone[i]->position());
      const double e = rel_err(got.data(), ref.data(), got.size());
      worst = std::max(worst, e);
      bitwise = bitwise && std::memcmp(got.data(), ref.data(), got.size() * sizeof(float)) == 0;
      CHECK(e <= 1e-5);
      CHECK(rel_err(got.data(), g.logits.data() + (batch[i]->position() - 1) * V, got.size()) <= kTol);
    }
  }
  MESSAGE("forward_batch vs alone: worst relative difference " << worst << std::string(bitwise ? " (bitwise equal)" : " (not bitwise equal)"));
}

TEST_CASE("forward_batch validates everything before changing anything") {
  const Golden g = load_golden("tiny_a");
  const auto model = Model::load(golden_dir("tiny_a"));
  const auto other = Model::load(golden_dir("tiny_a"));
  Session a(model), b(model), c(other);
  a.forward({g.ids.data(), 5});
  const std::vector<float> before(a.last_logits().begin(), a.last_logits().end());
  const std::vector<int32_t> ok = {g.ids[5]}, bad = {static_cast<int32_t>(g.V)}, none;
  CHECK_THROWS_AS(forward_batch(std::vector<BatchItem>{{&a, ok}, {&a, ok}}), InvalidArgument);
  CHECK_THROWS_AS(forward_batch(std::vector<BatchItem>{{&a, ok}, {&c, ok}}), InvalidArgument);
  CHECK_THROWS_AS(forward_batch(std::vector<BatchItem>{{&a, ok}, {&b, bad}}), InvalidArgument);
  CHECK_THROWS_AS(forward_batch(std::vector<BatchItem>{{&a, ok}, {&b, none}}), InvalidArgument);
  CHECK_THROWS_AS(forward_batch(std::vector<BatchItem>{{&a, ok}, {nullptr, ok}}), InvalidArgument);
  CHECK_THROWS_AS(forward_batch(std::vector<BatchItem>{}), InvalidArgument);
  CHECK(a.position() == 5);
  CHECK(b.position() == 0);
  CHECK(std::equal(before.begin(), before.end(), a.last_logits().begin()));
  forward_batch(std::vector<BatchItem>{{&a, ok}, {&b, std::span<const int32_t>(g.ids.data(), 6)}});
  CHECK(a.position() == 6);
  CHECK(rel_err(a.last_logits().data(), g.logits.data() + 5 * g.V, static_cast<size_t>(g.V)) <= kTol);
  CHECK(rel_err(b.last_logits().data(), g.logits.data() + 5 * g.V, static_cast<size_t>(g.V)) <= kTol);
}

TEST_CASE("one backend and one thread pool per model: sessions on many threads stay correct and start no threads") {
  const Golden g = load_golden("official_a");
  LoadOptions lo;
  lo.threads = 2;
  const auto model = Model::load(golden_dir("official_a"), lo);
  const int before = thread_count();
  std::vector<std::unique_ptr<Session>> sessions;
  for (int i = 0; i < 8; ++i) sessions.push_back(std::make_unique<Session>(model));
  CHECK(thread_count() == before);  // sessions own no threads
  std::vector<std::vector<float>> out(8);
  std::vector<std::thread> th;
  for (int t = 0; t < 8; ++t)
    th.emplace_back([&, t] {
      auto lg = sessions[static_cast<size_t>(t)]->forward({g.ids.data(), static_cast<size_t>(40 + t)}, Logits::All);
      out[static_cast<size_t>(t)].assign(lg.begin(), lg.end());
    });
  CHECK(thread_count() <= before + 8);  // only the callers' own threads
  for (auto& x : th) x.join();
  for (int t = 0; t < 8; ++t) CHECK(rel_err(out[static_cast<size_t>(t)].data(), g.logits.data(), out[static_cast<size_t>(t)].size()) <= kTol);
  CHECK(model->backend_info().threads == 2);
  // A second model of the same thread count shares the same pool.
  const int with_one = thread_count();
  const auto model2 = Model::load(golden_dir("official_a"), lo);
  CHECK(thread_count() == with_one);
}

TEST_CASE("backend selection: typed errors for backends not built and devices that do not exist") {
  const auto dir = golden_dir("tiny_a");
  LoadOptions o;
  o.backend = "cuda";
  o.device = 99;  // not built, or no such device
  CHECK_THROWS_AS(Model::load(dir, o), UnsupportedError);
  o.device = 0;
  bool cuda_device = false;
  for (const auto& d : available_devices()) cuda_device = cuda_device || d.backend == "cuda";
  if (!cuda_device) CHECK_THROWS_AS(Model::load(dir, o), UnsupportedError);
  o.backend = "tpu";
  CHECK_THROWS_AS(Model::load(dir, o), UnsupportedError);
  o.backend = "cpu";
  o.device = 1;
  CHECK_THROWS_AS(Model::load(dir, o), UnsupportedError);
  o.device = 0;
  o.threads = -1;
  CHECK_THROWS_AS(Model::load(dir, o), InvalidArgument);
  o.threads = 1;
  o.max_batch = 0;
  CHECK_THROWS_AS(Model::load(dir, o), InvalidArgument);
  o.max_batch = 512;
  std::vector<std::string> stages;
  o.progress = [&](double f, std::string_view s) {
    CHECK(f >= 0.0);
    CHECK(f <= 1.0);
    stages.emplace_back(s);
  };
  const auto m = Model::load(dir, o);
  CHECK(stages.size() >= 3);
  CHECK(stages.back() == "ready");
  const BackendInfo b = m->backend_info();
  CHECK(b.name == "cpu");
  CHECK(b.threads == 1);
  CHECK(b.formats.size() == 5);
  CHECK(b.weight_bytes > 0);
  const auto backends = compiled_backends();
  CHECK(std::find(backends.begin(), backends.end(), "cpu") != backends.end());
  const auto devices = available_devices();
  REQUIRE(!devices.empty());
  CHECK(devices[0].backend == "cpu");
  CHECK(devices[0].memory_total > 0);
}

TEST_CASE("session state lives in the backend: memory report and a model-level step buffer") {
  const Golden g = load_golden("mid_flash");
  const auto model = Model::load(golden_dir("mid_flash"));
  SessionOptions opt;
  opt.max_context = 1024;
  Session s(model, opt);
  const uint64_t fixed = s.memory().state_bytes;
  CHECK(fixed > 0);
  CHECK(s.memory().state_max_bytes == model->session_state_bytes(1024));
  CHECK(fixed < model->session_state_bytes(1024));
  s.forward({g.ids.data(), 100});
  CHECK(s.memory().state_bytes > fixed);  // one cache block
  CHECK(s.memory().state_bytes <= s.memory().state_max_bytes);
  const auto info0 = model->backend_info();
  Session t(model, opt);
  // A second session adds its fixed part to the backend's memory, nothing else until it is fed.
  CHECK(model->backend_info().buffer_bytes >= info0.buffer_bytes + fixed);
}

TEST_CASE("kernel tier: the best tier the CPU runs is chosen, lower ones can be forced, others are refused") {
  const auto tiers = cpu_kernel_tiers();
  REQUIRE(!tiers.empty());
  CHECK(tiers.front() == "portable");
  const std::string best = best_cpu_kernel_tier();
  MESSAGE("CPU kernel tiers compiled in: " << tiers.size() << ", best on this CPU: " << best);
  // The machine the suite runs on may be emulated with a given CPU model (tests/tiers): then the
  // tier it must pick is named here.
  if (const char* want = std::getenv("DSV4_EXPECT_CPU_TIER")) CHECK(best == std::string(want));
  const auto dir = golden_dir("official_a");
  const Golden g = load_golden("official_a");
  CHECK(Model::load(dir)->backend_info().kernel_tier == best);
  for (const std::string& t : tiers) {
    LoadOptions o;
    o.cpu_tier = t;
    bool runs = false;
    try {
      const auto m = Model::load(dir, o);
      runs = true;
      CHECK(m->backend_info().kernel_tier == t);
      Session s(m);
      auto lg = s.forward({g.ids.data(), 24}, Logits::All);
      CHECK(rel_err(lg.data(), g.logits.data(), lg.size()) <= kTol);
    } catch (const UnsupportedError&) {
    }
    // A tier below the best always runs; the best one does by definition.
    if (std::find(tiers.begin(), tiers.end(), best) - tiers.begin() >= std::find(tiers.begin(), tiers.end(), t) - tiers.begin()) CHECK(runs);
  }
  LoadOptions bad;
  bad.cpu_tier = "avx1024";
  CHECK_THROWS_AS(Model::load(dir, bad), UnsupportedError);
}

TEST_CASE("logits are bitwise identical for 1, 2 and 3 threads, whole, chunked and token by token, on every tier") {
  for (const std::string name : {"official_a", "mid_flash"}) {
    const Golden g = load_golden(name);
    const int64_t n = std::min<int64_t>(static_cast<int64_t>(g.ids.size()), 64);
    for (const std::string& tier : cpu_kernel_tiers()) {
      std::vector<std::vector<float>> ref;  // per schedule, from 1 thread
      for (const int threads : {1, 2, 3}) {
        LoadOptions o;
        o.threads = threads;
        o.cpu_tier = tier;
        std::shared_ptr<const Model> m;
        try {
          m = Model::load(golden_dir(name), o);
        } catch (const UnsupportedError&) {
          break;  // a tier this CPU does not run
        }
        const std::vector<std::vector<int64_t>> schedules = {{n}, {1, 13, n - 14}, std::vector<int64_t>(static_cast<size_t>(n), 1)};
        for (size_t k = 0; k < schedules.size(); ++k) {
          Session s(m);
          std::vector<float> all;
          int64_t at = 0;
          for (const int64_t len : schedules[k]) {
            auto lg = s.forward({g.ids.data() + at, static_cast<size_t>(len)}, Logits::All);
            all.insert(all.end(), lg.begin(), lg.end());
            at += len;
          }
          CAPTURE(name);
          CAPTURE(tier);
          CAPTURE(threads);
          CAPTURE(k);
          if (threads == 1) {
            ref.push_back(std::move(all));
          } else {
            REQUIRE(all.size() == ref[k].size());
            CHECK(std::memcmp(all.data(), ref[k].data(), all.size() * sizeof(float)) == 0);
          }
        }
      }
    }
  }
}
