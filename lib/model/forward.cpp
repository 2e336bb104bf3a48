// The forward pass over a step (model.md), as a fixed sequence of backend ops.
#include "model/forward.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "dsv4/error.hpp"

namespace dsv4 {

const char* const kProfNames[kProfCount] = {"embed", "mhc", "attn.proj", "attn.compressor", "attn.indexer",
                                            "attn.core", "attn.out_proj", "moe", "head"};

void HostStep::reserve(int64_t capacity) {
  const StepLayout l = StepLayout::for_rows(capacity);
  if (l.bytes != layout.bytes) {
    layout = l;
    image.assign(l.bytes, 0);
  }
}

void HostStep::finish() {
  auto* c = const_cast<int32_t*>(host().counts);
  c[kStepRows] = static_cast<int32_t>(rows);
  c[kStepSeqs] = static_cast<int32_t>(seqs);
  c[kStepOut] = static_cast<int32_t>(outs);
}

Forward::Forward(const ModelConfig& c, const ModelWeights& w, Backend& be) : c_(c), w_(w), be_(be) {}

Forward::~Forward() {
  be_.release(block_);
  be_.release(step_mem_);
}

void Forward::reserve(int64_t rows, int64_t outs) {
  if (rows <= cap_rows_ && outs <= cap_outs_) return;
  // Grow to the next power of two, so a run of growing batches reallocates a few times only.
  auto pow2 = [](int64_t v) {
    int64_t p = 1;
    while (p < v) p *= 2;
    return p;
  };
  const int64_t R = std::max(cap_rows_, pow2(rows)), O = std::max(cap_outs_, pow2(std::max<int64_t>(outs, 1)));
  const int64_t D = c_.hidden_size, nc = c_.hc_mult, H = c_.num_heads, hd = c_.head_dim, half = c_.rope_dim / 2;
  bool any_comp = false, any_csa = false;
  for (auto k : c_.attn_kind) {
    any_comp |= k != AttnKind::Sliding;
    any_csa |= k == AttnKind::CSA;
  }
  const int64_t cw = any_comp ? (any_csa ? 2 : 1) * hd : 0;
  const int64_t nI = any_csa ? c_.index_n_heads : 0, ihd = any_csa ? c_.index_head_dim : 0;
  // Buffer sizes in floats, laid out one after another on 64-byte boundaries.
  struct Part {
    float** p;
    int64_t floats;
  };
  const Part parts[] = {
      {&X_, R * nc * D},        {&xin_, R * D},          {&coef_, R * (nc + nc * nc)}, {&y_, R * D},
      {&qa_, R * c_.q_lora_rank}, {&q_, R * H * hd},     {&kv_, R * hd},               {&ckv_, R * cw},
      {&cg_, R * cw},           {&iq_, R * nI * ihd},    {&iw_, R * nI},               {&ikv_, R * 2 * ihd},
      {&ig_, R * 2 * ihd},      {&o_, R * H * hd},       {&yg_, R * c_.o_groups * c_.o_lora_rank},
      {&h_, O * nc * D},        {&logits_, O * c_.vocab_size},
      {&cos_main_, R * half},   {&sin_main_, R * half},  {&cos_comp_, R * half},       {&sin_comp_, R * half},
  };
  std::vector<size_t> off;
  size_t total = 0;
  for (const Part& p : parts) {
    off.push_back(total);
    total += (static_cast<size_t>(std::max<int64_t>(p.floats, 1)) * sizeof(float) + 63) / 64 * 64;
  }
  const size_t sel_off = total;
  total += (static_cast<size_t>(R * std::max<int64_t>(c_.index_topk, 1)) * sizeof(int32_t) + 63) / 64 * 64;
  void* block = be_.alloc(total);
  const StepLayout sl = StepLayout::for_rows(R);
  void* step_mem = nullptr;
  try {
    step_mem = be_.alloc(sl.bytes);
  } catch (...) {
    be_.release(block);
    throw;
  }
  be_.release(block_);
  be_.release(step_mem_);
  block_ = block;
  step_mem_ = step_mem;
  auto* base = static_cast<unsigned char*>(block_);
  for (size_t i = 0; i < std::size(parts); ++i) *parts[i].p = reinterpret_cast<float*>(base + off[i]);
  sel_ = reinterpret_cast<int32_t*>(base + sel_off);
  step_layout_ = sl;
  step_ = sl.ref(step_mem_);
  cap_rows_ = R;
  cap_outs_ = O;
  bytes_ = total + sl.bytes;
}

void Forward::tick(Profile* prof, Prof p) {
  if (prof == nullptr) return;
  be_.sync();  // a device backend's ops are queued: time them finished
  const auto now = std::chrono::steady_clock::now();
  prof->op[p] += std::chrono::duration<double>(now - mark_).count();
  mark_ = now;
}

void Forward::observe(const StepObserver* obs, int stage, const float* data, int64_t rows, int64_t width) {
  if (obs == nullptr || !*obs) return;
  observe_buf_.resize(static_cast<size_t>(rows * width));
  be_.download(observe_buf_.data(), data, observe_buf_.size() * sizeof(float));
  (*obs)(stage, observe_buf_.data(), rows, width);
}

void Forward::attention(int64_t l, int64_t S, Profile* prof) {
  const AttentionW& a = w_.layers[static_cast<size_t>(l)].attn;
  const int64_t D = c_.hidden_size, H = c_.num_heads, hd = c_.head_dim, rd = c_.rope_dim, Q = c_.q_lora_rank,
                G = c_.o_groups, R = c_.o_lora_rank, W = c_.sliding_window;
  const float eps = static_cast<float>(c_.rms_norm_eps);
  const bool compressed = c_.attn_kind[static_cast<size_t>(l)] != AttnKind::Sliding;
  const float* cs = compressed ? cos_comp_ : cos_main_;
  const float* sn = compressed ? sin_comp_ : sin_main_;

  // Every projection of xin (queries, window kv, compressor and indexer inputs) in one pass, then
  // both projections of the normalised query latent in another (attn.proj in the profile).
  const CompressorW* cw = a.compressor ? &*a.compressor : nullptr;
  const IndexerW* ix = a.indexer ? &*a.indexer : nullptr;
  const int64_t cwidth = cw ? (cw->overlap ? 2 : 1) * cw->width : 0;
  const int64_t nI = c_.index_n_heads, ihd = c_.index_head_dim, iwidth = 2 * ihd;
  LinearTask in[7];
  size_t nin = 0;
  in[nin++] = {&a.wq_a, 0, Q, xin_, D, qa_, Q};
  in[nin++] = {&a.wkv, 0, hd, xin_, D, kv_, hd};
  if (cw) {
    in[nin++] = {&cw->wkv, 0, cwidth, xin_, D, ckv_, cwidth};
    in[nin++] = {&cw->wgate, 0, cwidth, xin_, D, cg_, cwidth};
  }
  if (ix) {
    in[nin++] = {&ix->weights_proj, 0, nI, xin_, D, iw_, nI};
    in[nin++] = {&ix->compressor.wkv, 0, iwidth, xin_, D, ikv_, iwidth};
    in[nin++] = {&ix->compressor.wgate, 0, iwidth, xin_, D, ig_, iwidth};
  }
  be_.linear_multi(in, nin, S);
  be_.rms_norm(qa_, S, Q, Q, a.q_norm.data(), eps);
  LinearTask qb[2] = {{&a.wq_b, 0, H * hd, qa_, Q, q_, H * hd}, {}};
  if (ix) qb[1] = {&ix->wq_b, 0, nI * ihd, qa_, Q, iq_, nI * ihd};
  be_.linear_multi(qb, ix ? 2 : 1, S);
  be_.rms_norm(q_, S * H, hd, hd, nullptr, eps);
  be_.rope(q_, S, H * hd, H, hd, hd - rd, rd, cs, sn, false);
  be_.rms_norm(kv_, S, hd, hd, a.kv_norm.data(), eps);
  be_.rope(kv_, S, hd, 1, hd, hd - rd, rd, cs, sn, false);
  tick(prof, pAttnProj);

  AttentionArgs args;
  args.S = S;
  args.H = H;
  args.hd = hd;
  args.W = W;
  args.step = step_;
  args.layer = l;
  args.q = q_;
  args.kv = kv_;
  args.sink = a.sink.data();
  if (cw) {
    // Windows completed in this step are visible to its own later rows: compress first.
    be_.compress(*cw, CompressorSlot::Attention, step_, S, l, ckv_, cg_, w_.freq_compress.data(), rd, eps);
    args.entries = true;
    args.ratio = cw->ratio;
    tick(prof, pCompressor);
  }
  if (ix) {
    be_.rope(iq_, S, nI * ihd, nI, ihd, ihd - rd, rd, cs, sn, false);
    be_.compress(ix->compressor, CompressorSlot::Indexer, step_, S, l, ikv_, ig_, w_.freq_compress.data(), rd, eps);
    IndexerArgs ia;
    ia.S = S;
    ia.ratio = ix->compressor.ratio;
    ia.nI = nI;
    ia.ihd = ihd;
    ia.topk = c_.index_topk;
    ia.step = step_;
    ia.layer = l;
    ia.q = iq_;
    ia.wts = iw_;
    ia.wts_scale = 1.0f / std::sqrt(static_cast<float>(nI));
    ia.select = sel_;
    be_.indexer_select(ia);
    args.select = sel_;
    args.topk = c_.index_topk;
    tick(prof, pIndexer);
  }
  args.out = o_;
  be_.attention(args);
  be_.rope(o_, S, H * hd, H, hd, hd - rd, rd, cs, sn, true);
  be_.store_window(step_, S, l, kv_, W, hd);
  tick(prof, pAttnCore);

  // Grouped output projection: group g's heads (columns g·H·hd/G …) through block g of wo_a.
  const int64_t gin = H * hd / G;
  LinearTask groups[64];
  for (int64_t g = 0; g < G; ++g) groups[g] = {&a.wo_a, g * R, R, o_ + g * gin, H * hd, yg_ + g * R, G * R};
  be_.linear_multi(groups, static_cast<size_t>(G), S);
  be_.linear(a.wo_b, 0, D, yg_, G * R, S, y_, D);
  tick(prof, pAttnOut);
}

void Forward::run(HostStep& st, Profile* prof, const StepObserver* obs) {
  const int64_t S = st.rows, outs = st.outs;
  if (S > cap_rows_ || outs > cap_outs_ || st.layout.bytes != step_layout_.bytes)
    throw InvalidArgument("internal: step of " + std::to_string(S) + " rows does not fit the reserved buffers");
  st.finish();
  be_.upload(step_mem_, st.image.data(), step_layout_.bytes);
  if (prof != nullptr) {
    mark_ = std::chrono::steady_clock::now();
    if (prof->layer.size() != static_cast<size_t>(c_.num_layers)) prof->layer.assign(static_cast<size_t>(c_.num_layers), 0.0);
  }
  // Identity: the output rows are all rows in order (Logits::All); the head then reads the streams
  // in place, else they are gathered first. Known on the host, so part of the step's key.
  bool identity = outs == S;
  for (int64_t k = 0; identity && k < outs; ++k) identity = st.out()[k] == k;
  // A step without profiling or observation issues the same op calls whenever (rows, outputs,
  // sequences, identity) are the same: the backend may record and replay it.
  constexpr int64_t kKeyField = int64_t{1} << 20;
  const uint64_t key = prof == nullptr && obs == nullptr && S < kKeyField && outs < kKeyField && st.seqs < kKeyField
                           ? (1ull << 63) | static_cast<uint64_t>(S) | static_cast<uint64_t>(outs) << 20 |
                                 static_cast<uint64_t>(st.seqs) << 40 | static_cast<uint64_t>(identity) << 60
                           : 0;
  struct Ctx {
    Forward* f;
    int64_t S, outs;
    bool identity;
    Profile* prof;
    const StepObserver* obs;
  } ctx{this, S, outs, identity, prof, obs};
  be_.run_step(key, StepBody{[](void* p) {
                               auto* c = static_cast<Ctx*>(p);
                               c->f->body(c->S, c->outs, c->identity, c->prof, c->obs);
                             },
                             &ctx});
}

void Forward::body(int64_t S, int64_t outs, bool identity, Profile* prof, const StepObserver* obs) {
  const int64_t D = c_.hidden_size, nc = c_.hc_mult, V = c_.vocab_size, half = c_.rope_dim / 2;
  const float eps = static_cast<float>(c_.rms_norm_eps);
  be_.rope_tables(step_, S, w_.freq_main.data(), half, cos_main_, sin_main_);
  be_.rope_tables(step_, S, w_.freq_compress.data(), half, cos_comp_, sin_comp_);
  be_.embed(w_.embed, step_, S, nc, X_);
  tick(prof, pEmbed);
  observe(obs, 0, X_, S, nc * D);
  for (int64_t l = 0; l < c_.num_layers; ++l) {
    const auto layer_start = mark_;
    const LayerW& lw = w_.layers[static_cast<size_t>(l)];
    be_.hc_pre(lw.hc_attn, c_, X_, S, lw.attn_norm.data(), xin_, coef_);
    tick(prof, pMhc);
    attention(l, S, prof);
    be_.hc_post(c_, X_, y_, coef_, S);
    be_.hc_pre(lw.hc_ffn, c_, X_, S, lw.ffn_norm.data(), xin_, coef_);
    tick(prof, pMhc);
    be_.moe(lw.moe, c_, c_.moe_kind[static_cast<size_t>(l)], xin_, step_, S, y_);
    tick(prof, pMoe);
    be_.hc_post(c_, X_, y_, coef_, S);
    tick(prof, pMhc);
    if (prof != nullptr) prof->layer[static_cast<size_t>(l)] += std::chrono::duration<double>(mark_ - layer_start).count();
    observe(obs, static_cast<int>(l + 1), X_, S, nc * D);
  }
  if (outs == 0) return;
  // The head runs on the output rows only. When they are all rows in order (Logits::All) the
  // streams are read in place; otherwise they are gathered first.
  const float* Xo = X_;
  if (!identity) {
    be_.gather_rows(X_, nc * D, step_, outs, nc * D, h_);
    Xo = h_;
  }
  // h [outs, D] goes into xin (free after the last layer; outs <= rows).
  be_.hc_head(w_.hc_head, c_, Xo, outs, xin_);
  be_.rms_norm(xin_, outs, D, D, w_.norm.data(), eps);
  observe(obs, static_cast<int>(c_.num_layers + 1), xin_, outs, D);
  be_.linear(w_.head, 0, V, xin_, D, outs, logits_, V);
  tick(prof, pHead);
}

}  // namespace dsv4
