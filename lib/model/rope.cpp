#include "model/rope.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace dsv4 {

std::vector<double> rope_frequencies(const RopeParams& p, int64_t rd) {
  const int64_t half = rd / 2;
  std::vector<double> f(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) f[i] = std::pow(p.theta, -2.0 * static_cast<double>(i) / static_cast<double>(rd));
  if (!p.yarn) return f;
  const auto d = [&](double n) {
    return static_cast<double>(rd) * std::log(p.original_max_position / (2.0 * std::numbers::pi * n)) / (2.0 * std::log(p.theta));
  };
  const double lo = std::max(std::floor(d(p.beta_fast)), 0.0);
  double hi = std::min(std::ceil(d(p.beta_slow)), static_cast<double>(rd - 1));
  if (lo == hi) hi += 0.001;
  for (int64_t i = 0; i < half; ++i) {
    const double ramp = std::clamp((static_cast<double>(i) - lo) / (hi - lo), 0.0, 1.0);
    f[i] = f[i] / p.factor * ramp + f[i] * (1.0 - ramp);
  }
  return f;
}

void rope_table(const std::vector<double>& freqs, int64_t p0, int64_t rows, float* cos, float* sin) {
  const auto half = static_cast<int64_t>(freqs.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < half; ++i) {
      const double a = static_cast<double>(p0 + r) * freqs[i];
      cos[r * half + i] = static_cast<float>(std::cos(a));
      sin[r * half + i] = static_cast<float>(std::sin(a));
    }
}

}  // namespace dsv4
