// Binding checkpoint tensors (published or Hugging Face naming) to typed weight views.
#include "model/weights.hpp"

#include <cstring>
#include <sstream>
#include <unordered_set>

#include "dsv4/error.hpp"
#include "model/rope.hpp"
#include "quant/formats.hpp"
#include "util/log.hpp"

namespace dsv4 {

const char* wformat_name(WFormat f) {
  switch (f) {
    case WFormat::F32: return "F32";
    case WFormat::BF16: return "BF16";
    case WFormat::F16: return "F16";
    case WFormat::FP8: return "FP8";
    case WFormat::FP4: return "FP4";
  }
  return "?";
}

uint64_t MatW::bytes() const {
  const uint64_t n = static_cast<uint64_t>(rows) * static_cast<uint64_t>(cols);
  switch (fmt) {
    case WFormat::F32: return n * 4;
    case WFormat::BF16: case WFormat::F16: return n * 2;
    case WFormat::FP8: return n + static_cast<uint64_t>((rows + 127) / 128 * scale_cols);
    case WFormat::FP4: return n / 2 + static_cast<uint64_t>(rows * scale_cols);
  }
  return 0;
}

uint64_t MatW::scale_bytes() const {
  switch (fmt) {
    case WFormat::FP8: return static_cast<uint64_t>((rows + 127) / 128 * scale_cols);
    case WFormat::FP4: return static_cast<uint64_t>(rows * scale_cols);
    default: return 0;
  }
}

int64_t MoeW::expert_of(int64_t token, int64_t k, int64_t topk) const {
  const int64_t i = token * topk + k;
  if (tid2eid_is_i64) {
    int64_t v;
    std::memcpy(&v, tid2eid + i * 8, 8);
    return v;
  }
  int32_t v;
  std::memcpy(&v, tid2eid + i * 4, 4);
  return v;
}

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << "]";
  return o.str();
}

class Binder {
 public:
  Binder(const ModelConfig& c, const TensorStore& s, SmallParams& sm) : cfg(c), store(s), small(sm) {}

  // Every tensor the binder looks at is recorded: what is left over is reported.
  TensorRef get(const std::string& name) const {
    used.insert(name);
    return store.get(name);
  }
  mutable std::unordered_set<std::string> used;

  [[noreturn]] void mismatch(const TensorRef& t, const std::string& expected) const {
    throw ShapeError("tensor '" + t.name() + "': expected " + expected + ", found " +
                     std::string(dtype_name(t.info->dtype)) + " " + shape_str(t.info->shape));
  }

  void expect_shape(const TensorRef& t, const std::vector<int64_t>& shape, const std::string& dtypes) const {
    if (t.info->shape != shape) mismatch(t, dtypes + " " + shape_str(shape));
  }

