// The model's weights as typed views into the mapped checkpoint (no copies of matrices).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dsv4/config.hpp"
#include "io/tensor_store.hpp"

namespace dsv4 {

enum class WFormat : uint8_t {
  F32,
  BF16,
  F16,
  FP8,  // e4m3fn, E8M0 scale per 128x128 block
  FP4,  // e2m1 packed two per byte along the input dim (low nibble first), E8M0 scale per 1x32
};
const char* wformat_name(WFormat f);

// A matrix W[rows, cols] used as y = x Wᵀ. Points into the mapped file.
struct MatW {
  WFormat fmt = WFormat::F32;
  int64_t rows = 0, cols = 0;
  const uint8_t* data = nullptr;
  const uint8_t* scale = nullptr;  // FP8: [ceil(rows/128), scale_cols]; FP4: [rows, cols/32]
  int64_t scale_cols = 0;
  bool empty() const { return data == nullptr; }
  uint64_t bytes() const;  // stored bytes including scales
};

struct HyperW {  // one mHC site
  MatW fn;                   // [(2+nc)·nc, nc·D] (or [nc, nc·D] for the head)
  std::vector<float> base;   // [(2+nc)·nc]
  std::vector<float> scale;  // [3] (or [1])
};

struct CompressorW {
  int64_t ratio = 0;         // m
  int64_t width = 0;         // output width (hd, or ihd for the indexer)
  bool overlap = false;      // CSA: two series of `width` channels pooled over 2m slots
  MatW wkv, wgate;           // [c·width, D]
  std::vector<float> ape;    // [m, c·width]
  std::vector<float> norm;   // [width]
};

struct IndexerW {
  MatW wq_b;                 // [nI·ihd, Q]
  MatW weights_proj;         // [nI, D]
  CompressorW compressor;
};

struct AttentionW {
  std::vector<float> sink;   // [H]
  MatW wq_a, wq_b, wkv, wo_a, wo_b;
  std::vector<float> q_norm, kv_norm;
  std::optional<CompressorW> compressor;
  std::optional<IndexerW> indexer;
};

struct ExpertW {
  MatW w1, w3, w2;           // w1/w3 [I, D], w2 [D, I]
};

struct MoeW {
  MatW gate;                 // [E, D]
  std::vector<float> bias;   // [E] (top-k layers)
  const uint8_t* tid2eid = nullptr;  // [V, k] (hash layers)
  bool tid2eid_is_i64 = true;
  std::vector<ExpertW> experts;
  std::optional<ExpertW> shared;
  int64_t expert_of(int64_t token, int64_t k, int64_t topk) const;
};

struct LayerW {
  HyperW hc_attn, hc_ffn;
  std::vector<float> attn_norm, ffn_norm;
  AttentionW attn;
  MoeW moe;
};

enum class CheckpointLayout { Published, HuggingFace };

struct ModelWeights {
  CheckpointLayout layout = CheckpointLayout::Published;
  MatW embed, head;          // [V, D]
  std::vector<float> norm;   // [D]
  HyperW hc_head;
  std::vector<LayerW> layers;
  std::vector<std::string> mtp_tensors;  // names of the MTP block's tensors, kept for later use
};

// Binds every tensor the config implies, checking dtype and shape. Throws ShapeError /
// MissingTensorError / FormatError with expected-vs-actual in the message.
ModelWeights bind_weights(const ModelConfig& cfg, const TensorStore& store);

}  // namespace dsv4
