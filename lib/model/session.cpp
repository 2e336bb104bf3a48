// Session: one sequence's caches, and the forward pass written once against the Backend ops.
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstring>

#include "backend/backend.hpp"
#include "model/model_impl.hpp"
#include "model/rope.hpp"

namespace dsv4 {

namespace {

// Owns the buffers behind a CompressorState.
struct CompressorBuf {
  std::vector<float> pend_kv, pend_g, prev_kv, prev_g, entries;
  CompressorState st;
  void init(const CompressorW& w, int64_t capacity_tokens) {
    const int64_t c = w.overlap ? 2 : 1;
    pend_kv.assign(static_cast<size_t>(w.ratio * c * w.width), 0.0f);
    pend_g.assign(pend_kv.size(), 0.0f);
    prev_kv.assign(static_cast<size_t>(w.overlap ? w.ratio * w.width : 0), 0.0f);
    prev_g.assign(prev_kv.size(), 0.0f);
    entries.assign(static_cast<size_t>((capacity_tokens / w.ratio + 1) * w.width), 0.0f);
    st = CompressorState{pend_kv.data(), pend_g.data(), prev_kv.data(), prev_g.data(), entries.data(), 0};
  }
  uint64_t bytes() const {
    return (pend_kv.size() + pend_g.size() + prev_kv.size() + prev_g.size() + entries.size()) * sizeof(float);
  }
};

struct LayerState {
  std::vector<float> ring;  // [W, hd]: window row of position j at j % W
  CompressorBuf comp, index;
};

// Op families timed when SessionOptions::profile is set.
enum Prof : size_t { pEmbed, pMhc, pAttnProj, pCompressor, pIndexer, pAttnCore, pAttnOut, pMoe, pHead, kProfCount };
const char* const kProfNames[kProfCount] = {"embed", "mhc", "attn.proj", "attn.compressor", "attn.indexer",
                                            "attn.core", "attn.out_proj", "moe", "head"};

// Workspace slots of the forward pass.
enum Slot : size_t {
  kX, kXin, kCoef, kY, kQa, kQ, kKv, kCkv, kCg, kIq, kIw, kIkv, kIg, kO, kYg, kH,
  kCosMain, kSinMain, kCosComp, kSinComp,
};

}  // namespace

struct Session::Impl {
  std::shared_ptr<const Model> model;
  const Model::Impl& m;
  const ModelConfig& c;
  SessionOptions opt;
  std::unique_ptr<Backend> be;
  std::vector<LayerState> layers;
  Workspace ws;
  std::vector<float> logits;
  std::vector<float> last;  // logits of the last token fed
  bool has_last = false;
  int64_t pos = 0;
  Observer observer;
  std::array<double, kProfCount> prof{};
  std::vector<double> layer_prof;
  std::chrono::steady_clock::time_point mark;
  // Charges the time since the last mark to `p` (no-op unless profiling).
  void tick(Prof p) {
    if (!opt.profile) return;
    const auto now = std::chrono::steady_clock::now();
    prof[p] += std::chrono::duration<double>(now - mark).count();
    mark = now;
  }

  Impl(std::shared_ptr<const Model> mdl, SessionOptions o)
      : model(std::move(mdl)), m(model->impl()), c(m.cfg), opt(o), be(make_cpu_backend(o.threads)) {
    if (opt.max_context <= 0) opt.max_context = std::min<int64_t>(c.max_position_embeddings > 0 ? c.max_position_embeddings : 16384, 16384);
    if (opt.max_batch <= 0) throw InvalidArgument("SessionOptions::max_batch must be positive");
    layers.resize(static_cast<size_t>(c.num_layers));
    for (int64_t l = 0; l < c.num_layers; ++l) {
      LayerState& ls = layers[l];
      ls.ring.assign(static_cast<size_t>(c.sliding_window * c.head_dim), 0.0f);
      const AttentionW& a = m.w.layers[l].attn;
      if (a.compressor) ls.comp.init(*a.compressor, opt.max_context);
      if (a.indexer) ls.index.init(a.indexer->compressor, opt.max_context);
    }
  }

