// y = x Wᵀ with W decoded from its stored format inside the kernel, tile by tile.
#include <Eigen/Core>
#include <algorithm>
#include <cstring>

#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/linear/gemv.hpp"
#include "quant/decode.hpp"
#include "quant/formats.hpp"

namespace dsv4::DSV4_CPU_NS {

namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Stride = Eigen::OuterStride<>;

// Rows of W decoded per tile for the batched (prefill) path. Each tile is one GEMM against all of
// x, which Eigen packs again per call: 128-row tiles pack x a quarter as often as 32-row ones
// (measured 2 threads: F32 512x4096x4096 180 -> 200-227 GFLOP/s, FP8 at 4096 tokens 146 -> 182-223).
// Smaller tiles only for matrices that would otherwise give fewer than kTileSplit tiles (enough
// for two per thread up to 4 threads, one per thread up to 8).
constexpr int64_t kMaxTileRows = 128, kMinTileRows = 32, kTileSplit = 8;

int64_t row_bytes(const MatW& w) { return std::max<int64_t>(1, static_cast<int64_t>(w.bytes() / static_cast<uint64_t>(std::max<int64_t>(w.rows, 1)))); }
constexpr size_t kGemvX = 100;  // workspace slot of the permuted activations

// Decode passes hand out work in chunks of about this many weight bytes, in 16-row blocks (FP8:
// whole 128-row scale tiles, which the kernel scales x for once each).
constexpr int64_t kRows = 16, kChunkBytes = 256 << 10;
// Small matrices still give each of `threads` threads a few chunks of at least ~32K weights.
int64_t chunk_blocks(const MatW& w, int64_t blocks, int threads) {
  const int64_t unit = w.fmt == WFormat::FP8 ? 128 / kRows : 1;
  const int64_t most = std::max<int64_t>(1, kChunkBytes / (row_bytes(w) * kRows) / unit) * unit;
  const int64_t least = std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(1, w.cols * kRows));
  return std::clamp<int64_t>(blocks / (4 * std::max(threads, 1)), std::min(least, most), most);
}

}  // namespace

void CpuBackend::linear(const MatW& w, int64_t r0, int64_t n, const float* x, int64_t ldx, int64_t S, float* y,
                        int64_t ldy) {
  const int64_t C = w.cols;
  if (S <= gemv_max_batch(w) && gemv_available()) {
    // Decode steps are memory-bound: stream each weight row once, decoded in registers.
    float* xp = ws_.get(kGemvX, std::max<size_t>(gemv_prepared_floats(w, S), 1));
    gemv_prepare_x(w, x, ldx, S, xp);
    // Threads claim chunks of whole 16-row blocks (no two write the same 64-byte line of y),
    // about kChunkBytes of weights each, as they get free.
    const int64_t blocks = (n + kRows - 1) / kRows;
    par_chunks(blocks, chunk_blocks(w, blocks, threads()), [&](int tid, int64_t bb, int64_t be) {
      float* scratch = thread_scratch(tid, gemv_scratch_floats(w, S));
      gemv_rows(w, r0, bb * kRows, std::min(n, be * kRows), x, ldx, S, y, ldy, xp, scratch);
    });
    return;
  }
  // The tile height follows from the matrix alone, never from the thread count: it sets the
  // shape of every GEMM and so the order of its sums, and results must not depend on threads.
  const int64_t kTileRows = std::clamp<int64_t>(n / kTileSplit / kMinTileRows * kMinTileRows, kMinTileRows, kMaxTileRows);
  const int64_t tiles = (n + kTileRows - 1) / kTileRows;
  // Decode cost is paid once per tile and shared by all S rows of x.
  // Below ~64K multiply-adds per tile the hand-off costs more than it saves: use fewer threads.
  const int64_t grain = std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(1, kTileRows * C * S));
  par(tiles, grain, [&](int tid, int64_t tb, int64_t te) {
    float* tile = w.fmt == WFormat::F32 ? nullptr : thread_scratch(tid, static_cast<size_t>(kTileRows * C));
    for (int64_t t = tb; t < te; ++t) {
      const int64_t j0 = t * kTileRows, rows = std::min(kTileRows, n - j0);
      const float* wt;
      if (w.fmt == WFormat::F32) {
        wt = reinterpret_cast<const float*>(w.data) + (r0 + j0) * C;
      } else {
        if (!decode_rows_fast(w, r0 + j0, rows, tile)) decode_rows(w, r0 + j0, rows, tile);
        wt = tile;
      }
      Eigen::Map<const RowMat> T(wt, rows, C);
      if (S == 1) {
        Eigen::Map<const Eigen::VectorXf> xv(x, C);
        Eigen::Map<Eigen::VectorXf> yv(y + j0, rows);
        yv.noalias() = T * xv;
      } else {
        Eigen::Map<const RowMat, 0, Stride> X(x, S, C, Stride(ldx));
        Eigen::Map<RowMat, 0, Stride> Y(y + j0, S, rows, Stride(ldy));
        Y.noalias() = X * T.transpose();
      }
    }
  });
}

