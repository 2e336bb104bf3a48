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

// A read-only vector of small parameters (norm weights, biases, sinks, RoPE frequencies) in the
// memory of the backend the weights are bound to. It views storage owned elsewhere (the Model
// for host weights, the backend for device copies); it never owns.
template <class T>
struct VecView {
  const T* ptr = nullptr;
  int64_t n = 0;
  VecView() = default;
  VecView(const T* p, int64_t count) : ptr(p), n(count) {}
  static VecView of(const std::vector<T>& v) { return {v.data(), static_cast<int64_t>(v.size())}; }
  static VecView of(const std::vector<T>&&) = delete;  // would dangle
  const T* data() const { return ptr; }
  size_t size() const { return static_cast<size_t>(n); }
  bool empty() const { return n == 0; }
  const T& operator[](size_t i) const { return ptr[i]; }
};
using FVec = VecView<float>;
using DVec = VecView<double>;

// A matrix W[rows, cols] used as y = x Wᵀ. Points into the mapped file.
struct MatW {
  WFormat fmt = WFormat::F32;
  int64_t rows = 0, cols = 0;
  const uint8_t* data = nullptr;
  const uint8_t* scale = nullptr;  // FP8: [ceil(rows/128), scale_cols]; FP4: [rows, cols/32]
  int64_t scale_cols = 0;
  bool empty() const { return data == nullptr; }
  uint64_t bytes() const;        // stored bytes including scales
  uint64_t scale_bytes() const;  // of which the block scales (FP8, FP4; 0 otherwise)
};

struct HyperW {  // one mHC site
  MatW fn;                   // [(2+nc)·nc, nc·D] (or [nc, nc·D] for the head)
  FVec base;                 // [(2+nc)·nc]
  FVec scale;                // [3] (or [1])
};

struct CompressorW {
  int64_t ratio = 0;         // m
  int64_t width = 0;         // output width (hd, or ihd for the indexer)
  bool overlap = false;      // CSA: two series of `width` channels pooled over 2m slots
  MatW wkv, wgate;           // [c·width, D]
  FVec ape;                  // [m, c·width]
  FVec norm;                 // [width]
};

struct IndexerW {
  MatW wq_b;                 // [nI·ihd, Q]
  MatW weights_proj;         // [nI, D]
  CompressorW compressor;
};

struct AttentionW {
  FVec sink;                 // [H]
  MatW wq_a, wq_b, wkv, wo_a, wo_b;
  FVec q_norm, kv_norm;
  std::optional<CompressorW> compressor;
  std::optional<IndexerW> indexer;
};

struct ExpertW {
  MatW w1, w3, w2;           // w1/w3 [I, D], w2 [D, I]
};

struct MoeW {
  MatW gate;                 // [E, D]
  FVec bias;                 // [E] (top-k layers)
  const uint8_t* tid2eid = nullptr;  // [V, k] I64 or I32 (hash layers)
  bool tid2eid_is_i64 = true;
  std::vector<ExpertW> experts;
  std::optional<ExpertW> shared;
  int64_t expert_of(int64_t token, int64_t k, int64_t topk) const;
};

struct LayerW {
  HyperW hc_attn, hc_ffn;
  FVec attn_norm, ffn_norm;
  AttentionW attn;
  MoeW moe;
};

enum class CheckpointLayout { Published, HuggingFace };

struct ModelWeights {
  CheckpointLayout layout = CheckpointLayout::Published;
  MatW embed, head;          // [V, D]
  FVec norm;                 // [D]
  HyperW hc_head;
  std::vector<LayerW> layers;
  DVec freq_main, freq_compress;  // RoPE inverse frequencies [rd/2] (model.md §1)
  std::vector<std::string> mtp_tensors;  // names of the MTP block's tensors, kept for later use
};

// Storage of the small parameters that ModelWeights views (decoded to fp32 at load).
struct SmallParams {
  std::vector<std::vector<float>> floats;
  std::vector<std::vector<double>> doubles;
  std::vector<std::vector<float>> realigned;  // byte copies of tensors stored at misaligned offsets
  FVec keep(std::vector<float> v);
  DVec keep(std::vector<double> v);
  // A copy of `bytes` bytes at an address aligned for any element type (same dtype, not decoded).
  const uint8_t* keep_aligned(const uint8_t* src, size_t bytes);
};

// Binds every tensor the config implies, checking dtype and shape; small parameters are decoded
// into `small`, which must outlive the result. Throws ShapeError / MissingTensorError /
// FormatError with expected-vs-actual in the message.
ModelWeights bind_weights(const ModelConfig& cfg, const TensorStore& store, SmallParams& small);

// Every buffer of a ModelWeights, for a backend that copies the weights into its own memory
// (the visitor may repoint each view). Each matrix is visited once with its data and scales.
struct WeightVisitor {
  virtual ~WeightVisitor() = default;
  virtual void matrix(MatW& w) = 0;
  virtual void floats(FVec& v) = 0;
  virtual void doubles(DVec& v) = 0;
  virtual void bytes(const uint8_t*& p, size_t n) = 0;  // raw tables (tid2eid)
};
void visit_weights(ModelWeights& w, const ModelConfig& cfg, WeightVisitor& v);

}  // namespace dsv4