  void reset() {
    pos = 0;
    has_last = false;
    for (auto& ls : layers) {
      ls.comp.st.n_entries = 0;
      ls.index.st.n_entries = 0;
    }
  }

  uint64_t state_bytes() const {
    uint64_t b = 0;
    for (const auto& ls : layers) b += ls.ring.size() * sizeof(float) + ls.comp.bytes() + ls.index.bytes();
    return b;
  }

  float* buf(Slot s, int64_t n) { return ws.get(s, static_cast<size_t>(n)); }

  void attention(int64_t l, const float* xin, int64_t S, int64_t p0, float* out) {
    const LayerW& lw = m.w.layers[l];
    const AttentionW& a = lw.attn;
    LayerState& ls = layers[l];
    const int64_t D = c.hidden_size, H = c.num_heads, hd = c.head_dim, rd = c.rope_dim, Q = c.q_lora_rank,
                  G = c.o_groups, R = c.o_lora_rank, W = c.sliding_window;
    const float eps = static_cast<float>(c.rms_norm_eps);
    const bool compressed = c.attn_kind[l] != AttnKind::Sliding;
    const RopeTable tab = compressed ? RopeTable{buf(kCosComp, 0), buf(kSinComp, 0)} : RopeTable{buf(kCosMain, 0), buf(kSinMain, 0)};

    // Every projection of xin (queries, window kv, compressor and indexer inputs) in one pass, then
    // both projections of the normalised query latent in another (attn.proj in the profile).
    float* qa = buf(kQa, S * Q);
    float* kv = buf(kKv, S * hd);
    const CompressorW* cw = a.compressor ? &*a.compressor : nullptr;
    const IndexerW* ix = a.indexer ? &*a.indexer : nullptr;
    const int64_t cwidth = cw ? (cw->overlap ? 2 : 1) * cw->width : 0;
    const int64_t nI = c.index_n_heads, ihd = c.index_head_dim, iwidth = 2 * ihd;
    float* ckv = cw ? buf(kCkv, S * cwidth) : nullptr;
    float* cg = cw ? buf(kCg, S * cwidth) : nullptr;
    float* iq = ix ? buf(kIq, S * nI * ihd) : nullptr;
    float* iw = ix ? buf(kIw, S * nI) : nullptr;
    float* ikv = ix ? buf(kIkv, S * iwidth) : nullptr;
    float* ig = ix ? buf(kIg, S * iwidth) : nullptr;
    LinearTask in[7];
    size_t nin = 0;
    in[nin++] = {&a.wq_a, 0, Q, xin, D, qa, Q};
    in[nin++] = {&a.wkv, 0, hd, xin, D, kv, hd};
    if (cw) {
      in[nin++] = {&cw->wkv, 0, cwidth, xin, D, ckv, cwidth};
      in[nin++] = {&cw->wgate, 0, cwidth, xin, D, cg, cwidth};
    }
    if (ix) {
      in[nin++] = {&ix->weights_proj, 0, nI, xin, D, iw, nI};
      in[nin++] = {&ix->compressor.wkv, 0, iwidth, xin, D, ikv, iwidth};
      in[nin++] = {&ix->compressor.wgate, 0, iwidth, xin, D, ig, iwidth};
    }
    be->linear_multi(in, nin, S);
    be->rms_norm(qa, S, Q, Q, a.q_norm.data(), eps);
    float* q = buf(kQ, S * H * hd);
    LinearTask qb[2] = {{&a.wq_b, 0, H * hd, qa, Q, q, H * hd}, {}};
    if (ix) qb[1] = {&ix->wq_b, 0, nI * ihd, qa, Q, iq, nI * ihd};
    be->linear_multi(qb, ix ? 2 : 1, S);
    be->rms_norm(q, S * H, hd, hd, nullptr, eps);
    be->rope(q, S, H * hd, H, hd, hd - rd, rd, tab, false);
    be->rms_norm(kv, S, hd, hd, a.kv_norm.data(), eps);
    be->rope(kv, S, hd, 1, hd, hd - rd, rd, tab, false);
    tick(pAttnProj);

    AttentionArgs args;
    args.S = S;
    args.p0 = p0;
    args.H = H;
    args.hd = hd;
    args.W = W;
    args.q = q;
    args.kv = kv;
    args.ring = ls.ring.data();
    args.sink = a.sink.data();
    if (cw) {
      be->compress(*cw, ls.comp.st, ckv, cg, S, p0, m.freq_compress.data(), rd, eps);
      args.entries = ls.comp.st.entries;
      args.ratio = cw->ratio;
      tick(pCompressor);
    }
    if (ix) {
      be->rope(iq, S, nI * ihd, nI, ihd, ihd - rd, rd, tab, false);
      const float ws_scale = 1.0f / std::sqrt(static_cast<float>(nI));
      for (int64_t i = 0; i < S * nI; ++i) iw[i] *= ws_scale;
      be->compress(ix->compressor, ls.index.st, ikv, ig, S, p0, m.freq_compress.data(), rd, eps);
      int32_t* sel = ws.get_i32(0, static_cast<size_t>(S * c.index_topk));
      IndexerArgs ia{S, p0, ix->compressor.ratio, nI, ihd, c.index_topk, iq, iw, ls.index.st.entries, sel};
      be->indexer_select(ia);
      args.select = sel;
      args.topk = c.index_topk;
      tick(pIndexer);
    }
    float* o = buf(kO, S * H * hd);
    args.out = o;
    be->attention(args);
    be->rope(o, S, H * hd, H, hd, hd - rd, rd, tab, true);
    tick(pAttnCore);

    for (int64_t j = std::max(p0, p0 + S - W); j < p0 + S; ++j)
      std::memcpy(ls.ring.data() + (j % W) * hd, kv + (j - p0) * hd, static_cast<size_t>(hd) * sizeof(float));

    // Grouped output projection: group g's heads (columns g·H·hd/G …) through block g of wo_a.
    const int64_t gin = H * hd / G;
    float* yg = buf(kYg, S * G * R);
    LinearTask groups[64];
    for (int64_t g = 0; g < G; ++g) groups[g] = {&a.wo_a, g * R, R, o + g * gin, H * hd, yg + g * R, G * R};
    be->linear_multi(groups, static_cast<size_t>(G), S);
    be->linear(a.wo_b, 0, D, yg, G * R, S, out, D);
    tick(pAttnOut);
  }

