// Compressor (CSA overlap, HCA) against a naive whole-sequence pooling, fed in any split; indexer
// causal mask and top-k against brute force.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "backend/cpu/cpu_backend.hpp"
#include "model/rope.hpp"
#include "support/support.hpp"

using namespace dsv4;
using namespace dsv4::test;

namespace {

// Entries of every complete window from the whole sequence's projected kv and raw gates g.
std::vector<float> naive_entries(const CompressorW& w, const std::vector<float>& kv, const std::vector<float>& g, int64_t T,
                                 const std::vector<double>& freqs, int64_t rd) {
  const int64_t m = w.ratio, Wd = w.width, c = w.overlap ? 2 : 1, row = c * Wd, n = T / m;
  std::vector<float> out(static_cast<size_t>(n * Wd));
  for (int64_t e = 0; e < n; ++e) {
    std::vector<double> ent(static_cast<size_t>(Wd));
    for (int64_t ch = 0; ch < Wd; ++ch) {
      std::vector<std::pair<double, double>> slots;  // (gate, value)
      if (w.overlap && e > 0)
        for (int64_t i = 0; i < m; ++i) {
          const int64_t t = (e - 1) * m + i;
          slots.emplace_back(g[static_cast<size_t>(t * row + ch)] + w.ape[static_cast<size_t>(i * row + ch)], kv[static_cast<size_t>(t * row + ch)]);
        }
      for (int64_t i = 0; i < m; ++i) {
        const int64_t t = e * m + i, off = (c - 1) * Wd + ch;
        slots.emplace_back(g[static_cast<size_t>(t * row + off)] + w.ape[static_cast<size_t>(i * row + off)], kv[static_cast<size_t>(t * row + off)]);
      }
      double mx = -1e300, num = 0, den = 0;
      for (auto& [gt, v] : slots) mx = std::max(mx, gt);
      for (auto& [gt, v] : slots) {
        den += std::exp(gt - mx);
        num += std::exp(gt - mx) * v;
      }
      ent[static_cast<size_t>(ch)] = num / den;
    }
    double ss = 0;
    for (double v : ent) ss += v * v;
    const double inv = 1.0 / std::sqrt(ss / Wd + 1e-6);
    for (int64_t ch = 0; ch < Wd; ++ch) ent[static_cast<size_t>(ch)] *= inv * w.norm[static_cast<size_t>(ch)];
    for (int64_t i = 0; i < rd / 2; ++i) {
      const double a = static_cast<double>(e * m) * freqs[static_cast<size_t>(i)];
      const size_t k = static_cast<size_t>(Wd - rd + 2 * i);
      const double x0 = ent[k], x1 = ent[k + 1];
      ent[k] = x0 * std::cos(a) - x1 * std::sin(a);
      ent[k + 1] = x1 * std::cos(a) + x0 * std::sin(a);
    }
    for (int64_t ch = 0; ch < Wd; ++ch) out[static_cast<size_t>(e * Wd + ch)] = static_cast<float>(ent[static_cast<size_t>(ch)]);
  }
  return out;
}

void check_compressor(bool overlap, int64_t m, const std::vector<int64_t>& splits, int64_t T) {
  CpuBackend be(2);
  const int64_t Wd = 16, rd = 8, c = overlap ? 2 : 1, row = c * Wd;
  CompressorW w;
  w.ratio = m;
  w.width = Wd;
  w.overlap = overlap;
  w.ape = random_floats(static_cast<size_t>(m * row), 1, -2, 2);
  w.norm = random_floats(static_cast<size_t>(Wd), 2, 0.5f, 1.5f);
  RopeParams p;
  p.theta = 160000;
  const auto freqs = rope_frequencies(p, rd);
  auto kv = random_floats(static_cast<size_t>(T * row), 3);
  auto g = random_floats(static_cast<size_t>(T * row), 4, -3, 3);
  std::vector<float> pkv(static_cast<size_t>(m * row)), pg(pkv.size()), qkv(static_cast<size_t>(m * Wd)), qg(qkv.size()),
      ent(static_cast<size_t>((T / m + 1) * Wd), NAN);
  CompressorState st{pkv.data(), pg.data(), qkv.data(), qg.data(), ent.data(), 0};
  int64_t done = 0;
  for (int64_t n : splits) {
    be.compress(w, st, kv.data() + done * row, g.data() + done * row, n, done, freqs.data(), rd, 1e-6f);
    done += n;
  }
  while (done < T) {
    be.compress(w, st, kv.data() + done * row, g.data() + done * row, 1, done, freqs.data(), rd, 1e-6f);
    ++done;
  }
  REQUIRE(st.n_entries == T / m);
  const auto ref = naive_entries(w, kv, g, T, freqs, rd);
  CHECK(rel_err(ent.data(), ref.data(), ref.size()) < 1e-5);
  // Window 0 of the overlapping compressor pools only its own Cb slots.
  CHECK(rel_err(ent.data(), ref.data(), static_cast<size_t>(Wd)) < 1e-5);
}

}  // namespace

