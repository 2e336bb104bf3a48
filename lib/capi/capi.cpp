// The C ABI: handles wrap the C++ objects; every entry point converts exceptions to statuses.
#include "dsv4.h"

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <cstring>
#include <vector>
#include <new>
#include <string>

#include "dsv4/chat.hpp"
#include "dsv4/generate.hpp"
#include "dsv4/model.hpp"
#include "dsv4/tokenizer.hpp"
#include "util/log.hpp"

struct dsv4_model {
  std::shared_ptr<const dsv4::Model> m;
  std::string backend;
};
struct dsv4_session {
  std::unique_ptr<dsv4::Session> s;
};
struct dsv4_sampler {
  dsv4::Sampler s;
};
struct dsv4_snapshot {
  dsv4::SessionSnapshot snap;
};
struct dsv4_tokenizer {
  dsv4::Tokenizer tok;
};

namespace {

thread_local std::string g_last_error;

dsv4_status fail(dsv4_status st, const std::string& msg) {
  g_last_error = msg;
  return st;
}

dsv4_status status_of(dsv4::ErrorKind k) {
  switch (k) {
    case dsv4::ErrorKind::Io: return DSV4_ERR_IO;
    case dsv4::ErrorKind::Format: return DSV4_ERR_FORMAT;
    case dsv4::ErrorKind::Config: return DSV4_ERR_CONFIG;
    case dsv4::ErrorKind::Shape: return DSV4_ERR_SHAPE;
    case dsv4::ErrorKind::MissingTensor: return DSV4_ERR_MISSING_TENSOR;
    case dsv4::ErrorKind::InvalidArgument: return DSV4_ERR_INVALID_ARGUMENT;
    case dsv4::ErrorKind::Capacity: return DSV4_ERR_CAPACITY;
    case dsv4::ErrorKind::Unsupported: return DSV4_ERR_UNSUPPORTED;
    case dsv4::ErrorKind::Cancelled: return DSV4_ERR_CANCELLED;
  }
  return DSV4_ERR_INTERNAL;
}

// A status carried through a C++ stage back to the C caller.
struct StageFailure : dsv4::Error {
  dsv4_status st;
  StageFailure(dsv4_status s, const std::string& m) : dsv4::Error(dsv4::ErrorKind::InvalidArgument, m), st(s) {}
};

template <class F>
dsv4_status guard(F&& f) {
  try {
    f();
    g_last_error.clear();
    return DSV4_OK;
  } catch (const StageFailure& e) {
    return fail(e.st, e.what());
  } catch (const dsv4::Error& e) {
    return fail(status_of(e.kind()), e.what());
  } catch (const std::bad_alloc&) {
    return fail(DSV4_ERR_OUT_OF_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    return fail(DSV4_ERR_INTERNAL, std::string("internal error: ") + e.what());
  } catch (...) {
    return fail(DSV4_ERR_INTERNAL, "internal error: unknown exception");
  }
}

#define DSV4_REQUIRE(cond, what) \
  if (!(cond)) return fail(DSV4_ERR_INVALID_ARGUMENT, std::string(__func__) + ": " + (what))

class CStage final : public dsv4::SamplerStage {
 public:
  CStage(const dsv4_sampler_stage_vtable& vt, void* user) : vt_(vt), user_(user) {}
  ~CStage() override {
    if (vt_.destroy != nullptr) vt_.destroy(user_);
  }
  void apply(dsv4::Candidates& c, dsv4::SamplerContext&) override {
    dsv4_candidates v{c.ids(), c.logits(), c.size(), -1};
    const dsv4_status st = vt_.apply(user_, &v);
    if (static_cast<int>(st) < 0 || static_cast<int>(st) > static_cast<int>(DSV4_ERR_UNSUPPORTED))
      throw StageFailure(DSV4_ERR_INVALID_ARGUMENT, "custom sampler stage returned " + std::to_string(static_cast<int>(st)) + ", not a dsv4_status");
    if (st != DSV4_OK) throw StageFailure(st, "custom sampler stage returned " + std::string(dsv4_status_name(st)));
    if (v.size > c.size()) throw StageFailure(DSV4_ERR_INVALID_ARGUMENT, "custom sampler stage grew the candidate set");
    c.mark_reordered();
    c.truncate(v.size);
    if (v.selected >= 0) c.select(static_cast<size_t>(v.selected));
  }
  std::string name() const override { return "custom_c"; }

 private:
  dsv4_sampler_stage_vtable vt_;
  void* user_;
};

}  // namespace

extern "C" {

const char* dsv4_version(void) { return "0.1.0"; }
int dsv4_api_version(void) { return DSV4_API_VERSION; }
const char* dsv4_last_error(void) { return g_last_error.c_str(); }

const char* dsv4_status_name(dsv4_status s) {
  switch (s) {
    case DSV4_OK: return "DSV4_OK";
    case DSV4_ERR_INVALID_ARGUMENT: return "DSV4_ERR_INVALID_ARGUMENT";
    case DSV4_ERR_IO: return "DSV4_ERR_IO";
    case DSV4_ERR_FORMAT: return "DSV4_ERR_FORMAT";
    case DSV4_ERR_CONFIG: return "DSV4_ERR_CONFIG";
    case DSV4_ERR_SHAPE: return "DSV4_ERR_SHAPE";
    case DSV4_ERR_MISSING_TENSOR: return "DSV4_ERR_MISSING_TENSOR";
    case DSV4_ERR_CAPACITY: return "DSV4_ERR_CAPACITY";
    case DSV4_ERR_CANCELLED: return "DSV4_ERR_CANCELLED";
    case DSV4_ERR_OUT_OF_MEMORY: return "DSV4_ERR_OUT_OF_MEMORY";
    case DSV4_ERR_INTERNAL: return "DSV4_ERR_INTERNAL";
    case DSV4_ERR_UNSUPPORTED: return "DSV4_ERR_UNSUPPORTED";
  }
  return "DSV4_ERR_UNKNOWN";
}

void dsv4_set_log_callback(dsv4_log_fn cb, void* user_data) {
  if (cb == nullptr) {
    dsv4::set_log_callback({});
    return;
  }
  dsv4::set_log_callback([cb, user_data](dsv4::LogLevel level, std::string_view message) {
    const std::string text(message);  // NUL-terminated for C
    cb(static_cast<int>(level), text.c_str(), user_data);
  });
}

dsv4_status dsv4_set_log_level(int level) {
  DSV4_REQUIRE(level >= 0 && level <= 4, "log level must be 0 (debug) .. 3 (error) or 4 (off)");
  dsv4::set_log_level(static_cast<dsv4::LogLevel>(level));
  return DSV4_OK;
}

dsv4_load_params dsv4_load_default_params(void) {
  dsv4_load_params p;
  std::memset(&p, 0, sizeof p);
  p.struct_size = sizeof p;
  p.backend = "cpu";
  p.max_batch = 512;
  return p;
}

dsv4_status dsv4_model_load_ex(const char* dir, const dsv4_load_params* params, dsv4_model** out) {
  DSV4_REQUIRE(dir != nullptr && out != nullptr, "dir and out must not be NULL");
  dsv4_load_params p = dsv4_load_default_params();
  if (params != nullptr) {
    DSV4_REQUIRE(params->struct_size >= sizeof(size_t), "params->struct_size is not set (use dsv4_load_default_params())");
    std::memcpy(&p, params, std::min(params->struct_size, sizeof p));
  }
  DSV4_REQUIRE(p.threads >= 0 && p.device >= 0 && p.max_batch > 0, "threads and device must be >= 0, max_batch > 0");
  return guard([&] {
    dsv4::LoadOptions o;
    o.backend = p.backend != nullptr ? p.backend : "cpu";
    o.device = p.device;
    o.threads = p.threads;
    o.max_batch = p.max_batch;
    if (p.cpu_tier != nullptr) o.cpu_tier = p.cpu_tier;
    o.cache_pool_bytes = p.cache_pool_bytes;
    o.cache_block_tokens = p.cache_block_tokens;
    if (p.progress != nullptr)
      o.progress = [fn = p.progress, ud = p.user_data](double f, std::string_view stage) { fn(f, std::string(stage).c_str(), ud); };
    auto m = dsv4::Model::load(dir, o);
    *out = new dsv4_model{std::move(m), o.backend};
  });
}

dsv4_status dsv4_model_load(const char* dir, dsv4_model** out) { return dsv4_model_load_ex(dir, nullptr, out); }
const char* dsv4_model_backend(const dsv4_model* m) { return m ? m->backend.c_str() : ""; }
const char* dsv4_compiled_backends(void) {
  static const std::string list = [] {
    std::string s;
    for (const auto& b : dsv4::compiled_backends()) s += (s.empty() ? "" : ",") + b;
    return s;
  }();
  return list.c_str();
}
void dsv4_model_free(dsv4_model* model) { delete model; }
int64_t dsv4_model_vocab_size(const dsv4_model* m) { return m ? m->m->config().vocab_size : 0; }
int64_t dsv4_model_num_layers(const dsv4_model* m) { return m ? m->m->config().num_layers : 0; }
int64_t dsv4_model_bos_token(const dsv4_model* m) { return m ? m->m->config().bos_token_id : -1; }
int64_t dsv4_model_eos_token(const dsv4_model* m) { return m ? m->m->config().eos_token_id : -1; }

dsv4_session_params dsv4_session_default_params(void) {
  dsv4_session_params p;
  std::memset(&p, 0, sizeof p);
  p.struct_size = sizeof p;
  p.max_batch = 512;
  return p;
}

dsv4_status dsv4_session_create(const dsv4_model* model, const dsv4_session_params* params, dsv4_session** out) {
  DSV4_REQUIRE(model != nullptr && out != nullptr, "model and out must not be NULL");
  dsv4::SessionOptions o;
  if (params != nullptr) {
    DSV4_REQUIRE(params->struct_size >= sizeof(size_t), "params->struct_size is not set (use dsv4_session_default_params())");
    const dsv4_session_params d = dsv4_session_default_params();
    dsv4_session_params p = d;
    std::memcpy(&p, params, std::min(params->struct_size, sizeof p));
    DSV4_REQUIRE(p.threads >= 0 && p.max_context >= 0 && p.max_batch > 0, "threads/max_context must be >= 0, max_batch > 0");
    DSV4_REQUIRE(p.cache_type >= DSV4_CACHE_F32 && p.cache_type <= DSV4_CACHE_FP8,
                 "cache_type must be DSV4_CACHE_F32, DSV4_CACHE_BF16 or DSV4_CACHE_FP8");
    o.cache_type = static_cast<dsv4::CacheType>(p.cache_type);
    o.cache_window = p.cache_window != 0;
    o.threads = p.threads;
    o.max_context = p.max_context;
    o.max_batch = p.max_batch;
  }
  return guard([&] { *out = new dsv4_session{std::make_unique<dsv4::Session>(model->m, o)}; });
}
void dsv4_session_free(dsv4_session* s) { delete s; }

dsv4_status dsv4_session_forward(dsv4_session* s, const int32_t* tokens, size_t n, int all_logits, const float** logits,
                                 size_t* n_floats) {
  DSV4_REQUIRE(s != nullptr && logits != nullptr && n_floats != nullptr, "session, logits and n_floats must not be NULL");
  DSV4_REQUIRE(tokens != nullptr || n == 0, "tokens is NULL");
  return guard([&] {
    auto out = s->s->forward({tokens, n}, all_logits ? dsv4::Logits::All : dsv4::Logits::Last);
    *logits = out.data();
    *n_floats = out.size();
  });
}

dsv4_status dsv4_session_save_state(const dsv4_session* s, const char* path, const void* metadata, size_t metadata_len) {
  DSV4_REQUIRE(s != nullptr && path != nullptr, "session and path must not be NULL");
  DSV4_REQUIRE(metadata != nullptr || metadata_len == 0, "metadata is NULL");
  return guard([&] { s->s->save_state(path, {static_cast<const char*>(metadata), metadata_len}); });
}

dsv4_status dsv4_session_load_state(dsv4_session* s, const char* path) {
  DSV4_REQUIRE(s != nullptr && path != nullptr, "session and path must not be NULL");
  return guard([&] { (void)s->s->load_state(path); });
}

dsv4_status dsv4_session_set_cancel(dsv4_session* s, dsv4_cancel_fn cancel, void* user_data) {
  DSV4_REQUIRE(s != nullptr, "session must not be NULL");
  return guard([&] {
    if (cancel == nullptr)
      s->s->set_cancel_callback({});
    else
      s->s->set_cancel_callback([cancel, user_data] { return cancel(user_data) != 0; });
  });
}

dsv4_status dsv4_forward_batch(dsv4_batch_item* items, size_t n_items) {
  DSV4_REQUIRE(items != nullptr && n_items > 0, "items must not be NULL and n_items > 0");
  for (size_t i = 0; i < n_items; ++i) {
    DSV4_REQUIRE(items[i].session != nullptr, "item " + std::to_string(i) + ": session is NULL");
    DSV4_REQUIRE(items[i].tokens != nullptr || items[i].n == 0, "item " + std::to_string(i) + ": tokens is NULL");
  }
  // Grow-only per thread: a batched decode step allocates nothing once warm.
  thread_local std::vector<dsv4::BatchItem> batch;
  batch.clear();
  for (size_t i = 0; i < n_items; ++i) batch.push_back({items[i].session->s.get(), {items[i].tokens, items[i].n}});
  const dsv4_status st = guard([&] { dsv4::forward_batch(batch); });
  if (st != DSV4_OK) return st;
  for (size_t i = 0; i < n_items; ++i) {
    const auto l = items[i].session->s->last_logits();
    items[i].logits = l.data();
    items[i].n_floats = l.size();
  }
  return DSV4_OK;
}

dsv4_status dsv4_session_reset(dsv4_session* s) {
  DSV4_REQUIRE(s != nullptr, "session is NULL");
  return guard([&] { s->s->reset(); });
}
int64_t dsv4_session_position(const dsv4_session* s) { return s ? s->s->position() : -1; }
int64_t dsv4_session_max_context(const dsv4_session* s) { return s ? s->s->max_context() : -1; }
uint64_t dsv4_session_memory_bytes(const dsv4_session* s) { return s ? s->s->memory().total() : 0; }

dsv4_status dsv4_session_state_bytes(const dsv4_session* s, uint64_t* committed, uint64_t* max_bytes) {
  DSV4_REQUIRE(s != nullptr, "session must not be NULL");
  const dsv4::SessionMemory m = s->s->memory();
  if (committed != nullptr) *committed = m.state_bytes;
  if (max_bytes != nullptr) *max_bytes = m.state_max_bytes;
  return DSV4_OK;
}

dsv4_status dsv4_model_cache_pool(const dsv4_model* m, uint64_t* in_use, uint64_t* free_bytes, uint64_t* limit) {
  DSV4_REQUIRE(m != nullptr, "model must not be NULL");
  const dsv4::CachePoolStats p = m->m->cache_pool();
  if (in_use != nullptr) *in_use = p.in_use_bytes;
  if (free_bytes != nullptr) *free_bytes = p.free_bytes;
  if (limit != nullptr) *limit = p.limit_bytes;
  return DSV4_OK;
}

dsv4_status dsv4_session_last_logits(const dsv4_session* s, const float** logits, size_t* n_floats) {
  DSV4_REQUIRE(s != nullptr && logits != nullptr && n_floats != nullptr, "arguments must not be NULL");
  auto l = s->s->last_logits();
  *logits = l.empty() ? nullptr : l.data();
  *n_floats = l.size();
  return DSV4_OK;
}

dsv4_status dsv4_session_snapshot(const dsv4_session* s, dsv4_snapshot** out) {
  DSV4_REQUIRE(s != nullptr && out != nullptr, "session and out must not be NULL");
  return guard([&] { *out = new dsv4_snapshot{s->s->snapshot()}; });
}
dsv4_status dsv4_session_restore(dsv4_session* s, const dsv4_snapshot* snap) {
  DSV4_REQUIRE(s != nullptr && snap != nullptr, "session and snapshot must not be NULL");
  return guard([&] { s->s->restore(snap->snap); });
}
dsv4_status dsv4_session_fork(const dsv4_session* s, dsv4_session** out) {
  DSV4_REQUIRE(s != nullptr && out != nullptr, "session and out must not be NULL");
  return guard([&] { *out = new dsv4_session{s->s->fork()}; });
}
int64_t dsv4_snapshot_position(const dsv4_snapshot* snap) { return snap ? snap->snap.position() : -1; }
void dsv4_snapshot_free(dsv4_snapshot* snap) { delete snap; }

}  // extern "C"

namespace {
// dsv4_sampler_params and dsv4::SamplerParams share field names: one list maps either way.
template <class From, class To>
void copy_sampler_fields(const From& a, To& b) {
  b.seed = a.seed;
  b.temperature = a.temperature;
  b.top_k = a.top_k;
  b.top_p = a.top_p;
  b.min_p = a.min_p;
  b.repetition_penalty = a.repetition_penalty;
  b.presence_penalty = a.presence_penalty;
  b.frequency_penalty = a.frequency_penalty;
  b.penalty_window = a.penalty_window;
}
}  // namespace

extern "C" {

dsv4_sampler_params dsv4_sampler_default_params(void) {
  dsv4_sampler_params p;
  std::memset(&p, 0, sizeof p);
  p.struct_size = sizeof p;
  copy_sampler_fields(dsv4::SamplerParams{}, p);
  return p;
}

dsv4_status dsv4_sampler_create(const dsv4_sampler_params* params, dsv4_sampler** out) {
  DSV4_REQUIRE(params != nullptr && out != nullptr, "params and out must not be NULL");
  DSV4_REQUIRE(params->struct_size >= sizeof(size_t), "params->struct_size is not set (use dsv4_sampler_default_params())");
  dsv4_sampler_params p = dsv4_sampler_default_params();
  std::memcpy(&p, params, std::min(params->struct_size, sizeof p));
  return guard([&] {
    dsv4::SamplerParams sp;
    copy_sampler_fields(p, sp);
    *out = new dsv4_sampler{dsv4::Sampler::from_params(sp)};
  });
}

dsv4_status dsv4_sampler_create_empty(uint64_t seed, dsv4_sampler** out) {
  DSV4_REQUIRE(out != nullptr, "out must not be NULL");
  return guard([&] { *out = new dsv4_sampler{dsv4::Sampler(seed)}; });
}
void dsv4_sampler_free(dsv4_sampler* s) { delete s; }

dsv4_status dsv4_sampler_add_stage(dsv4_sampler* s, dsv4_stage_kind kind, float value) {
  DSV4_REQUIRE(s != nullptr, "sampler is NULL");
  return guard([&] {
    switch (kind) {
      case DSV4_STAGE_TEMPERATURE: s->s.add(dsv4::stages::temperature(value)); break;
      case DSV4_STAGE_TOP_K: s->s.add(dsv4::stages::top_k(static_cast<int>(value))); break;
      case DSV4_STAGE_TOP_P: s->s.add(dsv4::stages::top_p(value)); break;
      case DSV4_STAGE_MIN_P: s->s.add(dsv4::stages::min_p(value)); break;
      case DSV4_STAGE_GREEDY: s->s.add(dsv4::stages::greedy()); break;
      case DSV4_STAGE_DIST: s->s.add(dsv4::stages::dist()); break;
      default: throw dsv4::InvalidArgument("dsv4_sampler_add_stage: unknown stage kind " + std::to_string(kind));
    }
  });
}

dsv4_status dsv4_sampler_add_custom_stage(dsv4_sampler* s, const dsv4_sampler_stage_vtable* vt, void* user_data) {
  DSV4_REQUIRE(s != nullptr && vt != nullptr && vt->apply != nullptr, "sampler, vtable and vtable->apply must not be NULL");
  DSV4_REQUIRE(vt->struct_size >= offsetof(dsv4_sampler_stage_vtable, destroy), "vtable->struct_size is not set");
  dsv4_sampler_stage_vtable copy{};
  std::memcpy(&copy, vt, std::min(vt->struct_size, sizeof copy));
  return guard([&] { s->s.add(std::make_unique<CStage>(copy, user_data)); });
}

dsv4_status dsv4_sampler_sample(dsv4_sampler* s, const float* logits, size_t n, int32_t* token) {
  DSV4_REQUIRE(s != nullptr && logits != nullptr && token != nullptr && n > 0, "sampler, logits, token must be set and n > 0");
  return guard([&] { *token = s->s.sample({logits, n}); });
}
dsv4_status dsv4_sampler_accept(dsv4_sampler* s, int32_t token) {
  DSV4_REQUIRE(s != nullptr, "sampler is NULL");
  return guard([&] { s->s.accept(token); });
}
dsv4_status dsv4_sampler_reset(dsv4_sampler* s, uint64_t seed) {
  DSV4_REQUIRE(s != nullptr, "sampler is NULL");
  return guard([&] { s->s.reset(seed); });
}

dsv4_generate_params dsv4_generate_default_params(void) {
  dsv4_generate_params p;
  std::memset(&p, 0, sizeof p);
  p.struct_size = sizeof p;
  p.max_tokens = 256;
  return p;
}

dsv4_status dsv4_session_generate(dsv4_session* s, dsv4_sampler* smp, const int32_t* prompt, size_t n,
                                  const dsv4_generate_params* params, int32_t* out, size_t capacity, size_t* n_out) {
  DSV4_REQUIRE(s != nullptr && smp != nullptr && out != nullptr && n_out != nullptr, "session, sampler, out, n_out must not be NULL");
  DSV4_REQUIRE(prompt != nullptr || n == 0, "prompt is NULL");
  dsv4_generate_params p = dsv4_generate_default_params();
  if (params != nullptr) {
    DSV4_REQUIRE(params->struct_size >= sizeof(size_t), "params->struct_size is not set");
    std::memcpy(&p, params, std::min(params->struct_size, sizeof p));
  }
  DSV4_REQUIRE(p.max_tokens >= 0 && static_cast<size_t>(p.max_tokens) <= capacity, "max_tokens must be in [0, capacity]");
  DSV4_REQUIRE(p.stop_tokens != nullptr || p.n_stop_tokens == 0, "stop_tokens is NULL");
  dsv4::GenerateResult r;
  const dsv4_status st = guard([&] {
    dsv4::GenerateOptions o;
    o.max_tokens = p.max_tokens;
    o.stop_tokens.assign(p.stop_tokens, p.stop_tokens + p.n_stop_tokens);
    if (p.on_token != nullptr) o.on_token = [&](int32_t t) { return p.on_token(t, p.user_data) != 0; };
    r = s->s->generate({prompt, n}, smp->s, o);
  });
  if (st != DSV4_OK) return st;
  std::copy(r.tokens.begin(), r.tokens.end(), out);
  *n_out = r.tokens.size();
  if (r.reason == dsv4::StopReason::Cancelled) return fail(DSV4_ERR_CANCELLED, "generation cancelled (by on_token or the session's cancel callback)");
  return DSV4_OK;
}

dsv4_status dsv4_tokenizer_load(const char* path, dsv4_tokenizer** out) {
  DSV4_REQUIRE(path != nullptr && out != nullptr, "path and out must not be NULL");
  return guard([&] {
    std::filesystem::path p(path);
    std::error_code ec;
    if (std::filesystem::is_directory(p, ec)) p /= "tokenizer.json";
    *out = new dsv4_tokenizer{dsv4::Tokenizer::load(p)};
  });
}
void dsv4_tokenizer_free(dsv4_tokenizer* t) { delete t; }

}  // extern "C"

namespace {
template <class T>
dsv4_status copy_out(const std::vector<T>& v, T* out, size_t capacity, size_t* n_out) {
  *n_out = v.size();
  if (v.size() > capacity) return fail(DSV4_ERR_CAPACITY, "the output needs " + std::to_string(v.size()) + " elements, capacity is " + std::to_string(capacity));
  if (!v.empty()) std::copy(v.begin(), v.end(), out);
  g_last_error.clear();
  return DSV4_OK;
}
dsv4::ThinkMode think_of(dsv4_think t) {
  switch (t) {
    case DSV4_THINK_NONE: return dsv4::ThinkMode::None;
    case DSV4_THINK_HIGH: return dsv4::ThinkMode::High;
    case DSV4_THINK_MAX: return dsv4::ThinkMode::Max;
  }
  throw dsv4::InvalidArgument("think must be DSV4_THINK_NONE, _HIGH or _MAX, got " + std::to_string(static_cast<int>(t)));
}
std::vector<dsv4::ChatMessage> chat_of(const dsv4_chat_message* msgs, size_t n) {
  std::vector<dsv4::ChatMessage> v;
  for (size_t i = 0; i < n; ++i) {
    if (msgs[i].role == nullptr || msgs[i].content == nullptr)
      throw dsv4::InvalidArgument("message " + std::to_string(i) + ": role and content must not be NULL");
    v.push_back({msgs[i].role, msgs[i].content, msgs[i].reasoning != nullptr ? msgs[i].reasoning : ""});
  }
  return v;
}
}  // namespace

extern "C" {

dsv4_status dsv4_tokenize(const dsv4_tokenizer* t, const char* text, size_t len, int parse_special, int32_t* out, size_t capacity,
                          size_t* n_out) {
  DSV4_REQUIRE(t != nullptr && n_out != nullptr && (text != nullptr || len == 0) && (out != nullptr || capacity == 0),
               "tokenizer, n_out (and text, out when their sizes are not 0) must not be NULL");
  std::vector<int32_t> ids;
  const dsv4_status st = guard([&] { ids = t->tok.encode(std::string_view(text, len), parse_special != 0); });
  if (st != DSV4_OK) return st;
  return copy_out(ids, out, capacity, n_out);
}

dsv4_status dsv4_detokenize(const dsv4_tokenizer* t, const int32_t* ids, size_t n, char* out, size_t capacity, size_t* n_out) {
  DSV4_REQUIRE(t != nullptr && n_out != nullptr && (ids != nullptr || n == 0) && (out != nullptr || capacity == 0),
               "tokenizer, n_out (and ids, out when their sizes are not 0) must not be NULL");
  std::string bytes;
  const dsv4_status st = guard([&] { bytes = t->tok.decode({ids, n}); });
  if (st != DSV4_OK) return st;
  return copy_out(std::vector<char>(bytes.begin(), bytes.end()), out, capacity, n_out);
}

dsv4_status dsv4_chat_encode(const dsv4_tokenizer* t, const dsv4_chat_message* msgs, size_t n, dsv4_think think, int32_t* out,
                             size_t capacity, size_t* n_out) {
  DSV4_REQUIRE(t != nullptr && msgs != nullptr && n > 0 && n_out != nullptr && (out != nullptr || capacity == 0),
               "tokenizer, msgs (n > 0) and n_out must not be NULL");
  std::vector<int32_t> ids;
  const dsv4_status st = guard([&] { ids = dsv4::ChatFormat(t->tok).encode(chat_of(msgs, n), think_of(think)); });
  if (st != DSV4_OK) return st;
  return copy_out(ids, out, capacity, n_out);
}

dsv4_text_params dsv4_text_default_params(void) {
  dsv4_text_params p;
  std::memset(&p, 0, sizeof p);
  p.struct_size = sizeof p;
  p.sampling = dsv4_sampler_default_params();
  p.max_tokens = 256;
  p.think = DSV4_THINK_NONE;
  return p;
}

void dsv4_text_result_free(dsv4_text_result* r) {
  if (r == nullptr) return;
  std::free(r->content);
  std::free(r->reasoning);
  r->content = r->reasoning = nullptr;
}

}  // extern "C"

namespace {
char* dup(const std::string& s) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (p == nullptr) throw std::bad_alloc();
  std::memcpy(p, s.data(), s.size());
  p[s.size()] = '\0';
  return p;
}

dsv4_status run_text(const dsv4_text_params* params, dsv4_text_result* out,
                     const std::function<dsv4::GenerationResult(const dsv4::GenerationParams&, const std::function<bool(const dsv4::GenerationDelta&)>&)>& run) {
  dsv4_text_params p = dsv4_text_default_params();
  if (params != nullptr) {
    if (params->struct_size < sizeof(size_t)) return fail(DSV4_ERR_INVALID_ARGUMENT, "params->struct_size is not set (use dsv4_text_default_params())");
    std::memcpy(&p, params, std::min(params->struct_size, sizeof p));
  }
  if (p.stop == nullptr && p.n_stop != 0) return fail(DSV4_ERR_INVALID_ARGUMENT, "stop is NULL but n_stop is not 0");
  return guard([&] {
    dsv4::GenerationParams gp;
    copy_sampler_fields(p.sampling, gp.sampling);
    gp.max_tokens = p.max_tokens;
    for (size_t i = 0; i < p.n_stop; ++i) {
      if (p.stop[i] == nullptr) throw dsv4::InvalidArgument("stop string " + std::to_string(i) + " is NULL");
      gp.stop.emplace_back(p.stop[i]);
    }
    std::function<bool(const dsv4::GenerationDelta&)> cb;
    if (p.on_text != nullptr)
      cb = [&](const dsv4::GenerationDelta& d) {
        return p.on_text(d.content.data(), d.content.size(), d.reasoning.data(), d.reasoning.size(), p.user_data) != 0;
      };
    const dsv4::GenerationResult r = run(gp, cb);
    char* c = dup(r.content);
    char* rs = nullptr;
    try {
      rs = dup(r.reasoning);
    } catch (...) {
      std::free(c);
      throw;
    }
    out->content = c;
    out->reasoning = rs;
    out->prompt_tokens = r.prompt_tokens;
    out->completion_tokens = r.completion_tokens;
    out->finish = r.finish == dsv4::FinishReason::Stop ? DSV4_FINISH_STOP : r.finish == dsv4::FinishReason::Length ? DSV4_FINISH_LENGTH
                  : r.finish == dsv4::FinishReason::Cancelled ? DSV4_FINISH_CANCELLED : DSV4_FINISH_CONTEXT_FULL;
  });
}
}  // namespace