  // One internal step of S ≤ max_batch tokens; writes `out_rows` logits rows (the last ones).
  void step(const int32_t* ids, int64_t S, int64_t out_rows, float* out) {
    const int64_t D = c.hidden_size, nc = c.hc_mult, V = c.vocab_size, half = c.rope_dim / 2;
    const int64_t p0 = pos;
    const float eps = static_cast<float>(c.rms_norm_eps);
    float* X = buf(kX, S * nc * D);
    float* xin = buf(kXin, S * D);
    float* coef = buf(kCoef, S * (nc + nc * nc));
    float* y = buf(kY, S * D);
    // Size every buffer whose pointer is fetched later with size 0, before use.
    rope_table(m.freq_main, p0, S, buf(kCosMain, S * half), buf(kSinMain, S * half));
    rope_table(m.freq_compress, p0, S, buf(kCosComp, S * half), buf(kSinComp, S * half));

    if (opt.profile) mark = std::chrono::steady_clock::now();
    be->embed(m.w.embed, ids, S, nc, X);
    tick(pEmbed);
    if (observer) observer(0, X, S, nc * D);
    for (int64_t l = 0; l < c.num_layers; ++l) {
      const auto layer_start = mark;
      const LayerW& lw = m.w.layers[l];
      be->hc_pre(lw.hc_attn, c, X, S, lw.attn_norm.data(), xin, coef);
      tick(pMhc);
      attention(l, xin, S, p0, y);
      be->hc_post(c, X, y, coef, S);
      be->hc_pre(lw.hc_ffn, c, X, S, lw.ffn_norm.data(), xin, coef);
      tick(pMhc);
      be->moe(lw.moe, c, c.moe_kind[l], xin, ids, S, y);
      tick(pMoe);
      be->hc_post(c, X, y, coef, S);
      tick(pMhc);
      if (opt.profile) {
        if (layer_prof.size() != static_cast<size_t>(c.num_layers)) layer_prof.assign(static_cast<size_t>(c.num_layers), 0.0);
        layer_prof[static_cast<size_t>(l)] += std::chrono::duration<double>(mark - layer_start).count();
      }
      if (observer) observer(static_cast<int>(l + 1), X, S, nc * D);
    }
    pos += S;
    if (out_rows == 0) return;
    float* h = buf(kH, out_rows * D);
    be->hc_head(m.w.hc_head, c, X + (S - out_rows) * nc * D, out_rows, h);
    be->rms_norm(h, out_rows, D, D, m.w.norm.data(), eps);
    if (observer) observer(static_cast<int>(c.num_layers + 1), h, out_rows, D);
    be->linear(m.w.head, 0, V, h, D, out_rows, out, V);
    tick(pHead);
  }