TEST_CASE("CSA compressor (overlap / m=4): window 0 and across calls") {
  check_compressor(true, 4, {37}, 37);
  check_compressor(true, 4, {}, 37);             // one token at a time
  check_compressor(true, 4, {3, 1, 13, 2}, 37);  // splits inside windows
  check_compressor(true, 4, {4}, 4);             // exactly one window
}

TEST_CASE("HCA compressor (plain / m=16)") {
  check_compressor(false, 16, {137}, 137);
  check_compressor(false, 16, {13, 1, 50}, 137);
}

namespace {
void check_indexer(int64_t nI, int64_t ihd, int64_t topk, const std::vector<std::pair<int64_t, int64_t>>& runs) {
  CpuBackend be(2);
  const int64_t m = 4;
  for (auto [S, p0] : runs) {
    const int64_t T = p0 + S;
    auto keys = random_floats(static_cast<size_t>((T / m + 1) * ihd), 1 + S + p0);
    auto q = random_floats(static_cast<size_t>(S * nI * ihd), 2 + S);
    auto wts = random_floats(static_cast<size_t>(S * nI), 3 + S);
    std::vector<int32_t> sel(static_cast<size_t>(S * topk), 77);
    be.indexer_select({S, p0, m, nI, ihd, topk, q.data(), wts.data(), keys.data(), sel.data()});
    int64_t bad = 0;
    for (int64_t s = 0; s < S; ++s) {
      const int64_t t = p0 + s, vis = (t + 1) / m;
      std::vector<double> score(static_cast<size_t>(vis));
      for (int64_t w = 0; w < vis; ++w) {
        double acc = 0;
        for (int64_t h = 0; h < nI; ++h) {
          double d = 0;
          for (int64_t i = 0; i < ihd; ++i) d += static_cast<double>(q[static_cast<size_t>(s * nI * ihd + h * ihd + i)]) * keys[static_cast<size_t>(w * ihd + i)];
          acc += wts[static_cast<size_t>(s * nI + h)] * std::max(0.0, d);
        }
        score[static_cast<size_t>(w)] = acc / std::sqrt(static_cast<double>(ihd));
      }
      std::vector<int32_t> order(static_cast<size_t>(vis));
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return score[static_cast<size_t>(a)] > score[static_cast<size_t>(b)]; });
      const int64_t k = std::min(topk, vis);
      std::vector<int32_t> got(sel.begin() + s * topk, sel.begin() + s * topk + k), want(order.begin(), order.begin() + k);
      std::sort(got.begin(), got.end());
      std::sort(want.begin(), want.end());
      bad += got != want;
      for (int64_t j = 0; j < k; ++j) bad += sel[static_cast<size_t>(s * topk + j)] >= vis;  // causal
      for (int64_t j = k; j < topk; ++j) bad += sel[static_cast<size_t>(s * topk + j)] != -1;
    }
    INFO("nI " << nI << " ihd " << ihd << " topk " << topk << " S " << S << " p0 " << p0);
    CHECK(bad == 0);
  }
}
}  // namespace

TEST_CASE("indexer: causal mask and exact top-k") {
  // (S, p0): decode early and deep (the deep one takes the entries-across-threads path), prefill
  check_indexer(4, 8, 3, {{1, 40}, {1, 3001}, {13, 0}, {137, 0}});
  check_indexer(13, 32, 20, {{1, 3001}, {13, 200}});          // heads: one vector of eight and a tail
  check_indexer(64, 128, 512, {{1, 8191}, {3, 4000}});        // V4-Flash: 64 heads x 128, top 512
}
