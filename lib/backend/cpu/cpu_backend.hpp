// The CPU backend: every op of backend.hpp, multi-threaded on the process-wide pool.
// Its methods are defined one op family per folder (linear/, norm/, mhc/, attention/, moe/);
// cpu_backend.cpp holds allocation, weight binding and the tier's entry point.
//
// These sources are compiled once per kernel tier (cmake/cpu_tiers.cmake) into namespace
// dsv4::DSV4_CPU_NS; only lib/backend/cpu/select.cpp reaches a tier, through its entry point.
#pragma once
#ifndef DSV4_CPU_NS
#error "the CPU backend is compiled once per kernel tier (cmake/cpu_tiers.cmake), which defines DSV4_CPU_NS"
#endif
#include <mutex>

#include "backend/backend.hpp"
#include "backend/workspace.hpp"
#include "quant/decode.hpp"
#include "util/thread_pool.hpp"

namespace dsv4::DSV4_CPU_NS {

class CpuBackend : public Backend {
 public:
  explicit CpuBackend(int threads);
  ~CpuBackend() override;
  BackendInfo info() const override;
  bool supports(WFormat) const override { return true; }
  // Worker threads the ops use now (the pool size, or less under set_thread_limit).
  int threads() const { return limit_ > 0 && limit_ < pool_->size() ? limit_ : pool_->size(); }
  uint64_t scratch_bytes() const override { return pool_->scratch_bytes() + ws_.bytes(); }
  void set_thread_limit(int n) override { limit_ = n; }
  void reserve(const ModelConfig& c, int64_t max_context) override;
  double fma_peak_gflops() override;
  OpStats stats() const override { return stats_; }
  void reset_stats() override { stats_ = {}; }

  void* alloc(size_t bytes) override;
  void release(void* p) noexcept override;
  void upload(void* dst, const void* src, size_t bytes) override;
  void download(void* dst, const void* src, size_t bytes) override;
  void copy(void* dst, const void* src, size_t bytes) override;
  ModelWeights bind_weights(const ModelWeights& host, const ModelConfig& cfg) override;

  void linear(const MatW& w, int64_t r0, int64_t n, const float* x, int64_t ldx, int64_t S, float* y,
              int64_t ldy) override;
  // Decode-size batches (S <= gemv_max_batch of every task, with the fused kernels) run all tasks in one
  // parallel pass, so each thread keeps long runs of rows instead of a synchronisation per small
  // matrix; larger batches call linear() per task.
  void linear_multi(const LinearTask* tasks, size_t count, int64_t S) override;
  void embed(const MatW& table, const StepRef& step, int64_t S, int64_t nc, float* X) override;
  void rms_norm(float* x, int64_t rows, int64_t n, int64_t ld, const float* weight, float eps) override;
  void rope_tables(const StepRef& step, int64_t S, const double* freqs, int64_t half, float* cos, float* sin) override;
  void rope(float* x, int64_t rows, int64_t ld, int64_t heads, int64_t hs, int64_t offset, int64_t rd, const float* cos,
            const float* sin, bool inverse) override;
  void hc_pre(const HyperW& hw, const ModelConfig& c, const float* X, int64_t S, const float* norm_w, float* xin,
              float* coef) override;
  void hc_post(const ModelConfig& c, float* X, const float* y, const float* coef, int64_t S) override;
  void hc_head(const HyperW& hw, const ModelConfig& c, const float* X, int64_t S, float* h) override;
  void attention(const AttentionArgs& a) override;
  void store_window(const StepRef& step, int64_t S, int64_t layer, const float* kv, int64_t W, int64_t hd) override;
  void compress(const CompressorW& w, CompressorSlot slot, const StepRef& step, int64_t S, int64_t layer, const float* kv,
                const float* g, const double* freqs, int64_t rd, float eps) override;
  void indexer_select(const IndexerArgs& a) override;
  void moe(const MoeW& w, const ModelConfig& c, MoeKind kind, const float* x, const StepRef& step, int64_t S,
           float* out) override;
  void gather_rows(const float* src, int64_t ld, const StepRef& step, int64_t n, int64_t width, float* dst) override;

 protected:
  // parallel_for on the shared pool within this backend's thread limit.
  template <class F>
  void par(int64_t n, int64_t grain, F&& fn) {
    pool_->parallel_for(n, grain, std::forward<F>(fn), limit_);
  }
  // parallel_chunks: chunks go to whichever thread is free (memory-bound passes over weights).
  template <class F>
  void par_chunks(int64_t n, int64_t chunk, F&& fn) {
    pool_->parallel_chunks(n, chunk, std::forward<F>(fn), limit_);
  }
  float* thread_scratch(int tid, size_t floats) { return pool_->scratch(tid, floats); }

 private:
  void attention_short(const AttentionArgs& a, const float* kvs, float scale, int64_t max_rows);
  void attention_long(const AttentionArgs& a, const float* kvs, float scale);
  void moe_decode(const MoeW& w, const ModelConfig& c, const float* x, const int32_t* idx, const float* wk, float* out);
  // Sizes linear_multi's scratch for up to `tasks` tasks and `xp_floats` prepared activations, so a
  // caller whose task list varies from step to step (MoE) allocates nothing once warm.
  void reserve_multi(size_t tasks, size_t xp_floats);

  std::shared_ptr<ThreadPool> pool_;
  int limit_ = 0;
  Workspace ws_;  // op-internal scratch (mHC mix, MoE routing and expert buffers, indexer scores)
  std::vector<LinearTask> moe_tasks_;  // grow-only
  OpStats stats_;
  mutable std::mutex mem_mu_;
  uint64_t buffer_bytes_ = 0, weight_bytes_ = 0;
  static constexpr size_t kIndexScore = 200, kIndexOrder = 201, kCompressEntry = 202, kIndexQ = 203, kAttnParts = 204, kAttnFirst = 205, kAttnKv = 206;
 public:
  // Scratch (floats) of one thread in attention() / indexer_select() for positions below `max_pos + 1`.
  static size_t attention_scratch_floats(int64_t W, int64_t hd, int64_t hb, int64_t max_entries);
  static size_t blocked_scratch_floats(int64_t hd);  // attention of rows beyond one key block
  static size_t indexer_scratch_floats(int64_t max_vis, int64_t nI, int64_t ihd);
  static size_t indexer_query_floats(int64_t nI, int64_t ihd);  // a row's int16 query (int8 keys)
};

}  // namespace dsv4::DSV4_CPU_NS