  std::span<const float> forward(std::span<const int32_t> tokens, Logits which) {
    const int64_t n = static_cast<int64_t>(tokens.size()), V = c.vocab_size;
    if (n == 0) throw InvalidArgument("forward: no tokens given (need at least one)");
    for (int64_t i = 0; i < n; ++i)
      if (tokens[i] < 0 || tokens[i] >= V)
        throw InvalidArgument("forward: token id " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                              " is outside the vocabulary [0, " + std::to_string(V) + ")");
    if (pos + n > opt.max_context)
      throw CapacityError("forward: " + std::to_string(n) + " tokens after " + std::to_string(pos) +
                          " would exceed the session's max_context of " + std::to_string(opt.max_context) +
                          " (raise SessionOptions::max_context)");
    const int64_t rows = which == Logits::All ? n : 1;
    if (logits.size() < static_cast<size_t>(rows * V)) logits.resize(static_cast<size_t>(rows * V));
    for (int64_t b = 0; b < n; b += opt.max_batch) {
      const int64_t S = std::min(opt.max_batch, n - b);
      const bool last = b + S == n;
      const int64_t out_rows = which == Logits::All ? S : (last ? 1 : 0);
      float* out = which == Logits::All ? logits.data() + b * V : logits.data();
      step(tokens.data() + b, S, out_rows, out);
    }
    if (last.size() != static_cast<size_t>(V)) last.resize(static_cast<size_t>(V));
    std::copy_n(logits.data() + (rows - 1) * V, V, last.data());
    has_last = true;
    return {logits.data(), static_cast<size_t>(rows * V)};
  }
};

Session::Session(std::shared_ptr<const Model> model, SessionOptions options) {
  if (!model) throw InvalidArgument("Session: model is null");
  impl_ = std::make_unique<Impl>(std::move(model), options);
}
Session::~Session() = default;

std::span<const float> Session::forward(std::span<const int32_t> tokens, Logits which) {
  return impl_->forward(tokens, which);
}
void Session::reset() { impl_->reset(); }
int64_t Session::position() const { return impl_->pos; }
int64_t Session::max_context() const { return impl_->opt.max_context; }
int64_t Session::vocab_size() const { return impl_->c.vocab_size; }
const Model& Session::model() const { return *impl_->model; }
void Session::set_observer(Observer obs) { impl_->observer = std::move(obs); }

SessionMemory Session::memory() const {
  SessionMemory mem;
  mem.state_bytes = impl_->state_bytes();
  mem.scratch_bytes = impl_->ws.bytes() + impl_->be->scratch_bytes();
  mem.logits_bytes = impl_->logits.capacity() * sizeof(float);
  return mem;
}

}  // namespace dsv4

