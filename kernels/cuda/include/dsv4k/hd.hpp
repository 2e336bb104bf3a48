// dsv4k: the CUDA backend's kernels. This header: what every kernel header shares.
//
// A kernel is a plain struct (its parameters: device pointers, shapes, strides) with
//   int64_t count() const              how many independent work items it has (from its
//                                      parameters only, never from device data: a captured
//                                      graph replays the same grid)
//   DSV4_HD void operator()(int64_t i) const   work item i
// The CUDA side launches a grid-stride loop over the items (kernels/cuda/common/launch.cuh); the
// host side runs the same items in a loop (the emulated device backend of the test suite), so every
// kernel's arithmetic is exercised on machines without a GPU. Kernels never allocate; scratch
// they need is a parameter. They include nothing of the library except the plain step structs.
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define DSV4_HD __host__ __device__
#define DSV4_HDI __host__ __device__ __forceinline__
#else
#define DSV4_HD
#define DSV4_HDI inline
#endif

namespace dsv4k {

// A warp kernel (instead of count() items of one thread): count() items of 32 lanes. Lane l of
// item i runs lanes(i, l, acc) into kSums partial sums (zeroed first); the sums are added across
// the lanes by a butterfly (lane l takes l ^ 16, 8, 4, 2, 1 in turn, as __shfl_xor_sync does),
// then finish(i, sums) writes the item's results. The host runs the same lanes and the same
// butterfly, so both give the same bits.
constexpr int kLanes = 32;
template <class K, class = void>
struct is_warp_kernel {
  static constexpr bool value = false;
};
template <class K>
struct is_warp_kernel<K, decltype(void(K::kSums))> {
  static constexpr bool value = true;
};

template <class T>
DSV4_HDI T load(const void* p) {  // unaligned-safe load
  T v;
  memcpy(&v, p, sizeof(T));
  return v;
}
template <class T>
DSV4_HDI void store(void* p, T v) {
  memcpy(p, &v, sizeof(T));
}
DSV4_HDI uint32_t f32_bits(float f) { return load<uint32_t>(&f); }
// Integer atomic add (counts: the result does not depend on the order of the adds).
DSV4_HDI int32_t atomic_add_i32(int32_t* p, int32_t v) {
#if defined(__CUDA_ARCH__)
  return atomicAdd(p, v);
#else
  return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
#endif
}
DSV4_HDI float bits_f32(uint32_t u) { return load<float>(&u); }
template <class T>
DSV4_HDI T min_(T a, T b) { return b < a ? b : a; }
template <class T>
DSV4_HDI T max_(T a, T b) { return a < b ? b : a; }

// One warp item on the host (the emulation of the device's lanes and butterfly).
template <class K>
inline void run_warp_item_host(const K& k, int64_t item) {
  float v[kLanes][K::kSums], t[kLanes][K::kSums];
  for (int l = 0; l < kLanes; ++l) {
    for (int m = 0; m < K::kSums; ++m) v[l][m] = 0.0f;
    k.lanes(item, l, v[l]);
  }
  for (int off = kLanes / 2; off > 0; off /= 2) {
    for (int l = 0; l < kLanes; ++l)
      for (int m = 0; m < K::kSums; ++m) t[l][m] = v[l][m] + v[l ^ off][m];
    for (int l = 0; l < kLanes; ++l)
      for (int m = 0; m < K::kSums; ++m) v[l][m] = t[l][m];
  }
  k.finish(item, v[0]);
}

}  // namespace dsv4k
