// The attention kernels' launches (reference kernels: kernels/cuda/include/dsv4k/attention.hpp).
#include "common/launch.cuh"
#include "dsv4k/attention.hpp"

DSV4K_INSTANTIATE(RoundRows)
DSV4K_INSTANTIATE(Attention)
DSV4K_INSTANTIATE(StoreWindow)
DSV4K_INSTANTIATE(AttnKeys)
DSV4K_INSTANTIATE(AttnLogits)
DSV4K_INSTANTIATE(AttnSoftmax)
DSV4K_INSTANTIATE(AttnOut)
