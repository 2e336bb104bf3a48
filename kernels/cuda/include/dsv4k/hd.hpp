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
DSV4_HDI float bits_f32(uint32_t u) { return load<float>(&u); }
template <class T>
DSV4_HDI T min_(T a, T b) { return b < a ? b : a; }
template <class T>
DSV4_HDI T max_(T a, T b) { return a < b ? b : a; }

}  // namespace dsv4k
