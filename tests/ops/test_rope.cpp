// RoPE frequency tables (plain and YaRN). The rotation itself is an op: ops/cases_norm_rope.cpp.
#include <doctest/doctest.h>

#include <cmath>

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
