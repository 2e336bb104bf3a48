// Attention core against a naive double implementation: window (ring + chunk), compressed
// entries (all visible or selected), sink.
#include <doctest/doctest.h>

#include <cmath>

#include "backend/cpu/cpu_backend.hpp"
#include "support/support.hpp"

using namespace dsv4;
using namespace dsv4::test;

namespace {

struct Case {
  int64_t S, p0, H = 3, hd = 16, W = 8, ratio = 4, topk = 3;
  bool entries = false, select = false;
};

void run_case(const Case& cs) {
  CpuBackend be(2);
  const int64_t T = cs.p0 + cs.S, H = cs.H, hd = cs.hd, W = cs.W;
  auto hist = random_floats(static_cast<size_t>(T * hd), 1 + T, -1, 1);  // kv rows of every position
  auto q = random_floats(static_cast<size_t>(cs.S * H * hd), 2 + T, -1.5f, 1.5f);
  const int64_t n_entries = T / cs.ratio;
  auto entries = random_floats(static_cast<size_t>(std::max<int64_t>(n_entries, 1) * hd), 3 + T);
  auto sink = random_floats(static_cast<size_t>(H), 4);
  std::vector<float> ring(static_cast<size_t>(W * hd), NAN);
  for (int64_t j = std::max<int64_t>(0, cs.p0 - W); j < cs.p0; ++j)
    std::copy_n(hist.begin() + j * hd, hd, ring.begin() + (j % W) * hd);
  std::vector<int32_t> sel(static_cast<size_t>(cs.S * cs.topk), -1);
  for (int64_t s = 0; s < cs.S; ++s) {
    const int64_t vis = (cs.p0 + s + 1) / cs.ratio;
    for (int64_t k = 0; k < std::min(cs.topk, vis); ++k) sel[static_cast<size_t>(s * cs.topk + k)] = static_cast<int32_t>((vis - 1 - 2 * k + 100 * vis) % vis);
  }
  std::vector<float> out(static_cast<size_t>(cs.S * H * hd));
  AttentionArgs a;
  a.S = cs.S;
  a.p0 = cs.p0;
  a.H = H;
  a.hd = hd;
  a.W = W;
  a.q = q.data();
  a.kv = hist.data() + cs.p0 * hd;
  a.ring = ring.data();
  a.sink = sink.data();
  a.out = out.data();
  if (cs.entries) {
    a.entries = entries.data();
    a.ratio = cs.ratio;
    if (cs.select) {
      a.select = sel.data();
      a.topk = cs.topk;
    }
  }
  be.attention(a);

  std::vector<float> ref(out.size());
  for (int64_t s = 0; s < cs.S; ++s)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t t = cs.p0 + s;
      std::vector<const float*> keys;
      for (int64_t j = std::max<int64_t>(0, t - W + 1); j <= t; ++j) keys.push_back(hist.data() + j * hd);
      if (cs.entries) {
        if (cs.select) {
          for (int64_t k = 0; k < cs.topk; ++k)
            if (sel[static_cast<size_t>(s * cs.topk + k)] >= 0) keys.push_back(entries.data() + sel[static_cast<size_t>(s * cs.topk + k)] * hd);
        } else {
          for (int64_t w = 0; w < (t + 1) / cs.ratio; ++w) keys.push_back(entries.data() + w * hd);
        }
      }
      std::vector<double> lg;
      double mx = sink[static_cast<size_t>(h)];
      for (auto* k : keys) {
        double d = 0;
        for (int64_t i = 0; i < hd; ++i) d += static_cast<double>(q[static_cast<size_t>(s * H * hd + h * hd + i)]) * k[i];
        lg.push_back(d / std::sqrt(static_cast<double>(hd)));
        mx = std::max(mx, lg.back());
      }
      double den = std::exp(sink[static_cast<size_t>(h)] - mx);
      for (auto& l : lg) den += (l = std::exp(l - mx));
      for (int64_t i = 0; i < hd; ++i) {
        double o = 0;
        for (size_t k = 0; k < keys.size(); ++k) o += lg[k] / den * keys[k][i];
        ref[static_cast<size_t>(s * H * hd + h * hd + i)] = static_cast<float>(o);
      }
    }
  CHECK(rel_err(out.data(), ref.data(), out.size()) < 1e-5);
}

}  // namespace

TEST_CASE("sliding window only / first call and continuation") {
  for (int64_t S : {1, 13, 137}) {
    run_case({S, 0});
    run_case({S, 21});
  }
}

TEST_CASE("window + all visible compressed entries (HCA)") {
  for (int64_t S : {1, 13, 137}) run_case({S, 9, 3, 16, 8, 4, 3, true, false});
}

TEST_CASE("window + selected compressed entries (CSA)") {
  for (int64_t S : {1, 13, 137}) run_case({S, 30, 3, 16, 8, 4, 3, true, true});
}

TEST_CASE("odd head counts and V4 decode shapes (64 heads x 512, window 128, 512 selected)") {
  // 13 heads over 2 threads splits one token's heads unevenly; 64 x 512 is V4-Flash's decode step.
  run_case({1, 40, 13, 64, 8, 4, 5, true, true});
  run_case({3, 40, 13, 64, 8, 4, 5, true, false});
  run_case({1, 2300, 64, 512, 128, 4, 512, true, true});
  run_case({2, 2300, 64, 512, 128, 128, 512, true, false});
}
