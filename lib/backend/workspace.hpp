// Grow-only scratch buffers, one per named slot. After the first call of a given batch size no
// further allocation happens, so decode steps allocate nothing.
#pragma once
#include <cstddef>
#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "dsv4/error.hpp"

namespace dsv4 {

class Workspace {
 public:
  float* get(size_t slot, size_t floats) {
    if (slot >= bufs_.size()) bufs_.resize(slot + 1);
    auto& b = bufs_[slot];
    if (b.size() < floats) grow(b, floats);
    return b.data();
  }
  int32_t* get_i32(size_t slot, size_t n) {
    if (slot >= ibufs_.size()) ibufs_.resize(slot + 1);
    auto& b = ibufs_[slot];
    if (b.size() < n) grow(b, n);
    return b.data();
  }
  size_t bytes() const {
    size_t n = 0;
    for (const auto& b : bufs_) n += b.capacity() * sizeof(float);
    for (const auto& b : ibufs_) n += b.capacity() * sizeof(int32_t);
    return n;
  }
  void release() {
    bufs_.clear();
    ibufs_.clear();
  }

 private:
  template <class T>
  static void grow(std::vector<T>& b, size_t n) {
    try {
      b.resize(n);
    } catch (const std::bad_alloc&) {
      throw CapacityError("cannot allocate " + std::to_string(n) + " elements of backend scratch (a smaller max_context or batch needs less)");
    } catch (const std::length_error&) {
      throw CapacityError("backend scratch of " + std::to_string(n) + " elements is larger than the address space");
    }
  }

  std::vector<std::vector<float>> bufs_;
  std::vector<std::vector<int32_t>> ibufs_;
};

}  // namespace dsv4
