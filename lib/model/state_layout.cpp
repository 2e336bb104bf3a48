#include "model/state_layout.hpp"

#include <limits>
#include <string>

#include "dsv4/error.hpp"

namespace dsv4 {

namespace {

// Running byte offset with checked arithmetic; every buffer starts on a 64-byte boundary.
struct Cursor {
  size_t at = 0;
  size_t take(uint64_t floats, size_t elem = sizeof(float)) {
    const uint64_t max = std::numeric_limits<size_t>::max() / 2;
    if (floats > max / elem || at > max - floats * elem) throw CapacityError("session state size overflows (max_context too large)");
    const size_t p = at;
    at = (at + static_cast<size_t>(floats) * elem + 63) / 64 * 64;
    return p;
  }
};

void comp_layout(StateLayout::Comp& c, int64_t ratio, int64_t width, bool overlap, int64_t capacity, Cursor& cur) {
  c.present = true;
  c.ratio = ratio;
  c.width = width;
  c.c = overlap ? 2 : 1;
  c.pend_kv = cur.take(c.pend_floats());
  c.pend_g = cur.take(c.pend_floats());
  c.prev_kv = cur.take(c.prev_floats());
  c.prev_g = cur.take(c.prev_floats());
  c.entries = cur.take(static_cast<uint64_t>(capacity / ratio + 1) * static_cast<uint64_t>(width));
}

}  // namespace

StateLayout StateLayout::make(const ModelConfig& c, int64_t capacity) {
  if (capacity < 0) throw InvalidArgument("session capacity must be >= 0");
  StateLayout l;
  l.capacity = capacity;
  l.ring_floats = static_cast<size_t>(c.sliding_window * c.head_dim);
  Cursor cur;
  l.desc = cur.take(static_cast<uint64_t>(c.num_layers), sizeof(LayerState));
  l.layers.resize(static_cast<size_t>(c.num_layers));
  for (int64_t i = 0; i < c.num_layers; ++i) {
    Layer& L = l.layers[static_cast<size_t>(i)];
    L.ring = cur.take(l.ring_floats);
    if (c.attn_kind[i] == AttnKind::Sliding) continue;
    const int64_t m = c.compress_ratio[i];
    const bool csa = c.attn_kind[i] == AttnKind::CSA;
    comp_layout(L.comp, m, c.head_dim, csa, capacity, cur);
    if (csa) comp_layout(L.index, m, c.index_head_dim, true, capacity, cur);
  }
  l.bytes = cur.at;
  return l;
}

std::vector<LayerState> StateLayout::descriptors(void* base) const {
  auto* b = static_cast<unsigned char*>(base);
  auto at = [&](size_t off) { return reinterpret_cast<float*>(b + off); };
  auto bufs = [&](const Comp& c) {
    CompressorBufs r;
    if (!c.present) return r;
    r.pend_kv = at(c.pend_kv);
    r.pend_g = at(c.pend_g);
    r.prev_kv = at(c.prev_kv);
    r.prev_g = at(c.prev_g);
    r.entries = at(c.entries);
    return r;
  };
  std::vector<LayerState> d(layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    d[i].ring = at(layers[i].ring);
    d[i].comp = bufs(layers[i].comp);
    d[i].index = bufs(layers[i].index);
  }
  return d;
}

}  // namespace dsv4
