// The read half of the bandwidth ceilings in `dsv4 bench` and `bench_gemv`: two passes over
// memory, one shaped like the decode kernels' reads (four streams far apart per thread) and one
// plain front-to-back read; callers take the faster, so that the ceiling is not lower than what
// either pattern reaches. (On some machines streams exactly 2^k bytes apart collide in the caches
// and read at a third of the plain pass's speed.)
#pragma once
#include <cstddef>
#include <cstdint>

namespace dsv4 {

// Reads `bytes` at `p` (8-byte aligned) as four equal streams from the quarter points, xor-ing
// the 64-bit words (vectorised, nothing to wait on); returns the xor so the reads stay. Bytes
// past the last whole word of each quarter are not read. Thread-safe; no allocation.
uint64_t read_four_streams(const void* p, size_t bytes);

// Reads `bytes` at `p` (8-byte aligned) front to back, xor-ing the 64-bit words into eight
// independent lanes; bytes past the last whole 64-byte line are not read. Thread-safe; no
// allocation.
uint64_t read_linear(const void* p, size_t bytes);

}  // namespace dsv4