  // A matrix [rows, cols] in F32/BF16/F16, FP8 (+.scale) or packed FP4 in I8 (+.scale).
  MatW mat(const std::string& name, int64_t rows, int64_t cols) const {
    const TensorRef t = get(name);
    MatW w;
    w.rows = rows;
    w.cols = cols;
    w.data = t.data;
    const std::string plain = "F32|BF16|F16|F8_E4M3|I8(FP4)";
    switch (t.info->dtype) {
      case DType::F32: w.fmt = WFormat::F32; break;
      case DType::BF16: w.fmt = WFormat::BF16; break;
      case DType::F16: w.fmt = WFormat::F16; break;
      case DType::F8_E4M3: w.fmt = WFormat::FP8; break;
      case DType::I8: case DType::U8: w.fmt = WFormat::FP4; break;
      default: mismatch(t, plain + " " + shape_str({rows, cols}));
    }
    if (w.fmt == WFormat::FP4) {
      if (cols % 32 != 0) mismatch(t, "a matrix whose input dim (" + std::to_string(cols) + ") is a multiple of 32 for FP4");
      expect_shape(t, {rows, cols / 2}, "I8 (packed FP4)");
    } else {
      expect_shape(t, {rows, cols}, dtype_name(t.info->dtype).data());
    }
    // safetensors offsets need not be multiples of the element size (the published checkpoints
    // have F32 tensors at odd offsets): such a matrix is copied once, in its dtype, to aligned
    // memory, so kernels never read a float or a 16-bit value through a misaligned pointer.
    const size_t align = w.fmt == WFormat::F32 ? 4 : (w.fmt == WFormat::BF16 || w.fmt == WFormat::F16) ? 2 : 1;
    if (reinterpret_cast<uintptr_t>(w.data) % align != 0) {
      const uint64_t bytes = t.info->end - t.info->begin;
      w.data = small.keep_aligned(t.data, static_cast<size_t>(bytes));
      log(LogLevel::Debug, "tensor '" + name + "' is stored at a misaligned offset: " + std::to_string(bytes) + " bytes copied to aligned memory");
    }
    if (w.fmt == WFormat::FP8 || w.fmt == WFormat::FP4) {
      std::string sname = name;
      const std::string suffix = ".weight";
      if (sname.size() > suffix.size() && sname.compare(sname.size() - suffix.size(), suffix.size(), suffix) == 0)
        sname.resize(sname.size() - suffix.size());
      sname += ".scale";
      const TensorRef s = get(sname);
      if (s.info->dtype != DType::F8_E8M0) mismatch(s, "F8_E8M0 scales");
      const std::vector<int64_t> want = w.fmt == WFormat::FP8
                                            ? std::vector<int64_t>{(rows + 127) / 128, (cols + 127) / 128}
                                            : std::vector<int64_t>{rows, cols / 32};
      expect_shape(s, want, "F8_E8M0");
      w.scale = s.data;
      w.scale_cols = want[1];
    }
    return w;
  }

  // A float vector/tensor of the given shape stored as F32/BF16/F16, decoded to fp32 (small tensors only).
  FVec floats(const std::string& name, const std::vector<int64_t>& shape) const {
    const TensorRef t = get(name);
    if (t.info->dtype != DType::F32 && t.info->dtype != DType::BF16 && t.info->dtype != DType::F16)
      mismatch(t, "F32|BF16|F16 " + shape_str(shape));
    expect_shape(t, shape, dtype_name(t.info->dtype).data());
    const int64_t n = t.info->numel();
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      if (t.info->dtype == DType::F32) std::memcpy(&v[i], t.data + 4 * i, 4);
      else {
        uint16_t b;
        std::memcpy(&b, t.data + 2 * i, 2);
        v[i] = t.info->dtype == DType::BF16 ? quant::bf16_to_f32(b) : quant::f16_to_f32(b);
      }
    }
    return small.keep(std::move(v));
  }

  // A view of rows [r0, r0 + rows) of a plain (F32/BF16/F16) 3-D stacked tensor [E, R, C] at expert e.
  MatW stacked(const TensorRef& t, int64_t e, int64_t r0, int64_t rows, int64_t cols) const {
    MatW w;
    w.fmt = t.info->dtype == DType::F32 ? WFormat::F32 : t.info->dtype == DType::BF16 ? WFormat::BF16 : WFormat::F16;
    w.rows = rows;
    w.cols = cols;
    const int64_t R = t.info->shape[1];
    w.data = t.data + static_cast<uint64_t>((e * R + r0) * cols) * dtype_size(t.info->dtype);
    return w;
  }

  HyperW hyper(const std::string& fn, const std::string& base, const std::string& scale, int64_t n_mix, int64_t n_scale) const {
    const int64_t nc = cfg.hc_mult, D = cfg.hidden_size;
    HyperW h;
    h.fn = mat(fn, n_mix, nc * D);
    if (h.fn.fmt != WFormat::F32) mismatch(get(fn), "F32 (mHC is kept in fp32)");
    h.base = floats(base, {n_mix});
    h.scale = floats(scale, {n_scale});
    return h;
  }

  void check_tid2eid(MoeW& m, const std::string& name) const {
    const TensorRef t = get(name);
    const int64_t V = cfg.vocab_size, k = cfg.experts_per_token;
    if (t.info->dtype != DType::I64 && t.info->dtype != DType::I32) mismatch(t, "I64|I32 " + shape_str({V, k}));
    expect_shape(t, {V, k}, "I64");
    m.tid2eid = t.data;
    m.tid2eid_is_i64 = t.info->dtype == DType::I64;
    for (int64_t v = 0; v < V; ++v)
      for (int64_t j = 0; j < k; ++j) {
        const int64_t e = m.expert_of(v, j, k);
        if (e < 0 || e >= cfg.n_routed_experts)
          throw FormatError("tensor '" + name + "': entry [" + std::to_string(v) + ", " + std::to_string(j) + "] = " +
                            std::to_string(e) + " is not an expert id in [0, " + std::to_string(cfg.n_routed_experts) + ")");
      }
  }

  const ModelConfig& cfg;
  const TensorStore& store;
  SmallParams& small;
};


