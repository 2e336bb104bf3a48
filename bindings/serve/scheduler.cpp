#include "serve/scheduler.hpp"

#include <algorithm>

#include "dsv4/error.hpp"

namespace dsv4::serve {

bool Job::next(GenerationDelta& out, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lk(mu_);
  cv_.wait_for(lk, timeout, [&] { return !deltas_.empty() || finished_; });
  if (deltas_.empty()) return false;
  out = std::move(deltas_.front());
  deltas_.pop_front();
  return true;
}

bool Job::finished() const {
  std::lock_guard<std::mutex> lk(mu_);
  return finished_ && deltas_.empty();
}

GenerationResult Job::result() const {
  std::lock_guard<std::mutex> lk(mu_);
  return result_;
}

std::string Job::error() const {
  std::lock_guard<std::mutex> lk(mu_);
  return error_;
}

void Job::push(GenerationDelta d) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (first_token == Clock::time_point{}) first_token = Clock::now();
    deltas_.push_back(std::move(d));
  }
  cv_.notify_all();
}

void Job::finish(GenerationResult r, std::string error) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    result_ = std::move(r);
    error_ = std::move(error);
    finished_ = true;
  }
  cv_.notify_all();
}

Scheduler::Scheduler(std::shared_ptr<const Model> model, const Tokenizer& tok, SchedulerOptions o)
    : model_(std::move(model)), tok_(tok), o_(o) {
  if (o_.slots <= 0 || o_.context <= 1 || o_.queue < 0 || o_.prefill_chunk <= 0)
    throw InvalidArgument("scheduler: slots, context and prefill_chunk must be positive, queue >= 0");
  SessionOptions so;
  so.max_context = o_.context;
  so.cache_type = o_.cache_type;
  so.cache_window = o_.cache_window;
  so.max_batch = o_.prefill_chunk;
  slots_.resize(static_cast<size_t>(o_.slots));  // never resized again: TextStreams point at slot members
  for (Slot& s : slots_) {
    s.session = std::make_unique<Session>(model_, so);
    s.fmt.emplace(tok_);
  }
  stats_.slots = o_.slots;
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    running_ = false;
  }
  cv_.notify_all();
  thread_.join();
}

void Scheduler::submit(const std::shared_ptr<Job>& job) {
  if (job->prompt.empty()) throw InvalidArgument("the prompt is empty");
  if (static_cast<int64_t>(job->prompt.size()) >= o_.context)
    throw InvalidArgument("the prompt has " + std::to_string(job->prompt.size()) + " tokens; the context holds " + std::to_string(o_.context) +
                          " (prompt and completion together)");
  // Parameters are checked here, in the caller's thread, so a bad request fails before queueing.
  TextStream check(tok_, nullptr, ThinkMode::None, job->params);
  job->submitted = Clock::now();
  {
    std::lock_guard<std::mutex> lk(mu_);
    // Jobs that will find a free slot at the next step do not count against the queue.
    const int free_slots = std::max(0, o_.slots - stats_.active);
    if (static_cast<int>(waiting_.size()) >= o_.queue + free_slots)
      throw QueueFull("the queue is full (" + std::to_string(o_.queue) + " requests waiting, every slot busy)");
    waiting_.push_back(job);
  }
  cv_.notify_all();
}

Scheduler::Stats Scheduler::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  Stats s = stats_;
  s.waiting = static_cast<int>(waiting_.size());
  return s;
}

void Scheduler::admit(Slot& s, std::shared_ptr<Job> job) {
  auto ts = std::make_unique<TextStream>(tok_, job->chat ? &*s.fmt : nullptr, job->chat ? job->mode : ThinkMode::None, job->params);
  // Reuse what the slot holds when the new prompt starts with it; else the state after the
  // slot's last prompt (a conversation that goes on); else start over.
  auto is_prefix = [&](const std::vector<int32_t>& v) {
    return !v.empty() && v.size() <= job->prompt.size() && std::equal(v.begin(), v.end(), job->prompt.begin());
  };
  size_t reuse = 0;
  if (is_prefix(s.history)) {
    reuse = s.history.size();
  } else if (s.prompt_state && is_prefix(s.prompt_tokens)) {
    s.session->restore(*s.prompt_state);
    s.history = s.prompt_tokens;
    reuse = s.history.size();
  } else {
    s.session->reset();
    s.history.clear();
  }
  job->cached_.store(static_cast<int64_t>(reuse));
  s.job = std::move(job);
  s.fed = reuse;
  s.decoding = false;
  s.ts = std::move(ts);
  s.last_used = ++clock_;
  std::lock_guard<std::mutex> lk(mu_);
  stats_.prompt_tokens_reused += reuse;
}

void Scheduler::emit(Slot& s, const GenerationDelta& d) {
  if (!d.content.empty() || !d.reasoning.empty() || d.logprob) s.job->push(d);
}

