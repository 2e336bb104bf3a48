// Session: a handle to one sequence — its state block in the model's backend, its position and
// its host logits. The forward pass itself lives in model/forward.cpp and runs on the model's
// engine (runtime/engine.cpp), alone or batched with other sessions.
#include <algorithm>
#include <cstring>

#include "model/model_impl.hpp"
#include "model/session_internal.hpp"
#include "quant/cache_format.hpp"

namespace dsv4 {

struct Session::Impl {
  std::shared_ptr<const Model> model;
  const Model::Impl& m;
  const ModelConfig& c;
  Engine& engine;
  SessionOptions opt;
  std::unique_ptr<SequenceState> seq;
  std::vector<float> logits;  // Logits::All rows
  std::vector<float> last;    // logits of the last token fed
  bool has_last = false;
  int64_t pos = 0;
  StepObserver observer;
  Profile prof;
  std::function<bool()> cancel;

  Impl(std::shared_ptr<const Model> mdl, SessionOptions o)
      : model(std::move(mdl)), m(model_impl(*model)), c(m.cfg), engine(model_engine(*model)), opt(o) {
    if (opt.max_context <= 0) opt.max_context = c.max_position_embeddings > 0 ? c.max_position_embeddings : 16384;
    if (c.max_position_embeddings > 0 && opt.max_context > c.max_position_embeddings)
      throw CapacityError("SessionOptions::max_context " + std::to_string(opt.max_context) + " exceeds the model's maximum context of " +
                          std::to_string(c.max_position_embeddings) + " tokens (max_position_embeddings)");
    if (opt.max_batch <= 0) throw InvalidArgument("SessionOptions::max_batch must be positive");
    if (opt.threads < 0) throw InvalidArgument("SessionOptions::threads must be >= 0 (0: all of the model's threads)");
    if (opt.cache_type != CacheType::F32 && opt.cache_type != CacheType::BF16 && opt.cache_type != CacheType::FP8)
      throw InvalidArgument("SessionOptions::cache_type " + std::to_string(static_cast<int>(opt.cache_type)) + " is not a CacheType");
    seq = engine.new_sequence(opt.max_context, opt.cache_type, opt.cache_window);
    last.assign(static_cast<size_t>(c.vocab_size), 0.0f);
  }

  // Validates tokens for feeding; `item` >= 0 names the batch item in messages.
  void check_tokens(std::span<const int32_t> tokens, const char* what, int64_t item = -1) const {
    const int64_t n = static_cast<int64_t>(tokens.size()), V = c.vocab_size;
    auto where = [&] { return std::string(what) + (item >= 0 ? " (item " + std::to_string(item) + ")" : std::string()); };
    if (n == 0) throw InvalidArgument(where() + ": no tokens given (need at least one)");
    for (int64_t i = 0; i < n; ++i)
      if (tokens[i] < 0 || tokens[i] >= V)
        throw InvalidArgument(where() + ": token id " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                              " is outside the vocabulary [0, " + std::to_string(V) + ")");
    if (n > opt.max_context - pos)
      throw CapacityError(where() + ": " + std::to_string(n) + " tokens after " + std::to_string(pos) +
                          " would exceed the session's max_context of " + std::to_string(opt.max_context) +
                          " (raise SessionOptions::max_context)");
  }

  StepItem item(std::span<const int32_t> tokens, bool all) {
    StepItem it;
    it.seq = seq.get();
    it.pos = pos;
    it.tokens = tokens;
    it.chunk = opt.max_batch;
    it.all_logits = all;
    it.logits = all ? logits.data() : nullptr;
    it.last = last.data();
    it.threads = opt.threads;
    it.cancel = cancel ? &cancel : nullptr;
    return it;
  }