CompressorW bind_compressor(const Binder& b, const std::string& p, bool hf, int64_t m, int64_t width, bool overlap) {
  const int64_t c = overlap ? 2 : 1, D = b.cfg.hidden_size;
  CompressorW w;
  w.ratio = m;
  w.width = width;
  w.overlap = overlap;
  w.wkv = b.mat(p + (hf ? "kv_proj.weight" : "wkv.weight"), c * width, D);
  w.wgate = b.mat(p + (hf ? "gate_proj.weight" : "wgate.weight"), c * width, D);
  w.ape = b.floats(p + (hf ? "position_bias" : "ape"), {m, c * width});
  w.norm = b.floats(p + (hf ? "kv_norm.weight" : "norm.weight"), {width});
  return w;
}

LayerW bind_layer(const Binder& b, int64_t l, bool hf) {
  const ModelConfig& c = b.cfg;
  const int64_t D = c.hidden_size, H = c.num_heads, hd = c.head_dim, Q = c.q_lora_rank, G = c.o_groups,
                R = c.o_lora_rank, nc = c.hc_mult, E = c.n_routed_experts, I = c.moe_intermediate_size;
  const std::string p = (hf ? "model.layers." : "layers.") + std::to_string(l) + ".";
  const std::string a = p + (hf ? "self_attn." : "attn.");
  LayerW w;
  const int64_t nmix = (2 + nc) * nc;
  if (hf) {
    w.hc_attn = b.hyper(p + "attn_hc.fn", p + "attn_hc.base", p + "attn_hc.scale", nmix, 3);
    w.hc_ffn = b.hyper(p + "ffn_hc.fn", p + "ffn_hc.base", p + "ffn_hc.scale", nmix, 3);
  } else {
    w.hc_attn = b.hyper(p + "hc_attn_fn", p + "hc_attn_base", p + "hc_attn_scale", nmix, 3);
    w.hc_ffn = b.hyper(p + "hc_ffn_fn", p + "hc_ffn_base", p + "hc_ffn_scale", nmix, 3);
  }
  w.attn_norm = b.floats(p + (hf ? "input_layernorm.weight" : "attn_norm.weight"), {D});
  w.ffn_norm = b.floats(p + (hf ? "post_attention_layernorm.weight" : "ffn_norm.weight"), {D});

  AttentionW& at = w.attn;
  at.sink = b.floats(a + (hf ? "sinks" : "attn_sink"), {H});
  at.wq_a = b.mat(a + (hf ? "q_a_proj.weight" : "wq_a.weight"), Q, D);
  at.q_norm = b.floats(a + (hf ? "q_a_norm.weight" : "q_norm.weight"), {Q});
  at.wq_b = b.mat(a + (hf ? "q_b_proj.weight" : "wq_b.weight"), H * hd, Q);
  at.wkv = b.mat(a + (hf ? "kv_proj.weight" : "wkv.weight"), hd, D);
  at.kv_norm = b.floats(a + "kv_norm.weight", {hd});
  at.wo_a = b.mat(a + (hf ? "o_a_proj.weight" : "wo_a.weight"), G * R, H * hd / G);
  at.wo_b = b.mat(a + (hf ? "o_b_proj.weight" : "wo_b.weight"), D, G * R);
  const AttnKind kind = c.attn_kind[l];
  if (kind != AttnKind::Sliding) {
    const int64_t m = c.compress_ratio[l];
    const bool csa = kind == AttnKind::CSA;
    at.compressor = bind_compressor(b, a + "compressor.", hf, m, hd, csa);
    if (csa) {
      IndexerW ix;
      const int64_t nI = c.index_n_heads, ihd = c.index_head_dim;
      const std::string ip = hf ? a + "compressor.indexer." : a + "indexer.";
      ix.wq_b = b.mat(ip + (hf ? "q_b_proj.weight" : "wq_b.weight"), nI * ihd, Q);
      ix.weights_proj = b.mat(ip + (hf ? "scorer.weights_proj.weight" : "weights_proj.weight"), nI, D);
      ix.compressor = bind_compressor(b, hf ? ip : ip + "compressor.", hf, m, ihd, true);
      at.indexer = std::move(ix);
    }
  }

  MoeW& moe = w.moe;
  const std::string f = p + (hf ? "mlp." : "ffn.");
  moe.gate = b.mat(f + "gate.weight", E, D);
  if (c.moe_kind[l] == MoeKind::Hash) b.check_tid2eid(moe, f + "gate.tid2eid");
  else moe.bias = b.floats(f + (hf ? "gate.e_score_correction_bias" : "gate.bias"), {E});
  if (hf) {
    const TensorRef gu = b.get(f + "experts.gate_up_proj");
    const TensorRef dn = b.get(f + "experts.down_proj");
    for (const TensorRef* t : {&gu, &dn})
      if (t->info->dtype != DType::F32 && t->info->dtype != DType::BF16 && t->info->dtype != DType::F16)
        b.mismatch(*t, "F32|BF16|F16 stacked experts");
    b.expect_shape(gu, {E, 2 * I, D}, "stacked");
    b.expect_shape(dn, {E, D, I}, "stacked");
    for (int64_t e = 0; e < E; ++e)
      moe.experts.push_back({b.stacked(gu, e, 0, I, D), b.stacked(gu, e, I, I, D), b.stacked(dn, e, 0, D, I)});
    if (c.n_shared_experts > 0)
      moe.shared = ExpertW{b.mat(f + "shared_experts.gate_proj.weight", I, D), b.mat(f + "shared_experts.up_proj.weight", I, D),
                           b.mat(f + "shared_experts.down_proj.weight", D, I)};
  } else {
    for (int64_t e = 0; e < E; ++e) {
      const std::string ep = f + "experts." + std::to_string(e) + ".";
      moe.experts.push_back({b.mat(ep + "w1.weight", I, D), b.mat(ep + "w3.weight", I, D), b.mat(ep + "w2.weight", D, I)});
    }
    if (c.n_shared_experts > 0)
      moe.shared = ExpertW{b.mat(f + "shared_experts.w1.weight", I, D), b.mat(f + "shared_experts.w3.weight", I, D),
                           b.mat(f + "shared_experts.w2.weight", D, I)};
  }
  return w;
}

}  // namespace

