// The compressor kernels' launches (reference kernels: kernels/cuda/include/dsv4k/compressor.hpp).
#include "common/launch.cuh"
#include "dsv4k/compressor.hpp"

DSV4K_INSTANTIATE(Compress)
DSV4K_INSTANTIATE(CompressPool)
DSV4K_INSTANTIATE(CompressFinish)
DSV4K_INSTANTIATE(CompressPrev)
DSV4K_INSTANTIATE(CompressPend)
