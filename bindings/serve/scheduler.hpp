// Continuous batching for the server: a fixed set of slots (sessions) over one model; jobs wait
// in a bounded queue, join the running batch between steps and leave it when they finish. Each
// step is one forward_batch over every active slot: a decoding slot adds its sampled token, a
// slot still prefilling adds at most `prefill_chunk` prompt tokens, so a long prompt never stalls
// the running streams for more than a chunk. A finished slot keeps its state; a new job whose
// prompt extends what a free slot holds (or the prompt that slot last prefilled) reuses it and
// prefills only the rest.
//
// Thread-safety: submit() and Job's accessors may be called from any thread; the sessions are
// used by the scheduler's own thread only.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "dsv4/generate.hpp"
#include "dsv4/model.hpp"
#include "dsv4/tokenizer.hpp"

namespace dsv4::serve {

using Clock = std::chrono::steady_clock;

// One request as the scheduler sees it. The submitter fills the inputs, then reads deltas.
class Job {
 public:
  // inputs (before submit)
  std::vector<int32_t> prompt;
  bool chat = true;  // chat format: reasoning split at </think>
  ThinkMode mode = ThinkMode::None;
  GenerationParams params;

  // Waits up to `timeout` for the next delta; false when none came (then finished() may be true).
  bool next(GenerationDelta& out, std::chrono::milliseconds timeout);
  bool finished() const;
  void cancel() { cancel_.store(true); }
  bool cancelled() const { return cancel_.load(); }
  // After finished(): the outcome (error() non-empty when the job failed).
  GenerationResult result() const;
  std::string error() const;
  int64_t cached_tokens() const { return cached_.load(); }  // prompt tokens reused from an earlier state
  Clock::time_point submitted, first_token;                 // first_token: set when the first delta is queued

 private:
  friend class Scheduler;
  void push(GenerationDelta d);
  void finish(GenerationResult r, std::string error);
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<GenerationDelta> deltas_;
  bool finished_ = false;
  GenerationResult result_;
  std::string error_;
  std::atomic<bool> cancel_{false};
  std::atomic<int64_t> cached_{0};
};

struct QueueFull : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct SchedulerOptions {
  int slots = 4;               // sequences decoded together
  int64_t context = 4096;      // tokens per slot (prompt + generation)
  int queue = 64;              // jobs waiting for a slot, at most
  int64_t prefill_chunk = 128; // prompt tokens a slot adds per step
  CacheType cache_type = CacheType::F32;  // how each slot's session stores its caches
  bool cache_window = false;
};

class Scheduler {
 public:
  Scheduler(std::shared_ptr<const Model> model, const Tokenizer& tok, SchedulerOptions o);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a job. Throws QueueFull when `queue` jobs wait already, InvalidArgument when the prompt
  // is empty or leaves no room to generate in the context.
  void submit(const std::shared_ptr<Job>& job);

  struct Stats {
    int slots = 0, active = 0, waiting = 0;
    uint64_t steps = 0, tokens_generated = 0, prompt_tokens_prefilled = 0, prompt_tokens_reused = 0;
  };
  Stats stats() const;
  const SchedulerOptions& options() const { return o_; }

 private:
  struct Slot {
    std::unique_ptr<Session> session;
    std::vector<int32_t> history;  // tokens the session holds
    std::shared_ptr<Job> job;
    std::unique_ptr<TextStream> ts;
    std::optional<ChatFormat> fmt;
    size_t fed = 0;                // prompt tokens of the job fed so far
    bool decoding = false;
    std::optional<SessionSnapshot> prompt_state;  // the state right after the last prompt prefilled
    std::vector<int32_t> prompt_tokens;           // that prompt
    uint64_t last_used = 0;
  };
  void loop();
  void admit(Slot& s, std::shared_ptr<Job> job);
  void emit(Slot& s, const GenerationDelta& d);
  void finish(Slot& s, const std::string& error = {});
  void after_logits(Slot& s);

  std::shared_ptr<const Model> model_;
  const Tokenizer& tok_;
  SchedulerOptions o_;
  std::vector<Slot> slots_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> waiting_;
  bool running_ = true;
  Stats stats_;
  uint64_t clock_ = 0;
  std::thread thread_;
};

}  // namespace dsv4::serve
