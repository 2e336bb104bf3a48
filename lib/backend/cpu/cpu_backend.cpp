// The CPU backend of one kernel tier: construction, capabilities, memory, weight binding, scratch.
#include "backend/cpu/cpu_backend.hpp"

#include <sys/mman.h>
#if defined(__x86_64__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <new>
#include <unordered_map>

#include "backend/cpu/linear/gemv.hpp"
#include "backend/cpu/select.hpp"
#include "dsv4/error.hpp"

namespace dsv4::DSV4_CPU_NS {

namespace {

constexpr size_t kMapThreshold = size_t{1} << 18;  // larger blocks are anonymous mappings: zero pages, lazily committed

// Sizes of live mappings, for release() (munmap needs the length).
std::mutex g_map_mu;
std::unordered_map<void*, size_t>& mappings() {
  static std::unordered_map<void*, size_t> m;
  return m;
}

}  // namespace

CpuBackend::CpuBackend(int threads) : pool_(ThreadPool::shared(threads)) {}
CpuBackend::~CpuBackend() = default;

BackendInfo CpuBackend::info() const {
  BackendInfo b;
  b.name = "cpu";
  b.device = 0;
  b.device_name = cpu_model_name();
  b.kernel_tier = DSV4_CPU_TIER;
  b.threads = threads();
  b.memory_total = system_memory_bytes(false);
  b.memory_available = system_memory_bytes(true);
  {
    std::lock_guard<std::mutex> lk(mem_mu_);
    b.weight_bytes = weight_bytes_;
    b.buffer_bytes = buffer_bytes_ + scratch_bytes();
  }
  b.formats = {"F32", "BF16", "F16", "FP8", "FP4"};
  b.ops = {"linear", "embed", "rms_norm", "rope", "mhc", "attention", "compressor", "indexer", "moe", "gather"};
  b.graphs = false;
  return b;
}

void CpuBackend::reserve(const ModelConfig& c, int64_t max_context) {
  // The context-dependent scratch: indexer scores over every visible entry, attention's gathered
  // rows (window + selected or all visible entries). Sized for the worst step at max_context.
  int64_t max_vis = 0, max_entries = 0;
  for (size_t l = 0; l < c.attn_kind.size(); ++l) {
    if (c.attn_kind[l] == AttnKind::Sliding || c.compress_ratio[l] <= 0) continue;
    const int64_t vis = max_context / c.compress_ratio[l];
    if (c.attn_kind[l] == AttnKind::CSA) {
      max_vis = std::max(max_vis, vis);
      max_entries = std::max(max_entries, c.index_topk);
    } else {
      max_entries = std::max(max_entries, vis);
    }
  }
  const size_t per_thread = std::max({attention_scratch_floats(c.sliding_window, c.head_dim, c.num_heads, max_entries),
                                      max_vis > 0 ? indexer_scratch_floats(max_vis, c.index_n_heads, c.index_head_dim) : size_t{0}});
  ws_.get(kCompressEntry, static_cast<size_t>(std::max(c.head_dim, c.index_head_dim)));
  {  // the blocked attention's per-block results of a decode step (up to 3 rows)
    const int64_t key_blocks = (c.sliding_window + max_entries + 1023) / 1024, head_blocks = (c.num_heads + 31) / 32;
    ws_.get(kAttnParts, static_cast<size_t>(3 * key_blocks * head_blocks * (32 * c.head_dim + 64)));
    ws_.get_i32(kAttnFirst, 4);
  }
  if (max_vis > 0) {
    ws_.get(kIndexScore, static_cast<size_t>(max_vis));
    ws_.get(kIndexQ, indexer_query_floats(c.index_n_heads, c.index_head_dim));
    ws_.get(kIndexOrder, static_cast<size_t>(max_vis));
  }
  // Each thread grows its own scratch, inside a parallel pass (the only place it is its own).
  pool_->parallel_for(pool_->size(), 1, [&](int tid, int64_t, int64_t) { pool_->scratch(tid, per_thread); });
}

namespace {

// One thread's FMA loop: kChains independent accumulators (more than latency × pipes on current
// cores), `iters` rounds; returns the FLOPs done. The result feeds a sink so nothing is removed.
constexpr int kChains = 12;
double fma_loop(int64_t iters, float* sink) {
#if defined(__AVX512F__)
  __m512 a[kChains];
  const __m512 m = _mm512_set1_ps(0.9999f), c = _mm512_set1_ps(1e-6f);
  for (int k = 0; k < kChains; ++k) a[k] = _mm512_set1_ps(static_cast<float>(k));
  for (int64_t i = 0; i < iters; ++i)
    for (int k = 0; k < kChains; ++k) a[k] = _mm512_fmadd_ps(a[k], m, c);
  __m512 t = a[0];
  for (int k = 1; k < kChains; ++k) t = _mm512_add_ps(t, a[k]);
  alignas(64) float v[16];
  _mm512_store_ps(v, t);
  *sink = v[0] + v[15];
  constexpr int kLanes = 16;
#elif defined(__AVX2__) && defined(__FMA__)
  __m256 a[kChains];
  const __m256 m = _mm256_set1_ps(0.9999f), c = _mm256_set1_ps(1e-6f);
  for (int k = 0; k < kChains; ++k) a[k] = _mm256_set1_ps(static_cast<float>(k));
  for (int64_t i = 0; i < iters; ++i)
    for (int k = 0; k < kChains; ++k) a[k] = _mm256_fmadd_ps(a[k], m, c);
  __m256 t = a[0];
  for (int k = 1; k < kChains; ++k) t = _mm256_add_ps(t, a[k]);
  alignas(32) float v[8];
  _mm256_store_ps(v, t);
  *sink = v[0] + v[7];
  constexpr int kLanes = 8;
#elif defined(__aarch64__)
  float32x4_t a[kChains];
  const float32x4_t m = vdupq_n_f32(0.9999f), c = vdupq_n_f32(1e-6f);
  for (int k = 0; k < kChains; ++k) a[k] = vdupq_n_f32(static_cast<float>(k));
  for (int64_t i = 0; i < iters; ++i)
    for (int k = 0; k < kChains; ++k) a[k] = vfmaq_f32(c, a[k], m);
  float32x4_t t = a[0];
  for (int k = 1; k < kChains; ++k) t = vaddq_f32(t, a[k]);
  *sink = vaddvq_f32(t);
  constexpr int kLanes = 4;
#else
  float a[kChains];  // no FMA in the baseline ISA: a multiply and an add, counted as two FLOPs
  for (int k = 0; k < kChains; ++k) a[k] = static_cast<float>(k);
  for (int64_t i = 0; i < iters; ++i)
    for (int k = 0; k < kChains; ++k) a[k] = a[k] * 0.9999f + 1e-6f;
  float t = 0;
  for (int k = 0; k < kChains; ++k) t += a[k];
  *sink = t;
  constexpr int kLanes = 1;
#endif
  return 2.0 * kLanes * kChains * static_cast<double>(iters);
}

}  // namespace

double CpuBackend::fma_peak_gflops() {
  // Best of three passes of ~0.1 s over every thread.
  const int T = threads();
  constexpr int64_t kIters = 20'000'000;
  double best = 0;
  std::vector<float> sink(static_cast<size_t>(T));
  for (int rep = 0; rep < 3; ++rep) {
    std::vector<double> flops(static_cast<size_t>(T));
    const auto t0 = std::chrono::steady_clock::now();
    par(T, 1, [&](int tid, int64_t, int64_t) { flops[static_cast<size_t>(tid)] = fma_loop(kIters / 4, &sink[static_cast<size_t>(tid)]); });
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double total = 0;
    for (double f : flops) total += f;
    best = std::max(best, total / sec / 1e9);
  }
  return best;
}

void* CpuBackend::alloc(size_t bytes) {
  if (bytes == 0) bytes = 64;
  void* p = nullptr;
  if (bytes >= kMapThreshold) {
    p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
      throw CapacityError("cpu backend: cannot map " + std::to_string(bytes) + " bytes (" + std::strerror(errno) + ")");
    std::lock_guard<std::mutex> lk(g_map_mu);
    mappings()[p] = bytes;
  } else {
    const size_t rounded = (bytes + 63) / 64 * 64;
    p = std::aligned_alloc(64, rounded);
    if (p == nullptr) throw CapacityError("cpu backend: cannot allocate " + std::to_string(bytes) + " bytes");
    std::memset(p, 0, rounded);
  }
  std::lock_guard<std::mutex> lk(mem_mu_);
  buffer_bytes_ += bytes;
  return p;
}

void CpuBackend::release(void* p) noexcept {
  if (p == nullptr) return;
  size_t len = 0;
  {
    std::lock_guard<std::mutex> lk(g_map_mu);
    auto it = mappings().find(p);
    if (it != mappings().end()) {
      len = it->second;
      mappings().erase(it);
    }
  }
  if (len > 0) {
    munmap(p, len);
    std::lock_guard<std::mutex> lk(mem_mu_);
    buffer_bytes_ -= len;
    return;
  }
  std::free(p);  // small blocks are not counted back exactly (their size is not kept); they are few
}

void CpuBackend::upload(void* dst, const void* src, size_t bytes) {
  if (bytes > 0) std::memcpy(dst, src, bytes);
}
void CpuBackend::download(void* dst, const void* src, size_t bytes) {
  if (bytes > 0) std::memcpy(dst, src, bytes);
}
void CpuBackend::copy(void* dst, const void* src, size_t bytes) {
  if (bytes > 0) std::memmove(dst, src, bytes);
}

ModelWeights CpuBackend::bind_weights(const ModelWeights& host, const ModelConfig& cfg) {
  // Zero copy: the ops read the mapped checkpoint (and the model's decoded small parameters).
  struct Count final : WeightVisitor {
    uint64_t n = 0;
    void matrix(MatW& w) override { n += w.bytes(); }
    void floats(FVec& v) override { n += v.size() * sizeof(float); }
    void doubles(DVec& v) override { n += v.size() * sizeof(double); }
    void bytes(const uint8_t*&, size_t k) override { n += k; }
  } count;
  ModelWeights w = host;
  visit_weights(w, cfg, count);
  std::lock_guard<std::mutex> lk(mem_mu_);
  weight_bytes_ += count.n;
  return w;
}

}  // namespace dsv4::DSV4_CPU_NS

// The tier's one global symbol (cmake/cpu_tiers.cmake makes every other symbol of the tier local).
extern "C" dsv4::Backend* DSV4_CPU_ENTRY(int threads) { return new dsv4::DSV4_CPU_NS::CpuBackend(threads); }
