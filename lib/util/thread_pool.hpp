// A fixed pool of worker threads for data-parallel loops, with per-thread scratch memory.
//
// parallel_for splits [0, n) into contiguous ranges, one per participating thread (the caller
// is thread 0), and returns when all ranges are done; parallel_chunks hands out chunks of [0, n)
// in order to whichever thread is free (a thread the OS deschedules or a slower kind of work
// then holds nobody up). No allocation per call. One pool serves a
// whole process (shared()): callers from several threads take turns, one parallel_for at a time
// (a body must not call parallel_for). Workers spin briefly before sleeping, so the many small
// ops of a decode step do not pay a wake-up each.
#pragma once
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace dsv4 {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // The process-wide pool of `threads` threads (<= 0: one per hardware thread), created on first
  // use and kept while anyone holds it: every CPU backend of that size shares one set of workers.
  static std::shared_ptr<ThreadPool> shared(int threads);

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // fn(int tid, int64_t begin, int64_t end); every range holds at least `grain` items except the
  // last; at most `max_parts` ranges when it is positive.
  template <class F>
  void parallel_for(int64_t n, int64_t grain, F&& fn, int max_parts = 0) {
    if (n <= 0) return;
    const int64_t cap = max_parts > 0 ? std::min(max_parts, size()) : size();
    const int64_t parts = std::min<int64_t>(cap, (n + std::max<int64_t>(grain, 1) - 1) / std::max<int64_t>(grain, 1));
    std::lock_guard<std::mutex> turn(turn_);  // one caller at a time (thread 0's scratch is shared too)
    if (parts <= 1) {
      fn(0, int64_t{0}, n);
      return;
    }
    using Fn = std::remove_reference_t<F>;
    run(n, parts, 0, const_cast<void*>(static_cast<const void*>(&fn)),
        [](void* ctx, int tid, int64_t b, int64_t e) { (*static_cast<Fn*>(ctx))(tid, b, e); });
  }

  // fn(int tid, int64_t begin, int64_t end) for every chunk [k·chunk, min((k+1)·chunk, n)), each
  // called once, on at most `max_parts` threads (when positive), chunks claimed in order. Which
  // thread runs a chunk varies from call to call; fn must not depend on it beyond scratch.
  template <class F>
  void parallel_chunks(int64_t n, int64_t chunk, F&& fn, int max_parts = 0) {
    if (n <= 0) return;
    chunk = std::max<int64_t>(chunk, 1);
    const int64_t cap = max_parts > 0 ? std::min(max_parts, size()) : size();
    const int64_t parts = std::min<int64_t>(cap, (n + chunk - 1) / chunk);
    std::lock_guard<std::mutex> turn(turn_);
    if (parts <= 1) {
      for (int64_t b = 0; b < n; b += chunk) fn(0, b, std::min(n, b + chunk));
      return;
    }
    using Fn = std::remove_reference_t<F>;
    run(n, parts, chunk, const_cast<void*>(static_cast<const void*>(&fn)),
        [](void* ctx, int tid, int64_t b, int64_t e) { (*static_cast<Fn*>(ctx))(tid, b, e); });
  }

  // Grow-only scratch of at least `floats` floats owned by thread `tid`, 64-byte aligned. Only
  // valid inside a parallel_for body (that is what makes it private to the caller).
  float* scratch(int tid, size_t floats);
  size_t scratch_bytes() const;

 private:
  using Thunk = void (*)(void*, int, int64_t, int64_t);
  void run(int64_t n, int64_t parts, int64_t chunk, void* ctx, Thunk thunk);
  void worker(int tid);
  void do_part(int part);

  std::vector<std::thread> workers_;
  std::mutex turn_;
  std::mutex mu_;
  std::condition_variable cv_start_, cv_done_;
  std::atomic<uint64_t> generation_{0};
  bool stop_ = false;
  int64_t n_ = 0, parts_ = 0, chunk_ = 0;  // chunk_ 0: one static range per part
  alignas(64) std::atomic<int64_t> next_{0};  // parallel_chunks: the first chunk not yet claimed
  void* ctx_ = nullptr;
  Thunk thunk_ = nullptr;
  std::atomic<int> pending_{0};
  std::exception_ptr error_;  // the first exception a part threw in this run (guarded by mu_)

  struct alignas(64) Scratch {
    float* data = nullptr;
    size_t size = 0;
  };
  std::vector<Scratch> scratch_;
};

}  // namespace dsv4