namespace dsv4 {

// ---- snapshots ----
struct SessionSnapshot::Data {
  const Model* model = nullptr;
  int64_t pos = 0;
  std::vector<float> last;
  struct Comp {
    std::vector<float> pend_kv, pend_g, prev_kv, prev_g, entries;
    int64_t n_entries = 0;
  };
  struct Layer {
    std::vector<float> ring;
    Comp comp, index;
  };
  std::vector<Layer> layers;
  uint64_t bytes() const {
    uint64_t b = last.size() * 4;
    for (const auto& l : layers) {
      b += l.ring.size() * 4;
      for (const Comp* c : {&l.comp, &l.index})
        b += (c->pend_kv.size() + c->pend_g.size() + c->prev_kv.size() + c->prev_g.size() + c->entries.size()) * 4;
    }
    return b;
  }
};

int64_t SessionSnapshot::position() const { return d_->pos; }
uint64_t SessionSnapshot::bytes() const { return d_->bytes(); }

namespace {
void save_comp(const CompressorBuf& b, int64_t width, SessionSnapshot::Data::Comp& out) {
  out.pend_kv = b.pend_kv;
  out.pend_g = b.pend_g;
  out.prev_kv = b.prev_kv;
  out.prev_g = b.prev_g;
  out.n_entries = b.st.n_entries;
  out.entries.assign(b.entries.begin(), b.entries.begin() + b.st.n_entries * width);
}
void load_comp(const SessionSnapshot::Data::Comp& in, CompressorBuf& b) {
  std::copy(in.pend_kv.begin(), in.pend_kv.end(), b.pend_kv.begin());
  std::copy(in.pend_g.begin(), in.pend_g.end(), b.pend_g.begin());
  std::copy(in.prev_kv.begin(), in.prev_kv.end(), b.prev_kv.begin());
  std::copy(in.prev_g.begin(), in.prev_g.end(), b.prev_g.begin());
  std::copy(in.entries.begin(), in.entries.end(), b.entries.begin());
  b.st.n_entries = in.n_entries;
}
}  // namespace

SessionSnapshot Session::snapshot() const {
  const Impl& s = *impl_;
  auto d = std::make_shared<SessionSnapshot::Data>();
  d->model = s.model.get();
  d->pos = s.pos;
  if (s.has_last) d->last = s.last;
  d->layers.resize(s.layers.size());
  for (size_t l = 0; l < s.layers.size(); ++l) {
    d->layers[l].ring = s.layers[l].ring;
    const AttentionW& a = s.m.w.layers[l].attn;
    if (a.compressor) save_comp(s.layers[l].comp, a.compressor->width, d->layers[l].comp);
    if (a.indexer) save_comp(s.layers[l].index, a.indexer->compressor.width, d->layers[l].index);
  }
  return SessionSnapshot(std::move(d));
}

void Session::restore(const SessionSnapshot& snap) {
  Impl& s = *impl_;
  const auto& d = snap.data();
  if (d.model != s.model.get()) throw InvalidArgument("restore: the snapshot was taken from a session of another model");
  if (d.pos > s.opt.max_context)
    throw CapacityError("restore: snapshot at position " + std::to_string(d.pos) + " exceeds this session's max_context " +
                        std::to_string(s.opt.max_context));
  for (size_t l = 0; l < s.layers.size(); ++l) {
    s.layers[l].ring = d.layers[l].ring;
    const AttentionW& a = s.m.w.layers[l].attn;
    if (a.compressor) load_comp(d.layers[l].comp, s.layers[l].comp);
    if (a.indexer) load_comp(d.layers[l].index, s.layers[l].index);
  }
  s.pos = d.pos;
  s.has_last = !d.last.empty();
  if (s.has_last) s.last = d.last;
}

std::unique_ptr<Session> Session::fork() const {
  auto out = std::make_unique<Session>(impl_->model, impl_->opt);
  out->restore(snapshot());
  return out;
}

const SessionOptions& Session::options() const { return impl_->opt; }

std::vector<std::pair<std::string, double>> Session::profile() const {
  std::vector<std::pair<std::string, double>> v;
  for (size_t i = 0; i < kProfCount; ++i) v.emplace_back(kProfNames[i], impl_->prof[i]);
  return v;
}

void Session::clear_profile() {
  impl_->prof.fill(0.0);
  std::fill(impl_->layer_prof.begin(), impl_->layer_prof.end(), 0.0);
}

std::vector<double> Session::layer_profile() const { return impl_->layer_prof; }

void bench_fill_state(Session& session, int64_t position, uint64_t seed) {
  Session::Impl& s = *session.impl_;
  if (position < 0 || position > s.opt.max_context)
    throw InvalidArgument("bench_fill_state: position " + std::to_string(position) + " outside [0, max_context]");
  uint64_t z = seed * 0x9e3779b97f4a7c15ull + 1;
  auto fill = [&](float* p, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      z ^= z << 13;
      z ^= z >> 7;
      z ^= z << 17;
      p[i] = static_cast<float>(static_cast<int64_t>(z >> 40) - (1 << 23)) * (1.0f / (1 << 23));
    }
  };
  for (size_t l = 0; l < s.layers.size(); ++l) {
    LayerState& ls = s.layers[l];
    fill(ls.ring.data(), ls.ring.size());
    const AttentionW& a = s.m.w.layers[l].attn;
    auto fill_comp = [&](CompressorBuf& b, const CompressorW& w) {
      fill(b.pend_kv.data(), b.pend_kv.size());
      fill(b.pend_g.data(), b.pend_g.size());
      fill(b.prev_kv.data(), b.prev_kv.size());
      fill(b.prev_g.data(), b.prev_g.size());
      b.st.n_entries = position / w.ratio;
      fill(b.entries.data(), static_cast<size_t>(b.st.n_entries * w.width));
    };
    if (a.compressor) fill_comp(ls.comp, *a.compressor);
    if (a.indexer) fill_comp(ls.index, a.indexer->compressor);
  }
  s.pos = position;
  s.has_last = false;
}

