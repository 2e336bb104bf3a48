#include "util/arena.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <new>

namespace dsv4 {

namespace {
constexpr size_t kHuge = size_t{2} << 20;
constexpr size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }
}  // namespace

Arena::Arena(size_t chunk_bytes) : chunk_bytes_(round_up(std::max<size_t>(chunk_bytes, kHuge), kHuge)) {}

Arena::~Arena() {
  for (const Chunk& c : chunks_) ::munmap(c.base, c.len);
}

uint8_t* Arena::alloc(size_t bytes) {
  bytes = round_up(std::max<size_t>(bytes, 1), 64);
  if (bytes > left_) {
    // Map one spare huge page so that the usable part can start on a 2 MiB boundary.
    const size_t usable = round_up(std::max(bytes, chunk_bytes_), kHuge), len = usable + kHuge;
    void* base = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) throw std::bad_alloc();
    chunks_.push_back({base, len});
    cur_ = reinterpret_cast<uint8_t*>(round_up(reinterpret_cast<uintptr_t>(base), kHuge));
    left_ = usable;
#ifdef MADV_HUGEPAGE
    ::madvise(cur_, usable, MADV_HUGEPAGE);  // advice only: without THP the memory is still valid
#endif
  }
  uint8_t* p = cur_;
  cur_ += bytes;
  left_ -= bytes;
  return p;
}

size_t Arena::mapped_bytes() const {
  size_t b = 0;
  for (const Chunk& c : chunks_) b += c.len;
  return b;
}

}  // namespace dsv4
