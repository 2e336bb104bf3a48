// dsv4/config.hpp: the model hyper-parameters, parsed from a checkpoint's config.json.
//
// Both layouts of the checkpoint spec are accepted: the published one (compress_ratios with a
// trailing MTP entry, num_hash_layers, rope_scaling) and the Hugging Face one (layer_types,
// compress_rates, mlp_layer_types, nested rope_parameters; older exports with compress_ratios).
// A missing or inconsistent key throws ConfigError naming the key. ModelConfig is a plain value.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "dsv4/export.hpp"

namespace dsv4 {

enum class AttnKind { Sliding, CSA, HCA };  // sliding window only / +overlapping m=4 + indexer / +plain
enum class MoeKind { Hash, TopK };          // routing by token id table / by top-k of scores + bias

// How a session stores the part of its state that grows with the context: the compressed
// attention entries and the indexer keys. (The sliding-window rows and the compressors' partial
// windows are a fixed few MiB and stay f32 in every type.)
enum class CacheType {
  F32,   // exact: the results the goldens are checked with (the default)
  BF16,  // entries and keys in bf16: half of f32
  FP8,   // DeepSeek's entry layout (e4m3 with a UE8M0 scale per 64 values, rotary dims bf16) and
         // int8 indexer keys with an f32 scale: about a quarter of f32
};
// "f32", "bf16", "fp8".
DSV4_API const char* cache_type_name(CacheType t);
// The inverse of cache_type_name; throws InvalidArgument naming the accepted values.
DSV4_API CacheType parse_cache_type(std::string_view name);

struct RopeParams {
  double theta = 10000.0;
  bool yarn = false;
  double factor = 1.0;
  double original_max_position = 0.0;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
};

struct DSV4_API ModelConfig {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;         // D
  int64_t num_layers = 0;
  int64_t num_heads = 0;           // H
  int64_t head_dim = 0;            // hd
  int64_t rope_dim = 0;            // rd: trailing channels rotated
  int64_t q_lora_rank = 0;
  int64_t o_groups = 0;            // G
  int64_t o_lora_rank = 0;         // R
  int64_t sliding_window = 0;      // W
  std::vector<AttnKind> attn_kind;       // per layer
  std::vector<int64_t> compress_ratio;   // per layer: 0 for sliding
  std::vector<MoeKind> moe_kind;         // per layer
  RopeParams rope_main, rope_compress;
  int64_t index_n_heads = 0, index_head_dim = 0, index_topk = 0;
  int64_t n_routed_experts = 0, experts_per_token = 0, n_shared_experts = 0;
  int64_t moe_intermediate_size = 0;
  double routed_scaling_factor = 1.0;
  double swiglu_limit = 0.0;       // 0 = no clamp
  int64_t hc_mult = 0;
  int64_t hc_sinkhorn_iters = 0;
  double hc_eps = 1e-6;
  double rms_norm_eps = 1e-6;
  int64_t max_position_embeddings = 0;
  int64_t num_mtp_layers = 0;
  int64_t bos_token_id = -1, eos_token_id = -1;
  std::string expert_dtype;        // "fp4" in the published checkpoints, empty otherwise

  // Parses config.json text; `source` names the file in error messages.
  static ModelConfig parse(std::string_view json_text, const std::string& source = "config.json");
  static ModelConfig load(const std::filesystem::path& path);

  bool has_compressor(int64_t layer) const { return attn_kind[layer] != AttnKind::Sliding; }
  std::string summary() const;     // a few human-readable lines
};

}  // namespace dsv4
