// The mhc kernels' launches (reference kernels: kernels/cuda/include/dsv4k/mhc.hpp).
#include "common/launch.cuh"
#include "dsv4k/mhc.hpp"

DSV4K_INSTANTIATE(HcCoef)
DSV4K_INSTANTIATE(HcCollapse)
DSV4K_INSTANTIATE(HcPost)
