#include "model/synthetic.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <atomic>
#include <thread>

#include <nlohmann/json.hpp>

#include "dsv4/error.hpp"
#include "model/model_impl.hpp"

namespace dsv4 {

namespace {

using json = nlohmann::json;

json flash_json() {
  json j = {{"vocab_size", 129280}, {"hidden_size", 4096}, {"num_hidden_layers", 43}, {"num_attention_heads", 64},
            {"num_key_value_heads", 1}, {"head_dim", 512}, {"qk_rope_head_dim", 64}, {"q_lora_rank", 1024},
            {"o_groups", 8}, {"o_lora_rank", 1024}, {"sliding_window", 128}, {"compress_rope_theta", 160000},
            {"rope_theta", 10000}, {"max_position_embeddings", 1048576}, {"index_n_heads", 64}, {"index_head_dim", 128},
            {"index_topk", 512}, {"n_routed_experts", 256}, {"num_experts_per_tok", 6}, {"n_shared_experts", 1},
            {"moe_intermediate_size", 2048}, {"num_hash_layers", 3}, {"scoring_func", "sqrtsoftplus"},
            {"routed_scaling_factor", 1.5}, {"swiglu_limit", 10.0}, {"hc_mult", 4}, {"hc_sinkhorn_iters", 20},
            {"hc_eps", 1e-6}, {"rms_norm_eps", 1e-6}, {"num_nextn_predict_layers", 1}, {"expert_dtype", "fp4"},
            {"bos_token_id", 0}, {"eos_token_id", 1}};
  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 16}, {"original_max_position_embeddings", 65536}, {"beta_fast", 32}, {"beta_slow", 1}};
  json ratios = json::array({0, 0});
  for (int i = 2; i < 43; ++i) ratios.push_back(i % 2 == 0 ? 4 : 128);
  ratios.push_back(0);  // MTP
  j["compress_ratios"] = ratios;
  return j;
}

// xorshift64 stream; fills 8 bytes per step.
struct Gen {
  uint64_t z;
  uint64_t next() {
    z ^= z << 13;
    z ^= z >> 7;
    z ^= z << 17;
    return z;
  }
};

enum class Fill { FP8, FP4, Scale, BF16, F32, Zero };

void fill(uint8_t* p, size_t n, Fill kind, uint8_t scale_code, uint64_t seed) {
  Gen g{seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull};
  switch (kind) {
    case Fill::FP8:  // |value| in [2^-3, 2^4·1.875]: exponent field 4..11 (never NaN), random sign and mantissa
      for (size_t i = 0; i < n; i += 8) {
        const uint64_t r = g.next();
        const uint64_t v = (r & 0x8787878787878787ull) | ((((r >> 3) & 0x0707070707070707ull) + 0x0404040404040404ull) << 3);
        std::memcpy(p + i, &v, std::min<size_t>(8, n - i));
      }
      return;
    case Fill::FP4:
      for (size_t i = 0; i < n; i += 8) {
        const uint64_t r = g.next();
        std::memcpy(p + i, &r, std::min<size_t>(8, n - i));
      }
      return;
    case Fill::Scale:
      std::memset(p, scale_code, n);
      return;
    case Fill::BF16:  // |value| in [2^-7, 2^-3): exponent 120..123, random sign and mantissa
      for (size_t i = 0; i < n; i += 8) {
        const uint64_t r = g.next();
        const uint64_t v = (r & 0x807F807F807F807Full) | ((((r >> 7) & 0x0003000300030003ull) + 0x0078007800780078ull) << 7);
        std::memcpy(p + i, &v, std::min<size_t>(8, n - i));
      }
      return;
    case Fill::F32:
      for (size_t i = 0; i + 3 < n; i += 4) {
        const float v = static_cast<float>(static_cast<int64_t>(g.next() >> 40) - (1 << 23)) * (0.05f / (1 << 23));
        std::memcpy(p + i, &v, 4);
      }
      return;
    case Fill::Zero:
      std::memset(p, 0, n);
      return;
  }
}

struct Job {
  uint8_t* p;
  size_t n;
  Fill kind;
  uint8_t scale_code;
  uint64_t seed;
};

class Builder {
 public:
  Builder(const ModelConfig& c, uint64_t seed) : cfg(c), seed_(seed), store(TensorStore::in_memory()) {}

