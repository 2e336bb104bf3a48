// config.json in the published, Hugging Face and older Hugging Face layouts; validation errors.
#include <doctest/doctest.h>

#include <fstream>
#include <string>
#include <vector>

#include "dsv4/config.hpp"
#include "dsv4/error.hpp"
#include "support/support.hpp"

using namespace dsv4;
using namespace dsv4::test;
using nlohmann::json;

namespace {
json read_json(const std::string& name) {
  std::ifstream f(golden_dir(name) / "config.json");
  return json::parse(f);
}
std::string config_error(const json& j) {
  try {
    ModelConfig::parse(j.dump());
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}
}  // namespace

TEST_CASE("published layout: compress_ratios with MTP entry / num_hash_layers / rope_scaling") {
  const ModelConfig c = ModelConfig::load(golden_dir("official_a") / "config.json");
  CHECK(c.num_layers == 5);
  CHECK(c.attn_kind == std::vector<AttnKind>{AttnKind::Sliding, AttnKind::CSA, AttnKind::HCA, AttnKind::CSA, AttnKind::HCA});
  CHECK(c.compress_ratio == std::vector<int64_t>{0, 4, 128, 4, 128});
  CHECK(c.moe_kind == std::vector<MoeKind>{MoeKind::Hash, MoeKind::Hash, MoeKind::TopK, MoeKind::TopK, MoeKind::TopK});
  CHECK(c.rope_main.theta == 10000.0);
  CHECK_FALSE(c.rope_main.yarn);
  CHECK(c.rope_compress.theta == 160000.0);
  CHECK(c.rope_compress.yarn);
  CHECK(c.rope_compress.factor == 16.0);
  CHECK(c.rope_compress.original_max_position == 65536.0);
  CHECK(c.rope_dim == 64);
  CHECK(c.num_mtp_layers == 1);
  CHECK(c.expert_dtype == "fp4");
}

TEST_CASE("Hugging Face layout: layer_types / compress_rates / mlp_layer_types / rope_parameters") {
  const ModelConfig c = ModelConfig::load(golden_dir("tiny_a") / "config.json");
  CHECK(c.attn_kind == std::vector<AttnKind>{AttnKind::Sliding, AttnKind::CSA, AttnKind::HCA, AttnKind::CSA, AttnKind::HCA,
                                             AttnKind::Sliding});
  CHECK(c.compress_ratio == std::vector<int64_t>{0, 4, 16, 4, 16, 0});
  CHECK(c.moe_kind[1] == MoeKind::Hash);
  CHECK(c.moe_kind[2] == MoeKind::TopK);
  CHECK(c.rope_dim == 16);
  CHECK(c.rope_compress.yarn);
  CHECK(c.rope_compress.original_max_position == 4096.0);
  CHECK(c.sliding_window == 8);
}

TEST_CASE("older Hugging Face exports with compress_ratios give the same schedule") {
  json j = read_json("tiny_a");
  j.erase("layer_types");
  j.erase("compress_rates");
  j.erase("mlp_layer_types");
  j.erase("rope_parameters");
  j["compress_ratios"] = {0, 4, 16, 4, 16, 0};
  j["num_hash_layers"] = 2;
  j["compress_rope_theta"] = 160000.0;
  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 16}, {"original_max_position_embeddings", 4096}, {"beta_fast", 32}, {"beta_slow", 1}};
  const ModelConfig a = ModelConfig::parse(j.dump());
  const ModelConfig b = ModelConfig::load(golden_dir("tiny_a") / "config.json");
  CHECK(a.attn_kind == b.attn_kind);
  CHECK(a.compress_ratio == b.compress_ratio);
  CHECK(a.moe_kind == b.moe_kind);
  CHECK(a.rope_compress.factor == b.rope_compress.factor);
  CHECK(a.rope_dim == b.rope_dim);
}