FVec SmallParams::keep(std::vector<float> v) {
  floats.push_back(std::move(v));  // moving a vector keeps its heap buffer: earlier views stay valid
  return FVec::of(floats.back());
}
const uint8_t* SmallParams::keep_aligned(const uint8_t* src, size_t bytes) {
  realigned.emplace_back((bytes + sizeof(float) - 1) / sizeof(float));
  std::memcpy(realigned.back().data(), src, bytes);
  return reinterpret_cast<const uint8_t*>(realigned.back().data());
}

DVec SmallParams::keep(std::vector<double> v) {
  doubles.push_back(std::move(v));
  return DVec::of(doubles.back());
}

ModelWeights bind_weights(const ModelConfig& cfg, const TensorStore& store, SmallParams& small) {
  ModelWeights w;
  bool hf;
  if (store.has("embed.weight")) hf = false;
  else if (store.has("model.embed_tokens.weight")) hf = true;
  else
    throw MissingTensorError("cannot recognise the checkpoint layout at " + store.root().string() +
                             ": neither 'embed.weight' (published) nor 'model.embed_tokens.weight' (Hugging Face) is present");
  w.layout = hf ? CheckpointLayout::HuggingFace : CheckpointLayout::Published;
  Binder b(cfg, store, small);
  const int64_t V = cfg.vocab_size, D = cfg.hidden_size, nc = cfg.hc_mult;
  w.embed = b.mat(hf ? "model.embed_tokens.weight" : "embed.weight", V, D);
  w.head = b.mat(hf ? "lm_head.weight" : "head.weight", V, D);
  if (w.embed.fmt == WFormat::FP8 || w.embed.fmt == WFormat::FP4)
    throw ShapeError("tensor 'embed': quantised embeddings are not supported (expected F32|BF16|F16)");
  w.norm = b.floats(hf ? "model.norm.weight" : "norm.weight", {D});
  w.hc_head = hf ? b.hyper("model.hc_head.hc_fn", "model.hc_head.hc_base", "model.hc_head.hc_scale", nc, 1)
                 : b.hyper("hc_head_fn", "hc_head_base", "hc_head_scale", nc, 1);
  for (int64_t l = 0; l < cfg.num_layers; ++l) w.layers.push_back(bind_layer(b, l, hf));
  std::vector<std::string> unused;
  for (const auto& n : store.names()) {
    if (n.rfind("mtp.", 0) == 0 || n.rfind("model.mtp.", 0) == 0)
      w.mtp_tensors.push_back(n);
    else if (b.used.count(n) == 0 && b.used.count(n + ".weight") == 0)
      unused.push_back(n);
  }
  if (!unused.empty()) {
    std::string list;
    for (size_t i = 0; i < unused.size() && i < 3; ++i) list += (i ? ", '" : "'") + unused[i] + "'";
    log(LogLevel::Warning, std::to_string(unused.size()) + " tensors of the checkpoint at " + store.root().string() +
                               " are not used by its config.json (" + list + (unused.size() > 3 ? ", ..." : "") +
                               "): check that the config belongs to these weights");
  }
  w.freq_main = small.keep(rope_frequencies(cfg.rope_main, cfg.rope_dim));
  w.freq_compress = small.keep(rope_frequencies(cfg.rope_compress, cfg.rope_dim));
  return w;
}

