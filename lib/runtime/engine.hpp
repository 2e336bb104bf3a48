// The engine of one model on one backend: the backend instance (shared by every session of the
// model), the weights bound to it, the forward pass with its step buffers, and the sequences'
// state blocks. It turns "these tokens for these sequences" into steps of at most max_rows rows.
//
// Thread-safety: run() may be called from any thread; calls take turns (one step at a time on
// the backend), so N sessions on N threads are correct and share the backend's threads instead of
// multiplying them. SequenceState objects are owned by their sessions.
#pragma once
#include <exception>
#include <functional>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "backend/backend.hpp"
#include "model/forward.hpp"
#include "model/state_layout.hpp"
#include "runtime/block_pool.hpp"

namespace dsv4 {

// One sequence's state in backend memory: its fixed part (allocated here) and the blocks it holds
// from the engine's pool (model/state_layout.hpp), with its layer descriptors and block table.
class SequenceState {
 public:
  SequenceState(Backend& be, BlockPool& pool, StateLayout layout);
  ~SequenceState();  // its blocks go back to the pool
  SequenceState(const SequenceState&) = delete;
  SequenceState& operator=(const SequenceState&) = delete;
  const LayerState* device_desc() const;                  // backend address of the descriptors
  const std::vector<LayerState>& desc() const { return desc_; }  // host copy (backend addresses)
  const StateLayout& layout() const { return layout_; }
  Backend& backend() const { return be_; }
  // Holds the blocks positions < tokens write to; all or none (CapacityError naming `what`).
  // Returns whether blocks were added.
  bool grow(int64_t tokens, const char* what);
  // Gives back the blocks past the first `keep`.
  void shrink(int64_t keep) noexcept;
  int64_t blocks() const { return static_cast<int64_t>(blocks_.size()); }
  const std::vector<unsigned char*>& block_list() const { return blocks_; }  // backend addresses
  uint64_t committed_bytes() const { return layout_.fixed_bytes + blocks_.size() * layout_.block_bytes; }

 private:
  Backend& be_;
  BlockPool& pool_;
  StateLayout layout_;
  void* fixed_ = nullptr;
  std::vector<LayerState> desc_;
  std::vector<unsigned char*> blocks_;  // host copy of the block table's filled slots
};

// One sequence's share of a run of steps.
struct StepItem {
  SequenceState* seq = nullptr;
  int64_t pos = 0;                    // position of its first token
  std::span<const int32_t> tokens;    // validated by the caller
  int64_t chunk = 0;                  // most of its rows in one step (its session's max_batch)
  bool all_logits = false;            // every token's logits into `logits`, else the last one's into `last`
  float* logits = nullptr;            // host [tokens, vocab] (all_logits)
  float* last = nullptr;              // host [vocab]: the last token's logits (always written)
  int threads = 0;                    // its session's thread limit (0: all)
  // Asked before each of its steps after the first; true: the item stops there. Every step of an
  // item with a cancel check writes its last row's logits into `last`, so a cancelled item is
  // left consistent: `done` rows fed, `last` = the logits of row done-1.
  const std::function<bool()>* cancel = nullptr;
  int64_t done = 0;                   // out: rows fed (the engine's progress through the item)
  bool cancelled = false;             // out
  std::exception_ptr cancel_error;    // out: what the cancel check threw (it then counts as cancelled)
};

class Engine {
 public:
  // pool_limit: the cache pool's budget in bytes (0: none); block_tokens: positions per state block (0: default).
  Engine(const ModelConfig& c, const ModelWeights& host_weights, std::unique_ptr<Backend> be, int64_t max_rows,
         uint64_t pool_limit = 0, int64_t block_tokens = 0);
  ~Engine();
  Backend& backend() { return *be_; }
  const Backend& backend() const { return *be_; }
  const ModelWeights& weights() const { return w_; }
  int64_t max_rows() const { return max_rows_; }
  std::unique_ptr<SequenceState> new_sequence(int64_t capacity, CacheType type, bool window_in_type = false);
  StateLayout layout(int64_t capacity, CacheType type, bool window_in_type = false) const {
    return StateLayout::make(c_, capacity, type, block_tokens_, window_in_type);
  }
  BlockPool& pool() { return *pool_; }
  const BlockPool& pool() const { return *pool_; }
  // Grows `seq` to hold positions < tokens (and sizes the backend's scratch for that context);
  // the caller holds mutex(). All or none.
  void grow_locked(SequenceState& seq, int64_t tokens, const char* what);
  // Feeds every item's tokens, in steps that carry rows of several items; writes the logits.
  // Every item's blocks are taken first, all or none: a CapacityError leaves every item as it was.
  void run(std::span<StepItem> items, Profile* prof, const StepObserver* obs);
  // Backend memory of the step buffers (shared by all sessions).
  uint64_t step_buffer_bytes() const;
  std::mutex& mutex() { return mu_; }  // held by run(); taken by callers that touch sequence state

 private:
  void run_steps(std::span<StepItem> items, Profile* prof, const StepObserver* obs);
  std::mutex mu_;
  const ModelConfig& c_;
  std::unique_ptr<Backend> be_;
  ModelWeights w_;
  Forward fw_;
  int64_t max_rows_;
  int64_t block_tokens_;
  std::unique_ptr<BlockPool> pool_;
  int64_t reserved_context_ = 0;          // context the backend's scratch is sized for
  std::vector<int64_t> blocks_before_;    // per item of a run: blocks held before it grew
  HostStep step_;
  std::vector<std::pair<float*, int64_t>> dest_;  // per output row: host destination, item
  std::vector<std::pair<int32_t, int64_t>> take_; // per sequence of the step: item, rows
};

}  // namespace dsv4