  std::span<const float> forward(std::span<const int32_t> tokens, Logits which) {
    check_tokens(tokens, "forward");
    const int64_t n = static_cast<int64_t>(tokens.size()), V = c.vocab_size;
    const bool all = which == Logits::All;
    if (all && logits.size() < static_cast<size_t>(n * V)) logits.resize(static_cast<size_t>(n * V));
    StepItem it = item(tokens, all);
    engine.run({&it, 1}, opt.profile ? &prof : nullptr, observer ? &observer : nullptr);
    pos += it.done;
    has_last = true;
    if (it.cancel_error) std::rethrow_exception(it.cancel_error);
    if (it.cancelled)
      throw CancelledError("forward cancelled by the cancel callback after " + std::to_string(it.done) + " of " +
                           std::to_string(n) + " tokens (they stay fed: the session is at position " + std::to_string(pos) +
                           ")");
    if (all) return {logits.data(), static_cast<size_t>(n * V)};
    return {last.data(), last.size()};
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
void Session::reset() {
  std::lock_guard<std::mutex> lk(impl_->engine.mutex());
  impl_->seq->shrink(0);  // the blocks go back to the model's pool
  impl_->pos = 0;         // every count derives from the position: nothing else to clear
  impl_->has_last = false;
}
int64_t Session::position() const { return impl_->pos; }
int64_t Session::max_context() const { return impl_->opt.max_context; }
int64_t Session::vocab_size() const { return impl_->c.vocab_size; }
const Model& Session::model() const { return *impl_->model; }
void Session::set_observer(Observer obs) { impl_->observer = std::move(obs); }
void Session::set_cancel_callback(CancelCallback cancel) { impl_->cancel = std::move(cancel); }

SessionMemory Session::memory() const {
  SessionMemory mem;
  mem.state_bytes = impl_->seq->committed_bytes();
  mem.state_max_bytes = impl_->seq->layout().bytes_at(impl_->opt.max_context);
  mem.scratch_bytes = impl_->engine.step_buffer_bytes() + impl_->engine.backend().scratch_bytes();
  mem.logits_bytes = (impl_->logits.capacity() + impl_->last.capacity()) * sizeof(float);
  return mem;
}

std::span<const float> Session::last_logits() const {
  if (!impl_->has_last) return {};
  return {impl_->last.data(), impl_->last.size()};
}

const SessionOptions& Session::options() const { return impl_->opt; }

std::vector<std::pair<std::string, double>> Session::profile() const {
  std::vector<std::pair<std::string, double>> v;
  for (size_t i = 0; i < kProfCount; ++i) v.emplace_back(kProfNames[i], impl_->prof.op[i]);
  return v;
}

void Session::clear_profile() {
  impl_->prof.op.fill(0.0);
  std::fill(impl_->prof.layer.begin(), impl_->prof.layer.end(), 0.0);
}

std::vector<double> Session::layer_profile() const { return impl_->prof.layer; }

// ---- batched steps ----
void forward_batch(std::span<const BatchItem> items) {
  if (items.empty()) throw InvalidArgument("forward_batch: no items");
  // Grow-only per thread: a batched decode step allocates nothing once warm.
  thread_local std::vector<StepItem> steps;
  thread_local std::vector<const Session*> order;
  const Model* model = nullptr;
  order.clear();
  for (size_t i = 0; i < items.size(); ++i) {
    const BatchItem& b = items[i];
    auto where = [&] { return "forward_batch: item " + std::to_string(i); };
    if (b.session == nullptr) throw InvalidArgument(where() + ": session is null");
    if (model == nullptr) model = &b.session->model();
    if (&b.session->model() != model) throw InvalidArgument(where() + ": sessions of different models cannot share a batch");
    SessionAccess::impl(*b.session).check_tokens(b.tokens, "forward_batch", static_cast<int64_t>(i));
    order.push_back(b.session);
  }
  std::sort(order.begin(), order.end());
  if (std::adjacent_find(order.begin(), order.end()) != order.end())
    throw InvalidArgument("forward_batch: the same session appears twice in one batch");
  Engine& engine = model_engine(*model);
  steps.clear();
  Profile* prof = nullptr;
  for (const BatchItem& b : items) {
    Session::Impl& s = SessionAccess::impl(*b.session);
    steps.push_back(s.item(b.tokens, false));
    steps.back().cancel = nullptr;  // a batch runs to the end: its sessions' cancel callbacks are not asked
    if (prof == nullptr && s.opt.profile) prof = &s.prof;
  }
  engine.run(steps, prof, nullptr);
  for (const BatchItem& b : items) {
    Session::Impl& s = SessionAccess::impl(*b.session);
    s.pos += static_cast<int64_t>(b.tokens.size());
    s.has_last = true;
  }
}

Session::Impl& SessionAccess::impl(Session& s) { return *s.impl_; }
const Session::Impl& SessionAccess::impl(const Session& s) { return *s.impl_; }

// ---- snapshots ----
int64_t SessionSnapshot::position() const { return d_->pos; }
uint64_t SessionSnapshot::bytes() const { return d_->bytes(); }

namespace {

template <class D>
auto& part_of(D& d, size_t l, int which) {
  auto& L = d.layers[l];
  if (which == 0) return L.ring;
  auto& c = which < 6 ? L.comp : L.index;
  switch ((which - 1) % 5) {
    case 0: return c.pend_kv;
    case 1: return c.pend_g;
    case 2: return c.prev_kv;
    case 3: return c.prev_g;
    default: return c.entries;
  }
}

// One piece of a sequence's live state: `words` 4-byte words at `ptr` (backend memory), which are
// words [offset, offset + words) of snapshot vector `which` of `layer` (0 ring; 1-5 pend_kv,
// pend_g, prev_kv, prev_g, entries of the attention compressor; 6-10 the indexer's). An entries
// vector comes in one piece per block; `entry` describes its format (null for the f32 parts).
struct Piece {
  size_t layer = 0;
  int which = 0;
  size_t offset = 0, words = 0;
  unsigned char* ptr = nullptr;
  const StateLayout::Comp* entry = nullptr;
};

// Visits every piece of the state at `pos` in snapshot order (the blocks must be held).
template <class F>
void each_piece(const SequenceState& seq, int64_t pos, F&& fn) {
  const StateLayout& L = seq.layout();
  const auto& d = seq.desc();
  const auto& blocks = seq.block_list();
  auto flat = [&](size_t l, int which, void* p, size_t floats) {
    fn(Piece{l, which, 0, floats, static_cast<unsigned char*>(p), nullptr});
  };
  for (size_t l = 0; l < L.layers.size(); ++l) {
    fn(Piece{l, 0, 0, L.ring_words, d[l].ring, &L.window});
    auto comp = [&](int which, const StateLayout::Comp& cp, const CompressorBufs& b) {
      if (!cp.present) return;
      flat(l, which + 0, b.pend_kv, cp.pend_floats());
      flat(l, which + 1, b.pend_g, cp.pend_floats());
      flat(l, which + 2, b.prev_kv, cp.prev_floats());
      flat(l, which + 3, b.prev_g, cp.prev_floats());
      const int64_t n = pos / cp.ratio, wpe = cp.stride / 4;
      if (n == 0) fn(Piece{l, which + 4, 0, 0, nullptr, &cp});
      for (int64_t w0 = 0; w0 < n; w0 += cp.per_block) {
        const int64_t k = std::min(cp.per_block, n - w0);
        const size_t blk = static_cast<size_t>(w0 / cp.per_block);
        fn(Piece{l, which + 4, static_cast<size_t>(w0 * wpe), static_cast<size_t>(k * wpe),
                 blk < blocks.size() ? blocks[blk] + cp.entries : nullptr, &cp});
      }
    };
    comp(1, L.layers[l].comp, d[l].comp);
    comp(6, L.layers[l].index, d[l].index);
  }
}

// Word count of every snapshot vector at `pos` (each vector sized, values unset).
SessionSnapshot::Data shape_at(const SequenceState& seq, int64_t pos) {
  SessionSnapshot::Data shape;
  shape.layers.resize(seq.layout().layers.size());
  each_piece(seq, pos, [&](const Piece& p) {
    auto& v = part_of(shape, p.layer, p.which);
    v.resize(std::max(v.size(), p.offset + p.words));
  });
  return shape;
}

}  // namespace

SessionSnapshot Session::snapshot() const {
  const Impl& s = *impl_;
  std::lock_guard<std::mutex> lk(s.engine.mutex());
  auto d = std::make_shared<SessionSnapshot::Data>(shape_at(*s.seq, s.pos));
  d->model = s.model.get();
  d->pos = s.pos;
  d->cache_type = s.opt.cache_type;
  d->cache_window = s.opt.cache_window;
  if (s.has_last) d->last = s.last;
  Backend& be = s.engine.backend();
  each_piece(*s.seq, s.pos, [&](const Piece& p) {
    if (p.words > 0) be.download(part_of(*d, p.layer, p.which).data() + p.offset, p.ptr, p.words * 4);
  });
  return SessionSnapshot(std::move(d));
}

void Session::restore(const SessionSnapshot& snap) {
  Impl& s = *impl_;
  const auto& d = snap.data();
  if (d.model != s.model.get()) throw InvalidArgument("restore: the snapshot was taken from a session of another model");
  if (d.cache_type != s.opt.cache_type || (d.cache_type != CacheType::F32 && d.cache_window != s.opt.cache_window))
    throw InvalidArgument(std::string("restore: the snapshot holds a ") + cache_type_name(d.cache_type) + " cache; this session's is " +
                          cache_type_name(s.opt.cache_type) + (d.cache_window != s.opt.cache_window ? " (and the window rows differ)" : "") +
                          " (create the session with the snapshot's cache_type and cache_window)");
  if (d.pos > s.opt.max_context)
    throw CapacityError("restore: snapshot at position " + std::to_string(d.pos) + " exceeds this session's max_context " +
                        std::to_string(s.opt.max_context));
  Backend& be = s.engine.backend();
  {
    std::lock_guard<std::mutex> lk(s.engine.mutex());
    s.engine.grow_locked(*s.seq, d.pos, "restore");  // all or nothing, before anything is written
    each_piece(*s.seq, d.pos, [&](const Piece& p) {
      const std::vector<float>& v = part_of(d, p.layer, p.which);
      if (p.words > 0 && v.size() >= p.offset + p.words) be.upload(p.ptr, v.data() + p.offset, p.words * 4);
    });
    s.seq->shrink(s.seq->layout().blocks_for(d.pos));
  }
  s.pos = d.pos;
  s.has_last = !d.last.empty();
  if (s.has_last) s.last = d.last;
}

void Session::save_state(const std::filesystem::path& file, std::string_view metadata) const {
  write_state_file(file, snapshot().data(), *impl_->model, metadata);
}

std::string Session::load_state(const std::filesystem::path& file) {
  Impl& s = *impl_;
  std::string metadata;
  auto d = std::make_shared<SessionSnapshot::Data>(read_state_file(file, *s.model, s.opt.cache_type, s.opt.cache_window, [&](int64_t pos) {
    if (pos > s.opt.max_context)
      throw CapacityError("session state " + file.string() + " holds " + std::to_string(pos) + " tokens; this session's max_context is " +
                          std::to_string(s.opt.max_context) + " (raise SessionOptions::max_context)");
    const SessionSnapshot::Data shape = shape_at(*s.seq, pos);
    std::vector<uint64_t> sizes;
    SessionSnapshot::Data::each_vector(shape, [&](const std::vector<float>& v) { sizes.push_back(v.size()); });
    return sizes;
  }, &metadata));
  d->model = s.model.get();
  restore(SessionSnapshot(std::move(d)));
  return metadata;
}

std::unique_ptr<Session> Session::fork() const {
  const Impl& s = *impl_;
  auto out = std::make_unique<Session>(s.model, s.opt);
  Impl& o = *out->impl_;
  Backend& be = s.engine.backend();
  {
    std::lock_guard<std::mutex> lk(s.engine.mutex());
    s.engine.grow_locked(*o.seq, s.pos, "fork");
    // Backend to backend, piece by piece: the live state only (both have the same layout).
    std::vector<unsigned char*> dst;
    each_piece(*o.seq, s.pos, [&](const Piece& p) { dst.push_back(p.ptr); });
    size_t k = 0;
    each_piece(*s.seq, s.pos, [&](const Piece& p) {
      if (p.words > 0) be.copy(dst[k], p.ptr, p.words * 4);
      ++k;
    });
  }
  o.pos = s.pos;
  o.has_last = s.has_last;
  o.last = s.last;
  return out;
}

void SessionAccess::fill_random(Session& session, int64_t position, uint64_t seed) {
  Session::Impl& s = impl(session);
  if (position < 0 || position > s.opt.max_context)
    throw InvalidArgument("fill_random: position " + std::to_string(position) + " outside [0, max_context]");
  uint64_t z = seed * 0x9e3779b97f4a7c15ull + 1;
  auto next = [&] {
    z ^= z << 13;
    z ^= z >> 7;
    z ^= z << 17;
    return static_cast<float>(static_cast<int64_t>(z >> 40) - (1 << 23)) * (1.0f / (1 << 23));
  };
  std::vector<float> buf, row;
  std::vector<unsigned char> enc;
  Backend& be = s.engine.backend();
  std::lock_guard<std::mutex> lk(s.engine.mutex());
  s.engine.grow_locked(*s.seq, position, "fill_random");
  each_piece(*s.seq, position, [&](const Piece& p) {
    if (p.words == 0) return;
    if (p.entry == nullptr || p.entry->fmt == EntryFormat::F32) {
      buf.resize(p.words);
      for (float& v : buf) v = next();
      be.upload(p.ptr, buf.data(), p.words * 4);
      return;
    }
    const StateLayout::Comp& c = *p.entry;  // random values, stored in the entry format
    const size_t n = p.words * 4 / static_cast<size_t>(c.stride);
    row.resize(static_cast<size_t>(c.width));
    enc.resize(p.words * 4);
    for (size_t e = 0; e < n; ++e) {
      for (float& v : row) v = next();
      quant::encode_entry(c.fmt, row.data(), c.width, c.rope, enc.data() + e * static_cast<size_t>(c.stride));
    }
    be.upload(p.ptr, enc.data(), enc.size());
  });
  s.seq->shrink(s.seq->layout().blocks_for(position));
  s.pos = position;
  s.has_last = false;
}

// ---- generation ----
GenerateResult Session::generate(std::span<const int32_t> prompt, Sampler& sampler, const GenerateOptions& o) {
  if (o.max_tokens < 0) throw InvalidArgument("generate: max_tokens must be >= 0");
  if (!prompt.empty()) forward(prompt, Logits::Last);
  if (!impl_->has_last) throw InvalidArgument("generate: empty prompt and nothing fed yet (no logits to sample from)");
  GenerateResult r;
  // At most what the context can still hold (max_tokens may be "unlimited", 2^31 - 1).
  r.tokens.reserve(static_cast<size_t>(std::min<int64_t>(o.max_tokens, max_context() - position() + 1)));
  for (int i = 0; i < o.max_tokens; ++i) {
    if (i > 0 && impl_->cancel && impl_->cancel()) {  // a throw from it leaves the session consistent: nothing is mid-step
      r.reason = StopReason::Cancelled;
      return r;
    }
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
