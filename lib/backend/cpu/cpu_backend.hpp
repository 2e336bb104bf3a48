// The CPU backend: every op of backend.hpp, multi-threaded with a private pool.
// Its methods are defined one op family per folder (linear/, norm/, mhc/, attention/, moe/).
#pragma once
#include "backend/backend.hpp"
#include "util/thread_pool.hpp"

namespace dsv4 {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads);
  std::string name() const override { return "cpu"; }
  bool supports(WFormat) const override { return true; }
  int threads() const override { return pool_.size(); }
  size_t scratch_bytes() const override { return pool_.scratch_bytes() + ws_.bytes(); }

  void linear(const MatW& w, int64_t r0, int64_t n, const float* x, int64_t ldx, int64_t S, float* y,
              int64_t ldy) override;
  void embed(const MatW& table, const int32_t* ids, int64_t S, int64_t nc, float* X) override;
  void rms_norm(float* x, int64_t rows, int64_t n, int64_t ld, const float* weight, float eps) override;
  void rope(float* x, int64_t rows, int64_t ld, int64_t heads, int64_t hs, int64_t offset, int64_t rd,
            const RopeTable& t, bool inverse) override;
  void hc_pre(const HyperW& hw, const ModelConfig& c, const float* X, int64_t S, const float* norm_w, float* xin,
              float* coef) override;
  void hc_post(const ModelConfig& c, float* X, const float* y, const float* coef, int64_t S) override;
  void hc_head(const HyperW& hw, const ModelConfig& c, const float* X, int64_t S, float* h) override;
  void attention(const AttentionArgs& a) override;
  void compress(const CompressorW& w, CompressorState& st, const float* kv, const float* g, int64_t S, int64_t p0,
                const double* freqs, int64_t rd, float eps) override;
  void indexer_select(const IndexerArgs& a) override;
  void moe(const MoeW& w, const ModelConfig& c, MoeKind kind, const float* x, const int32_t* ids, int64_t S,
           float* out) override;

  ThreadPool& pool() { return pool_; }

  // Decode-size batches (S <= gemv_max_batch of every task, with the fused kernels) run all tasks in one
  // parallel pass, so each thread keeps long runs of rows instead of a synchronisation per small
  // matrix; larger batches call linear() per task.
  void linear_multi(const LinearTask* tasks, size_t count, int64_t S) override;

 private:
  void moe_decode(const MoeW& w, const ModelConfig& c, const float* x, const int32_t* idx, const float* wk, float* out);

 public:

 private:
  ThreadPool pool_;
  Workspace ws_;  // op-internal scratch (mHC mix, MoE routing and expert buffers, indexer scores)
  static constexpr size_t kIndexScore = 200, kIndexOrder = 201;
};

// Decodes rows [r, r + count) of W into out[count, W.cols] as fp32 (the reference for every kernel).
void decode_rows(const MatW& w, int64_t r, int64_t count, float* out);

}  // namespace dsv4
