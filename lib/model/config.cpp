// Parsing and validation of config.json in the published and Hugging Face layouts.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <cstdint>
#include <utility>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "dsv4/config.hpp"
#include "dsv4/error.hpp"
#include "util/json.hpp"

namespace dsv4 {
namespace {

using json = nlohmann::json;

struct Reader {
  const json& j;
  const std::string& src;

  [[noreturn]] void fail(const std::string& msg) const { throw ConfigError(src + ": " + msg); }

  const json& get(const json& obj, const std::string& key, const std::string& path) const {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) fail("missing key '" + path + "'");
    return *it;
  }
  int64_t integer(const json& obj, const std::string& key, const std::string& path) const {
    const json& v = get(obj, key, path);
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
      fail("key '" + path + "' = " + v.dump() + " is out of range");
    if (v.is_number_integer()) return v.get<int64_t>();
    // A float with an integral value (1024.0) is accepted; the range check comes before the
    // conversion, which is undefined for values an int64 cannot hold.
    if (v.is_number_float()) {
      const double d = v.get<double>();
      if (std::isfinite(d) && std::fabs(d) < 9.0e15 && d == std::floor(d)) return static_cast<int64_t>(d);
    }
    fail("key '" + path + "' must be an integer, found " + v.dump());
  }
  double number(const json& obj, const std::string& key, const std::string& path) const {
    const json& v = get(obj, key, path);
    if (!v.is_number()) fail("key '" + path + "' must be a number, found " + v.dump());
    const double d = v.get<double>();
    if (!std::isfinite(d)) fail("key '" + path + "' must be finite, found " + v.dump());
    return d;
  }
  int64_t i(const std::string& key) const { return integer(j, key, key); }
  double d(const std::string& key) const { return number(j, key, key); }
  int64_t i_or(const std::string& key, int64_t dflt) const { return j.contains(key) && !j[key].is_null() ? i(key) : dflt; }
  double d_or(const std::string& key, double dflt) const { return j.contains(key) && !j[key].is_null() ? d(key) : dflt; }
  bool has(const std::string& key) const { return j.contains(key) && !j[key].is_null(); }
};

int64_t rope_dim_from_factor(const Reader& r, int64_t head_dim, double f) {
  if (!(f > 0 && f <= 1)) r.fail("key 'partial_rotary_factor' = " + std::to_string(f) + " must be in (0, 1]");
  if (head_dim <= 0 || head_dim > (int64_t{1} << 20)) return 0;  // head_dim's own check names it
  return static_cast<int64_t>(static_cast<double>(head_dim) * f + 0.5);
}

RopeParams parse_yarn(const Reader& r, const json& obj, const std::string& path, double theta) {
  RopeParams p;
  p.theta = theta;
  std::string type;
  if (obj.contains("type")) type = obj["type"].get<std::string>();
  if (obj.contains("rope_type")) type = obj["rope_type"].get<std::string>();
  if (type != "yarn") {
    if (type.empty() || type == "default") return p;
    r.fail("key '" + path + ".type' is '" + type + "'; only 'yarn' and 'default' are supported");
  }
  p.yarn = true;
  p.factor = r.number(obj, "factor", path + ".factor");
  p.original_max_position = r.number(obj, "original_max_position_embeddings", path + ".original_max_position_embeddings");
  p.beta_fast = obj.contains("beta_fast") ? r.number(obj, "beta_fast", path + ".beta_fast") : 32.0;
  p.beta_slow = obj.contains("beta_slow") ? r.number(obj, "beta_slow", path + ".beta_slow") : 1.0;
  if (p.factor <= 0 || p.original_max_position <= 0 || p.beta_fast <= 0 || p.beta_slow <= 0)
    r.fail("key '" + path + "' has non-positive YaRN parameters");
  return p;
}

AttnKind attn_kind_from_name(const Reader& r, const std::string& name, size_t layer) {
  if (name == "sliding_attention") return AttnKind::Sliding;
  if (name == "compressed_sparse_attention") return AttnKind::CSA;
  if (name == "heavily_compressed_attention") return AttnKind::HCA;
  r.fail("key 'layer_types[" + std::to_string(layer) + "]' is '" + name +
         "'; expected sliding_attention, compressed_sparse_attention or heavily_compressed_attention");
}

void parse_schedule(const Reader& r, ModelConfig& c) {
  const auto n = static_cast<size_t>(c.num_layers);
  if (r.has("layer_types")) {
    const json& lt = r.j["layer_types"];
    if (!lt.is_array() || lt.size() != n)
      r.fail("key 'layer_types' must list " + std::to_string(n) + " layers (num_hidden_layers), found " +
             std::to_string(lt.is_array() ? lt.size() : 0));
    const json* rates = r.has("compress_rates") ? &r.j["compress_rates"] : nullptr;
    for (size_t l = 0; l < n; ++l) {
      if (!lt[l].is_string()) r.fail("key 'layer_types[" + std::to_string(l) + "]' must be a string");
      const std::string name = lt[l].get<std::string>();
      AttnKind k = attn_kind_from_name(r, name, l);
      int64_t m = 0;
      if (k != AttnKind::Sliding) {
        if (rates != nullptr && rates->is_object()) {
          m = r.integer(*rates, name, "compress_rates." + name);
        } else if (r.has("compress_ratios")) {
          const json& cr = r.j["compress_ratios"];
          if (!cr.is_array() || cr.size() <= l) r.fail("key 'compress_ratios' is too short for layer " + std::to_string(l));
          if (!cr[l].is_number_integer()) r.fail("key 'compress_ratios[" + std::to_string(l) + "]' must be an integer");
          m = cr[l].get<int64_t>();
        } else {
          r.fail("missing key 'compress_rates' (needed by layer_types entry '" + name + "')");
        }
      }
      c.attn_kind.push_back(k);
      c.compress_ratio.push_back(m);
    }
  } else if (r.has("compress_ratios")) {
    const json& cr = r.j["compress_ratios"];
    if (!cr.is_array()) r.fail("key 'compress_ratios' must be an array");
    // The published layout carries trailing entries for the MTP block(s), even when the config
    // declares none (the demo model: 6 layers, 7 entries, num_nextn_predict_layers 0).
    const size_t extra = static_cast<size_t>(std::max<int64_t>(c.num_mtp_layers, 1));
    if (cr.size() < n || cr.size() > n + extra)
      r.fail("key 'compress_ratios' has " + std::to_string(cr.size()) + " entries; expected " + std::to_string(n) +
             " (num_hidden_layers) plus at most " + std::to_string(extra) + " trailing MTP entr" + (extra == 1 ? "y" : "ies"));
    for (size_t l = 0; l < n; ++l) {
      if (!cr[l].is_number_integer()) r.fail("key 'compress_ratios[" + std::to_string(l) + "]' must be an integer");
      const int64_t m = cr[l].get<int64_t>();
      if (m < 0) r.fail("key 'compress_ratios[" + std::to_string(l) + "]' is negative");
      c.attn_kind.push_back(m == 0 ? AttnKind::Sliding : (m == 4 ? AttnKind::CSA : AttnKind::HCA));
      c.compress_ratio.push_back(m);
    }
  } else {
    r.fail("missing key 'layer_types' or 'compress_ratios' (the per-layer attention schedule)");
  }
  for (size_t l = 0; l < n; ++l)
    if (c.attn_kind[l] != AttnKind::Sliding && c.compress_ratio[l] <= 0)
      r.fail("layer " + std::to_string(l) + " is compressed but its compress ratio is " + std::to_string(c.compress_ratio[l]));

  if (r.has("mlp_layer_types")) {
    const json& mt = r.j["mlp_layer_types"];
    if (!mt.is_array() || mt.size() != n)
      r.fail("key 'mlp_layer_types' must list " + std::to_string(n) + " layers (num_hidden_layers)");
    for (size_t l = 0; l < n; ++l) {
      const std::string s = mt[l].is_string() ? mt[l].get<std::string>() : std::string();
      if (s == "hash_moe") c.moe_kind.push_back(MoeKind::Hash);
      else if (s == "moe") c.moe_kind.push_back(MoeKind::TopK);
      else r.fail("key 'mlp_layer_types[" + std::to_string(l) + "]' is '" + s + "'; expected hash_moe or moe");
    }
  } else {
    const int64_t nh = r.i_or("num_hash_layers", 0);
    if (nh < 0 || nh > c.num_layers) r.fail("key 'num_hash_layers' = " + std::to_string(nh) + " is outside [0, num_hidden_layers]");
    for (size_t l = 0; l < n; ++l) c.moe_kind.push_back(static_cast<int64_t>(l) < nh ? MoeKind::Hash : MoeKind::TopK);
  }
}

void parse_rope(const Reader& r, ModelConfig& c) {
  if (r.has("rope_parameters") && (!r.j["rope_parameters"].is_object() || !r.j["rope_parameters"].contains("main")))
    r.fail("'rope_parameters' must be an object with 'main' (and 'compress') RoPE settings, got " +
           r.j["rope_parameters"].dump().substr(0, 80) + " (remove the key to use rope_theta / compress_rope_theta)");
  if (r.has("rope_parameters")) {
    const json& rp = r.j["rope_parameters"];
    const json& main = r.get(rp, "main", "rope_parameters.main");
    c.rope_main = parse_yarn(r, main, "rope_parameters.main", r.number(main, "rope_theta", "rope_parameters.main.rope_theta"));
    if (rp.contains("compress")) {
      const json& cp = rp["compress"];
      c.rope_compress = parse_yarn(r, cp, "rope_parameters.compress", r.number(cp, "rope_theta", "rope_parameters.compress.rope_theta"));
    } else {
      c.rope_compress = c.rope_main;
    }
    if (c.rope_dim == 0 && main.contains("partial_rotary_factor"))
      c.rope_dim = rope_dim_from_factor(r, c.head_dim, r.number(main, "partial_rotary_factor", "rope_parameters.main.partial_rotary_factor"));
  } else {
    c.rope_main.theta = r.d_or("rope_theta", 10000.0);
    const double ctheta = r.d_or("compress_rope_theta", c.rope_main.theta);
    c.rope_compress.theta = ctheta;
    if (r.has("rope_scaling")) c.rope_compress = parse_yarn(r, r.j["rope_scaling"], "rope_scaling", ctheta);
  }
  bool any_compressed = false;
  for (auto k : c.attn_kind) any_compressed |= k != AttnKind::Sliding;
  if (any_compressed && !r.has("compress_rope_theta") && !r.has("rope_parameters"))
    r.fail("missing key 'compress_rope_theta' (the model has compressed layers)");
}

}  // namespace

