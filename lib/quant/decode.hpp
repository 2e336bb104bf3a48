// The reference decoder of every stored weight format (scalar, compiled once for the baseline
// ISA): rows of a MatW to fp32. The kernels' own decoders are checked against it.
#pragma once
#include <cstdint>

#include "model/weights.hpp"

namespace dsv4 {

// Decodes rows [r, r + count) of W into out[count, W.cols] as fp32.
void decode_rows(const MatW& w, int64_t r, int64_t count, float* out);

}  // namespace dsv4
