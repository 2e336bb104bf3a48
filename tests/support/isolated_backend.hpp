// A CPU backend whose memory the host cannot touch outside its own calls: every buffer it
// allocates, and a copy of every weight, lives in one region mapped PROT_NONE that is opened
// (read/write) only while one of its ops, uploads or downloads runs. A forward pass that reads or
// writes backend memory itself faults at once. This is how the suite proves, on a CPU-only machine,
// that the forward pass treats backend memory as a device would require.
#pragma once
#include <cstddef>
#include <cstdint>

#include <memory>

#include "backend/backend.hpp"

namespace dsv4::test {

// Wraps another backend (by default the CPU backend of the best tier): the ops run on it while
// the region is open.
class IsolatedBackend final : public Backend {
 public:
  explicit IsolatedBackend(int threads, size_t reserve_bytes = size_t{16} << 30, const std::string& cpu_tier = "");
  ~IsolatedBackend() override;
  BackendInfo info() const override;
  bool supports(WFormat f) const override { return in_->supports(f); }
  uint64_t scratch_bytes() const override { return in_->scratch_bytes(); }
  void set_thread_limit(int n) override { in_->set_thread_limit(n); }
  void reserve(const ModelConfig& c, int64_t max_context) override { in_->reserve(c, max_context); }
  OpStats stats() const override { return in_->stats(); }
  void reset_stats() override { in_->reset_stats(); }

  void* alloc(size_t bytes) override;
  void release(void*) noexcept override {}  // the region goes with the backend
  void upload(void* dst, const void* src, size_t bytes) override;
  void download(void* dst, const void* src, size_t bytes) override;
  void copy(void* dst, const void* src, size_t bytes) override;
  ModelWeights bind_weights(const ModelWeights& host, const ModelConfig& cfg) override;

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

  uint64_t opens() const { return opens_; }  // how many times the region was opened
  bool contains(const void* p) const;        // whether p points into the region

 private:
  class Open;
  void open();
  void close();
  std::unique_ptr<Backend> in_;
  uint8_t* base_ = nullptr;
  size_t reserved_ = 0, used_ = 0;
  int depth_ = 0;
  uint64_t opens_ = 0;
};

}  // namespace dsv4::test
