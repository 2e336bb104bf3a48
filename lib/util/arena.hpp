// Bump allocator for large, long-lived tensor memory (synthetic models): anonymous mappings
// aligned to 2 MiB and advised for transparent huge pages, so that streaming gigabytes of weights
// per token does not pay a TLB miss (and, under virtualisation, a nested page walk) every 4 KiB.
// Memory is returned only when the arena is destroyed. Not thread-safe.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace dsv4 {

class Arena {
 public:
  explicit Arena(size_t chunk_bytes = size_t{1} << 30);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // `bytes` of zero-filled memory, 64-byte aligned, valid until the arena is destroyed.
  // Throws std::bad_alloc when the system refuses the mapping.
  uint8_t* alloc(size_t bytes);
  size_t mapped_bytes() const;

 private:
  struct Chunk {
    void* base;
    size_t len;
  };
  std::vector<Chunk> chunks_;
  uint8_t* cur_ = nullptr;
  size_t left_ = 0;
  size_t chunk_bytes_;
};

}  // namespace dsv4
