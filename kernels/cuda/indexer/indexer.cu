// The indexer kernels' launches (reference kernels: kernels/cuda/include/dsv4k/indexer.hpp).
#include "common/launch.cuh"
#include "dsv4k/indexer.hpp"

DSV4K_INSTANTIATE(IndexQuery)
DSV4K_INSTANTIATE(IndexScore)
DSV4K_INSTANTIATE(IndexSelect)
DSV4K_INSTANTIATE(TopkInit)
DSV4K_INSTANTIATE(TopkHist)
DSV4K_INSTANTIATE(TopkPick)
DSV4K_INSTANTIATE(TopkCollect)
DSV4K_INSTANTIATE(TopkRank)
