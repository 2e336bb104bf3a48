// The linear kernels' launches (reference kernels: kernels/cuda/include/dsv4k/linear.hpp).
#include "common/launch.cuh"
#include "dsv4k/gemm.hpp"
#include "dsv4k/gemv.hpp"
#include "dsv4k/linear.hpp"

DSV4K_INSTANTIATE(Linear)
DSV4K_INSTANTIATE(Embed)
DSV4K_INSTANTIATE(GatherRows)
DSV4K_INSTANTIATE(LinearRows)
DSV4K_INSTANTIATE(SplitBf16)
DSV4K_INSTANTIATE(DecodeBf16)
DSV4K_INSTANTIATE(Bf16Gemm)
