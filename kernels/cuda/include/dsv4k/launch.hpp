// dsv4k: launching a kernel (hd.hpp) on a CUDA stream. Host code (compiled by the C++ compiler)
// includes this; the definitions are compiled by nvcc (kernels/cuda/common/launch.cuh, one explicit
// instantiation per kernel in kernels/cuda/<family>/<family>.cu).
#pragma once

namespace dsv4k {

// Launches every work item of k on `stream` (a cudaStream_t; null: the legacy default stream) as
// a grid-stride loop. Returns the launch's cudaError_t as an int (0: cudaSuccess); a fault inside
// the kernel shows at the stream's next synchronisation. Allocates nothing.
template <class K>
int launch(const K& k, void* stream);

}  // namespace dsv4k
