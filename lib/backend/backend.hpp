// The backend interface: memory, weight binding and every op of the forward pass.
//
// The forward pass (lib/model/forward.cpp) is written once against this interface. A backend owns
// its memory: activations, scratch, step buffers and every sequence's state are allocated with
// alloc() and are *backend memory* — the forward pass computes addresses and passes them on, but
// never reads or writes through them. Host ↔ backend traffic is explicit: upload() (the step's
// ids and positions, a restored snapshot) and download() (logits, a snapshot).
//
// Conventions: row-major fp32 activations; `ld*` are row strides in elements; weights are views
// (MatW, FVec) into the memory bind_weights() returned, in their stored format, decoded inside the
// op. Per-step quantities (ids, positions, which sequence a row belongs to, where its state lives)
// come from the step buffer (StepRef); an op's arguments other than the row count S never change
// between two single-token decode steps. Ops never allocate per call beyond grow-only scratch they
// own, and may run multi-threaded. One backend instance serves every session of a model: the
// caller (the engine) runs one step at a time on it.
//
// The CPU backend (backend/cpu) is the complete implementation and the numerical oracle.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "backend/step.hpp"
#include "dsv4/backend.hpp"
#include "dsv4/config.hpp"
#include "model/weights.hpp"

namespace dsv4 {

struct AttentionArgs {
  int64_t S = 0;              // rows of the step
  int64_t H = 0, hd = 0, W = 0;
  StepRef step;
  int64_t layer = 0;          // whose state (ring, compressed entries) each row's sequence reads
  const float* q = nullptr;   // [S, H·hd], already normalised and rotated
  const float* kv = nullptr;  // [S, hd] this step's window rows, rotated (not yet in the ring)
  bool entries = false;       // read the layer's compressed entries (CSA / HCA)
  int64_t ratio = 0;          // m, for the visibility rule w < (t+1)/m
  const int32_t* select = nullptr;  // [S, topk] selected entries per row (CSA), -1 = none; null = all visible (HCA)
  int64_t topk = 0;
  const float* sink = nullptr;  // [H]
  float* out = nullptr;       // [S, H·hd]
};

struct IndexerArgs {
  int64_t S = 0, ratio = 0, nI = 0, ihd = 0, topk = 0;
  StepRef step;
  int64_t layer = 0;            // keys: the layer's indexer entries of each row's sequence
  const float* q = nullptr;     // [S, nI·ihd] rotated
  const float* wts = nullptr;   // [S, nI] head weights, multiplied by wts_scale in the op
  float wts_scale = 1.0f;
  int32_t* select = nullptr;    // [S, topk] out
};

// One product of a batch handed to Backend::linear_multi: y = x · W[r0 … r0+n)ᵀ over `rows`
// activation rows (0: the S of the call).
struct LinearTask {
  const MatW* w;
  int64_t r0, n;
  const float* x;
  int64_t ldx;
  float* y;
  int64_t ldy;
  int64_t rows = 0;
};

// Which compressor of a layer's state an op works on.
enum class CompressorSlot : uint8_t { Attention, Indexer };

// The op calls of one step (after its upload, before its download), as a callable that does not
// allocate: fn(ctx).
struct StepBody {
  void (*fn)(void*) = nullptr;
  void* ctx = nullptr;
  void operator()() const { fn(ctx); }
};

// Work counters for benchmarks (not reset by steps; reset_stats() clears them).
struct OpStats {
  uint64_t expert_evals = 0;     // (token, routed expert) products
  uint64_t experts_touched = 0;  // distinct routed experts per MoE call, summed over calls
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual BackendInfo info() const = 0;
  virtual bool supports(WFormat fmt) const = 0;