  uint8_t* alloc(const std::string& name, DType dt, std::vector<int64_t> shape, Fill kind, uint8_t scale_code = 127) {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    const size_t bytes = static_cast<size_t>(n) * dtype_size(dt);
    uint8_t* p = owned->alloc(bytes);  // huge-page backed, see util/arena.hpp
    total += bytes;
    jobs.push_back({p, bytes, kind, scale_code, seed_ + jobs.size() * 7919});
    store.add_memory(name, dt, std::move(shape), p);
    return p;
  }
  // Scale so that rows of `in` random weights produce outputs of order one.
  static uint8_t scale_for(int64_t in) { return static_cast<uint8_t>(127 - 1 - static_cast<int>(std::log2(static_cast<double>(in)) / 2)); }
  void fp8(const std::string& w, int64_t rows, int64_t cols) {
    alloc(w + ".weight", DType::F8_E4M3, {rows, cols}, Fill::FP8);
    alloc(w + ".scale", DType::F8_E8M0, {(rows + 127) / 128, (cols + 127) / 128}, Fill::Scale, scale_for(cols));
  }
  void fp4(const std::string& w, int64_t rows, int64_t cols) {
    alloc(w + ".weight", DType::I8, {rows, cols / 2}, Fill::FP4);
    alloc(w + ".scale", DType::F8_E8M0, {rows, cols / 32}, Fill::Scale, scale_for(cols));
  }
  void bf16(const std::string& name, std::vector<int64_t> shape) { alloc(name, DType::BF16, std::move(shape), Fill::BF16); }
  void f32(const std::string& name, std::vector<int64_t> shape) { alloc(name, DType::F32, std::move(shape), Fill::F32); }
  void ones_bf16(const std::string& name, int64_t n) {
    uint8_t* p = alloc(name, DType::BF16, {n}, Fill::Zero);
    jobs.pop_back();
    for (int64_t i = 0; i < n; ++i) {
      const uint16_t one = 0x3F80;
      std::memcpy(p + 2 * i, &one, 2);
    }
  }

  void run(int threads) {
    std::sort(jobs.begin(), jobs.end(), [](const Job& a, const Job& b) { return a.n > b.n; });
    std::vector<std::thread> th;
    std::atomic<size_t> next{0};
    for (int t = 0; t < std::max(threads, 1); ++t)
      th.emplace_back([&] {
        for (size_t i; (i = next.fetch_add(1)) < jobs.size();) fill(jobs[i].p, jobs[i].n, jobs[i].kind, jobs[i].scale_code, jobs[i].seed);
      });
    for (auto& t : th) t.join();
  }

  const ModelConfig& cfg;
  uint64_t seed_;
  TensorStore store;
  std::unique_ptr<Arena> owned = std::make_unique<Arena>();
  std::vector<Job> jobs;
  uint64_t total = 0;
};

}  // namespace

std::string truncate_config_json(const std::string& text, int64_t layers) {
  json j = json::parse(text);
  const int64_t n = j.at("num_hidden_layers").get<int64_t>();
  if (layers <= 0 || layers >= n) return j.dump();
  j["num_hidden_layers"] = layers;
  if (j.contains("compress_ratios")) {
    json r = json::array();
    for (int64_t i = 0; i < layers; ++i) r.push_back(j["compress_ratios"][static_cast<size_t>(i)]);
    r.push_back(0);
    j["compress_ratios"] = r;
  }
  for (const char* k : {"layer_types", "mlp_layer_types"})
    if (j.contains(k)) {
      json r = json::array();
      for (int64_t i = 0; i < layers; ++i) r.push_back(j[k][static_cast<size_t>(i)]);
      j[k] = r;
    }
  if (j.contains("num_hash_layers")) j["num_hash_layers"] = std::min<int64_t>(j["num_hash_layers"].get<int64_t>(), layers);
  return j.dump();
}

std::string preset_config_json(const std::string& name, int64_t layers) {
  json j = flash_json();
  if (name == "pro") {
    j["n_routed_experts"] = 384;
    j["moe_intermediate_size"] = 3072;
    j["index_topk"] = 1024;
    j["routed_scaling_factor"] = 2.5;
  } else if (name != "flash") {
    throw InvalidArgument("unknown preset '" + name + "' (expected flash or pro)");
  }
  return truncate_config_json(j.dump(), layers);
}

