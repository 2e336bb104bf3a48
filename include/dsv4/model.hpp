// dsv4/model.hpp: load a DeepSeek-V4 checkpoint (Model) and run one sequence on it (Session).
//
//   auto model = dsv4::Model::load("DeepSeek-V4-Flash");          // mmaps, checks every tensor
//   dsv4::Session session(model);                                  // one sequence's caches
//   std::vector<int32_t> prompt = {0, 1234, 5678};
//   auto logits = session.forward(prompt);                         // [vocab] for the last token
//   for (int i = 0; i < 32; ++i) {
//     int32_t next = argmax(logits);                               // your sampler here
//     logits = session.forward({&next, 1});
//   }
//
// Ownership and lifetimes: a Model is immutable after load and is shared through
// std::shared_ptr; any number of Sessions on any threads may use it concurrently. Each Session
// keeps the Model alive. A model is loaded onto one backend (LoadOptions: cpu, or cuda where
// built); that backend instance, its thread pool and its step buffers are shared by all the
// model's sessions, whose steps take turns on it (sessions on N threads never start N pools).
// Each Session owns its sequence state (caches) in the backend's memory: a fixed part from its
// creation, then cache blocks taken from the model's pool (shared by all its sessions, one budget:
// LoadOptions::cache_pool_bytes) as its position advances, and given back by reset() or its
// destruction. forward() takes the blocks a call needs before the first step: a CapacityError
// when the pool is spent, the session unchanged.
// A Session is not thread-safe: one call at a time. The span returned by forward() points into
// the session and stays valid until the next forward(), forward_batch() or reset().
//
// Serving several sequences: forward_batch() feeds tokens of several sessions in shared steps, so
// a decode step of B sessions reads each weight once.
//
// Errors: every failure throws a dsv4::Error subclass (dsv4/error.hpp). forward() validates its
// input (empty, token id outside [0, vocab), context capacity) before touching any state, so a
// rejected call leaves the session exactly as it was.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dsv4/backend.hpp"
#include "dsv4/config.hpp"
#include "dsv4/error.hpp"
#include "dsv4/export.hpp"
#include "dsv4/sampler.hpp"

namespace dsv4 {

struct ModelStats {
  int64_t parameters = 0;                      // model parameters (MTP block excluded)
  int64_t mtp_parameters = 0;                  // parameters of the MTP block(s), loaded but unused
  std::map<std::string, uint64_t> bytes_by_dtype;  // stored bytes per safetensors dtype (all tensors)
  std::map<std::string, int64_t> tensors_by_dtype;
  uint64_t file_bytes = 0;                     // size of the mapped files
  std::string layout;                          // "published" or "huggingface"
};

struct CachePoolStats {
  uint64_t limit_bytes = 0;   // the budget (UINT64_MAX: none)
  uint64_t in_use_bytes = 0;  // blocks held by sessions
  uint64_t free_bytes = 0;    // blocks kept for reuse (allocated, held by no session)
  uint64_t peak_bytes = 0;    // most ever allocated (in use + free)
  int64_t block_tokens = 0;   // positions per block
};

class DSV4_API Model {
 public:
  // Loads config.json and the safetensors (single or sharded) of `dir`; binds and checks every
  // tensor, then binds the weights to the backend of `options` (CPU: views into the mapping, no
  // copy). Weights stay in their stored dtype. Throws IoError, FormatError, ConfigError,
  // ShapeError, MissingTensorError, or UnsupportedError for a backend / device this build or
  // machine does not have.
  static std::shared_ptr<const Model> load(const std::filesystem::path& dir);
  static std::shared_ptr<const Model> load(const std::filesystem::path& dir, const LoadOptions& options);
  ~Model();

  const ModelConfig& config() const;
  ModelStats stats() const;
  // Bytes a Session's state holds at `context` tokens in `type` (its fixed part and the cache
  // blocks that context needs; per-call scratch excluded).
  uint64_t session_state_bytes(int64_t context, CacheType type = CacheType::F32) const;
  // The cache pool shared by this model's sessions (LoadOptions::cache_pool_bytes).
  CachePoolStats cache_pool() const;
  // Returns the pool's free blocks to the backend (the next session that grows allocates anew).
  void trim_cache_pool() const;
  // The backend this model is bound to: what it is, what it supports, what memory it holds.
  BackendInfo backend_info() const;
  const LoadOptions& load_options() const;

  struct Impl;

 private:
  friend struct ModelAccess;  // library internals
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct SessionOptions {
  int threads = 0;            // most of the model's worker threads this session's steps use; 0 = all
                              // (the pool itself is sized by LoadOptions::threads)
  int64_t max_context = 0;    // most tokens the session may hold; 0 = the model's max_position_embeddings (16384 if unset).
                              // Memory grows with the position, a block at a time, not for max_context up front.
  CacheType cache_type = CacheType::F32;  // how compressed entries and indexer keys are stored
  // Store the sliding-window rows in cache_type too (DeepSeek's FP8 layout for every cached row;
  // V4-Flash: 11 MiB of f32 window per session -> 3 MiB in fp8). Off by default: the window is
  // read by every layer and rounding it costs accuracy (README: Memory).
  bool cache_window = false;
  int64_t max_batch = 512;    // longest run of this session's tokens in one step (also capped by LoadOptions::max_batch)
  bool profile = false;       // accumulate time per op family (Session::profile())
};

enum class Logits { Last, All };

// A deep copy of a session's state (caches, position, last logits). Immutable and cheap to
// copy (shared); restoring it into a session copies the data again. Valid for sessions of the
// same Model whose max_context is at least its position.
class DSV4_API SessionSnapshot {
 public:
  int64_t position() const;
  uint64_t bytes() const;
  struct Data;
  explicit SessionSnapshot(std::shared_ptr<const Data> d) : d_(std::move(d)) {}
  const Data& data() const { return *d_; }

