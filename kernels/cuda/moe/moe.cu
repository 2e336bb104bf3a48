// The moe kernels' launches (reference kernels: kernels/cuda/include/dsv4k/moe.hpp).
#include "common/launch.cuh"
#include "dsv4k/moe.hpp"

DSV4K_INSTANTIATE(MoeRoute)
DSV4K_INSTANTIATE(MoeUp)
DSV4K_INSTANTIATE(MoeDown)
DSV4K_INSTANTIATE(MoeUpRows)
DSV4K_INSTANTIATE(MoeDownRows)
