#include "model/state_layout.hpp"

#include <limits>
#include <numeric>
#include <string>

#include "dsv4/error.hpp"
#include "quant/cache_format.hpp"

namespace dsv4 {

namespace {

// Running byte offset with checked arithmetic; every buffer starts on a 64-byte boundary.
struct Cursor {
  size_t at = 0;
  size_t take(uint64_t count, size_t elem = sizeof(float)) {
    const uint64_t max = std::numeric_limits<size_t>::max() / 2;
    if (elem != 0 && (count > max / elem || at > max - count * elem))
      throw CapacityError("session state size overflows (max_context too large)");
    const size_t p = at;
    at = (at + static_cast<size_t>(count) * elem + 63) / 64 * 64;
    return p;
  }
};

void comp_layout(StateLayout::Comp& c, int64_t ratio, int64_t width, int64_t rope, bool overlap, EntryFormat fmt,
                 int64_t block_tokens, Cursor& fixed, Cursor& block) {
  c.present = true;
  c.ratio = ratio;
  c.width = width;
  c.c = overlap ? 2 : 1;
  c.pend_kv = fixed.take(c.pend_floats());
  c.pend_g = fixed.take(c.pend_floats());
  c.prev_kv = fixed.take(c.prev_floats());
  c.prev_g = fixed.take(c.prev_floats());
  c.fmt = fmt;
  c.rope = rope;
  c.stride = static_cast<int64_t>(quant::entry_stride(fmt, width, rope));
  c.per_block = block_tokens / ratio;
  c.entries = block.take(static_cast<uint64_t>(c.per_block), static_cast<size_t>(c.stride));
}

}  // namespace

StateLayout StateLayout::make(const ModelConfig& c, int64_t capacity, CacheType type, int64_t block_tokens, bool window_in_type) {
  if (capacity < 0) throw InvalidArgument("session capacity must be >= 0");
  StateLayout l;
  l.type = type;
  l.capacity = capacity;
  int64_t lcm = 1;
  for (int64_t i = 0; i < c.num_layers; ++i)
    if (c.attn_kind[i] != AttnKind::Sliding) {
      const int64_t m = c.compress_ratio[i];
      lcm = std::lcm(lcm, m);
      l.min_ratio = l.min_ratio == 0 ? m : std::min(l.min_ratio, m);
    }
  if (block_tokens <= 0) block_tokens = (1024 + lcm - 1) / lcm * lcm;
  if (block_tokens % lcm != 0 || block_tokens > (int64_t{1} << 24))
    throw InvalidArgument("cache block of " + std::to_string(block_tokens) + " tokens: must be a multiple of every compression ratio (" +
                          std::to_string(lcm) + ") and at most 2^24");
  l.block_tokens = block_tokens;
  l.max_blocks = l.blocks_for(capacity);
  const EntryFormat entry_fmt = type == CacheType::F32 ? EntryFormat::F32 : type == CacheType::BF16 ? EntryFormat::BF16 : EntryFormat::FP8;
  const EntryFormat key_fmt = type == CacheType::F32 ? EntryFormat::F32 : type == CacheType::BF16 ? EntryFormat::BF16 : EntryFormat::I8;
  if (type != CacheType::F32 && c.head_dim > 2048)
    throw UnsupportedError(std::string("cache type ") + cache_type_name(type) + ": head_dim " + std::to_string(c.head_dim) +
                           " above 2048 is supported with the f32 cache only");
  l.window.present = true;
  l.window.fmt = window_in_type ? entry_fmt : EntryFormat::F32;  // like the compressed entries, or exact
  l.window.width = c.head_dim;
  l.window.rope = c.rope_dim;
  l.window.stride = static_cast<int64_t>(quant::entry_stride(l.window.fmt, c.head_dim, c.rope_dim));
  l.ring_words = static_cast<size_t>(c.sliding_window * l.window.stride / 4);
  Cursor fixed, block;
  l.desc = fixed.take(static_cast<uint64_t>(c.num_layers), sizeof(LayerState));
  l.table = fixed.take(static_cast<uint64_t>(l.max_blocks), sizeof(void*));
  l.layers.resize(static_cast<size_t>(c.num_layers));
  for (int64_t i = 0; i < c.num_layers; ++i) {
    Layer& L = l.layers[static_cast<size_t>(i)];
    L.ring = fixed.take(static_cast<uint64_t>(c.sliding_window), static_cast<size_t>(l.window.stride));
    if (c.attn_kind[i] == AttnKind::Sliding) continue;
    const int64_t m = c.compress_ratio[i];
    const bool csa = c.attn_kind[i] == AttnKind::CSA;
    comp_layout(L.comp, m, c.head_dim, c.rope_dim, csa, entry_fmt, block_tokens, fixed, block);
    if (csa) comp_layout(L.index, m, c.index_head_dim, c.rope_dim, true, key_fmt, block_tokens, fixed, block);
  }
  l.fixed_bytes = fixed.at;
  l.block_bytes = block.at;
  return l;
}

int64_t StateLayout::blocks_for(int64_t tokens) const {
  // Block b's first entry completes at position b·B + m_min - 1.
  if (min_ratio == 0 || tokens < min_ratio) return 0;
  return (tokens - min_ratio) / block_tokens + 1;
}

uint64_t StateLayout::bytes_at(int64_t tokens) const {
  return static_cast<uint64_t>(fixed_bytes) + static_cast<uint64_t>(blocks_for(tokens)) * static_cast<uint64_t>(block_bytes);
}

std::vector<LayerState> StateLayout::descriptors(void* base) const {
  auto* b = static_cast<unsigned char*>(base);
  auto at = [&](size_t off) { return reinterpret_cast<float*>(b + off); };
  auto* table_ptr = reinterpret_cast<unsigned char* const*>(b + table);
  auto bufs = [&](const Comp& c) {
    CompressorBufs r;
    if (!c.present) return r;
    r.pend_kv = at(c.pend_kv);
    r.pend_g = at(c.pend_g);
    r.prev_kv = at(c.prev_kv);
    r.prev_g = at(c.prev_g);
    r.entries.blocks = table_ptr;
    r.entries.offset = c.entries;
    r.entries.stride = static_cast<int32_t>(c.stride);
    r.entries.per_block = static_cast<int32_t>(c.per_block);
    r.entries.fmt = c.fmt;
    r.entries.width = static_cast<int32_t>(c.width);
    r.entries.rope = static_cast<int32_t>(c.rope);
    return r;
  };
  std::vector<LayerState> d(layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    d[i].ring = b + layers[i].ring;
    d[i].window_fmt = window.fmt;
    d[i].window_stride = static_cast<int32_t>(window.stride);
    d[i].window_rope = static_cast<int32_t>(window.rope);
    d[i].comp = bufs(layers[i].comp);
    d[i].index = bufs(layers[i].index);
  }
  return d;
}

}  // namespace dsv4
