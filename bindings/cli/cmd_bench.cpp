// dsv4 bench: speed at real V4 dimensions on random in-memory weights, with the machine's
// ceilings (memory bandwidth, matrix throughput) measured in the same run.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "backend/backend.hpp"
#include "common.hpp"
#include "model/model_impl.hpp"
#include "model/session_internal.hpp"
#include "model/synthetic.hpp"
#include "util/arena.hpp"
#include "util/read_probe.hpp"

namespace dsv4::cli {

namespace {

using Clock = std::chrono::steady_clock;
double secs(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

struct Ceilings {
  double copy_gbps = 0, read_gbps = 0, matmul_gflops = 0, fma_gflops = 0;
};

// Memory bandwidth over two buffers of `n` floats at `a` and `b` (far beyond any cache, in huge
// pages like the synthetic weights); matrix throughput of the backend's best kernel when `matmul`
// is set. Each figure is the best of three runs.
Ceilings measure_ceilings(int threads, float* a, float* b, size_t n, bool matmul, const std::string& tier) {
  Ceilings c;
  const int T = std::max(threads, 1);
  auto par = [&](auto&& f) {
    std::vector<std::thread> th;
    for (int t = 0; t < T; ++t) th.emplace_back([&, t] { f(t, n * t / T / 16 * 16, t + 1 == T ? n : n * (t + 1) / T / 16 * 16); });
    for (auto& x : th) x.join();
  };
  par([&](int, size_t s, size_t e) {  // touch every page first
    std::fill(a + s, a + e, 1.0f);
    std::fill(b + s, b + e, 0.0f);
  });
  std::vector<uint64_t> sink(static_cast<size_t>(T));
  for (int rep = 0; rep < 3; ++rep) {
    auto t0 = Clock::now();
    par([&](int, size_t s, size_t e) { std::memcpy(b + s, a + s, (e - s) * sizeof(float)); });
    c.copy_gbps = std::max(c.copy_gbps, 2.0 * static_cast<double>(n * sizeof(float)) / secs(t0, Clock::now()) / 1e9);
    for (const bool streams : {true, false}) {  // the faster of the two read patterns
      t0 = Clock::now();
      par([&](int t, size_t s, size_t e) {
        const size_t len = (e - s) * sizeof(float);
        sink[static_cast<size_t>(t)] ^= streams ? read_four_streams(a + s, len) : read_linear(a + s, len);
      });
      c.read_gbps = std::max(c.read_gbps, static_cast<double>(n * sizeof(float)) / secs(t0, Clock::now()) / 1e9);
    }
  }
  if (!matmul) return c;
  // The machine's FMA peak: the widest vector FMA the CPU runs (best tier), independent chains.
  c.fma_gflops = make_cpu_backend(threads)->fma_peak_gflops();
  // The backend's best matrix kernel (of the tier the model uses): a large F32 product through
  // the same linear() entry point.
  auto be = make_cpu_backend(threads, tier);
  const int64_t M = 512, N = 4096, K = 4096;
  std::vector<float> w(static_cast<size_t>(N * K)), x(static_cast<size_t>(M * K)), y(static_cast<size_t>(M * N));
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  for (auto& v : w) v = u(rng);
  for (auto& v : x) v = u(rng);
  MatW mw;
  mw.fmt = WFormat::F32;
  mw.rows = N;
  mw.cols = K;
  mw.data = reinterpret_cast<const uint8_t*>(w.data());
  be->linear(mw, 0, N, x.data(), K, M, y.data(), N);
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = Clock::now();
    be->linear(mw, 0, N, x.data(), K, M, y.data(), N);
    c.matmul_gflops = std::max(c.matmul_gflops, 2.0 * M * N * K / secs(t0, Clock::now()) / 1e9);
  }
  return c;
}

// Per-token matrix work and weight bytes of one layer (decode reads each once; routed experts: k of them).
struct LayerCost {
  double flops = 0, bytes = 0;
};
void add(LayerCost& c, const MatW& w, double times = 1) {
  c.flops += 2.0 * static_cast<double>(w.rows) * static_cast<double>(w.cols) * times;
  c.bytes += static_cast<double>(w.bytes()) * times;
}
LayerCost layer_cost(const ModelConfig& cfg, const LayerW& l) {
  LayerCost c;
  add(c, l.hc_attn.fn);
  add(c, l.hc_ffn.fn);
  const AttentionW& a = l.attn;
  for (const MatW* w : {&a.wq_a, &a.wq_b, &a.wkv, &a.wo_a, &a.wo_b}) add(c, *w);
  if (a.compressor) {
    add(c, a.compressor->wkv);
    add(c, a.compressor->wgate);
  }
  if (a.indexer) {
    add(c, a.indexer->wq_b);
    add(c, a.indexer->weights_proj);
    add(c, a.indexer->compressor.wkv);
    add(c, a.indexer->compressor.wgate);
  }
  add(c, l.moe.gate);
  if (l.moe.shared)
    for (const MatW* w : {&l.moe.shared->w1, &l.moe.shared->w3, &l.moe.shared->w2}) add(c, *w);
  const ExpertW& e = l.moe.experts.front();
  for (const MatW* w : {&e.w1, &e.w3, &e.w2}) add(c, *w, static_cast<double>(cfg.experts_per_token));
  return c;
}

// Attention-side work of one query at position t (scores and values over the visible keys, indexer).
// entry_bytes / key_bytes: one compressed entry / indexer key in the session's cache type.
void attention_cost(const ModelConfig& c, int64_t l, int64_t t, double entry_bytes, double key_bytes, double& flops, double& cache_bytes) {
  const double H = static_cast<double>(c.num_heads), hd = static_cast<double>(c.head_dim);
  double keys = static_cast<double>(std::min(c.sliding_window, t + 1));
  cache_bytes += keys * hd * 4;
  const int64_t m = c.compress_ratio[l];
  if (c.attn_kind[l] == AttnKind::HCA) {
    const double vis = static_cast<double>((t + 1) / m);
    keys += vis;
    cache_bytes += vis * entry_bytes;
  } else if (c.attn_kind[l] == AttnKind::CSA) {
    const double vis = static_cast<double>((t + 1) / m), sel = std::min(static_cast<double>(c.index_topk), vis);
    keys += sel;
    flops += 2.0 * static_cast<double>(c.index_n_heads * c.index_head_dim) * vis;
    cache_bytes += vis * key_bytes + sel * entry_bytes;
  }
  flops += 4.0 * H * hd * keys;
}

std::vector<int32_t> random_ids(int64_t n, int64_t V, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<int32_t>(rng() % static_cast<uint64_t>(V));
  return v;
}

double peak_rss_gib() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / (1024.0 * 1024.0);
}

}  // namespace

