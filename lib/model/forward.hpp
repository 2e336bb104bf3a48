// The forward pass over one step (rows of one or several sequences), written once against the
// Backend ops. It owns the step's activation buffers and the step buffer, in backend memory, and
// never reads or writes through them: the host builds the step image and uploads it; the logits
// of the output rows stay in backend memory for the caller to download.
#pragma once
#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <vector>

#include "backend/backend.hpp"

namespace dsv4 {

// Op families timed when a session asks for a profile.
enum Prof : size_t { pEmbed, pMhc, pAttnProj, pCompressor, pIndexer, pAttnCore, pAttnOut, pMoe, pHead, kProfCount };
extern const char* const kProfNames[kProfCount];

struct Profile {
  std::array<double, kProfCount> op{};
  std::vector<double> layer;  // seconds per layer
};

// Debugging aid (see Session::set_observer): host copies of the streams after each stage.
using StepObserver = std::function<void(int stage, const float* data, int64_t rows, int64_t width)>;

// A step as the host builds it: an image of the step buffer (StepLayout) plus its counts.
struct HostStep {
  std::vector<unsigned char> image;
  StepLayout layout;
  int64_t rows = 0, seqs = 0, outs = 0;
  StepRef host() { return layout.ref(image.data()); }  // host pointers into the image, for filling it
  int32_t* ids() { return const_cast<int32_t*>(host().ids); }
  int64_t* pos() { return const_cast<int64_t*>(host().pos); }
  int32_t* seq() { return const_cast<int32_t*>(host().seq); }
  int32_t* out() { return const_cast<int32_t*>(host().out); }
  StepSeq* seqv() { return const_cast<StepSeq*>(host().seqs); }
  void reserve(int64_t capacity);  // sizes the image for `capacity` rows (grow only)
  void clear() { rows = seqs = outs = 0; }
  void finish();                   // writes the counts into the image
};

class Forward {
 public:
  Forward(const ModelConfig& c, const ModelWeights& w, Backend& be);
  ~Forward();
  Forward(const Forward&) = delete;
  Forward& operator=(const Forward&) = delete;

  // Buffers for steps of up to `rows` rows and `outs` output rows (grow only: addresses change
  // only when a step needs more than any before it).
  void reserve(int64_t rows, int64_t outs);
  int64_t row_capacity() const { return cap_rows_; }
  // Uploads the step image and runs every layer; the head runs on the step's output rows.
  void run(HostStep& st, Profile* prof, const StepObserver* obs);
  // Logits of the last step's output rows [outs, vocab] (backend memory).
  const float* logits() const { return logits_; }
  uint64_t buffer_bytes() const { return bytes_; }

 private:
  void attention(int64_t l, int64_t S, Profile* prof);
  // The op calls of a step after its upload (Backend::run_step may record and replay them).
  void body(int64_t S, int64_t outs, bool identity, Profile* prof, const StepObserver* obs);
  void tick(Profile* prof, Prof p);
  void observe(const StepObserver* obs, int stage, const float* data, int64_t rows, int64_t width);

  const ModelConfig& c_;
  const ModelWeights& w_;
  Backend& be_;
  int64_t cap_rows_ = 0, cap_outs_ = 0;
  void* block_ = nullptr;  // every activation buffer, one allocation
  void* step_mem_ = nullptr;
  StepLayout step_layout_;
  StepRef step_;
  uint64_t bytes_ = 0;
  float *X_ = nullptr, *xin_ = nullptr, *coef_ = nullptr, *y_ = nullptr, *qa_ = nullptr, *q_ = nullptr, *kv_ = nullptr,
        *ckv_ = nullptr, *cg_ = nullptr, *iq_ = nullptr, *iw_ = nullptr, *ikv_ = nullptr, *ig_ = nullptr, *o_ = nullptr,
        *yg_ = nullptr, *h_ = nullptr, *logits_ = nullptr, *cos_main_ = nullptr, *sin_main_ = nullptr,
        *cos_comp_ = nullptr, *sin_comp_ = nullptr;
  int32_t* sel_ = nullptr;
  std::chrono::steady_clock::time_point mark_;
  std::vector<float> observe_buf_;  // host copies for the observer (debugging only)
};

}  // namespace dsv4
