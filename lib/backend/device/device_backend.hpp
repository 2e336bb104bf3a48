// A backend whose memory is a device's and whose ops are the dsv4k kernels (kernels/cuda/include):
// the host side of every op of backend.hpp, written once. It only computes parameters and
// launches kernels; it never reads or writes device memory itself (the step, the caches, the
// weights are the kernels' to read), so each op is a fixed sequence of launches whose arguments
// depend on the op's arguments alone (one exception: without reserve(), the indexer reads the
// step's positions back to size its grid; such steps are never recorded).
//
// Subclasses provide the memory and the launches:
//   - the CUDA backend (lib/backend/cuda): cudaMalloc'd memory, kernels on a stream;
//   - the emulated device of the test suite (tests/support/emulated_device): host memory that
//     faults when touched outside a kernel, kernels run item by item on the CPU. It runs every
//     kernel's arithmetic in CI, where no GPU is.
//
// Thread-safety: as every backend, one op at a time (the engine's rule). Errors: CapacityError
// when device memory runs out (weights that do not fit are refused before any upload);
// UnsupportedError for shapes past the kernels' limits (more than 8 mHC streams, 1024 experts); a
// failed launch or a kernel fault is a std::runtime_error naming the kernel (a bug, not bad input).
#pragma once
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "backend/backend.hpp"
#include "dsv4k/attention.hpp"
#include "dsv4k/compressor.hpp"
#include "dsv4k/gemm.hpp"
#include "dsv4k/gemv.hpp"
#include "dsv4k/indexer.hpp"
#include "dsv4k/linear.hpp"
#include "dsv4k/mhc.hpp"
#include "dsv4k/moe.hpp"
#include "dsv4k/norm_rope.hpp"

namespace dsv4 {

// Every kernel the device backend launches.
#define DSV4K_KERNELS(X) \
  X(Linear)              \
  X(LinearRows)          \
  X(SplitBf16)           \
  X(DecodeBf16)          \
  X(Bf16Gemm)            \
  X(Embed)               \
  X(GatherRows)          \
  X(RmsNorm)             \
  X(RopeTables)          \
  X(Rope)                \
  X(HcCoef)              \
  X(HcCollapse)          \
  X(HcPost)              \
  X(RoundRows)           \
  X(Attention)           \
  X(AttnKeys)            \
  X(AttnLogits)          \
  X(AttnSoftmax)         \
  X(AttnOut)             \
  X(StoreWindow)         \
  X(Compress)            \
  X(CompressPool)        \
  X(CompressFinish)      \
  X(CompressPrev)        \
  X(CompressPend)        \
  X(IndexQuery)          \
  X(IndexScore)          \
  X(IndexSelect)         \
  X(TopkInit)            \
  X(TopkHist)            \
  X(TopkPick)            \
  X(TopkCollect)         \
  X(TopkRank)            \
  X(MoeRoute)            \
  X(MoeUp)               \
  X(MoeDown)             \
  X(MoeUpRows)           \
  X(MoeDownRows)

dsv4k::Mat to_kernel(const MatW& w);

// Where bind_weights puts the weights. Everything goes to device memory when it fits with
// `reserve_bytes` to spare (0: 5% of the device's memory, at least 2 GiB, for caches and scratch).
// Otherwise, with host_experts, routed experts (whole experts, spread evenly over the layers) stay
// in pinned host memory the kernels read over the bus until the rest fits with the reserve; without
// it, the weights must fit in the memory free (else CapacityError).
struct Placement {
  bool host_experts = true;
  uint64_t reserve_bytes = 0;
};

class DeviceBackend : public Backend {
 public:
  ~DeviceBackend() override;
  bool supports(WFormat) const override { return true; }

  void* alloc(size_t bytes) override;
  void release(void* p) noexcept override;
  void upload(void* dst, const void* host_src, size_t bytes) override;
  void download(void* host_dst, const void* src, size_t bytes) override;
  void copy(void* dst, const void* src, size_t bytes) override;
  ModelWeights bind_weights(const ModelWeights& host, const ModelConfig& cfg) override;
  uint64_t scratch_bytes() const override;
  void reserve(const ModelConfig& c, int64_t max_context) override;
  // Keyed steps (decode) run eagerly the first time, are recorded the second (CUDA: a captured
  // graph) and replayed from then on, as long as no scratch block or table has moved since.
  void run_step(uint64_t key, const StepBody& body) override;
  void set_placement(const Placement& p) { placement_ = p; }
  uint64_t host_weight_bytes() const;  // weights bound in host memory (experts that did not fit)
  void set_step_recording(bool on) { record_steps_ = on; }  // off: every step eagerly (the reference for replay tests)
  // Products of at least this many activation rows (prefill) run as tensor-core GEMMs (dsv4k/gemm.hpp:
  // exact bf16 weights, x in three bf16 planes, fp32 sums); fewer rows take the warp GEMV, which
  // reads the weights once per 4 rows. F32 and F16 weights always take the GEMV (not exact in bf16).
  // 0 turns the GEMM path off (tests compare the two).
  void set_gemm_min_rows(int64_t rows) { gemm_min_rows_ = rows; }
  static constexpr int64_t kGemmMinRows = 16;
  void set_reference_compressor(bool on) { reference_compressor_ = on; }  // the one-item-per-sequence kernel (tests)
  void set_reference_attention(bool on) { reference_attention_ = on; }    // the one-item-per-(row, head) kernel (tests)
  uint64_t gemm_products() const { return gemm_products_; }  // linear calls that took the GEMM path
  uint64_t replays() const { return replays_; }
  void sync() override { dev_sync(); }
  double copy_gbps() override;
  OpStats stats() const override { return stats_; }
  void reset_stats() override { stats_ = {}; }

