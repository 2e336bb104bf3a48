// The read half of the bandwidth ceilings in `dsv4 bench` and `bench_gemv`: a pass over memory
// shaped like the decode kernels' reads (four streams far apart per thread), so that the
// ceiling is not lower than what the kernels themselves reach.
#pragma once
#include <cstddef>
#include <cstdint>

namespace dsv4 {

// Reads `bytes` at `p` (8-byte aligned) as four equal streams from the quarter points, xor-ing
// the 64-bit words (vectorised, nothing to wait on); returns the xor so the reads stay. Bytes
// past the last whole word of each quarter are not read. Thread-safe; no allocation.
uint64_t read_four_streams(const void* p, size_t bytes);

}  // namespace dsv4