ModelConfig ModelConfig::parse(std::string_view text, const std::string& source) {
  const json j = parse_json<ConfigError>(text, source);
  if (!j.is_object()) throw ConfigError(source + ": top level must be a JSON object");
  Reader r{j, source};
  ModelConfig c;
  try {
    c.vocab_size = r.i("vocab_size");
    c.hidden_size = r.i("hidden_size");
    c.num_layers = r.i("num_hidden_layers");
    c.num_heads = r.i("num_attention_heads");
    c.head_dim = r.i("head_dim");
    c.q_lora_rank = r.i("q_lora_rank");
    c.o_groups = r.i("o_groups");
    c.o_lora_rank = r.i("o_lora_rank");
    c.sliding_window = r.i("sliding_window");
    c.n_routed_experts = r.i("n_routed_experts");
    c.experts_per_token = r.i("num_experts_per_tok");
    c.n_shared_experts = r.i_or("n_shared_experts", 1);
    c.moe_intermediate_size = r.i("moe_intermediate_size");
    c.routed_scaling_factor = r.d_or("routed_scaling_factor", 1.0);
    c.swiglu_limit = r.d_or("swiglu_limit", 0.0);
    c.hc_mult = r.i("hc_mult");
    c.hc_sinkhorn_iters = r.i("hc_sinkhorn_iters");
    c.hc_eps = r.d_or("hc_eps", 1e-6);
    c.rms_norm_eps = r.d_or("rms_norm_eps", 1e-6);
    c.max_position_embeddings = r.i_or("max_position_embeddings", 0);
    c.num_mtp_layers = r.i_or("num_nextn_predict_layers", 0);
    c.bos_token_id = r.i_or("bos_token_id", -1);
    c.eos_token_id = r.i_or("eos_token_id", -1);
    if (r.has("expert_dtype")) c.expert_dtype = j["expert_dtype"].get<std::string>();
    c.rope_dim = r.i_or("qk_rope_head_dim", 0);
    if (c.rope_dim == 0 && r.has("partial_rotary_factor"))
      c.rope_dim = rope_dim_from_factor(r, c.head_dim, r.d("partial_rotary_factor"));
    if (r.has("scoring_func") && j["scoring_func"] != "sqrtsoftplus")
      r.fail("key 'scoring_func' is " + j["scoring_func"].dump() + "; only \"sqrtsoftplus\" is supported");
    if (r.i_or("num_key_value_heads", 1) != 1) r.fail("key 'num_key_value_heads' must be 1 (single shared KV head)");
    if (c.num_layers <= 0) r.fail("key 'num_hidden_layers' must be positive");
    parse_schedule(r, c);
    parse_rope(r, c);

    bool any_csa = false;
    for (auto k : c.attn_kind) any_csa |= k == AttnKind::CSA;
    if (any_csa) {
      c.index_n_heads = r.i("index_n_heads");
      c.index_head_dim = r.i("index_head_dim");
      c.index_topk = r.i("index_topk");
    } else {
      c.index_n_heads = r.i_or("index_n_heads", 0);
      c.index_head_dim = r.i_or("index_head_dim", 0);
      c.index_topk = r.i_or("index_topk", 0);
    }
  } catch (const json::exception& e) {
    throw ConfigError(source + ": unexpected value type (" + e.what() + ")");
  }

  auto positive = [&](int64_t v, const char* key) {
    if (v <= 0) r.fail(std::string("key '") + key + "' must be positive, found " + std::to_string(v));
  };
  positive(c.vocab_size, "vocab_size");
  positive(c.hidden_size, "hidden_size");
  positive(c.num_heads, "num_attention_heads");
  positive(c.head_dim, "head_dim");
  positive(c.q_lora_rank, "q_lora_rank");
  positive(c.o_groups, "o_groups");
  positive(c.o_lora_rank, "o_lora_rank");
  positive(c.sliding_window, "sliding_window");
  positive(c.n_routed_experts, "n_routed_experts");
  positive(c.experts_per_token, "num_experts_per_tok");
  positive(c.moe_intermediate_size, "moe_intermediate_size");
  positive(c.hc_mult, "hc_mult");
  positive(c.hc_sinkhorn_iters, "hc_sinkhorn_iters");
  // Upper bounds: far above any V4 variant, low enough that every size computed from them fits
  // an int64 with room to spare, and that no loop runs for ever.
  auto at_most = [&](int64_t v, int64_t hi, const char* key) {
    if (v > hi) r.fail(std::string("key '") + key + "' = " + std::to_string(v) + " exceeds the supported maximum " + std::to_string(hi));
  };
  at_most(c.vocab_size, int64_t{1} << 24, "vocab_size");
  at_most(c.hidden_size, int64_t{1} << 16, "hidden_size");
  at_most(c.num_layers, 1024, "num_hidden_layers");
  at_most(c.num_heads, 4096, "num_attention_heads");
  at_most(c.head_dim, 4096, "head_dim");
  at_most(c.q_lora_rank, int64_t{1} << 16, "q_lora_rank");
  at_most(c.o_lora_rank, int64_t{1} << 16, "o_lora_rank");
  at_most(c.sliding_window, int64_t{1} << 20, "sliding_window");
  at_most(c.n_routed_experts, 4096, "n_routed_experts");
  at_most(c.moe_intermediate_size, int64_t{1} << 16, "moe_intermediate_size");
  at_most(c.hc_sinkhorn_iters, 1000, "hc_sinkhorn_iters");
  at_most(c.num_mtp_layers, 16, "num_nextn_predict_layers");
  if (c.num_mtp_layers < 0) r.fail("key 'num_nextn_predict_layers' must be >= 0, found " + std::to_string(c.num_mtp_layers));
  if (c.n_shared_experts < 0) r.fail("key 'n_shared_experts' must be >= 0, found " + std::to_string(c.n_shared_experts));
  if (r.has("max_position_embeddings") && (c.max_position_embeddings <= 0 || c.max_position_embeddings > (int64_t{1} << 34)))
    r.fail("key 'max_position_embeddings' = " + std::to_string(c.max_position_embeddings) + " must be in [1, 2^34]");
  for (size_t l = 0; l < c.compress_ratio.size(); ++l)
    if (c.compress_ratio[l] > (int64_t{1} << 16))
      r.fail("layer " + std::to_string(l) + " has compress ratio " + std::to_string(c.compress_ratio[l]) + "; at most 65536 is supported");
  for (const auto& [id, key] : {std::pair{c.bos_token_id, "bos_token_id"}, std::pair{c.eos_token_id, "eos_token_id"}})
    if (id < -1 || id >= c.vocab_size)
      r.fail(std::string("key '") + key + "' = " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(c.vocab_size) + ")");
  // Real parameters: finite (checked when read) and in the range where the math means something.
  auto num = [](double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%.6g", v);
    return std::string(b);
  };
  // [lo, hi] with either end open; hi = infinity: no upper bound.
  auto real_in = [&](double v, double lo, bool lo_open, double hi, bool hi_open, const char* key) {
    const bool ok = (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
    if (ok) return;
    const std::string range = std::isinf(hi) ? std::string(lo_open ? "> " : ">= ") + num(lo)
                                             : std::string("in ") + (lo_open ? "(" : "[") + num(lo) + ", " + num(hi) + (hi_open ? ")" : "]");
    r.fail(std::string("key '") + key + "' = " + num(v) + " must be " + range);
  };
  constexpr double kInf = std::numeric_limits<double>::infinity();
  real_in(c.rms_norm_eps, 0, true, 1, true, "rms_norm_eps");
  real_in(c.hc_eps, 0, true, 1, true, "hc_eps");
  real_in(c.routed_scaling_factor, 0, true, 1e6, false, "routed_scaling_factor");
  real_in(c.swiglu_limit, 0, false, kInf, false, "swiglu_limit");
  real_in(c.rope_main.theta, 0, true, kInf, false, "rope_theta (or rope_parameters.main.rope_theta)");
  real_in(c.rope_compress.theta, 0, true, kInf, false, "compress_rope_theta (or rope_parameters.compress.rope_theta)");
  if (c.rope_dim <= 0 || c.rope_dim % 2 != 0 || c.rope_dim > c.head_dim)
    r.fail("key 'qk_rope_head_dim' = " + std::to_string(c.rope_dim) + " must be even and in (0, head_dim]");
  if (c.num_heads % c.o_groups != 0)
    r.fail("key 'o_groups' = " + std::to_string(c.o_groups) + " must divide num_attention_heads = " + std::to_string(c.num_heads));
  if (c.o_groups > 64) r.fail("key 'o_groups' = " + std::to_string(c.o_groups) + " > 64 is not supported");
  if (c.experts_per_token > c.n_routed_experts)
    r.fail("key 'num_experts_per_tok' exceeds n_routed_experts");
  if (c.experts_per_token > 63) r.fail("key 'num_experts_per_tok' > 63 is not supported");
  if (c.hc_mult > 16) r.fail("key 'hc_mult' > 16 is not supported");
  if (c.n_shared_experts > 1) r.fail("key 'n_shared_experts' > 1 is not supported");
  for (size_t l = 0; l < c.attn_kind.size(); ++l) {
    if (c.attn_kind[l] == AttnKind::CSA) {
      positive(c.index_n_heads, "index_n_heads");
      positive(c.index_topk, "index_topk");
      positive(c.index_head_dim, "index_head_dim");
      at_most(c.index_n_heads, 1024, "index_n_heads");
      at_most(c.index_head_dim, 4096, "index_head_dim");
      at_most(c.index_topk, int64_t{1} << 20, "index_topk");
      if (c.index_head_dim < c.rope_dim) r.fail("key 'index_head_dim' must be at least qk_rope_head_dim");
    }
  }
  return c;
}

ModelConfig ModelConfig::load(const std::filesystem::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw IoError("cannot open " + path.string() + ": no such file or not readable");
  std::stringstream ss;
  ss << f.rdbuf();
  return parse(ss.str(), path.string());
}

std::string ModelConfig::summary() const {
  std::ostringstream o;
  int64_t n_swa = 0, n_csa = 0, n_hca = 0, n_hash = 0;
  for (auto k : attn_kind) (k == AttnKind::Sliding ? n_swa : k == AttnKind::CSA ? n_csa : n_hca)++;
  for (auto k : moe_kind) n_hash += k == MoeKind::Hash;
  o << "layers " << num_layers << " (sliding " << n_swa << ", CSA " << n_csa << ", HCA " << n_hca
    << "), hidden " << hidden_size << ", heads " << num_heads << "x" << head_dim << " (rope " << rope_dim
    << "), window " << sliding_window << ", vocab " << vocab_size << "\n";
  o << "experts " << n_routed_experts << " routed (top " << experts_per_token << ", " << n_hash
    << " hash layers) + " << n_shared_experts << " shared, intermediate " << moe_intermediate_size
    << ", mHC streams " << hc_mult << ", MTP blocks " << num_mtp_layers << "\n";
  if (n_csa > 0) o << "indexer " << index_n_heads << "x" << index_head_dim << ", top-k " << index_topk << "\n";
  return o.str();
}

const char* cache_type_name(CacheType t) {
  switch (t) {
    case CacheType::F32: return "f32";
    case CacheType::BF16: return "bf16";
    case CacheType::FP8: return "fp8";
  }
  return "?";
}

CacheType parse_cache_type(std::string_view name) {
  for (CacheType t : {CacheType::F32, CacheType::BF16, CacheType::FP8})
    if (name == cache_type_name(t)) return t;
  throw InvalidArgument("unknown cache type '" + std::string(name) + "' (use f32, bf16 or fp8)");
}

}  // namespace dsv4
