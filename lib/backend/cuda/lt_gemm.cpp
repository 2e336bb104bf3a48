// cuBLASLt behind dsv4k::Bf16Gemm (lt_gemm.hpp), loaded at run time.
#include "backend/cuda/lt_gemm.hpp"

#include <cublasLt.h>
#include <dlfcn.h>

#include <cstring>
#include <map>
#include <stdexcept>
#include <tuple>

namespace dsv4::cuda {

namespace {

// The cuBLASLt entry points used here, by name.
#define DSV4_LT_FUNCS(X)            \
  X(cublasLtCreate)                 \
  X(cublasLtDestroy)                \
  X(cublasLtGetVersion)             \
  X(cublasLtMatmulDescCreate)       \
  X(cublasLtMatmulDescDestroy)      \
  X(cublasLtMatmulDescSetAttribute) \
  X(cublasLtMatrixLayoutCreate)     \
  X(cublasLtMatrixLayoutDestroy)    \
  X(cublasLtMatmulPreferenceCreate) \
  X(cublasLtMatmulPreferenceDestroy) \
  X(cublasLtMatmulPreferenceSetAttribute) \
  X(cublasLtMatmulAlgoGetHeuristic) \
  X(cublasLtMatmul)

uint32_t alignment(const void* p) {  // of a pointer, capped at 256 bytes
  const auto u = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && u % a != 0) a /= 2;
  return a;
}

}  // namespace

struct LtGemm::Impl {
  void* lib = nullptr;
#define DSV4_LT_PTR(f) decltype(&::f) f = nullptr;
  DSV4_LT_FUNCS(DSV4_LT_PTR)
#undef DSV4_LT_PTR
  cublasLtHandle_t handle = nullptr;

  struct Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
    bool ok = false;
  };
  // (n, S, K, lda, ldb, ldy, alignments of a, b, y, workspace bytes)
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, uint32_t, uint32_t, uint32_t, size_t>;
  std::map<Key, Plan> plans;

  void destroy(Plan& p) {
    if (p.a != nullptr) cublasLtMatrixLayoutDestroy(p.a);
    if (p.b != nullptr) cublasLtMatrixLayoutDestroy(p.b);
    if (p.c != nullptr) cublasLtMatrixLayoutDestroy(p.c);
    if (p.op != nullptr) cublasLtMatmulDescDestroy(p.op);
    p = Plan{};
  }
  ~Impl() {
    for (auto& [k, p] : plans) destroy(p);
    if (handle != nullptr) cublasLtDestroy(handle);
    if (lib != nullptr) dlclose(lib);
  }

  Plan& plan(const dsv4k::Bf16Gemm& g, size_t ws_bytes) {
    const uint32_t aa = alignment(g.a), ab = alignment(g.b), ay = alignment(g.y);
    const Key key{g.n, g.S, g.K, g.lda, g.ldb, g.ldy, aa, ab, ay, ws_bytes};
    auto it = plans.find(key);
    if (it != plans.end()) return it->second;
    if (plans.size() >= 512) {  // shapes come from the model and the step sizes: a bound, not an LRU
      for (auto& [k, p] : plans) destroy(p);
      plans.clear();
    }
    Plan& p = plans[key];
    const cublasOperation_t t = CUBLAS_OP_T, nt = CUBLAS_OP_N;
    bool ok = cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS &&
              cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof t) == CUBLAS_STATUS_SUCCESS &&
              cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &nt, sizeof nt) == CUBLAS_STATUS_SUCCESS &&
              // column-major: A = Wᵀ (K x n), B = xᵀ (K x S), C = D = yᵀ (n x S)
              cublasLtMatrixLayoutCreate(&p.a, CUDA_R_16BF, static_cast<uint64_t>(g.K), static_cast<uint64_t>(g.n), g.lda) == CUBLAS_STATUS_SUCCESS &&
              cublasLtMatrixLayoutCreate(&p.b, CUDA_R_16BF, static_cast<uint64_t>(g.K), static_cast<uint64_t>(g.S), g.ldb) == CUBLAS_STATUS_SUCCESS &&
              cublasLtMatrixLayoutCreate(&p.c, CUDA_R_32F, static_cast<uint64_t>(g.n), static_cast<uint64_t>(g.S), g.ldy) == CUBLAS_STATUS_SUCCESS;
    cublasLtMatmulPreference_t pref = nullptr;
    if (ok && cublasLtMatmulPreferenceCreate(&pref) == CUBLAS_STATUS_SUCCESS) {
      const uint64_t ws = ws_bytes;
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa, sizeof aa);
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab, sizeof ab);
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ay, sizeof ay);
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ay, sizeof ay);
      cublasLtMatmulHeuristicResult_t res{};
      int found = 0;
      ok = cublasLtMatmulAlgoGetHeuristic(handle, p.op, p.a, p.b, p.c, p.c, pref, 1, &res, &found) == CUBLAS_STATUS_SUCCESS && found > 0 &&
           res.state == CUBLAS_STATUS_SUCCESS;
      if (ok) p.algo = res.algo;
      cublasLtMatmulPreferenceDestroy(pref);
    } else {
      ok = false;
    }
    p.ok = ok;
    return p;
  }
};

LtGemm::LtGemm() : impl_(std::make_unique<Impl>()) {
  const std::string name = "libcublasLt.so." + std::to_string(CUBLAS_VER_MAJOR);
  impl_->lib = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (impl_->lib == nullptr) {
    const char* e = dlerror();
    why_ = "cuBLASLt not loaded (" + name + ": " + (e != nullptr ? e : "not found") + "): prefill uses the reference GEMM kernel";
    impl_.reset();
    return;
  }
#define DSV4_LT_LOAD(f)                                                  \
  impl_->f = reinterpret_cast<decltype(&::f)>(dlsym(impl_->lib, #f));   \
  if (impl_->f == nullptr) {                                             \
    why_ = name + " lacks " #f ": prefill uses the reference GEMM kernel"; \
    impl_.reset();                                                       \
    return;                                                              \
  }
  DSV4_LT_FUNCS(DSV4_LT_LOAD)
#undef DSV4_LT_LOAD
  if (impl_->cublasLtCreate(&impl_->handle) != CUBLAS_STATUS_SUCCESS) {
    why_ = "cublasLtCreate failed: prefill uses the reference GEMM kernel";
    impl_->handle = nullptr;
    impl_.reset();
    return;
  }
  why_ = "cuBLASLt " + std::to_string(impl_->cublasLtGetVersion());
}

LtGemm::~LtGemm() = default;

bool LtGemm::available() const { return impl_ != nullptr; }

bool LtGemm::run(const dsv4k::Bf16Gemm& g, cudaStream_t stream, void* workspace, size_t ws_bytes) {
  if (impl_ == nullptr) return false;
  Impl::Plan& p = impl_->plan(g, ws_bytes);
  if (!p.ok) {
    ++fallbacks_;
    return false;
  }
  const float alpha = 1.0f, beta = g.accumulate ? 1.0f : 0.0f;
  const cublasStatus_t s = impl_->cublasLtMatmul(impl_->handle, p.op, &alpha, g.a, p.a, g.b, p.b, &beta, g.y, p.c, g.y, p.c, &p.algo,
                                                 workspace, ws_bytes, stream);
  if (s != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error("cublasLtMatmul failed (status " + std::to_string(static_cast<int>(s)) + ", " + std::to_string(g.n) + " x " +
                             std::to_string(g.S) + " x " + std::to_string(g.K) + ")");
  ++calls_;
  return true;
}

}  // namespace dsv4::cuda
