// RoPE inverse frequencies (model.md §1): plain θ^(-2i/rd), or YaRN-blended for the compress table.
#pragma once
#include <cstdint>
#include <vector>

#include "dsv4/config.hpp"

namespace dsv4 {

std::vector<double> rope_frequencies(const RopeParams& p, int64_t rd);

// cos/sin [rows, rd/2] of angle (p0 + r)·f_i, angles in double.
void rope_table(const std::vector<double>& freqs, int64_t p0, int64_t rows, float* cos, float* sin);

}  // namespace dsv4