  void linear(const MatW& w, int64_t r0, int64_t n, const float* x, int64_t ldx, int64_t S, float* y, int64_t ldy) override;
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
  // ---- what a device provides ----
  // `bytes` of device memory (not necessarily zeroed); throws CapacityError when it cannot.
  virtual void* dev_alloc(size_t bytes) = 0;
  virtual void dev_free(void* p) noexcept = 0;
  virtual void dev_zero(void* p, size_t bytes) = 0;
  virtual void h2d(void* dst, const void* src, size_t bytes) = 0;  // complete on return
  virtual void d2h(void* dst, const void* src, size_t bytes) = 0;  // after every kernel launched before
  virtual void d2d(void* dst, const void* src, size_t bytes) = 0;  // in order with the kernels
  virtual uint64_t free_bytes() const = 0;  // device memory that can still be allocated
  virtual uint64_t total_bytes() const = 0;  // the device's memory
  // Host memory the kernels can read (CUDA: mapped pinned memory, the same address on both
  // sides); null when the device cannot. host_put copies into it (no kernel may be reading it).
  virtual void* host_alloc(size_t) { return nullptr; }
  virtual void host_free(void*) noexcept {}
  virtual void host_put(void* dst, const void* src, size_t bytes) { h2d(dst, src, bytes); }
  virtual void dev_sync() = 0;              // every launch and copy issued so far has finished
#define DSV4K_DECLARE_RUN(K) virtual void run(const dsv4k::K& k) = 0;
  DSV4K_KERNELS(DSV4K_DECLARE_RUN)
#undef DSV4K_DECLARE_RUN

  // Recording (CUDA: stream capture): between begin_recording() and end_recording(), launches and
  // device copies are recorded instead of run. end_recording returns the recording, or null when
  // recording failed (then nothing ran). replay() runs a recording in order with other work.
  virtual void begin_recording() = 0;
  virtual void* end_recording() = 0;
  virtual void replay(void* rec) = 0;
  virtual void drop(void* rec) noexcept = 0;
  bool recording() const { return recording_; }

  uint64_t weight_bytes() const;
  uint64_t buffer_bytes() const;
  // Frees the backend's own scratch and tables; a subclass's destructor calls it (while dev_free still works).
  void free_internal() noexcept;

 private:
  template <class K>
  void launch(const K& k) {
    if (k.count() > 0) run(k);
  }
  // Grow-only device scratch, one block per named slot (sized by reserve() or the first step of a size).
  void* scratch(size_t slot, size_t bytes);
  // The most positions a step's rows can have (bounds the indexer's grid): the reserved context,
  // else read from the step (a small copy back; the engine always reserves).
  int64_t position_bound(const StepRef& step, int64_t S);
  const dsv4k::ExpertMats* expert_table(const MoeW& w);

  struct Block {
    void* p = nullptr;
    size_t bytes = 0;
  };
  std::vector<Block> ws_;
  std::vector<void*> weight_blocks_;  // one per bind_weights()
  std::vector<void*> host_blocks_;    // host-resident experts, one per bind_weights() that needed it
  Placement placement_;
  struct Experts {
    std::vector<dsv4k::ExpertMats> host;
    void* dev = nullptr;
  };
  std::unordered_map<const void*, Experts> experts_;  // by the MoeW's expert list
  std::vector<dsv4k::ExpertMats> expert_tmp_;
  int64_t context_ = 0;
  struct Recorded {
    void* rec = nullptr;
    uint64_t generation = 0;
    bool seen = false;  // ran eagerly once at `generation`
  };
  std::unordered_map<uint64_t, Recorded> steps_;
  uint64_t generation_ = 0;  // bumped whenever a scratch block or an expert table moves (recordings hold addresses)
  uint64_t replays_ = 0;
  bool recording_ = false, record_steps_ = true;
  int64_t gemm_min_rows_ = kGemmMinRows;
  uint64_t gemm_products_ = 0;
  bool reference_compressor_ = false, reference_attention_ = false;
  void linear_gemm(const MatW& w, int64_t r0, int64_t n, const float* x, int64_t ldx, int64_t S, float* y, int64_t ldy);
  OpStats stats_;
  mutable std::mutex mem_mu_;
  std::unordered_map<void*, size_t> sizes_;
  uint64_t buffer_bytes_ = 0, weight_bytes_ = 0, host_weight_bytes_ = 0;
};

}  // namespace dsv4