std::shared_ptr<const Model> make_synthetic_model(const ModelConfig& c, uint64_t seed, const LoadOptions& options, uint64_t* bytes) {
  const int threads = options.threads > 0 ? options.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  Builder b(c, seed);
  const int64_t D = c.hidden_size, V = c.vocab_size, nc = c.hc_mult, H = c.num_heads, hd = c.head_dim, Q = c.q_lora_rank,
                G = c.o_groups, R = c.o_lora_rank, E = c.n_routed_experts, I = c.moe_intermediate_size, K = c.experts_per_token;
  b.bf16("embed.weight", {V, D});
  b.bf16("head.weight", {V, D});
  b.ones_bf16("norm.weight", D);
  b.f32("hc_head_fn", {nc, nc * D});
  b.f32("hc_head_base", {nc});
  b.f32("hc_head_scale", {1});
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    for (const char* site : {"hc_attn", "hc_ffn"}) {
      b.f32(p + site + "_fn", {(2 + nc) * nc, nc * D});
      b.f32(p + site + "_base", {(2 + nc) * nc});
      b.f32(p + site + "_scale", {3});
    }
    b.ones_bf16(p + "attn_norm.weight", D);
    b.ones_bf16(p + "ffn_norm.weight", D);
    b.f32(p + "attn.attn_sink", {H});
    b.fp8(p + "attn.wq_a", Q, D);
    b.ones_bf16(p + "attn.q_norm.weight", Q);
    b.fp8(p + "attn.wq_b", H * hd, Q);
    b.fp8(p + "attn.wkv", hd, D);
    b.ones_bf16(p + "attn.kv_norm.weight", hd);
    b.fp8(p + "attn.wo_a", G * R, H * hd / G);
    b.fp8(p + "attn.wo_b", D, G * R);
    if (c.attn_kind[l] != AttnKind::Sliding) {
      const int64_t m = c.compress_ratio[l], cw = c.attn_kind[l] == AttnKind::CSA ? 2 : 1;
      b.f32(p + "attn.compressor.ape", {m, cw * hd});
      b.bf16(p + "attn.compressor.wkv.weight", {cw * hd, D});
      b.bf16(p + "attn.compressor.wgate.weight", {cw * hd, D});
      b.ones_bf16(p + "attn.compressor.norm.weight", hd);
      if (c.attn_kind[l] == AttnKind::CSA) {
        const int64_t nI = c.index_n_heads, ihd = c.index_head_dim;
        b.fp8(p + "attn.indexer.wq_b", nI * ihd, Q);
        b.bf16(p + "attn.indexer.weights_proj.weight", {nI, D});
        b.f32(p + "attn.indexer.compressor.ape", {m, 2 * ihd});
        b.bf16(p + "attn.indexer.compressor.wkv.weight", {2 * ihd, D});
        b.bf16(p + "attn.indexer.compressor.wgate.weight", {2 * ihd, D});
        b.ones_bf16(p + "attn.indexer.compressor.norm.weight", ihd);
      }
    }
    b.bf16(p + "ffn.gate.weight", {E, D});
    if (c.moe_kind[l] == MoeKind::Hash) {
      uint8_t* t = b.alloc(p + "ffn.gate.tid2eid", DType::I64, {V, K}, Fill::Zero);
      b.jobs.pop_back();
      for (int64_t v = 0; v < V; ++v)
        for (int64_t k = 0; k < K; ++k) {
          const int64_t e = (v * 7919 + k * (E / K) + l) % E;
          std::memcpy(t + 8 * (v * K + k), &e, 8);
        }
    } else {
      b.f32(p + "ffn.gate.bias", {E});
    }
    for (int64_t e = 0; e < E; ++e) {
      const std::string ep = p + "ffn.experts." + std::to_string(e) + ".";
      b.fp4(ep + "w1", I, D);
      b.fp4(ep + "w3", I, D);
      b.fp4(ep + "w2", D, I);
    }
    b.fp8(p + "ffn.shared_experts.w1", I, D);
    b.fp8(p + "ffn.shared_experts.w3", I, D);
    b.fp8(p + "ffn.shared_experts.w2", D, I);
  }
  b.run(threads);
  if (bytes != nullptr) *bytes = b.total;
  return make_model(c, std::move(b.store), std::move(b.owned), options);
}

}  // namespace dsv4
