// The backend interface: every op of the forward pass, on buffers the backend can address.
//
// The forward pass (lib/model/forward.cpp) is written once against this interface; a backend
// supplies the ops. The CPU backend is the complete implementation and the numerical oracle.
// Conventions: row-major fp32 activations; `ld*` are row strides in elements; weights are MatW
// views in their stored format, decoded inside the op. Ops never allocate per call beyond the
// grow-only scratch they own, never throw on valid shapes, and may run multi-threaded.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "backend/workspace.hpp"
#include "dsv4/config.hpp"
#include "model/weights.hpp"

namespace dsv4 {

struct RopeTable {          // cos/sin of the angles pos·f_i for a run of rows
  const float* cos = nullptr;  // [rows, rd/2]
  const float* sin = nullptr;
};

struct AttentionArgs {
  int64_t S = 0, p0 = 0;      // new queries at absolute positions p0 … p0+S-1
  int64_t H = 0, hd = 0, W = 0;
  const float* q = nullptr;   // [S, H·hd], already normalised and rotated
  const float* kv = nullptr;  // [S, hd] this chunk's window rows, rotated
  const float* ring = nullptr;  // [W, hd] earlier rows: position j lives at row j % W
  const float* entries = nullptr;  // [n, hd] compressed entries (null for sliding layers)
  int64_t ratio = 0;          // m, for the visibility rule w < (t+1)/m
  const int32_t* select = nullptr;  // [S, topk] selected entries per query (CSA), -1 = none; null = all visible (HCA)
  int64_t topk = 0;
  const float* sink = nullptr;  // [H]
  float* out = nullptr;       // [S, H·hd]
};

struct CompressorState {     // one compressor's running state (model.md §8)
  float* pend_kv = nullptr;  // [m, c·width] rows of the unfinished window
  float* pend_g = nullptr;   // [m, c·width] gates (ape added)
  float* prev_kv = nullptr;  // [m, width] Ca half of the last complete window (overlap only)
  float* prev_g = nullptr;
  float* entries = nullptr;  // [capacity, width]
  int64_t n_entries = 0;
};

struct IndexerArgs {
  int64_t S = 0, p0 = 0, ratio = 0, nI = 0, ihd = 0, topk = 0;
  const float* q = nullptr;     // [S, nI·ihd] rotated
  const float* wts = nullptr;   // [S, nI] already scaled by nI^-0.5
  const float* keys = nullptr;  // [n, ihd]
  int32_t* select = nullptr;    // [S, topk] out
};

// One product of a batch handed to Backend::linear_multi: y = x · W[r0 … r0+n)ᵀ.
struct LinearTask {
  const MatW* w;
  int64_t r0, n;
  const float* x;
  int64_t ldx;
  float* y;
  int64_t ldy;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual bool supports(WFormat fmt) const = 0;
  virtual int threads() const = 0;
  virtual size_t scratch_bytes() const = 0;

  // y[s, j] = Σ_i x[s, i] · W[r0 + j, i] for s < S, j < n.
  virtual void linear(const MatW& w, int64_t r0, int64_t n, const float* x, int64_t ldx, int64_t S, float* y,
                      int64_t ldy) = 0;
  // The same as calling linear() for each task in order (outputs must not overlap inputs); a
  // backend may run them in one parallel pass, which is what decode wants for the small
  // projections of one token.
  virtual void linear_multi(const LinearTask* tasks, size_t count, int64_t S) {
    for (size_t t = 0; t < count; ++t) {
      const LinearTask& k = tasks[t];
      linear(*k.w, k.r0, k.n, k.x, k.ldx, S, k.y, k.ldy);
    }
  }
  // X[s, j, :] = table[ids[s]] for each of nc streams.
  virtual void embed(const MatW& table, const int32_t* ids, int64_t S, int64_t nc, float* X) = 0;
  // In place over `rows` rows of n (stride ld); weight may be null (unweighted).
  virtual void rms_norm(float* x, int64_t rows, int64_t n, int64_t ld, const float* weight, float eps) = 0;
  // Rotate the rd channels starting at `offset` of each of `heads` heads (head stride hs) of each row.
  virtual void rope(float* x, int64_t rows, int64_t ld, int64_t heads, int64_t hs, int64_t offset, int64_t rd,
                    const RopeTable& t, bool inverse) = 0;

  // mHC: collapse the nc streams of X [S, nc·D] into xin [S, D] (normalised with norm_w) and
  // produce per-token coefficients coef [S, nc + nc·nc] (post weights, then C row-major).
  virtual void hc_pre(const HyperW& hw, const ModelConfig& c, const float* X, int64_t S, const float* norm_w,
                      float* xin, float* coef) = 0;
  // X[:, k] = post_k · y + Σ_j C[j,k] · X[:, j]
  virtual void hc_post(const ModelConfig& c, float* X, const float* y, const float* coef, int64_t S) = 0;
  // Final collapse h [S, D] = Σ_j pre_j X[:, j].
  virtual void hc_head(const HyperW& hw, const ModelConfig& c, const float* X, int64_t S, float* h) = 0;

  virtual void attention(const AttentionArgs& a) = 0;
  // Feeds projected kv/g rows [S, c·width] of positions p0… into the compressor, emitting entries
  // (normalised and rotated at w·m with `freqs`, [rd/2] inverse frequencies).
  virtual void compress(const CompressorW& w, CompressorState& st, const float* kv, const float* g, int64_t S,
                        int64_t p0, const double* freqs, int64_t rd, float eps) = 0;
  virtual void indexer_select(const IndexerArgs& a) = 0;
  // out [S, D] = routed experts + shared expert of x [S, D].
  virtual void moe(const MoeW& w, const ModelConfig& c, MoeKind kind, const float* x, const int32_t* ids, int64_t S,
                   float* out) = 0;
};

// The CPU backend (Eigen + a thread pool). threads <= 0: one per hardware thread.
std::unique_ptr<Backend> make_cpu_backend(int threads);

}  // namespace dsv4
