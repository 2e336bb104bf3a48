// The grid-stride launch of a dsv4k kernel (include/dsv4k/launch.hpp); included by the .cu file of
// each kernel family, which instantiates it for its kernels (DSV4K_INSTANTIATE).
#pragma once
#include <cuda_runtime.h>

#include "dsv4k/hd.hpp"
#include "dsv4k/launch.hpp"

namespace dsv4k {

template <class K>
__global__ void __launch_bounds__(128) grid_kernel(const K k, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) k(i);
}

// One warp per item (hd.hpp: warp kernels): 8 warps a block, the grid striding over the items.
template <class K>
__global__ void __launch_bounds__(256) warp_kernel(const K k, int64_t n) {
  const int lane = static_cast<int>(threadIdx.x) & (kLanes - 1);
  const int64_t per_block = blockDim.x / kLanes, warps = static_cast<int64_t>(gridDim.x) * per_block;
  for (int64_t item = static_cast<int64_t>(blockIdx.x) * per_block + threadIdx.x / kLanes; item < n; item += warps) {
    float acc[K::kSums];
#pragma unroll
    for (int m = 0; m < K::kSums; ++m) acc[m] = 0.0f;
    k.lanes(item, lane, acc);
#pragma unroll
    for (int off = kLanes / 2; off > 0; off /= 2)
#pragma unroll
      for (int m = 0; m < K::kSums; ++m) acc[m] += __shfl_xor_sync(0xffffffffu, acc[m], off);
    if (lane == 0) k.finish(item, acc);
  }
}

template <class K>
int launch(const K& k, void* stream) {
  const int64_t n = k.count();
  if (n <= 0) return 0;
  if constexpr (is_warp_kernel<K>::value) {
    constexpr int kWarpsPerBlock = 8;
    constexpr int64_t kMaxBlocks = int64_t{1} << 20;
    const int64_t need = (n + kWarpsPerBlock - 1) / kWarpsPerBlock, blocks = need < kMaxBlocks ? need : kMaxBlocks;
    warp_kernel<K><<<static_cast<unsigned>(blocks), kWarpsPerBlock * kLanes, 0, static_cast<cudaStream_t>(stream)>>>(k, n);
    return static_cast<int>(cudaGetLastError());
  } else {
    constexpr int kThreads = 128;
    constexpr int64_t kMaxBlocks = int64_t{1} << 20;  // beyond that the grid strides
    const int64_t blocks = (n + kThreads - 1) / kThreads < kMaxBlocks ? (n + kThreads - 1) / kThreads : kMaxBlocks;
    grid_kernel<K><<<static_cast<unsigned>(blocks), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(k, n);
    return static_cast<int>(cudaGetLastError());
  }
}

}  // namespace dsv4k

#define DSV4K_INSTANTIATE(K) template int dsv4k::launch<dsv4k::K>(const dsv4k::K&, void*);