void Scheduler::finish(Slot& s, const std::string& error) {
  GenerationResult r = s.ts ? s.ts->result() : GenerationResult{};
  r.prompt_tokens = static_cast<int64_t>(s.job->prompt.size());
  std::shared_ptr<Job> job = std::move(s.job);
  s.ts.reset();
  {
    // The slot is free before the client hears the job is done: a request it sends right after
    // the response must find the slot free, not a full queue.
    std::lock_guard<std::mutex> lk(mu_);
    --stats_.active;
  }
  job->finish(std::move(r), error);
}

// The slot's session holds logits for its last token: sample, emit, decide what comes next.
void Scheduler::after_logits(Slot& s) {
  const GenerationDelta d = s.ts->step(s.session->last_logits());
  {
    std::lock_guard<std::mutex> lk(mu_);
    ++stats_.tokens_generated;
  }
  emit(s, d);
  if (s.ts->done()) {
    finish(s);
  } else if (s.session->position() >= s.session->max_context()) {
    emit(s, s.ts->end(FinishReason::ContextFull));
    finish(s);
  }
}

void Scheduler::loop() {
  std::vector<BatchItem> items;
  std::vector<Slot*> in_step;
  std::vector<std::vector<int32_t>> tokens(slots_.size());
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return !running_ || !waiting_.empty() || stats_.active > 0; });
      if (!running_) {
        for (auto& j : waiting_) j->finish({}, "the server is shutting down");
        waiting_.clear();
        lk.unlock();
        for (Slot& s : slots_)
          if (s.job) finish(s, "the server is shutting down");
        return;
      }
      // Jobs join between steps: a free slot each, the one holding the longest reusable prefix.
      while (!waiting_.empty()) {
        std::shared_ptr<Job> job = waiting_.front();
        Slot* best = nullptr;
        size_t best_len = 0;
        for (Slot& s : slots_) {
          if (s.job) continue;
          auto pre = [&](const std::vector<int32_t>& v) {
            return !v.empty() && v.size() <= job->prompt.size() && std::equal(v.begin(), v.end(), job->prompt.begin()) ? v.size() : size_t{0};
          };
          const size_t len = std::max(pre(s.history), s.prompt_state ? pre(s.prompt_tokens) : size_t{0});
          if (best == nullptr || len > best_len || (len == best_len && s.last_used < best->last_used)) {
            best = &s;
            best_len = len;
          }
        }
        if (best == nullptr) break;
        waiting_.pop_front();
        // Counted as active while still under the lock, so submit() never sees the job in
        // neither the queue nor a slot (which would let one more through than the queue allows).
        ++stats_.active;
        lk.unlock();
        try {
          admit(*best, job);
        } catch (const std::exception& e) {
          job->finish({}, e.what());
          std::lock_guard<std::mutex> relk(mu_);
          --stats_.active;
        }
        lk.lock();
      }
    }
    // One step over every active slot.
    items.clear();
    in_step.clear();
    for (size_t i = 0; i < slots_.size(); ++i) {
      Slot& s = slots_[i];
      if (!s.job) continue;
      if (s.job->cancelled()) {
        emit(s, s.ts->end(FinishReason::Cancelled));
        finish(s);
        continue;
      }
      std::vector<int32_t>& t = tokens[i];
      t.clear();
      if (!s.decoding) {
        const size_t n = std::min<size_t>(static_cast<size_t>(o_.prefill_chunk), s.job->prompt.size() - s.fed);
        if (n == 0) {  // the whole prompt was reused: its logits are in the session already
          s.decoding = true;
          after_logits(s);
          continue;
        }
        t.assign(s.job->prompt.begin() + static_cast<std::ptrdiff_t>(s.fed), s.job->prompt.begin() + static_cast<std::ptrdiff_t>(s.fed + n));
      } else {
        t.push_back(s.ts->token());
      }
      items.push_back({s.session.get(), t});
      in_step.push_back(&s);
    }
    if (items.empty()) continue;
    try {
      forward_batch(items);
    } catch (const std::exception& e) {
      for (Slot* s : in_step) finish(*s, std::string("forward failed: ") + e.what());
      continue;
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      ++stats_.steps;
    }
    for (size_t k = 0; k < in_step.size(); ++k) {
      Slot& s = *in_step[k];
      const std::span<const int32_t> fedt = items[k].tokens;
      s.history.insert(s.history.end(), fedt.begin(), fedt.end());
      try {
        if (!s.decoding) {
          s.fed += fedt.size();
          {
            std::lock_guard<std::mutex> lk(mu_);
            stats_.prompt_tokens_prefilled += fedt.size();
          }
          if (s.fed < s.job->prompt.size()) continue;
          s.decoding = true;
          s.prompt_state = s.session->snapshot();  // for a later request that extends this conversation
          s.prompt_tokens = s.job->prompt;
        }
        after_logits(s);
      } catch (const std::exception& e) {
        finish(s, e.what());
      }
    }
  }
}

}  // namespace dsv4::serve
