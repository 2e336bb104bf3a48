// dsv4/sampler.hpp: turning logits into a token. Separate from Session and replaceable.
//
// A Sampler is a chain of stages applied in the order they were added, over a working set of
// candidates (token ids with logits) that starts as the whole vocabulary. Stages may change
// logits, shrink or reorder the set, or select a token (ending the chain). If no stage selects,
// the sampler draws from softmax(logits) of what is left.
//
//   dsv4::Sampler s(/*seed=*/42);
//   s.add(dsv4::stages::penalties(64, 1.1f, 0.0f, 0.0f))
//    .add(dsv4::stages::temperature(0.7f))
//    .add(dsv4::stages::top_k(50))
//    .add(dsv4::stages::top_p(0.95f));
//   int32_t tok = s.sample(logits);   // also records tok in the penalty history
//
// Random numbers: xoshiro256** (Blackman & Vigna) seeded through SplitMix64; a uniform draw is
// the top 53 bits of one output times 2^-53. Softmax and cumulative sums use double precision,
// so the same seed and logits give the same tokens on every run and platform.
//
// Cost: nothing sorts the whole vocabulary when top-k is set (selection is O(V)); top-p alone
// sorts only as many candidates as it needs. No allocation per token after the first call.
// Thread-safety: a Sampler is used by one thread at a time.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "dsv4/export.hpp"

namespace dsv4 {

class DSV4_API Rng {
 public:
  explicit Rng(uint64_t seed = 0) { seed_with(seed); }
  void seed_with(uint64_t seed);
  uint64_t next();
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)

 private:
  uint64_t s_[4];
};

// The working set handed to each stage. ids/logits have size() valid entries.
//
// What a stage may do (custom stages included):
// - change logits, through logits();
// - reorder entries, moving ids and logits together, through ids() and logits();
// - keep a prefix with truncate(n) (never grow the set);
// - end the chain with select(index).
// The set keeps two facts that let later stages skip work: "identity" (the whole vocabulary in
// id order) and "sorted" (logits in descending order). They are invalidated in one place: any
// writable access, logits() or ids() on a non-const Candidates, clears "sorted", and ids()
// also clears "identity". A stage that leaves the set in descending order may say so with
// mark_sorted() afterwards; it must never claim an order it did not make. Read through a const
// reference (std::as_const(c).logits()) to keep the facts.
class DSV4_API Candidates {
 public:
  size_t size() const { return n_; }
  int32_t* ids() {
    identity_ = false;
    sorted_ = false;
    return ids_.data();
  }
  float* logits() {
    sorted_ = false;
    return logits_.data();
  }
  const int32_t* ids() const { return ids_.data(); }
  const float* logits() const { return logits_.data(); }
  // Keeps the first n entries (n <= size()).
  void truncate(size_t n);
  // True while the set is the whole vocabulary in id order (ids()[i] == i).
  bool is_identity() const { return identity_; }
  void mark_reordered() { identity_ = false; sorted_ = false; }
  // True when logits are in descending order.
  bool is_sorted() const { return sorted_; }
  // The caller asserts that logits are now in descending order (ties: lower id first).
  void mark_sorted() { sorted_ = true; identity_ = false; }
  // Position of token `id` in the set, or -1.
  int64_t find(int32_t id) const;
  // Sorts (at least) the best `k` entries to the front in descending order; O(V) + O(k log k).
  void sort_top(size_t k);
  // The best k entries, best first, without changing the set: O(V) with a bounded heap when
  // k is small. Valid until the next call. Ties rank the lower id first.
  std::span<const std::pair<float, int32_t>> best(size_t k);
  // Replaces the set with its first `n` best entries as returned by best().
  void keep_best(size_t n);
  // Ends the chain with the entry at `index`.
  void select(size_t index) { selected_ = static_cast<int64_t>(index); }
  int64_t selected() const { return selected_; }

  void reset(std::span<const float> logits);  // internal: fill with the whole vocabulary

 private:
  std::vector<int32_t> ids_;
  std::vector<float> logits_;
  std::vector<int32_t> tmp_ids_;
  std::vector<float> tmp_logits_;
  std::vector<std::pair<float, int32_t>> best_;
  size_t n_ = 0;
  bool identity_ = true, sorted_ = false;
  int64_t selected_ = -1;
};

// What stages can read besides the candidates.
struct SamplerContext {
  Rng& rng;
  std::span<const int32_t> history;  // recently accepted tokens, oldest first
};

class DSV4_API SamplerStage {
 public:
  virtual ~SamplerStage() = default;
  virtual void apply(Candidates& c, SamplerContext& ctx) = 0;
  virtual std::string name() const = 0;
};

namespace stages {
DSV4_API std::unique_ptr<SamplerStage> logit_bias(std::vector<std::pair<int32_t, float>> bias);
// Over the last `window` accepted tokens: repetition (divide positive / multiply negative logits
// by `repetition`), presence (subtract once), frequency (subtract per occurrence).
DSV4_API std::unique_ptr<SamplerStage> penalties(int window, float repetition, float presence, float frequency);
DSV4_API std::unique_ptr<SamplerStage> temperature(float t);  // t <= 0: keep only the argmax (greedy)
DSV4_API std::unique_ptr<SamplerStage> top_k(int k);
DSV4_API std::unique_ptr<SamplerStage> top_p(float p);
DSV4_API std::unique_ptr<SamplerStage> min_p(float p);
DSV4_API std::unique_ptr<SamplerStage> greedy();                // selects the highest logit
DSV4_API std::unique_ptr<SamplerStage> dist();                  // draws from softmax of the rest
}  // namespace stages

struct SamplerParams {
  uint64_t seed = 0;
  float temperature = 1.0f;  // <= 0: greedy
  int top_k = 0;             // 0: off
  float top_p = 1.0f;        // 1: off
  float min_p = 0.0f;        // 0: off
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  int penalty_window = 64;
};

class DSV4_API Sampler {
 public:
  explicit Sampler(uint64_t seed = 0);
  Sampler(Sampler&&) noexcept = default;
  Sampler& operator=(Sampler&&) noexcept = default;
  Sampler(const Sampler&) = delete;  // stages are owned; build a new chain instead
  Sampler& operator=(const Sampler&) = delete;
  // The standard chain: penalties -> temperature -> top-k -> top-p -> min-p -> draw (or greedy).
  static Sampler from_params(const SamplerParams& p);
  static Sampler make_greedy();

  Sampler& add(std::unique_ptr<SamplerStage> stage);
  size_t stage_count() const { return stages_.size(); }
  std::vector<std::string> stage_names() const;

  // Runs the chain on `logits` (size = vocab), returns the chosen token and records it in the
  // history (as accept() does). Throws InvalidArgument on empty logits.
  int32_t sample(std::span<const float> logits);
  // Records a token chosen elsewhere (e.g. a forced prompt token) for the penalties.
  void accept(int32_t token);
  void reset(uint64_t seed);  // clears history, reseeds
  void set_history_capacity(size_t n);
  const Candidates& last_candidates() const { return cand_; }

 private:
  std::vector<std::unique_ptr<SamplerStage>> stages_;
  Candidates cand_;
  Rng rng_;
  std::vector<int32_t> history_;
  size_t history_cap_ = 1024;
};

}  // namespace dsv4
