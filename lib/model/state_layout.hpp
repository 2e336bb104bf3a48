// Where one sequence's state lives inside its block of backend memory: window ring, compressor
// state, compressed entries and indexer keys of every layer (model.md §4-§8), for a capacity in
// tokens. One function computes it, so allocation, the memory report and snapshots agree.
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
    size_t pend_kv = 0, pend_g = 0, prev_kv = 0, prev_g = 0, entries = 0;  // byte offsets
    size_t pend_floats() const { return static_cast<size_t>(ratio * c * width); }
    size_t prev_floats() const { return c == 2 ? static_cast<size_t>(ratio * width) : 0; }
    size_t entry_floats(int64_t entries_n) const { return static_cast<size_t>(entries_n * width); }
  };
  struct Layer {
    size_t ring = 0;
    Comp comp, index;
  };
  int64_t capacity = 0;
  size_t ring_floats = 0;      // W · hd per layer
  size_t desc = 0;             // byte offset of the LayerState[num_layers] descriptors
  size_t bytes = 0;            // the whole block
  std::vector<Layer> layers;

  // Throws CapacityError when the size does not fit in 64 bits.
  static StateLayout make(const ModelConfig& c, int64_t capacity);
  // The descriptors with every pointer into a block at `base` (backend addresses; not dereferenced).
  std::vector<LayerState> descriptors(void* base) const;
};

}  // namespace dsv4
