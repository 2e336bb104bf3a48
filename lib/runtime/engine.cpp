#include "runtime/engine.hpp"

#include <algorithm>

#include "dsv4/error.hpp"

namespace dsv4 {

SequenceState::SequenceState(Backend& be, StateLayout layout) : be_(be), layout_(std::move(layout)) {
  block_ = be_.alloc(layout_.bytes);
  desc_ = layout_.descriptors(block_);
  try {
    be_.upload(static_cast<unsigned char*>(block_) + layout_.desc, desc_.data(), desc_.size() * sizeof(LayerState));
  } catch (...) {
    be_.release(block_);
    throw;
  }
}

SequenceState::~SequenceState() { be_.release(block_); }

const LayerState* SequenceState::device_desc() const {
  return reinterpret_cast<const LayerState*>(static_cast<const unsigned char*>(block_) + layout_.desc);
}

Engine::Engine(const ModelConfig& c, const ModelWeights& host_weights, std::unique_ptr<Backend> be, int64_t max_rows)
    : c_(c), be_(std::move(be)), w_(be_->bind_weights(host_weights, c)), fw_(c_, w_, *be_), max_rows_(max_rows) {
  if (max_rows_ <= 0) throw InvalidArgument("LoadOptions::max_batch must be positive");
}

Engine::~Engine() = default;

std::unique_ptr<SequenceState> Engine::new_sequence(int64_t capacity) {
  StateLayout layout = StateLayout::make(c_, capacity);
  std::lock_guard<std::mutex> lk(mu_);  // no step runs while the backend grows its scratch
  be_->reserve(c_, capacity);
  return std::make_unique<SequenceState>(*be_, std::move(layout));
}

uint64_t Engine::step_buffer_bytes() const { return fw_.buffer_bytes(); }

void Engine::run(std::span<StepItem> items, Profile* prof, const StepObserver* obs) {
  std::lock_guard<std::mutex> lk(mu_);
  const int64_t V = c_.vocab_size;
  for (StepItem& it : items) {
    it.done = 0;
    it.cancelled = false;
    it.cancel_error = nullptr;
  }
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
