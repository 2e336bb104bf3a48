// RoPE frequency tables (plain and YaRN) and the interleaved trailing-slice rotation.
#include <doctest/doctest.h>

#include <cmath>
#include <complex>

#include "backend/cpu/cpu_backend.hpp"
#include "model/rope.hpp"
#include "support/support.hpp"

using namespace dsv4;
using namespace dsv4::test;

TEST_CASE("plain frequencies are theta^(-2i/rd)") {
  RopeParams p;
  p.theta = 10000;
  const auto f = rope_frequencies(p, 64);
  REQUIRE(f.size() == 32);
  for (int i = 0; i < 32; ++i) CHECK(f[i] == doctest::Approx(std::pow(10000.0, -i / 32.0)).epsilon(1e-14));
}

TEST_CASE("YaRN at the V4-Flash settings keeps channels <= 15 / divides channels >= 25 by 16 / blends between") {
  RopeParams p;
  p.theta = 160000;
  p.yarn = true;
  p.factor = 16;
  p.original_max_position = 65536;
  p.beta_fast = 32;
  p.beta_slow = 1;
  const auto f = rope_frequencies(p, 64);
  // d(32) = 64·ln(65536/(64π))/(2 ln 160000) ≈ 15.45 -> lo = 15; d(1) ≈ 24.71 -> hi = 25.
  for (int i = 0; i < 32; ++i) {
    const double base = std::pow(160000.0, -i / 32.0);
    if (i <= 15) CHECK(f[i] == doctest::Approx(base).epsilon(1e-14));
    else if (i >= 25) CHECK(f[i] == doctest::Approx(base / 16).epsilon(1e-14));
    else {
      const double ramp = (i - 15) / 10.0;
      CHECK(f[i] == doctest::Approx(base / 16 * ramp + base * (1 - ramp)).epsilon(1e-14));
    }
  }
}

TEST_CASE("rope rotates pairs (2i / 2i+1) of the trailing slice / inverse undoes it") {
  CpuBackend be(2);
  RopeParams p;
  const int64_t hd = 24, rd = 8, heads = 3;
  const auto f = rope_frequencies(p, rd);
  for (int64_t rows : {1, 13, 137}) {
    const int64_t p0 = 1000;
    std::vector<float> cs(static_cast<size_t>(rows * rd / 2)), sn(cs.size());
    rope_table(f, p0, rows, cs.data(), sn.data());
    auto x = random_floats(static_cast<size_t>(rows * heads * hd), 5);
    auto y = x;
    be.rope(y.data(), rows, heads * hd, heads, hd, hd - rd, rd, {cs.data(), sn.data()}, false);
    int64_t bad = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t h = 0; h < heads; ++h) {
        const size_t b = static_cast<size_t>(r * heads * hd + h * hd);
        for (int64_t i = 0; i < hd - rd; ++i) bad += y[b + i] != x[b + i];  // nope channels untouched
        for (int64_t i = 0; i < rd / 2; ++i) {
          const std::complex<double> z(x[b + hd - rd + 2 * i], x[b + hd - rd + 2 * i + 1]);
          const auto w = z * std::polar(1.0, static_cast<double>(p0 + r) * f[static_cast<size_t>(i)]);
          bad += std::fabs(w.real() - y[b + hd - rd + 2 * i]) > 1e-5 || std::fabs(w.imag() - y[b + hd - rd + 2 * i + 1]) > 1e-5;
        }
      }
    CHECK(bad == 0);
    be.rope(y.data(), rows, heads * hd, heads, hd, hd - rd, rd, {cs.data(), sn.data()}, true);
    CHECK(rel_err(y.data(), x.data(), x.size()) < 1e-6);
  }
}