std::span<const float> Session::last_logits() const {
  if (!impl_->has_last) return {};
  return {impl_->last.data(), impl_->last.size()};
}

// ---- generation ----
GenerateResult Session::generate(std::span<const int32_t> prompt, Sampler& sampler, const GenerateOptions& o) {
  if (o.max_tokens < 0) throw InvalidArgument("generate: max_tokens must be >= 0");
  if (!prompt.empty()) forward(prompt, Logits::Last);
  if (!impl_->has_last) throw InvalidArgument("generate: empty prompt and nothing fed yet (no logits to sample from)");
  GenerateResult r;
  r.tokens.reserve(static_cast<size_t>(o.max_tokens));
  for (int i = 0; i < o.max_tokens; ++i) {
    if (i > 0) {
      if (position() >= max_context()) {
        r.reason = StopReason::ContextFull;
        return r;
      }
      forward({&r.tokens.back(), 1}, Logits::Last);
    }
    const int32_t tok = sampler.sample(last_logits());
    r.tokens.push_back(tok);
    if (o.on_token && !o.on_token(tok)) {
      r.reason = StopReason::Cancelled;
      return r;
    }
    if (std::find(o.stop_tokens.begin(), o.stop_tokens.end(), tok) != o.stop_tokens.end()) {
      r.reason = StopReason::StopToken;
      return r;
    }
    if (o.stop_when && o.stop_when(r.tokens)) {
      r.reason = StopReason::StopPredicate;
      return r;
    }
  }
  r.reason = StopReason::MaxTokens;
  return r;
}

}  // namespace dsv4
