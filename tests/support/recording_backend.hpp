// A backend that forwards every call to another one and, while recording, logs each op with all
// of its arguments (pointers and scalars, the contents of argument structs and task lists). Two
// single-token decode steps must log the same thing: that is what makes a decode step capturable
// once as a CUDA graph and replayable at any position.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.hpp"

namespace dsv4::test {

class RecordingBackend final : public Backend {
 public:
  explicit RecordingBackend(std::unique_ptr<Backend> inner) : in_(std::move(inner)) {}
  void start() {
    log_.clear();
    on_ = true;
  }
  std::vector<std::string> stop() {
    on_ = false;
    return std::move(log_);
  }

  BackendInfo info() const override { return in_->info(); }
  bool supports(WFormat f) const override { return in_->supports(f); }
  void* alloc(size_t bytes) override;
  void release(void* p) noexcept override;
  void upload(void* dst, const void* src, size_t bytes) override;
  void download(void* dst, const void* src, size_t bytes) override;
  void copy(void* dst, const void* src, size_t bytes) override;
  ModelWeights bind_weights(const ModelWeights& host, const ModelConfig& cfg) override { return in_->bind_weights(host, cfg); }
  uint64_t scratch_bytes() const override { return in_->scratch_bytes(); }
  void set_thread_limit(int n) override;
  void reserve(const ModelConfig& c, int64_t max_context) override { in_->reserve(c, max_context); }
  OpStats stats() const override { return in_->stats(); }
  void reset_stats() override { in_->reset_stats(); }

  void linear(const MatW& w, int64_t r0, int64_t n, const float* x, int64_t ldx, int64_t S, float* y, int64_t ldy) override;
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

 private:
  template <class... A>
  void rec(const char* op, const A&... args);
  std::unique_ptr<Backend> in_;
  bool on_ = false;
  std::vector<std::string> log_;
};

}  // namespace dsv4::test