TEST_CASE("missing or inconsistent keys are named") {
  json j = read_json("official_a");
  j.erase("q_lora_rank");
  CHECK(config_error(j).find("missing key 'q_lora_rank'") != std::string::npos);

  j = read_json("official_a");
  j["compress_ratios"] = {0, 4, 128};
  CHECK(config_error(j).find("compress_ratios") != std::string::npos);

  j = read_json("official_a");
  j["o_groups"] = 3;
  CHECK(config_error(j).find("o_groups") != std::string::npos);

  j = read_json("official_a");
  j["hidden_size"] = "big";
  CHECK(config_error(j).find("hidden_size") != std::string::npos);

  j = read_json("tiny_a");
  j["layer_types"][2] = "full_attention";
  CHECK(config_error(j).find("layer_types[2]") != std::string::npos);

  j = read_json("tiny_a");
  j["mlp_layer_types"] = {"moe"};
  CHECK(config_error(j).find("mlp_layer_types") != std::string::npos);

  j = read_json("tiny_a");
  j.erase("compress_rates");
  CHECK(config_error(j).find("compress_rates") != std::string::npos);

  CHECK(config_error(json::array()).find("object") != std::string::npos);
  CHECK_THROWS_AS(ModelConfig::parse("{"), ConfigError);
}

TEST_CASE("every value out of its meaningful range is refused at load, naming the field and the range") {
  // key path, bad value, text the message must contain
  struct Case {
    std::vector<std::string> path;
    json value;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {{"rms_norm_eps"}, -1e-6, "rms_norm_eps"},
      {{"rms_norm_eps"}, 0.0, "rms_norm_eps"},
      {{"hc_eps"}, -1.0, "hc_eps"},
      {{"hc_sinkhorn_iters"}, int64_t{1} << 62, "hc_sinkhorn_iters"},
      {{"hc_sinkhorn_iters"}, 0, "hc_sinkhorn_iters"},
      {{"sliding_window"}, int64_t{1} << 40, "sliding_window"},
      {{"index_topk"}, int64_t{1} << 40, "index_topk"},
      {{"index_head_dim"}, 0, "index_head_dim"},
      {{"num_experts_per_tok"}, 9, "num_experts_per_tok"},
      {{"n_routed_experts"}, int64_t{1} << 40, "n_routed_experts"},
      {{"vocab_size"}, int64_t{1} << 62, "vocab_size"},
      {{"vocab_size"}, uint64_t{1} << 63, "vocab_size"},
      {{"hidden_size"}, 1e30, "hidden_size"},
      {{"head_dim"}, 64.5, "head_dim"},
      {{"routed_scaling_factor"}, -1.0, "routed_scaling_factor"},
      {{"swiglu_limit"}, -3.0, "swiglu_limit"},
      {{"max_position_embeddings"}, 0, "max_position_embeddings"},
      {{"bos_token_id"}, 512, "bos_token_id"},
      {{"eos_token_id"}, -7, "eos_token_id"},
      {{"compress_rates", "compressed_sparse_attention"}, 0, "compress ratio"},
      {{"compress_rates", "heavily_compressed_attention"}, int64_t{1} << 40, "compress ratio"},
      {{"rope_parameters", "main", "rope_theta"}, 0.0, "rope_theta"},
      {{"rope_parameters", "compress", "rope_theta"}, -5.0, "compress_rope_theta"},
      {{"rope_parameters", "compress", "factor"}, -1.0, "rope_parameters.compress"},
  };
  for (const Case& k : cases) {
    json j = read_json("tiny_a");
    json* o = &j;
    for (size_t i = 0; i + 1 < k.path.size(); ++i) o = &(*o)[k.path[i]];
    (*o)[k.path.back()] = k.value;
    CAPTURE(k.path.back());
    CAPTURE(k.value.dump());
    const std::string msg = config_error(j);
    CHECK(msg.find(k.expect) != std::string::npos);
  }
  CHECK(config_error(read_json("tiny_a")) == "(no error)");
}
