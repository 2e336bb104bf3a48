// The norm_rope kernels' launches (reference kernels: kernels/cuda/include/dsv4k/norm_rope.hpp).
#include "common/launch.cuh"
#include "dsv4k/norm_rope.hpp"

DSV4K_INSTANTIATE(RmsNorm)
DSV4K_INSTANTIATE(RopeTables)
DSV4K_INSTANTIATE(Rope)