int cmd_bench(int argc, char** argv) {
  Args a("bench", "Decode and prefill speed of synthetic V4 layers (random weights at real dimensions), with the ceilings "
         "measured in the same run.", argc, argv,
         {{{"--preset", "model dimensions: flash or pro", "flash", false, "NAME"},
           {"--config", "a config.json to take the dimensions from instead", "", false, "FILE"},
           {"--layers", "number of layers to build", "4", false, "N"},
           {"--contexts", "decode context lengths", "1024,16384,65536", false, "LIST"},
           {"--prompts", "prefill prompt lengths", "512,4096", false, "LIST"},
           {"--batch", "batched decode sizes (sessions per step)", "", false, "LIST"},
           {"--steps", "decode steps timed per context", "8", false, "N"},
           {"--seed", "seed of the random weights", "1", false, "S"},
           {"--max-batch", "most rows per step", "512", false, "N"},
           {"--json", "print the results as JSON", "", true, ""},
           {"--skip-ceilings", "do not measure the bandwidth and FMA ceilings", "", true, ""}},
          cache_opts(), backend_opts()});
  if (a.has("--preset") && a.has("--config")) throw UsageError("give --preset or --config, not both");
  const int64_t layers = a.get_int("--layers", 4);
  if (layers <= 0) throw UsageError("--layers must be positive");
  std::string cfg_text;
  std::string source;
  if (auto f = a.get("--config")) {
    std::ifstream in(*f);
    if (!in) throw UsageError("cannot read config " + *f);
    std::stringstream ss;
    ss << in.rdbuf();
    cfg_text = truncate_config_json(ss.str(), layers);
    source = *f;
  } else {
    source = a.get("--preset").value_or("flash");
    cfg_text = preset_config_json(source, layers);
  }
  const ModelConfig cfg = ModelConfig::parse(cfg_text, source);
  LoadOptions lo = load_options(a);
  if (a.has("--max-batch")) lo.max_batch = a.get_int("--max-batch", lo.max_batch);
  check_backend(lo);  // before building gigabytes of weights
  std::vector<int64_t> contexts = parse_int_list(a.get("--contexts").value_or("1024,16384,65536"), "--contexts");
  std::vector<int64_t> prompts = parse_int_list(a.get("--prompts").value_or("512,4096"), "--prompts");
  std::vector<int64_t> batches;
  if (auto b = a.get("--batch")) batches = parse_int_list(*b, "--batch");
  for (int64_t b : batches)
    if (b <= 0 || b > 4096) throw UsageError("--batch sizes must be in [1, 4096]");
  const int threads = static_cast<int>(a.get_int("--threads", 0)) > 0 ? static_cast<int>(a.get_int("--threads", 0))
                                                                        : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  lo.threads = threads;
  const int64_t steps = a.get_int("--steps", 8);
  const CacheType ctype = cache_type(a);
  const bool cwin = a.has("--cache-window");
  // A context at the model's maximum is measured as deep as the timed steps leave room for.
  for (int64_t& c : contexts) {
    if (c < 0) throw UsageError("--contexts must be >= 0");
    if (cfg.max_position_embeddings > 0) c = std::min(c, cfg.max_position_embeddings - steps - 8);
    if (c < 0) throw UsageError("--steps leaves no room in this config's max_position_embeddings");
  }
  const int64_t max_ctx = contexts.empty() ? 0 : *std::max_element(contexts.begin(), contexts.end());
  // The session's state at the deepest context, in the chosen cache type (committed as filled).
  const StateLayout state_layout = StateLayout::make(cfg, max_ctx + steps + 8, ctype, 0, cwin);
  const double state_need = static_cast<double>(state_layout.bytes_at(max_ctx + steps + 8));
  const bool json_out = a.has("--json");
  auto log = [&](const std::string& s) {
    if (!json_out) std::cerr << s << std::flush;
  };

  {
    // Refuse early, with a way out, rather than be killed by the OOM killer half-way.
    const double D = static_cast<double>(cfg.hidden_size), I = static_cast<double>(cfg.moe_intermediate_size);
    const double per_layer = static_cast<double>(cfg.n_routed_experts + 1) * 3 * I * D * (0.5 + 1.0 / 32) +
                             static_cast<double>(cfg.q_lora_rank) * D * 2 + static_cast<double>(cfg.num_heads * cfg.head_dim) *
                                                                           static_cast<double>(cfg.q_lora_rank + cfg.o_lora_rank) * 2;
    const double need = per_layer * static_cast<double>(cfg.num_layers) + 4.0 * static_cast<double>(cfg.vocab_size) * D +
                        static_cast<double>(size_t{1} << 29) + state_need;  // + the bandwidth probe buffers + the session
    const double avail = static_cast<double>(sysconf(_SC_AVPHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGESIZE));
    if (need > 0.9 * avail)
      throw InvalidArgument("the synthetic model needs about " + human_bytes(need) + " (of which the session state at context " +
                            std::to_string(max_ctx) + " in " + cache_type_name(ctype) + ": " + human_bytes(state_need) + ") but only " +
                            human_bytes(avail) + " of memory is free: use fewer --layers (each layer of this config is about " +
                            human_bytes(per_layer) + "), shorter --contexts or a smaller --cache-type");
    log("session state at context " + std::to_string(max_ctx) + " (" + cache_type_name(ctype) + "): " + human_bytes(state_need) +
        "; memory needed in all about " + human_bytes(need) + " of " + human_bytes(avail) + " free\n");
  }
  Ceilings ceil;
  const bool skip_ceilings = a.has("--skip-ceilings");
  if (!skip_ceilings) {
    log("measuring ceilings (memory bandwidth, matrix throughput)...\n");
    Arena big;
    const size_t n = size_t{1} << 28;  // 2 x 1 GiB
    ceil = measure_ceilings(threads, reinterpret_cast<float*>(big.alloc(4 * n)), reinterpret_cast<float*>(big.alloc(4 * n)), n, true, lo.cpu_tier);
  }
  // Buffers for measuring the bandwidth again during the run, mapped before the weights: mapping
  // huge pages later, next to 15 GB of weights, can start memory compaction that competes with decode.
  Arena probe;
  const size_t probe_n = size_t{1} << 26;  // 2 x 256 MiB
  float* probe_a = skip_ceilings ? nullptr : reinterpret_cast<float*>(probe.alloc(4 * probe_n));
  float* probe_b = skip_ceilings ? nullptr : reinterpret_cast<float*>(probe.alloc(4 * probe_n));
  log("building " + std::to_string(cfg.num_layers) + "-layer synthetic model (" + source + ")...\n");
  uint64_t weight_bytes = 0;
  const auto t_build = Clock::now();
  const auto model = make_synthetic_model(cfg, static_cast<uint64_t>(a.get_int("--seed", 1)), lo, &weight_bytes);
  const double build_s = secs(t_build, Clock::now());
  const ModelWeights& mw = model_impl(*model).w;
  {
    // One read pass over every weight before timing, as a long-running server has had: the
    // first touch after the fill is slower on some machines (page tables, host-side mapping).
    log("reading all weights once...\n");
    const auto& store = model_impl(*model).store;
    const auto names = store.names();
    std::vector<std::thread> th;
    std::vector<uint64_t> sink(static_cast<size_t>(threads), 0);
    for (int t = 0; t < threads; ++t)
      th.emplace_back([&, t] {
        uint64_t acc = 0;
        for (size_t i = static_cast<size_t>(t); i < names.size(); i += static_cast<size_t>(threads)) {
          const TensorRef r = store.get(names[i]);
          const uint64_t n = r.info->end - r.info->begin;
          for (uint64_t k = 0; k < n; k += 64) acc += r.data[k];
        }
        sink[static_cast<size_t>(t)] = acc;
      });
    for (auto& x : th) x.join();
  }

  // This machine's bandwidth drifts (shared hosts): measure it again before and after the decode
  // runs and use the highest figure, so that ratios are never flattered by a slow measurement.
  std::vector<double> copy_samples{ceil.copy_gbps}, matmul_samples{ceil.matmul_gflops};
  // On a device backend the bandwidth ceiling is the device memory's own copy (the host figures
  // stay for the FMA and matmul columns, which describe the CPU).
  const bool device = model->backend_info().name != "cpu";
  if (device) {
    ceil.copy_gbps = ceil.read_gbps = 0;
    copy_samples.clear();
  }
  auto remeasure = [&] {
    if (skip_ceilings) return;
    if (device) {
      log("measuring the device's copy bandwidth...\n");
      const double g = model_engine(*model).backend().copy_gbps();
      copy_samples.push_back(g);
      ceil.copy_gbps = std::max(ceil.copy_gbps, g);
      ceil.read_gbps = std::max(ceil.read_gbps, g);
      return;
    }
    log("measuring memory bandwidth again...\n");
    // The matrix ceiling too: batched decode and prefill ratios use it, and it drifts like the bandwidth.
    const Ceilings again = measure_ceilings(threads, probe_a, probe_b, probe_n, true, lo.cpu_tier);
    copy_samples.push_back(again.copy_gbps);
    matmul_samples.push_back(again.matmul_gflops);
    ceil.copy_gbps = std::max(ceil.copy_gbps, again.copy_gbps);
    ceil.read_gbps = std::max(ceil.read_gbps, again.read_gbps);
    ceil.matmul_gflops = std::max(ceil.matmul_gflops, again.matmul_gflops);
    ceil.fma_gflops = std::max(ceil.fma_gflops, again.fma_gflops);
  };
  remeasure();

  std::vector<LayerCost> lcost;
  for (const auto& l : mw.layers) lcost.push_back(layer_cost(cfg, l));
  LayerCost head;
  add(head, mw.hc_head.fn);
  add(head, mw.head);
  const double embed_row_bytes = static_cast<double>(cfg.hidden_size) * 2;

  nlohmann::json out;
  const std::string kernel_tier = model->backend_info().kernel_tier;
  out["model"] = {{"source", source}, {"layers", cfg.num_layers}, {"weight_bytes", weight_bytes}, {"threads", threads},
                  {"build_seconds", build_s}};
  out["kernel_tier"] = kernel_tier;
  log("kernel tier: " + kernel_tier + "\n");

  // ---- decode ----
  out["cache_type"] = cache_type_name(ctype);
  double entry_bytes = 0, key_bytes = 0;
  for (const auto& L : state_layout.layers) {
    if (L.comp.present) entry_bytes = static_cast<double>(L.comp.stride);
    if (L.index.present) key_bytes = static_cast<double>(L.index.stride);
  }
  out["decode"] = nlohmann::json::array();
  std::vector<nlohmann::json> ctx_ops;
  nlohmann::json decode_profile;
  std::vector<double> layer_ms(static_cast<size_t>(cfg.num_layers), 0.0);
  double head_ms = 0;
  {
    SessionOptions so;
    so.threads = threads;
    so.max_context = max_ctx + steps + 8;
    so.profile = true;
    so.cache_type = ctype;
    so.cache_window = cwin;
    Session s(model, so);
    const auto ids = random_ids(steps + 1, cfg.vocab_size, 7);
    for (size_t ci = 0; ci < contexts.size(); ++ci) {
      const int64_t C = contexts[ci];
      log("decode at context " + std::to_string(C) + "...\n");
      SessionAccess::fill_random(s, C, 11 + ci);
      for (int k = 0; k < 3; ++k) s.forward({ids.data(), 1});  // warm-up: first touch of buffers, settle after the fill
      s.clear_profile();
      // The median step: this machine's neighbours make single steps noisy.
      // Nothing else runs between the timed steps: a bandwidth probe between steps was measured
      // to slow the next step by up to a quarter (its 512 MiB of writes), so the bandwidth is
      // measured before and after the decode runs instead.
      std::vector<double> step_ms;
      for (int64_t i = 1; i <= steps; ++i) {
        const auto t0 = Clock::now();
        s.forward({ids.data() + i, 1});
        step_ms.push_back(1000 * secs(t0, Clock::now()));
      }
      std::sort(step_ms.begin(), step_ms.end());
      const double ms = step_ms[step_ms.size() / 2];
      double bytes = embed_row_bytes + head.bytes, flops = head.flops, cache = 0;
      for (int64_t l = 0; l < cfg.num_layers; ++l) {
        bytes += lcost[static_cast<size_t>(l)].bytes;
        flops += lcost[static_cast<size_t>(l)].flops;
        attention_cost(cfg, l, C + 1 + steps / 2, entry_bytes, key_bytes, flops, cache);
      }
      const double gbps = (bytes + cache) / (ms / 1000) / 1e9;
      nlohmann::json ops;
      for (const auto& [k, v] : s.profile()) ops[k] = 1000 * v / static_cast<double>(steps);
      out["decode"].push_back({{"context", C}, {"batch", 1}, {"ms_per_token", ms}, {"ms_per_step", ms}, {"tokens_per_s", 1000 / ms},
                               {"bytes_per_token", bytes + cache}, {"bytes_per_step", bytes + cache}, {"flops_per_step", flops},
                               {"weight_bytes_per_token", bytes}, {"cache_bytes_per_token", cache}, {"gbps", gbps},
                               {"session_state_bytes", s.memory().state_bytes}, {"ops_ms", ops}});
      if (ci == 0) {
        for (const auto& [k, v] : s.profile()) decode_profile[k] = 1000 * v / static_cast<double>(steps);
        const auto lp = s.layer_profile();
        for (size_t l = 0; l < lp.size(); ++l) layer_ms[l] = 1000 * lp[l] / static_cast<double>(steps);
        for (const auto& [k, v] : s.profile())
          if (k == "head" || k == "embed") head_ms += 1000 * v / static_cast<double>(steps);
      }
    }
  }
  // ---- batched decode: B sessions at the first context, one token each per step ----
  std::vector<nlohmann::json> batch_runs;
  if (!batches.empty()) {
    Backend& be = model_engine(*model).backend();
    const int64_t C = contexts.front();
    for (int64_t B : batches) {
      log("batched decode of " + std::to_string(B) + " sessions at context " + std::to_string(C) + "...\n");
      SessionOptions so;
      so.max_context = C + steps + 8;
      so.cache_type = ctype;
    so.cache_window = cwin;
      so.profile = true;  // forward_batch charges each step's op times to the first session
      std::vector<std::unique_ptr<Session>> sessions;
      for (int64_t b = 0; b < B; ++b) {
        sessions.push_back(std::make_unique<Session>(model, so));
        SessionAccess::fill_random(*sessions.back(), C, 1000 + static_cast<uint64_t>(b));
      }
      const auto ids = random_ids((steps + 3) * B, cfg.vocab_size, 17 + static_cast<uint64_t>(B));
      std::vector<BatchItem> items(static_cast<size_t>(B));
      auto step = [&](int64_t i) {
        for (int64_t b = 0; b < B; ++b) items[static_cast<size_t>(b)] = {sessions[static_cast<size_t>(b)].get(), {ids.data() + i * B + b, 1}};
        forward_batch(items);
      };
      for (int k = 0; k < 2; ++k) step(k);  // warm-up
      be.reset_stats();
      sessions.front()->clear_profile();
      std::vector<double> step_ms;
      for (int64_t i = 2; i < steps + 2; ++i) {
        const auto t0 = Clock::now();
        step(i);
        step_ms.push_back(1000 * secs(t0, Clock::now()));
      }
      const OpStats st = be.stats();
      std::sort(step_ms.begin(), step_ms.end());
      const double ms = step_ms[step_ms.size() / 2];
      // Bytes actually read per step: dense weights once, each distinct routed expert once, the
      // embedding rows, every session's cache; FLOPs: every token through every product it uses.
      const double touched = static_cast<double>(st.experts_touched) / static_cast<double>(steps);  // summed over layers
      double bytes = head.bytes + embed_row_bytes * static_cast<double>(B), flops = head.flops * static_cast<double>(B), cache = 0;
      for (int64_t l = 0; l < cfg.num_layers; ++l) {
        const LayerCost& lc = lcost[static_cast<size_t>(l)];
        const ExpertW& e = mw.layers[static_cast<size_t>(l)].moe.experts.front();
        const double ebytes = static_cast<double>(e.w1.bytes() + e.w3.bytes() + e.w2.bytes());
        bytes += lc.bytes - ebytes * static_cast<double>(cfg.experts_per_token);  // the dense part
        flops += lc.flops * static_cast<double>(B);
        for (int64_t b = 0; b < B; ++b) attention_cost(cfg, l, C + 1 + steps / 2, entry_bytes, key_bytes, flops, cache);
        if (l == 0) bytes += ebytes * touched;  // every layer's experts have the same size in the bench configs
      }
      bytes += cache;
      const double t_bw = ceil.copy_gbps > 0 ? bytes / (ceil.copy_gbps * 1e9) : 0.0;
      const double t_fl = ceil.matmul_gflops > 0 ? flops / (ceil.matmul_gflops * 1e9) : 0.0;
      const double bound_ms = 1000 * std::max(t_bw, t_fl);
      batch_runs.push_back({{"context", C}, {"batch", B}, {"ms_per_step", ms}, {"ms_per_token", ms / static_cast<double>(B)},
                            {"tokens_per_s", 1000.0 * static_cast<double>(B) / ms}, {"bytes_per_step", bytes},
                            {"cache_bytes_per_step", cache}, {"flops_per_step", flops},
                            {"experts_touched_per_step", touched}, {"bound_ms", bound_ms},
                            {"bound", t_bw >= t_fl ? "bandwidth" : "compute"}, {"roofline_ratio", bound_ms > 0 ? bound_ms / ms : 0.0},
                            {"session_state_bytes", sessions.front()->memory().state_bytes}});
      nlohmann::json prof;
      for (const auto& [k, v] : sessions.front()->profile()) prof[k] = 1000 * v / static_cast<double>(steps);
      batch_runs.back()["profile_ms"] = prof;
    }
  }
  remeasure();  // after the decode runs too: the ceiling is the best of all measurements
  out["decode_profile_ms"] = decode_profile;
  // Ratios against the best bandwidth seen anywhere in the run (all samples are measured by now).
  out["ceilings"] = {{"bandwidth_gbps", ceil.copy_gbps},
                     {"bandwidth_samples_gbps", copy_samples},
                     {"read_gbps", ceil.read_gbps},
                     {"matmul_gflops", ceil.matmul_gflops},
                     {"fma_gflops", ceil.fma_gflops},
                     {"matmul_samples_gflops", matmul_samples},
                     {"bandwidth_of", device ? "device memory (device-to-device copy)" : "host memory"}};
  for (auto& d : out["decode"]) {
    const double gbps = d["gbps"].get<double>();
    d["bandwidth_ratio"] = ceil.copy_gbps > 0 ? gbps / ceil.copy_gbps : 0.0;  // against the best copy bandwidth
    d["read_bandwidth_ratio"] = ceil.read_gbps > 0 ? gbps / ceil.read_gbps : 0.0;
    const double t_bw = ceil.copy_gbps > 0 ? d["bytes_per_step"].get<double>() / (ceil.copy_gbps * 1e9) : 0.0;
    const double t_fl = ceil.matmul_gflops > 0 ? d["flops_per_step"].get<double>() / (ceil.matmul_gflops * 1e9) : 0.0;
    d["bound_ms"] = 1000 * std::max(t_bw, t_fl);
    d["bound"] = t_bw >= t_fl ? "bandwidth" : "compute";
    d["roofline_ratio"] = d["bound_ms"].get<double>() / d["ms_per_step"].get<double>();
  }
  // Batched runs: bounds against the final (best) ceilings.
  for (auto& d : batch_runs) {
    const double t_bw = ceil.copy_gbps > 0 ? d["bytes_per_step"].get<double>() / (ceil.copy_gbps * 1e9) : 0.0;
    const double t_fl = ceil.matmul_gflops > 0 ? d["flops_per_step"].get<double>() / (ceil.matmul_gflops * 1e9) : 0.0;
    d["bound_ms"] = 1000 * std::max(t_bw, t_fl);
    d["bound"] = t_bw >= t_fl ? "bandwidth" : "compute";
    d["roofline_ratio"] = d["bound_ms"].get<double>() / d["ms_per_step"].get<double>();
    d["gbps"] = d["bytes_per_step"].get<double>() / (d["ms_per_step"].get<double>() / 1000) / 1e9;
    out["decode"].push_back(d);
  }

  // ---- prefill ----
  out["prefill"] = nlohmann::json::array();
  for (int64_t P : prompts) {
    log("prefill of " + std::to_string(P) + " tokens...\n");
    SessionOptions so;
    so.threads = threads;
    so.max_context = P + 1;
    so.cache_type = ctype;
    so.cache_window = cwin;
    if (a.has("--max-batch")) so.max_batch = a.get_int("--max-batch", so.max_batch);
    so.profile = true;
    Session s(model, so);
    const auto ids = random_ids(P, cfg.vocab_size, 5);
    const auto t0 = Clock::now();
    s.forward(ids, Logits::Last);
    const double sec = secs(t0, Clock::now());
    double flops = head.flops, cache = 0;
    for (int64_t l = 0; l < cfg.num_layers; ++l)
      for (int64_t t = 0; t < P; ++t) {
        flops += lcost[static_cast<size_t>(l)].flops;
        attention_cost(cfg, l, t, entry_bytes, key_bytes, flops, cache);
      }
    const double gflops = flops / sec / 1e9;
    nlohmann::json prof;
    for (const auto& [k, v] : s.profile()) prof[k] = v;
    out["prefill"].push_back({{"tokens", P}, {"seconds", sec}, {"tokens_per_s", static_cast<double>(P) / sec}, {"gflops", gflops},
                              {"matmul_ratio", ceil.matmul_gflops > 0 ? gflops / ceil.matmul_gflops : 0.0},
                              {"fma_ratio", ceil.fma_gflops > 0 ? gflops / ceil.fma_gflops : 0.0}, {"profile_s", prof}});
  }
  out["peak_rss_gib"] = peak_rss_gib();

  // ---- extrapolation to the full V4-Flash schedule (2 sliding, 21 CSA, 20 HCA layers) ----
  {
    double by_kind[3] = {0, 0, 0}, n_kind[3] = {0, 0, 0}, all = 0;
    for (int64_t l = 0; l < cfg.num_layers; ++l) {
      const int k = static_cast<int>(cfg.attn_kind[l]);
      by_kind[k] += layer_ms[static_cast<size_t>(l)];
      n_kind[k] += 1;
      all += layer_ms[static_cast<size_t>(l)];
    }
    auto avg = [&](int k) { return n_kind[k] > 0 ? by_kind[k] / n_kind[k] : all / static_cast<double>(cfg.num_layers); };
    const ModelConfig full = ModelConfig::parse(preset_config_json("flash", 0));
    double ms = head_ms;
    for (auto k : full.attn_kind) ms += avg(static_cast<int>(k));
    double bytes = embed_row_bytes + head.bytes, bytes_layers = 0;
    for (auto& lc : lcost) bytes_layers += lc.bytes;
    bytes += bytes_layers / static_cast<double>(cfg.num_layers) * static_cast<double>(full.num_layers);
    out["extrapolated_flash_43_layers"] = {{"note", "per-layer decode times of this run (by layer kind) times the V4-Flash schedule, plus head; "
                                                    "first context only"},
                                           {"context", contexts.front()}, {"ms_per_token", ms}, {"tokens_per_s", 1000 / ms},
                                           {"weight_bytes_per_token", bytes}};
  }

  {  // what a session of the whole V4-Flash holds at each context, per cache type (committed as filled)
    const ModelConfig full = ModelConfig::parse(preset_config_json("flash", 0));
    out["flash_43_layers_session_state"] = nlohmann::json::array();
    for (int64_t C : std::vector<int64_t>{1024, 65536, 262144, 1048576}) {
      nlohmann::json e = {{"context", C}};
      for (CacheType t : {CacheType::F32, CacheType::BF16, CacheType::FP8})
        e[cache_type_name(t)] = StateLayout::make(full, C, t).bytes_at(C);
      out["flash_43_layers_session_state"].push_back(e);
    }
  }
  if (json_out) {
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::printf("\ndsv4 bench: %s, %lld layers, %d threads, kernel tier %s, %s cache, %.2f GiB of weights (built in %.1f s)\n", source.c_str(),
              static_cast<long long>(cfg.num_layers), threads, kernel_tier.c_str(), out["cache_type"].get<std::string>().c_str(),
              static_cast<double>(weight_bytes) / (1u << 30), build_s);
  std::printf("ceilings: %scopy bandwidth %.1f GB/s (read+write; best in the run; full measurements", device ? "device " : "", ceil.copy_gbps);
  for (double v : copy_samples) std::printf(" %.1f", v);
  std::printf("), read bandwidth %.1f GB/s, matmul %.1f GFLOP/s (best of", ceil.read_gbps, ceil.matmul_gflops);
  for (double v : matmul_samples) std::printf(" %.1f", v);
  std::printf("), FMA peak %.1f GFLOP/s\n\n", ceil.fma_gflops);
  std::printf("%-10s %10s %14s %8s %10s %10s\n", "decode", "ms/token", "MB read/token", "GB/s", "vs copy", "vs read");
  for (const auto& d : out["decode"])
    if (d.contains("bytes_per_token"))
      std::printf("ctx %-6lld %10.2f %14.1f %8.2f %9.0f%% %9.0f%%\n", static_cast<long long>(d["context"].get<int64_t>()),
                  d["ms_per_token"].get<double>(), d["bytes_per_token"].get<double>() / 1e6, d["gbps"].get<double>(),
                  100 * d["bandwidth_ratio"].get<double>(), 100 * d["read_bandwidth_ratio"].get<double>());
  std::printf("(the median step against the best copy / read bandwidth measured in the run)\n");
  {  // where the time goes at each context, and the session's memory there
    std::vector<std::string> keys;
    for (const auto& d : out["decode"])
      if (d.contains("ops_ms")) {
        for (auto it = d["ops_ms"].begin(); it != d["ops_ms"].end(); ++it) keys.push_back(it.key());
        break;
      }
    std::printf("\ndecode ms/token per op, %s cache:\n%-12s", out["cache_type"].get<std::string>().c_str(), "context");
    for (const auto& k : keys) std::printf(" %15s", k.c_str());
    std::printf(" %12s\n", "state");
    for (const auto& d : out["decode"])
      if (d.contains("ops_ms")) {
        std::printf("%-12lld", static_cast<long long>(d["context"].get<int64_t>()));
        for (const auto& k : keys) std::printf(" %15.2f", d["ops_ms"].value(k, 0.0));
        std::printf(" %12s\n", human_bytes(static_cast<double>(d["session_state_bytes"].get<uint64_t>())).c_str());
      }
  }
  if (!batch_runs.empty()) {
    std::printf("\nbatched decode at context %lld: B sessions, one token each per step; bound = max(bytes / copy bandwidth, FLOPs / matmul)\n",
                static_cast<long long>(contexts.front()));
    std::printf("%6s %10s %10s %9s %11s %9s %9s %10s %9s %9s\n", "batch", "ms/step", "tokens/s", "MB/step", "GFLOP/step", "experts",
                "bound ms", "bound by", "vs bound", "vs B=1");
    double one = 0;
    for (const auto& d : out["decode"]) {
      if (d.contains("bytes_per_token")) continue;
      const double tps = d["tokens_per_s"].get<double>();
      if (d["batch"].get<int64_t>() == 1) one = tps;
      std::printf("%6lld %10.2f %10.1f %9.1f %11.1f %9.1f %9.2f %10s %8.0f%% %8.2fx\n", static_cast<long long>(d["batch"].get<int64_t>()),
                  d["ms_per_step"].get<double>(), tps, d["bytes_per_step"].get<double>() / 1e6, d["flops_per_step"].get<double>() / 1e9,
                  d["experts_touched_per_step"].get<double>(), d["bound_ms"].get<double>(), d["bound"].get<std::string>().c_str(),
                  100 * d["roofline_ratio"].get<double>(), one > 0 ? tps / one : 0.0);
    }
    std::printf("(experts: distinct routed experts read per step, all layers; memory per session at this context: %s)\n",
                human_bytes(static_cast<double>(batch_runs.front()["session_state_bytes"].get<uint64_t>())).c_str());
  }
  std::printf("\n%-10s %12s %12s %12s %12s %12s\n", "prefill", "tokens/s", "seconds", "GFLOP/s", "vs matmul", "vs FMA peak");
  for (const auto& p : out["prefill"])
    std::printf("%-10lld %12.1f %12.2f %12.1f %11.0f%% %11.0f%%\n", static_cast<long long>(p["tokens"].get<int64_t>()), p["tokens_per_s"].get<double>(),
                p["seconds"].get<double>(), p["gflops"].get<double>(), 100 * p["matmul_ratio"].get<double>(), 100 * p["fma_ratio"].get<double>());
  std::printf("\ndecode time per op at context %lld (ms/token):", static_cast<long long>(contexts.front()));
  for (auto it = decode_profile.begin(); it != decode_profile.end(); ++it) std::printf(" %s %.2f,", it.key().c_str(), it.value().get<double>());
  std::printf("\nper layer (ms/token):");
  for (int64_t l = 0; l < cfg.num_layers; ++l)
    std::printf(" L%lld(%s) %.2f", static_cast<long long>(l),
                cfg.attn_kind[l] == AttnKind::Sliding ? "SWA" : cfg.attn_kind[l] == AttnKind::CSA ? "CSA" : "HCA", layer_ms[static_cast<size_t>(l)]);
  const auto& ex = out["extrapolated_flash_43_layers"];
  std::printf("\n\nextrapolated to the full 43-layer schedule at context %lld: %.1f ms/token (%.2f tok/s), %.2f GB of weights read per token\n",
              static_cast<long long>(contexts.front()), ex["ms_per_token"].get<double>(), ex["tokens_per_s"].get<double>(),
              ex["weight_bytes_per_token"].get<double>() / 1e9);
  std::printf("session state of the full 43-layer V4-Flash (committed as the position advances):");
  for (const auto& e : out["flash_43_layers_session_state"])
    std::printf("\n  context %-8lld f32 %10s   bf16 %10s   fp8 %10s", static_cast<long long>(e["context"].get<int64_t>()),
                human_bytes(static_cast<double>(e["f32"].get<uint64_t>())).c_str(), human_bytes(static_cast<double>(e["bf16"].get<uint64_t>())).c_str(),
                human_bytes(static_cast<double>(e["fp8"].get<uint64_t>())).c_str());
  std::printf("\npeak RSS %.2f GiB\n", out["peak_rss_gib"].get<double>());
  return 0;
}

}  // namespace dsv4::cli
