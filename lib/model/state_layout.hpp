// Where one sequence's state lives (model.md §4-§8), in two kinds of backend memory:
//  - the fixed part, allocated with the sequence: the layer descriptors, its block table, and per
//    layer the window ring and the compressors' partial windows (f32; independent of the context);
//  - blocks of `block_tokens` positions each, taken from the engine's pool as the position
//    advances: block b holds, for every compressed layer, the entries (and indexer keys) of the
//    windows that start in positions [b·B, (b+1)·B), in the session's cache type.
// One function computes it, so allocation, the memory report and snapshots agree.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "backend/step.hpp"
#include "dsv4/config.hpp"

namespace dsv4 {

struct StateLayout {
  struct Comp {
    bool present = false;
    int64_t ratio = 0, width = 0, c = 1;  // c = 2 for the overlapping (CSA) series
    size_t pend_kv = 0, pend_g = 0, prev_kv = 0, prev_g = 0;  // byte offsets in the fixed part
    size_t entries = 0;                   // byte offset in a block
    EntryFormat fmt = EntryFormat::F32;
    int64_t rope = 0, stride = 0, per_block = 0;  // rotary dims; bytes per entry; entries per block
    size_t pend_floats() const { return static_cast<size_t>(ratio * c * width); }
    size_t prev_floats() const { return c == 2 ? static_cast<size_t>(ratio * width) : 0; }
  };
  struct Layer {
    size_t ring = 0;
    Comp comp, index;
  };
  CacheType type = CacheType::F32;
  int64_t capacity = 0;      // tokens
  int64_t block_tokens = 0;  // positions per block (a multiple of every compression ratio)
  int64_t min_ratio = 0;     // smallest compression ratio (0: no compressed layer)
  int64_t max_blocks = 0;    // blocks at full capacity
  size_t ring_words = 0;     // 4-byte words of one layer's window ring (W rows in window.fmt)
  Comp window;               // the window rows' format (fmt, width = hd, rope, stride)
  size_t desc = 0;           // fixed-part offset of the LayerState[num_layers] descriptors
  size_t table = 0;          // fixed-part offset of the block table (max_blocks pointers)
  size_t fixed_bytes = 0;    // the fixed part
  size_t block_bytes = 0;    // one block
  std::vector<Layer> layers;

  // `block_tokens` <= 0: the default (1024, rounded up to a multiple of every ratio). Throws
  // CapacityError when the sizes do not fit in 64 bits, InvalidArgument for a bad block size.
  // window_in_type: the window rows are stored in `type` too (else f32).
  static StateLayout make(const ModelConfig& c, int64_t capacity, CacheType type = CacheType::F32, int64_t block_tokens = 0,
                          bool window_in_type = false);
  // Blocks holding every entry completed by positions < tokens.
  int64_t blocks_for(int64_t tokens) const;
  // Bytes of the state at `tokens` positions: the fixed part and its blocks.
  uint64_t bytes_at(int64_t tokens) const;
  // The descriptors with every pointer into a fixed part at `base` (backend addresses; not dereferenced).
  std::vector<LayerState> descriptors(void* base) const;
};

}  // namespace dsv4