  // ---- memory ----
  // `bytes` of zero-filled backend memory, 64-byte aligned, at a fixed address until release().
  // Throws CapacityError when the backend's memory cannot hold it.
  virtual void* alloc(size_t bytes) = 0;
  virtual void release(void* p) noexcept = 0;
  virtual void upload(void* dst, const void* host_src, size_t bytes) = 0;
  virtual void download(void* host_dst, const void* src, size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;  // within backend memory
  // Binds a model's weights once: returns the views the ops read. A host backend returns the
  // host views (zero copy); a device backend uploads every buffer once and returns device views.
  virtual ModelWeights bind_weights(const ModelWeights& host, const ModelConfig& cfg) = 0;
  // Bytes of op-internal scratch currently held.
  virtual uint64_t scratch_bytes() const = 0;
  // Most worker threads the following ops may use (0: all the backend has). Host setting.
  virtual void set_thread_limit(int) {}
  // Sizes op-internal scratch for sequences of up to `max_context` tokens, so that no decode
  // step allocates later (called when a session is created; grow only).
  virtual void reserve(const ModelConfig&, int64_t /*max_context*/) {}
  virtual OpStats stats() const { return {}; }
  virtual void reset_stats() {}
  // Benchmarks: the multiply-add throughput of this backend's widest vector FMA over all its
  // threads (independent accumulator chains, no memory traffic), in GFLOP/s; 0 if unknown.
  virtual double fma_peak_gflops() { return 0; }
  // Runs one step's op calls. `key` (non-zero) promises that every call with that key issues the
  // same op calls with the same arguments, all that differs being the data in backend memory (the
  // step buffer, the sequences' state): a backend may then record the calls once and replay the
  // recording (CUDA: a captured graph) instead. key 0: run them, never record. Default: run them.
  virtual void run_step(uint64_t /*key*/, const StepBody& body) { body(); }
  // Waits until every op issued so far has finished (a device backend's queue); profiling calls it
  // between ops. Host backends finish each op before returning: nothing to wait for.
  virtual void sync() {}
  // Benchmarks: the copy bandwidth of the backend's own memory (bytes read + written per second,
  // GB/s), measured now; 0 when the caller measures host memory itself.
  virtual double copy_gbps() { return 0; }

  // ---- ops ----
  // y[s, j] = Σ_i x[s, i] · W[r0 + j, i] for s < S, j < n.
  virtual void linear(const MatW& w, int64_t r0, int64_t n, const float* x, int64_t ldx, int64_t S, float* y,
                      int64_t ldy) = 0;
  // The same as calling linear() for each task in order (outputs must not overlap inputs); a
  // backend may run them in one parallel pass, which is what decode wants for the small
  // projections of one token.
  virtual void linear_multi(const LinearTask* tasks, size_t count, int64_t S) {
    for (size_t t = 0; t < count; ++t) {
      const LinearTask& k = tasks[t];
      linear(*k.w, k.r0, k.n, k.x, k.ldx, k.rows > 0 ? k.rows : S, k.y, k.ldy);
    }
  }
  // X[s, j, :] = table[step.ids[s]] for each of nc streams.
  virtual void embed(const MatW& table, const StepRef& step, int64_t S, int64_t nc, float* X) = 0;
  // In place over `rows` rows of n (stride ld); weight may be null (unweighted).
  virtual void rms_norm(float* x, int64_t rows, int64_t n, int64_t ld, const float* weight, float eps) = 0;
  // cos/sin [S, half] of the angles step.pos[s] · freqs[i], computed in double.
  virtual void rope_tables(const StepRef& step, int64_t S, const double* freqs, int64_t half, float* cos, float* sin) = 0;
  // Rotate the rd channels starting at `offset` of each of `heads` heads (head stride hs) of each
  // row by that row's angles (cos/sin from rope_tables); inverse rotates back.
  virtual void rope(float* x, int64_t rows, int64_t ld, int64_t heads, int64_t hs, int64_t offset, int64_t rd,
                    const float* cos, const float* sin, bool inverse) = 0;

  // mHC: collapse the nc streams of X [S, nc·D] into xin [S, D] (normalised with norm_w) and
  // produce per-token coefficients coef [S, nc + nc·nc] (post weights, then C row-major).
  virtual void hc_pre(const HyperW& hw, const ModelConfig& c, const float* X, int64_t S, const float* norm_w,
                      float* xin, float* coef) = 0;
  // X[:, k] = post_k · y + Σ_j C[j,k] · X[:, j]
  virtual void hc_post(const ModelConfig& c, float* X, const float* y, const float* coef, int64_t S) = 0;
  // Final collapse h [S, D] = Σ_j pre_j X[:, j].
  virtual void hc_head(const HyperW& hw, const ModelConfig& c, const float* X, int64_t S, float* h) = 0;

  virtual void attention(const AttentionArgs& a) = 0;
  // Writes each sequence's last min(rows, W) window rows kv [S, hd] into its ring of `layer`.
  virtual void store_window(const StepRef& step, int64_t S, int64_t layer, const float* kv, int64_t W, int64_t hd) = 0;
  // Feeds projected kv/g rows [S, c·width] into each row's sequence's compressor of `layer`,
  // emitting an entry per completed window (normalised and rotated at w·m with `freqs`, [rd/2]).
  virtual void compress(const CompressorW& w, CompressorSlot slot, const StepRef& step, int64_t S, int64_t layer,
                        const float* kv, const float* g, const double* freqs, int64_t rd, float eps) = 0;
  virtual void indexer_select(const IndexerArgs& a) = 0;
  // out [S, D] = routed experts + shared expert of x [S, D]; hash routing reads step.ids.
  virtual void moe(const MoeW& w, const ModelConfig& c, MoeKind kind, const float* x, const StepRef& step, int64_t S,
                   float* out) = 0;
  // dst[k, :] = src[step.out[k], :] for k < n (width floats per row, source stride ld).
  virtual void gather_rows(const float* src, int64_t ld, const StepRef& step, int64_t n, int64_t width, float* dst) = 0;
};

// The CPU backend (Eigen + the machine's shared thread pool) with the kernels of `tier` ("" or
// "auto": the best this CPU runs; see backend/cpu/select.hpp). threads <= 0: one per hardware
// thread. Throws UnsupportedError for a tier not compiled in or one this CPU cannot run.
std::unique_ptr<Backend> make_cpu_backend(int threads, const std::string& tier = "");
// The backend named in LoadOptions (throws UnsupportedError for one not built or a missing device).
std::unique_ptr<Backend> make_backend(const LoadOptions& o);
// The checks of make_backend without creating anything.
void check_backend(const LoadOptions& o);

}  // namespace dsv4
