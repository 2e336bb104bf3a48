// The pool that sequence-state blocks come from (model/state_layout.hpp): one per engine, so
// every session of a model draws on one budget. Blocks of any size are allocated from the
// backend on demand and kept on a free list when a session gives them back (reset, shorter
// restore, destruction), for the next session that grows; trim() returns the free ones.
//
// Thread-safety: every member may be called from any thread (one mutex).
// Errors: acquire() throws CapacityError when the budget or the backend's memory is exhausted,
// and then holds nothing more than before the call.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

#include "backend/backend.hpp"

namespace dsv4 {

struct PoolStats {
  uint64_t limit_bytes = 0;      // the budget (UINT64_MAX: none)
  uint64_t in_use_bytes = 0;     // blocks held by sessions
  uint64_t free_bytes = 0;       // blocks on the free list (allocated from the backend, unused)
  uint64_t peak_bytes = 0;       // highest in_use + free seen
};

class BlockPool {
 public:
  // limit_bytes: most bytes of blocks in use and free together (0: none beyond the backend's memory).
  BlockPool(Backend& be, uint64_t limit_bytes);
  ~BlockPool();
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  // `count` blocks of `bytes` each, appended to `out`; all or none (CapacityError naming `what`).
  void acquire(size_t bytes, size_t count, std::vector<unsigned char*>& out, const char* what);
  // Gives blocks of `bytes` back to the free list.
  void release(size_t bytes, const unsigned char* const* blocks, size_t count) noexcept;
  // Returns every free block to the backend.
  void trim() noexcept;
  PoolStats stats() const;
  void set_limit(uint64_t limit_bytes);

 private:
  Backend& be_;
  mutable std::mutex mu_;
  uint64_t limit_ = 0, in_use_ = 0, free_ = 0, peak_ = 0;
  std::map<size_t, std::vector<unsigned char*>> free_lists_;  // by block size
};

}  // namespace dsv4
