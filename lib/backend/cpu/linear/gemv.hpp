// Fused decode + dot kernels for small batches (decode steps): weights are read once, decoded in
// registers and multiplied with up to gemv_max_batch(w) activation rows (larger batches are better
// served by decode + GEMM). Each kernel tier implements this interface in its own file
// (gemv_none.cpp, gemv_avx2.cpp, gemv_avx512.cpp, gemv_neon.cpp); gemv_available() says whether the
// tier has fused kernels at all, else the caller uses decode_rows + Eigen.
#pragma once
#include <cstddef>
#include <cstdint>

#include "model/weights.hpp"

namespace dsv4::DSV4_CPU_NS {

constexpr int64_t kGemvMaxBatch = 32;  // no tier takes more activation rows than this

bool gemv_available();
// What this tier's fused kernels use ("none" for the portable tier).
const char* gemv_tier();
// Up to how many activation rows the fused kernel beats decode + GEMM for W's format.
int64_t gemv_max_batch(const MatW& w);
// y[s*ldy + j] = Σ_i x[s*ldx + i] · W[r0 + j, i] for j in [jb, je), s < S <= gemv_max_batch(w).
// `xp` is what gemv_prepare_x made of x (shared by all threads, read-only); `scratch` is the
// calling thread's own buffer of at least gemv_scratch_floats(w, S) floats.
void gemv_rows(const MatW& w, int64_t r0, int64_t jb, int64_t je, const float* x, int64_t ldx, int64_t S, float* y,
               int64_t ldy, const float* xp, float* scratch);
size_t gemv_scratch_floats(const MatW& w, int64_t S);
// SIMD version of decode_rows (same results); false when this tier has no fast path.
bool decode_rows_fast(const MatW& w, int64_t r, int64_t count, float* out);
// Fills xp (gemv_prepared_floats(w, S) floats) from x as gemv_rows expects for W's format (a
// permuted or scaled copy, block fixed point, ...: layouts in the tier's file).
void gemv_prepare_x(const MatW& w, const float* x, int64_t ldx, int64_t S, float* xp);
size_t gemv_prepared_floats(const MatW& w, int64_t S);
// An upper bound of the sum of gemv_prepared_floats(w, n) over tasks whose rows n add up to
// `rows` (no tier prepares more per row for several rows than for one; some prepare nothing for
// many rows).
inline size_t gemv_prepared_bound(const MatW& w, int64_t rows) { return static_cast<size_t>(rows) * gemv_prepared_floats(w, 1); }
// Whether gemv_prepare_x writes anything for W (else gemv_rows reads x directly).
bool gemv_needs_prepared_x(const MatW& w);
// Whether gemv_prepare_x makes the same copy of one x for both matrices.
inline bool gemv_same_prepared_x(const MatW& a, const MatW& b) { return a.fmt == b.fmt && a.cols == b.cols; }

}  // namespace dsv4::DSV4_CPU_NS
