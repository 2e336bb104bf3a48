#include "support/recording_backend.hpp"

#include <sstream>

namespace dsv4::test {

namespace {

void put(std::ostringstream& o, const void* p) { o << p; }
void put(std::ostringstream& o, int64_t v) { o << v; }
void put(std::ostringstream& o, int v) { o << v; }
void put(std::ostringstream& o, size_t v) { o << v; }
void put(std::ostringstream& o, bool v) { o << v; }
void put(std::ostringstream& o, float v) { o << v; }
void put(std::ostringstream& o, const MatW& w) {
  o << "W{" << static_cast<int>(w.fmt) << "," << w.rows << "x" << w.cols << "," << static_cast<const void*>(w.data) << ","
    << static_cast<const void*>(w.scale) << "}";
}
void put(std::ostringstream& o, const StepRef& s) {
  o << "step{" << s.counts << "," << s.ids << "," << s.pos << "," << s.seq << "," << s.out << "," << s.seqs << "}";
}

template <class T>
void put(std::ostringstream& o, const T* p) {
  o << static_cast<const void*>(p);
}

}  // namespace

template <class... A>
void RecordingBackend::rec(const char* op, const A&... args) {
  if (!on_) return;
  std::ostringstream o;
  o << op << "(";
  ((put(o, args), o << ","), ...);
  o << ")";
  log_.push_back(o.str());
}

void* RecordingBackend::alloc(size_t bytes) {
  rec("alloc", bytes);
  return in_->alloc(bytes);
}
void RecordingBackend::release(void* p) noexcept {
  if (on_) log_.push_back("release");
  in_->release(p);
}
void RecordingBackend::upload(void* dst, const void* src, size_t bytes) {
  rec("upload", static_cast<const void*>(dst), bytes);  // the host source may move; what lands where may not
  in_->upload(dst, src, bytes);
}
void RecordingBackend::download(void* dst, const void* src, size_t bytes) {
  rec("download", src, bytes);
  in_->download(dst, src, bytes);
}
void RecordingBackend::copy(void* dst, const void* src, size_t bytes) {
  rec("copy", static_cast<const void*>(dst), src, bytes);
  in_->copy(dst, src, bytes);
}
void RecordingBackend::set_thread_limit(int n) {
  rec("set_thread_limit", n);
  in_->set_thread_limit(n);
}
void RecordingBackend::linear(const MatW& w, int64_t r0, int64_t n, const float* x, int64_t ldx, int64_t S, float* y,
                              int64_t ldy) {
  rec("linear", w, r0, n, x, ldx, S, y, ldy);
  in_->linear(w, r0, n, x, ldx, S, y, ldy);
}
void RecordingBackend::linear_multi(const LinearTask* tasks, size_t count, int64_t S) {
  if (on_) {
    std::ostringstream o;
    o << "linear_multi(" << count << "," << S;
    for (size_t t = 0; t < count; ++t) {
      o << ",[";
      put(o, *tasks[t].w);
      o << "," << tasks[t].r0 << "," << tasks[t].n << "," << tasks[t].x << "," << tasks[t].ldx << "," << tasks[t].y << ","
        << tasks[t].ldy << "]";
    }
    o << ")";
    log_.push_back(o.str());
  }
  in_->linear_multi(tasks, count, S);
}
void RecordingBackend::embed(const MatW& table, const StepRef& step, int64_t S, int64_t nc, float* X) {
  rec("embed", table, step, S, nc, X);
  in_->embed(table, step, S, nc, X);
}
void RecordingBackend::rms_norm(float* x, int64_t rows, int64_t n, int64_t ld, const float* weight, float eps) {
  rec("rms_norm", x, rows, n, ld, weight, eps);
  in_->rms_norm(x, rows, n, ld, weight, eps);
}
void RecordingBackend::rope_tables(const StepRef& step, int64_t S, const double* freqs, int64_t half, float* cos, float* sin) {
  rec("rope_tables", step, S, freqs, half, cos, sin);
  in_->rope_tables(step, S, freqs, half, cos, sin);
}
void RecordingBackend::rope(float* x, int64_t rows, int64_t ld, int64_t heads, int64_t hs, int64_t offset, int64_t rd,
                            const float* cos, const float* sin, bool inverse) {
  rec("rope", x, rows, ld, heads, hs, offset, rd, cos, sin, inverse);
  in_->rope(x, rows, ld, heads, hs, offset, rd, cos, sin, inverse);
}
void RecordingBackend::hc_pre(const HyperW& hw, const ModelConfig& c, const float* X, int64_t S, const float* norm_w,
                              float* xin, float* coef) {
  rec("hc_pre", hw.fn, hw.base.data(), hw.scale.data(), X, S, norm_w, xin, coef);
  in_->hc_pre(hw, c, X, S, norm_w, xin, coef);
}
void RecordingBackend::hc_post(const ModelConfig& c, float* X, const float* y, const float* coef, int64_t S) {
  rec("hc_post", X, y, coef, S);
  in_->hc_post(c, X, y, coef, S);
}
void RecordingBackend::hc_head(const HyperW& hw, const ModelConfig& c, const float* X, int64_t S, float* h) {
  rec("hc_head", hw.fn, hw.base.data(), X, S, h);
  in_->hc_head(hw, c, X, S, h);
}
void RecordingBackend::attention(const AttentionArgs& a) {
  rec("attention", a.S, a.H, a.hd, a.W, a.step, a.layer, a.q, a.kv, a.entries, a.ratio, a.select, a.topk, a.sink, a.out);
  in_->attention(a);
}
void RecordingBackend::store_window(const StepRef& step, int64_t S, int64_t layer, const float* kv, int64_t W, int64_t hd) {
  rec("store_window", step, S, layer, kv, W, hd);
  in_->store_window(step, S, layer, kv, W, hd);
}
void RecordingBackend::compress(const CompressorW& w, CompressorSlot slot, const StepRef& step, int64_t S, int64_t layer,
                                const float* kv, const float* g, const double* freqs, int64_t rd, float eps) {
  rec("compress", w.wkv, w.ratio, static_cast<int>(slot), step, S, layer, kv, g, freqs, rd, eps);
  in_->compress(w, slot, step, S, layer, kv, g, freqs, rd, eps);
}
void RecordingBackend::indexer_select(const IndexerArgs& a) {
  rec("indexer_select", a.S, a.ratio, a.nI, a.ihd, a.topk, a.step, a.layer, a.q, a.wts, a.wts_scale, a.select);
  in_->indexer_select(a);
}
void RecordingBackend::moe(const MoeW& w, const ModelConfig& c, MoeKind kind, const float* x, const StepRef& step, int64_t S,
                           float* out) {
  rec("moe", w.gate, static_cast<int>(kind), x, step, S, out);
  in_->moe(w, c, kind, x, step, S, out);
}
void RecordingBackend::gather_rows(const float* src, int64_t ld, const StepRef& step, int64_t n, int64_t width, float* dst) {
  rec("gather_rows", src, ld, step, n, width, dst);
  in_->gather_rows(src, ld, step, n, width, dst);
}

}  // namespace dsv4::test
