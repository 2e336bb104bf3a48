#include "runtime/engine.hpp"

#include <algorithm>

#include "dsv4/error.hpp"

namespace dsv4 {

SequenceState::SequenceState(Backend& be, BlockPool& pool, StateLayout layout)
    : be_(be), pool_(pool), layout_(std::move(layout)) {
  fixed_ = be_.alloc(layout_.fixed_bytes);
  desc_ = layout_.descriptors(fixed_);
  try {
    blocks_.reserve(static_cast<size_t>(std::min<int64_t>(layout_.max_blocks, 64)));
    be_.upload(static_cast<unsigned char*>(fixed_) + layout_.desc, desc_.data(), desc_.size() * sizeof(LayerState));
  } catch (...) {
    be_.release(fixed_);
    throw;
  }
}

SequenceState::~SequenceState() {
  shrink(0);
  be_.release(fixed_);
}

const LayerState* SequenceState::device_desc() const {
  return reinterpret_cast<const LayerState*>(static_cast<const unsigned char*>(fixed_) + layout_.desc);
}

bool SequenceState::grow(int64_t tokens, const char* what) {
  const int64_t need = layout_.blocks_for(std::min(tokens, layout_.capacity));
  const size_t have = blocks_.size();
  if (need <= static_cast<int64_t>(have)) return false;
  pool_.acquire(layout_.block_bytes, static_cast<size_t>(need) - have, blocks_, what);
  try {
    be_.upload(static_cast<unsigned char*>(fixed_) + layout_.table + have * sizeof(void*), blocks_.data() + have,
               (blocks_.size() - have) * sizeof(void*));
  } catch (...) {
    shrink(static_cast<int64_t>(have));
    throw;
  }
  return true;
}

void SequenceState::shrink(int64_t keep) noexcept {
  const size_t k = static_cast<size_t>(std::max<int64_t>(keep, 0));
  if (k >= blocks_.size()) return;
  pool_.release(layout_.block_bytes, blocks_.data() + k, blocks_.size() - k);
  blocks_.resize(k);  // the table's stale slots past k are never read: entries there are not visible
}

Engine::Engine(const ModelConfig& c, const ModelWeights& host_weights, std::unique_ptr<Backend> be, int64_t max_rows,
               uint64_t pool_limit, int64_t block_tokens)
    : c_(c), be_(std::move(be)), w_(be_->bind_weights(host_weights, c)), fw_(c_, w_, *be_), max_rows_(max_rows),
      block_tokens_(block_tokens) {
  if (max_rows_ <= 0) throw InvalidArgument("LoadOptions::max_batch must be positive");
  block_tokens_ = StateLayout::make(c_, 0, CacheType::F32, block_tokens).block_tokens;  // validates it
  pool_ = std::make_unique<BlockPool>(*be_, pool_limit);
}

Engine::~Engine() = default;

std::unique_ptr<SequenceState> Engine::new_sequence(int64_t capacity, CacheType type, bool window_in_type) {
  StateLayout layout = StateLayout::make(c_, capacity, type, block_tokens_, window_in_type);
  std::lock_guard<std::mutex> lk(mu_);  // no step runs while the backend grows its scratch
  const int64_t ctx = std::min(capacity, block_tokens_);
  if (ctx > reserved_context_) {
    be_->reserve(c_, ctx);
    reserved_context_ = ctx;
  }
  return std::make_unique<SequenceState>(*be_, *pool_, std::move(layout));
}

void Engine::grow_locked(SequenceState& seq, int64_t tokens, const char* what) {
  const int64_t before = seq.blocks();
  if (!seq.grow(tokens, what)) return;
  // Scratch for the context the blocks now reach (grow only; once per block, not per token).
  const StateLayout& L = seq.layout();
  const int64_t ctx = std::min(L.capacity, seq.blocks() * L.block_tokens + L.block_tokens);
  if (ctx > reserved_context_) {
    try {
      be_->reserve(c_, ctx);
    } catch (...) {
      seq.shrink(before);  // all or nothing
      throw;
    }
    reserved_context_ = ctx;
  }
}

uint64_t Engine::step_buffer_bytes() const { return fw_.buffer_bytes(); }

void Engine::run(std::span<StepItem> items, Profile* prof, const StepObserver* obs) {
  std::lock_guard<std::mutex> lk(mu_);
  // Every item's state blocks before the first step: all or none.
  blocks_before_.resize(std::max(blocks_before_.size(), items.size()));
  size_t grown = 0;
  try {
    for (; grown < items.size(); ++grown) {
      StepItem& it = items[grown];
      blocks_before_[grown] = it.seq->blocks();
      grow_locked(*it.seq, it.pos + static_cast<int64_t>(it.tokens.size()), "forward");
    }
  } catch (...) {
    for (size_t k = 0; k < grown; ++k) items[k].seq->shrink(blocks_before_[k]);
    throw;
  }
  for (StepItem& it : items) {
    it.done = 0;
    it.cancelled = false;
    it.cancel_error = nullptr;
  }
  run_steps(items, prof, obs);
  // A cancelled item keeps only the blocks its fed tokens use.
  for (StepItem& it : items)
    if (it.cancelled) it.seq->shrink(std::max(blocks_before_[static_cast<size_t>(&it - items.data())],
                                              it.seq->layout().blocks_for(it.pos + it.done)));
}

void Engine::run_steps(std::span<StepItem> items, Profile* prof, const StepObserver* obs) {
  const int64_t V = c_.vocab_size;
  for (;;) {
    // Which sequences this step carries and how many rows of each: items in order, each at most
    // its chunk, until the step is full.
    take_.clear();
    int64_t rows = 0, outs = 0;
    int limit = 0;
    bool unlimited = false;
    for (size_t i = 0; i < items.size() && rows < max_rows_; ++i) {
      const StepItem& it = items[i];
      const int64_t left = static_cast<int64_t>(it.tokens.size()) - it.done;
      if (left <= 0 || it.cancelled) continue;
      if (it.cancel != nullptr && it.done > 0) {
        bool stop = false;
        try {
          stop = (*it.cancel)();
        } catch (...) {
          items[i].cancel_error = std::current_exception();
          stop = true;
        }
        if (stop) {
          items[i].cancelled = true;
          continue;
        }
      }
      const int64_t n = std::min({left, std::max<int64_t>(it.chunk, 1), max_rows_ - rows});
      take_.emplace_back(static_cast<int32_t>(i), n);
      rows += n;
      outs += it.all_logits ? n : ((n == left || it.cancel != nullptr) ? 1 : 0);
      unlimited |= it.threads <= 0;
      limit = std::max(limit, it.threads);
    }
    if (take_.empty()) return;
    fw_.reserve(rows, outs);
    step_.reserve(fw_.row_capacity());
    step_.clear();
    dest_.clear();
    int32_t* ids = step_.ids();
    int64_t* pos = step_.pos();
    int32_t* seq = step_.seq();
    int32_t* out = step_.out();
    StepSeq* seqs = step_.seqv();
    for (const auto& [i, n] : take_) {
      StepItem& it = items[static_cast<size_t>(i)];
      const int64_t d = it.done, row0 = step_.rows;
      seqs[step_.seqs] = {it.seq->device_desc(), it.pos + d, static_cast<int32_t>(row0), static_cast<int32_t>(n)};
      for (int64_t r = 0; r < n; ++r) {
        ids[row0 + r] = it.tokens[static_cast<size_t>(d + r)];
        pos[row0 + r] = it.pos + d + r;
        seq[row0 + r] = static_cast<int32_t>(step_.seqs);
      }
      const bool finishes = d + n == static_cast<int64_t>(it.tokens.size());
      if (it.all_logits) {
        for (int64_t r = 0; r < n; ++r) {
          out[step_.outs++] = static_cast<int32_t>(row0 + r);
          dest_.emplace_back(it.logits + (d + r) * V, i);
        }
      } else if (finishes || it.cancel != nullptr) {
        out[step_.outs++] = static_cast<int32_t>(row0 + n - 1);
        dest_.emplace_back(it.last, i);
      }
      step_.rows += n;
      ++step_.seqs;
    }
    be_->set_thread_limit(unlimited ? 0 : limit);
    fw_.run(step_, prof, obs);
    for (size_t k = 0; k < dest_.size(); ++k)
      be_->download(dest_[k].first, fw_.logits() + static_cast<int64_t>(k) * V, static_cast<size_t>(V) * sizeof(float));
    for (const auto& [i, n] : take_) {
      StepItem& it = items[static_cast<size_t>(i)];
      it.done += n;
      if (it.all_logits && (it.cancel != nullptr || it.done == static_cast<int64_t>(it.tokens.size())))
        // The last row once more into `last`: a second download of the same backend row.
        for (size_t k = 0; k < dest_.size(); ++k)
          if (dest_[k].second == i && dest_[k].first == it.logits + (it.done - 1) * V)
            be_->download(it.last, fw_.logits() + static_cast<int64_t>(k) * V, static_cast<size_t>(V) * sizeof(float));
    }
  }
}

}  // namespace dsv4
