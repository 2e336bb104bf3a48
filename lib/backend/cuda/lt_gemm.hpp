// The CUDA backend's tensor-core products: dsv4k::Bf16Gemm (kernels/cuda/include/dsv4k/gemm.hpp)
// run by cuBLASLt (bf16 operands, fp32 compute and output, the TN layout).
//
// cuBLASLt is loaded when the first LtGemm is made (dlopen of libcublasLt.so.<major of the
// headers>), not linked: a CUDA build of libdsv4 still loads on machines without the CUDA
// libraries, and a GPU machine without cuBLASLt runs the reference kernel instead, saying so in
// `why()`. Plans (descriptors + the heuristic's algorithm) are cached per shape and alignment.
// Thread-safety: one call at a time (the backend's rule). Errors: run() returns false when
// cuBLASLt has no algorithm for the shape (the caller falls back); a cuBLASLt failure in the
// product itself throws std::runtime_error.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <memory>
#include <string>

#include "dsv4k/gemm.hpp"

namespace dsv4::cuda {

class LtGemm {
 public:
  LtGemm();
  ~LtGemm();
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;
  bool available() const;
  const std::string& why() const { return why_; }  // what was loaded, or why nothing was
  // Enqueues g on `stream` with `workspace` (device memory of `ws_bytes`); false: no algorithm.
  bool run(const dsv4k::Bf16Gemm& g, cudaStream_t stream, void* workspace, size_t ws_bytes);
  uint64_t calls() const { return calls_; }
  uint64_t fallbacks() const { return fallbacks_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string why_;
  uint64_t calls_ = 0, fallbacks_ = 0;
};

}  // namespace dsv4::cuda