extern "C" {

dsv4_status dsv4_generate_chat(dsv4_session* s, const dsv4_tokenizer* t, const dsv4_chat_message* msgs, size_t n,
                               const dsv4_text_params* params, dsv4_text_result* out) {
  DSV4_REQUIRE(s != nullptr && t != nullptr && msgs != nullptr && n > 0 && out != nullptr, "session, tokenizer, msgs (n > 0) and out must not be NULL");
  return run_text(params, out, [&](const dsv4::GenerationParams& gp, const std::function<bool(const dsv4::GenerationDelta&)>& cb) {
    const dsv4_think th = params != nullptr && params->struct_size >= offsetof(dsv4_text_params, think) + sizeof(dsv4_think) ? params->think : DSV4_THINK_NONE;
    return dsv4::generate_chat(*s->s, t->tok, chat_of(msgs, n), think_of(th), gp, cb);
  });
}

dsv4_status dsv4_generate_text(dsv4_session* s, const dsv4_tokenizer* t, const char* prompt, const dsv4_text_params* params,
                               dsv4_text_result* out) {
  DSV4_REQUIRE(s != nullptr && t != nullptr && prompt != nullptr && out != nullptr, "session, tokenizer, prompt and out must not be NULL");
  return run_text(params, out, [&](const dsv4::GenerationParams& gp, const std::function<bool(const dsv4::GenerationDelta&)>& cb) {
    return dsv4::generate_text(*s->s, t->tok, prompt, gp, cb);
  });
}

}  // extern "C"
