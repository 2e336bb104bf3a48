// What a step is, in backend memory: the rows it carries (token id, absolute position, sequence)
// and where each sequence's state lives. Plain structs shared by the forward pass, every backend
// and the kernels; nothing here allocates.
//
// A step carries rows of one or several sequences. The rows of a sequence are contiguous and in
// ascending position order. Everything that changes from one step to the next (ids, positions,
// which sequences) is data in the step buffer; the pointers in StepRef stay fixed while the buffer
// lives, so a single-token decode step issues the same op calls with the same arguments every time.
// Counts that follow from a position are derived where they are used: compressed entries visible
// at position t = (t + 1) / m, the window row of position j = j % W.
#pragma once
#include <cstddef>
#include <cstdint>

namespace dsv4 {

// How a compressed entry (or indexer key) is stored; the codecs are in quant/cache_format.hpp.
enum class EntryFormat : uint8_t {
  F32,   // width floats (exact)
  BF16,  // width bf16 values
  FP8,   // (width - rope) e4m3 values with a UE8M0 scale per 64, then the rope dims as bf16
  I8,    // width int8 values and one f32 scale (the indexer's compact keys)
};

// Where the compressed entries of one compressor of one sequence live: entry w is in block
// w / per_block of the sequence's block table, at byte offset + (w % per_block) · stride. Blocks
// come from the engine's pool as the position advances (runtime/block_pool.hpp); the table has a
// slot for every block the sequence's capacity can need, filled before a step writes there.
struct EntryTable {
  unsigned char* const* blocks = nullptr;  // [capacity blocks] backend addresses (backend memory)
  size_t offset = 0;                       // bytes from a block's start to this compressor's entries
  int32_t stride = 0;                      // bytes per entry
  int32_t per_block = 0;                   // entries per block
  EntryFormat fmt = EntryFormat::F32;
  int32_t width = 0, rope = 0;             // values per entry; trailing rotary dims of them
  unsigned char* at(int64_t w) const {
    return blocks[w / per_block] + offset + static_cast<size_t>(w % per_block) * static_cast<size_t>(stride);
  }
};

// One compressor's state of one sequence (model.md §8), all backend memory.
struct CompressorBufs {
  float* pend_kv = nullptr;  // [m, c·width] rows of the unfinished window
  float* pend_g = nullptr;   // [m, c·width] gates (ape added)
  float* prev_kv = nullptr;  // [m, width] Ca half of the last complete window (overlap only)
  float* prev_g = nullptr;
  EntryTable entries;        // entry w pools window w
};

// One sequence's state in one layer.
struct LayerState {
  unsigned char* ring = nullptr;  // [W] window rows in window_fmt, window_stride bytes apart: position j at row j % W
  EntryFormat window_fmt = EntryFormat::F32;
  int32_t window_stride = 0, window_rope = 0;  // bytes per row (0: hd f32 values); trailing rotary dims
  CompressorBufs comp;    // the attention compressor (CSA / HCA layers)
  CompressorBufs index;   // the indexer's compressor (CSA layers)
};

// One sequence's part of a step.
struct StepSeq {
  const LayerState* state = nullptr;  // [num_layers] (backend memory)
  int64_t p0 = 0;                     // absolute position of its first row
  int32_t row0 = 0, rows = 0;         // its rows [row0, row0 + rows) of the step
};

enum StepCount : int { kStepRows = 0, kStepSeqs = 1, kStepOut = 2 };

// Pointers into a step buffer (backend memory). Ops read the step through these.
struct StepRef {
  const int32_t* counts = nullptr;  // [3]: rows, sequences, output rows
  const int32_t* ids = nullptr;     // [rows] token ids
  const int64_t* pos = nullptr;     // [rows] absolute positions
  const int32_t* seq = nullptr;     // [rows] index into seqs
  const int32_t* out = nullptr;     // [output rows] rows whose hidden state goes through the head
  const StepSeq* seqs = nullptr;    // [sequences]
};

// Byte layout of a step buffer for `capacity` rows (and as many sequences): a host image with this
// layout is built, then uploaded whole.
struct StepLayout {
  size_t counts = 0, ids = 0, pos = 0, seq = 0, out = 0, seqs = 0, bytes = 0;
  static StepLayout for_rows(int64_t capacity) {
    auto up = [](size_t v) { return (v + 63) / 64 * 64; };
    const size_t R = static_cast<size_t>(capacity);
    StepLayout l;
    l.counts = 0;
    l.ids = 64;
    l.pos = up(l.ids + 4 * R);
    l.seq = up(l.pos + 8 * R);
    l.out = up(l.seq + 4 * R);
    l.seqs = up(l.out + 4 * R);
    l.bytes = up(l.seqs + sizeof(StepSeq) * R);
    return l;
  }
  StepRef ref(const void* base) const {
    const auto* b = static_cast<const unsigned char*>(base);
    StepRef r;
    r.counts = reinterpret_cast<const int32_t*>(b + counts);
    r.ids = reinterpret_cast<const int32_t*>(b + ids);
    r.pos = reinterpret_cast<const int64_t*>(b + pos);
    r.seq = reinterpret_cast<const int32_t*>(b + seq);
    r.out = reinterpret_cast<const int32_t*>(b + out);
    r.seqs = reinterpret_cast<const StepSeq*>(b + seqs);
    return r;
  }
};

}  // namespace dsv4
