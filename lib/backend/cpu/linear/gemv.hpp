// Fused decode + dot kernels for small batches (decode steps): weights are read once, decoded in
// registers (FP8 via F16C, FP4 via an in-register table, BF16 by shifting) and multiplied with
// up to kGemvMaxBatch activation rows (any S works; larger S is better served by decode + GEMM). Selected at compile time; gemv_available() says whether
// this build has them (AVX-512 today), else the caller uses decode_rows + Eigen.
#pragma once
#include <cstdint>

#include "model/weights.hpp"

namespace dsv4::DSV4_CPU_NS {

constexpr int64_t kGemvMaxBatch = 32;  // the most activation rows the fused kernels take
// Up to how many activation rows the fused kernel beats decode + GEMM for W's format (2 threads,
// 2048x4096 in cache: FP4 fused 180-190 GFLOP/s at 8-32 rows against 88-176 for decode + GEMM;
// FP8 fused 133 vs 85 at 12 rows, 120 vs 124 at 24, 121 vs 142 at 32).
inline int64_t gemv_max_batch(const MatW& w) { return w.fmt == WFormat::FP8 ? 24 : kGemvMaxBatch; }

bool gemv_available();
// The instruction-set tier these kernels were compiled for ("portable" without them).
const char* gemv_tier();
// y[s*ldy + j] = Σ_i x[s*ldx + i] · W[r0 + j, i] for j in [jb, je), s < S <= kGemvMaxBatch.
// `xp` is what gemv_prepare_x made of x (shared by all threads, read-only); `scratch` is the
// calling thread's own buffer of at least gemv_scratch_floats(w, S) floats.
void gemv_rows(const MatW& w, int64_t r0, int64_t jb, int64_t je, const float* x, int64_t ldx, int64_t S, float* y,
               int64_t ldy, const float* xp, float* scratch);
inline size_t gemv_scratch_floats(const MatW& w, int64_t S) { return w.fmt == WFormat::FP8 ? static_cast<size_t>(S * w.cols) : 1; }
// SIMD version of decode_rows (same results); false when this build has no fast path.
bool decode_rows_fast(const MatW& w, int64_t r, int64_t count, float* out);
// Fills xp (S·cols floats) from x as gemv_rows expects for W's format: a permuted copy for FP8,
// block fixed point for FP4 (layouts in gemv_avx512.cpp), nothing for the plain formats.
void gemv_prepare_x(const MatW& w, const float* x, int64_t ldx, int64_t S, float* xp);
// Whether gemv_prepare_x writes anything for W (else gemv_rows reads x directly).
inline bool gemv_needs_prepared_x(const MatW& w) { return w.fmt == WFormat::FP4 || w.fmt == WFormat::FP8; }
// Whether gemv_prepare_x makes the same copy of one x for both matrices (same format and width).
inline bool gemv_same_prepared_x(const MatW& a, const MatW& b) { return a.fmt == b.fmt && a.cols == b.cols; }

}  // namespace dsv4::DSV4_CPU_NS