void CpuBackend::reserve_multi(size_t tasks, size_t xp_floats) {
  ws_.get(kGemvX + 1, std::max<size_t>(xp_floats, 1));
  for (size_t slot = kGemvX + 2; slot <= kGemvX + 4; ++slot) ws_.get(slot, 2 * (tasks + 1));
}

void CpuBackend::linear_multi(const LinearTask* tasks, size_t count, int64_t S) {
  auto rows_of = [&](size_t t) { return tasks[t].rows > 0 ? tasks[t].rows : S; };
  bool fused = gemv_available();
  for (size_t t = 0; t < count && fused; ++t) fused = rows_of(t) <= gemv_max_batch(*tasks[t].w);
  if (!fused) {
    Backend::linear_multi(tasks, count, S);
    return;
  }
  // Prepared activations per task (gemv_prepare_x).
  size_t xp_total = 0;
  size_t scratch_floats = 1;
  for (size_t t = 0; t < count; ++t) {
    xp_total += gemv_needs_prepared_x(*tasks[t].w) ? gemv_prepared_floats(*tasks[t].w, rows_of(t)) : 0;
    scratch_floats = std::max(scratch_floats, gemv_scratch_floats(*tasks[t].w, rows_of(t)));
  }
  float* xp = ws_.get(kGemvX + 1, std::max<size_t>(xp_total, 1));
  const float** xps = reinterpret_cast<const float**>(ws_.get(kGemvX + 3, 2 * (count + 1)));
  size_t off = 0;
  for (size_t t = 0; t < count; ++t) {
    xps[t] = xp + off;
    const MatW& w = *tasks[t].w;
    if (gemv_needs_prepared_x(w)) {
      // Tasks that read the same x through the same kind of matrix share one prepared copy.
      size_t same = t;
      for (size_t u = 0; u < t && same == t; ++u)
        if (tasks[u].x == tasks[t].x && tasks[u].ldx == tasks[t].ldx && rows_of(u) == rows_of(t) && gemv_same_prepared_x(*tasks[u].w, w))
          same = u;
      if (same != t) {
        xps[t] = xps[same];
      } else {
        gemv_prepare_x(w, tasks[t].x, tasks[t].ldx, rows_of(t), xp + off);
        off += gemv_prepared_floats(w, rows_of(t));
      }
    }
  }
  // Threads claim chunks of the concatenated rows in order as they get free (chunk_blocks of each
  // task; a chunk never spans two tasks, so threads do not share output lines).
  int64_t* chunk0 = reinterpret_cast<int64_t*>(ws_.get(kGemvX + 4, 2 * (count + 1)));  // first chunk of each task
  int64_t* per = reinterpret_cast<int64_t*>(ws_.get(kGemvX + 2, 2 * (count + 1)));     // rows per chunk of each task
  chunk0[0] = 0;
  for (size_t t = 0; t < count; ++t) {
    const int64_t blocks = (tasks[t].n + kRows - 1) / kRows, cb = chunk_blocks(*tasks[t].w, blocks, 1);
    per[t] = cb * kRows;
    chunk0[t + 1] = chunk0[t] + (blocks + cb - 1) / cb;
  }
  par_chunks(chunk0[count], 1, [&](int tid, int64_t c, int64_t) {
    float* scratch = thread_scratch(tid, scratch_floats);
    const size_t t = static_cast<size_t>(std::upper_bound(chunk0, chunk0 + count + 1, c) - chunk0) - 1;
    const LinearTask& k = tasks[t];
    const int64_t jb = (c - chunk0[t]) * per[t];
    gemv_rows(*k.w, k.r0, jb, std::min(k.n, jb + per[t]), k.x, k.ldx, rows_of(t), k.y, k.ldy, xps[t], scratch);
  });
}

void CpuBackend::embed(const MatW& table, const StepRef& step, int64_t S, int64_t nc, float* X) {
  const int64_t D = table.cols;
  for (int64_t s = 0; s < S; ++s) {
    float* row = X + s * nc * D;
    decode_rows(table, step.ids[s], 1, row);
    for (int64_t j = 1; j < nc; ++j) std::memcpy(row + j * D, row, static_cast<size_t>(D) * sizeof(float));
  }
}

void CpuBackend::gather_rows(const float* src, int64_t ld, const StepRef& step, int64_t n, int64_t width, float* dst) {
  for (int64_t k = 0; k < n; ++k)
    std::memcpy(dst + k * width, src + static_cast<int64_t>(step.out[k]) * ld, static_cast<size_t>(width) * sizeof(float));
}

}  // namespace dsv4::DSV4_CPU_NS