void visit_weights(ModelWeights& w, const ModelConfig& cfg, WeightVisitor& v) {
  auto hyper = [&](HyperW& h) {
    v.matrix(h.fn);
    v.floats(h.base);
    v.floats(h.scale);
  };
  auto expert = [&](ExpertW& e) {
    v.matrix(e.w1);
    v.matrix(e.w3);
    v.matrix(e.w2);
  };
  auto comp = [&](CompressorW& c) {
    v.matrix(c.wkv);
    v.matrix(c.wgate);
    v.floats(c.ape);
    v.floats(c.norm);
  };
  v.matrix(w.embed);
  v.matrix(w.head);
  v.floats(w.norm);
  hyper(w.hc_head);
  v.doubles(w.freq_main);
  v.doubles(w.freq_compress);
  for (LayerW& l : w.layers) {
    hyper(l.hc_attn);
    hyper(l.hc_ffn);
    v.floats(l.attn_norm);
    v.floats(l.ffn_norm);
    AttentionW& a = l.attn;
    v.floats(a.sink);
    for (MatW* m : {&a.wq_a, &a.wq_b, &a.wkv, &a.wo_a, &a.wo_b}) v.matrix(*m);
    v.floats(a.q_norm);
    v.floats(a.kv_norm);
    if (a.compressor) comp(*a.compressor);
    if (a.indexer) {
      v.matrix(a.indexer->wq_b);
      v.matrix(a.indexer->weights_proj);
      comp(a.indexer->compressor);
    }
    MoeW& m = l.moe;
    v.matrix(m.gate);
    v.floats(m.bias);
    if (m.tid2eid != nullptr)
      v.bytes(m.tid2eid, static_cast<size_t>(cfg.vocab_size * cfg.experts_per_token) * (m.tid2eid_is_i64 ? 8 : 4));
    for (ExpertW& e : m.experts) expert(e);
    if (m.shared) expert(*m.shared);
  }
}

}  // namespace dsv4
