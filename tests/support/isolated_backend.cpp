#include "support/isolated_backend.hpp"

#include <sys/mman.h>

#include <cstring>
#include <stdexcept>
#include <string>

#include "dsv4/error.hpp"

namespace dsv4::test {

class IsolatedBackend::Open {
 public:
  explicit Open(IsolatedBackend& b) : b_(b) { b_.open(); }
  ~Open() { b_.close(); }
  Open(const Open&) = delete;
  Open& operator=(const Open&) = delete;

 private:
  IsolatedBackend& b_;
};

IsolatedBackend::IsolatedBackend(int threads, size_t reserve_bytes, const std::string& cpu_tier)
    : in_(make_cpu_backend(threads, cpu_tier)), reserved_(reserve_bytes) {
  void* p = mmap(nullptr, reserved_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw std::runtime_error("IsolatedBackend: cannot reserve address space");
  base_ = static_cast<uint8_t*>(p);
}

IsolatedBackend::~IsolatedBackend() { munmap(base_, reserved_); }

BackendInfo IsolatedBackend::info() const {
  BackendInfo b = in_->info();
  b.name = "cpu-isolated";
  return b;
}

bool IsolatedBackend::contains(const void* p) const {
  const auto* q = static_cast<const uint8_t*>(p);
  return q >= base_ && q < base_ + reserved_;
}

void IsolatedBackend::open() {
  if (depth_++ == 0) {
    ++opens_;
    if (used_ > 0 && mprotect(base_, used_, PROT_READ | PROT_WRITE) != 0) throw std::runtime_error("IsolatedBackend: mprotect failed");
  }
}

void IsolatedBackend::close() {
  if (--depth_ == 0 && used_ > 0) mprotect(base_, used_, PROT_NONE);
}

void* IsolatedBackend::alloc(size_t bytes) {
  const size_t page = 4096, n = (std::max<size_t>(bytes, 1) + page - 1) / page * page;
  if (n > reserved_ - used_) throw CapacityError("IsolatedBackend: region of " + std::to_string(reserved_) + " bytes is full");
  uint8_t* p = base_ + used_;
  used_ += n;
  if (depth_ > 0) mprotect(p, n, PROT_READ | PROT_WRITE);
  return p;  // fresh pages of an anonymous mapping: zero
}

void IsolatedBackend::upload(void* dst, const void* src, size_t bytes) {
  Open o(*this);
  in_->upload(dst, src, bytes);
}
void IsolatedBackend::download(void* dst, const void* src, size_t bytes) {
  Open o(*this);
  in_->download(dst, src, bytes);
}
void IsolatedBackend::copy(void* dst, const void* src, size_t bytes) {
  Open o(*this);
  in_->copy(dst, src, bytes);
}

ModelWeights IsolatedBackend::bind_weights(const ModelWeights& host, const ModelConfig& cfg) {
  // Uploads every buffer once, as a device backend does, and repoints the views at the copies.
  struct Copy final : WeightVisitor {
    IsolatedBackend& be;
    explicit Copy(IsolatedBackend& b) : be(b) {}
    const uint8_t* put(const void* src, size_t n) {
      if (src == nullptr || n == 0) return static_cast<const uint8_t*>(src);
      void* p = be.alloc(n);
      be.upload(p, src, n);
      return static_cast<const uint8_t*>(p);
    }
    void matrix(MatW& w) override {
      if (w.empty()) return;
      const uint64_t scale_bytes = w.scale_bytes();
      const uint64_t data_bytes = w.bytes() - scale_bytes;
      w.data = put(w.data, data_bytes);
      if (w.scale != nullptr) w.scale = put(w.scale, scale_bytes);
    }
    void floats(FVec& v) override { v.ptr = reinterpret_cast<const float*>(put(v.ptr, v.size() * sizeof(float))); }
    void doubles(DVec& v) override { v.ptr = reinterpret_cast<const double*>(put(v.ptr, v.size() * sizeof(double))); }
    void bytes(const uint8_t*& p, size_t n) override { p = put(p, n); }
  } copy(*this);
  ModelWeights w = host;
  visit_weights(w, cfg, copy);
  return w;
}

#define DSV4_OPEN Open o(*this)
void IsolatedBackend::linear(const MatW& w, int64_t r0, int64_t n, const float* x, int64_t ldx, int64_t S, float* y,
                             int64_t ldy) {
  DSV4_OPEN;
  in_->linear(w, r0, n, x, ldx, S, y, ldy);
}
void IsolatedBackend::linear_multi(const LinearTask* tasks, size_t count, int64_t S) {
  DSV4_OPEN;
  in_->linear_multi(tasks, count, S);
}
void IsolatedBackend::embed(const MatW& table, const StepRef& step, int64_t S, int64_t nc, float* X) {
  DSV4_OPEN;
  in_->embed(table, step, S, nc, X);
}
void IsolatedBackend::rms_norm(float* x, int64_t rows, int64_t n, int64_t ld, const float* weight, float eps) {
  DSV4_OPEN;
  in_->rms_norm(x, rows, n, ld, weight, eps);
}
void IsolatedBackend::rope_tables(const StepRef& step, int64_t S, const double* freqs, int64_t half, float* cos, float* sin) {
  DSV4_OPEN;
  in_->rope_tables(step, S, freqs, half, cos, sin);
}
void IsolatedBackend::rope(float* x, int64_t rows, int64_t ld, int64_t heads, int64_t hs, int64_t offset, int64_t rd,
                           const float* cos, const float* sin, bool inverse) {
  DSV4_OPEN;
  in_->rope(x, rows, ld, heads, hs, offset, rd, cos, sin, inverse);
}
void IsolatedBackend::hc_pre(const HyperW& hw, const ModelConfig& c, const float* X, int64_t S, const float* norm_w,
                             float* xin, float* coef) {
  DSV4_OPEN;
  in_->hc_pre(hw, c, X, S, norm_w, xin, coef);
}
void IsolatedBackend::hc_post(const ModelConfig& c, float* X, const float* y, const float* coef, int64_t S) {
  DSV4_OPEN;
  in_->hc_post(c, X, y, coef, S);
}
void IsolatedBackend::hc_head(const HyperW& hw, const ModelConfig& c, const float* X, int64_t S, float* h) {
  DSV4_OPEN;
  in_->hc_head(hw, c, X, S, h);
}
void IsolatedBackend::attention(const AttentionArgs& a) {
  DSV4_OPEN;
  in_->attention(a);
}
void IsolatedBackend::store_window(const StepRef& step, int64_t S, int64_t layer, const float* kv, int64_t W, int64_t hd) {
  DSV4_OPEN;
  in_->store_window(step, S, layer, kv, W, hd);
}
void IsolatedBackend::compress(const CompressorW& w, CompressorSlot slot, const StepRef& step, int64_t S, int64_t layer,
                               const float* kv, const float* g, const double* freqs, int64_t rd, float eps) {
  DSV4_OPEN;
  in_->compress(w, slot, step, S, layer, kv, g, freqs, rd, eps);
}
void IsolatedBackend::indexer_select(const IndexerArgs& a) {
  DSV4_OPEN;
  in_->indexer_select(a);
}
void IsolatedBackend::moe(const MoeW& w, const ModelConfig& c, MoeKind kind, const float* x, const StepRef& step, int64_t S,
                          float* out) {
  DSV4_OPEN;
  in_->moe(w, c, kind, x, step, S, out);
}
void IsolatedBackend::gather_rows(const float* src, int64_t ld, const StepRef& step, int64_t n, int64_t width, float* dst) {
  DSV4_OPEN;
  in_->gather_rows(src, ld, step, n, width, dst);
}
#undef DSV4_OPEN

}  // namespace dsv4::test