 private:
  std::shared_ptr<const Data> d_;
};

enum class StopReason { MaxTokens, StopToken, StopPredicate, Cancelled, ContextFull };

struct GenerateOptions {
  int max_tokens = 256;
  std::vector<int32_t> stop_tokens;  // generation ends after producing one of these
  // Called with all tokens generated so far; return true to stop.
  std::function<bool(std::span<const int32_t> generated)> stop_when;
  // Streaming: called with each new token; return false to cancel.
  std::function<bool(int32_t token)> on_token;
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // every sampled token, the stop token included
  StopReason reason = StopReason::MaxTokens;
};

struct SessionMemory {
  uint64_t state_bytes = 0;    // this session's state now: window rows, compressor state, and the cache blocks
                               // (compressed entries, indexer keys) it holds from the model's pool
  uint64_t state_max_bytes = 0;  // what the state would hold at max_context (not allocated; an upper bound)
  uint64_t scratch_bytes = 0;  // step buffers and per-thread scratch of the model's backend, shared by all its
                               // sessions (grows to the largest step, then fixed)
  uint64_t logits_bytes = 0;   // this session's host logits
  uint64_t total() const { return state_bytes + scratch_bytes + logits_bytes; }
};

class DSV4_API Session {
 public:
  explicit Session(std::shared_ptr<const Model> model, SessionOptions options = {});
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Feeds `tokens` at positions position() … position()+n-1 and returns their logits:
  // Logits::Last -> [vocab] for the last token; Logits::All -> [n, vocab] row-major.
  // Any split of a sequence into calls gives the same logits to rounding.
  std::span<const float> forward(std::span<const int32_t> tokens, Logits which = Logits::Last);
  // Forgets the sequence; keeps allocations.
  void reset();

  // Logits of the last token fed so far ([vocab]); empty before the first forward().
  std::span<const float> last_logits() const;

  // Feeds `prompt` (may be empty to continue from last_logits()), then samples and feeds
  // tokens until a stop condition. Each sampled token is fed before the next one is sampled,
  // except the last returned one: the session ends positioned after it is *not* yet fed, so
  // the caller may feed it (or anything else) next. Cancellation and errors leave the session
  // usable and consistent with position().
  GenerateResult generate(std::span<const int32_t> prompt, Sampler& sampler, const GenerateOptions& options = {});

  // Explicit copies of the state: snapshot() copies out, restore() copies in (the session's own
  // options are kept), fork() makes a new independent session with a copy of this state.
  SessionSnapshot snapshot() const;
  void restore(const SessionSnapshot& snap);
  std::unique_ptr<Session> fork() const;

  // The state on disk: save_state() writes position, caches and last logits to `file` (a
  // versioned little-endian format with a fingerprint of the model's weights and a checksum;
  // written to file.tmp, then renamed). load_state() reads such a file into this session, of the
  // same model, with max_context at least its position. A missing, truncated, corrupted or
  // foreign file throws IoError / FormatError / InvalidArgument (another model) / CapacityError,
  // and the session is unchanged. `metadata` is stored with the state, opaque to the library, and
  // returned by load_state() (e.g. the token ids the state holds, to reuse a prompt prefix).
  void save_state(const std::filesystem::path& file, std::string_view metadata = {}) const;
  std::string load_state(const std::filesystem::path& file);

  int64_t position() const;      // tokens consumed so far
  int64_t max_context() const;
  const SessionOptions& options() const;
  int64_t vocab_size() const;
  SessionMemory memory() const;
  const Model& model() const;

  // Cancellation: `cancel` is asked between the steps of forward() (one step carries at most
  // max_batch of the call's tokens) and before each token of generate(); when it returns true,
  // forward() throws CancelledError and generate() returns with StopReason::Cancelled. The tokens
  // fed before that stay fed: position() says how many, and last_logits() holds the logits of
  // the last one, so the session is consistent and usable (a long prompt can be resumed by
  // feeding the rest). Called on the thread that made the call. An exception it throws stops the
  // call the same way and is rethrown instead of CancelledError. Empty: no checks (the default).
  // forward_batch() does not ask it.
  using CancelCallback = std::function<bool()>;
  void set_cancel_callback(CancelCallback cancel);

  // Debugging aid: called with (stage, data, rows, width). Stage 0 = embedding streams
  // [rows, hc_mult·D]; stage k = streams after layer k-1; stage num_layers+1 = the final
  // normalised hidden state [rows, D] (only for the rows whose logits are computed).
  using Observer = std::function<void(int stage, const float* data, int64_t rows, int64_t width)>;
  void set_observer(Observer obs);

  // Seconds spent per op family since creation or the last reset (SessionOptions::profile).
  std::vector<std::pair<std::string, double>> profile() const;
  void clear_profile();
  std::vector<double> layer_profile() const;  // seconds per layer (same accounting)

  struct Impl;

 private:
  friend struct SessionAccess;  // library internals
  std::unique_ptr<Impl> impl_;
};

// One session's tokens in a batched call.
struct BatchItem {
  Session* session = nullptr;
  std::span<const int32_t> tokens;
};

// Feeds each item's tokens to its session (at that session's position) in steps shared by all
// items, so decode of B sessions reads each weight once. Afterwards each session's
// last_logits() holds the logits of its last token, exactly as if it had been fed alone (to
// rounding: see the README for which parts are bitwise equal). The sessions must be distinct and
// of the same model; every item needs at least one token. All items are validated before any
// state changes: on error nothing has changed. Each session is used by this call only (the
// one-call-at-a-time rule of Session applies to every session in the batch).
DSV4_API void forward_batch(std::span<const BatchItem> items);

}  // namespace dsv4
