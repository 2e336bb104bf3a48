#include "util/thread_pool.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <chrono>
#include <map>
#include <new>
#include <string>
#include <utility>

#include "dsv4/error.hpp"
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define DSV4_PAUSE() _mm_pause()
#else
#define DSV4_PAUSE() std::this_thread::yield()
#endif

namespace dsv4 {

namespace {
constexpr auto kSpin = std::chrono::microseconds(200);  // spin before blocking (typical gap between ops)
}  // namespace

std::shared_ptr<ThreadPool> ThreadPool::shared(int threads) {
  if (threads <= 0) {
    const unsigned hw = std::thread::hardware_concurrency();
    threads = hw == 0 ? 1 : static_cast<int>(hw);
  }
  static std::mutex mu;
  static std::map<int, std::weak_ptr<ThreadPool>> pools;
  std::lock_guard<std::mutex> lk(mu);
  std::weak_ptr<ThreadPool>& slot = pools[threads];
  if (auto p = slot.lock()) return p;
  auto p = std::make_shared<ThreadPool>(threads);
  slot = p;
  return p;
}

ThreadPool::ThreadPool(int threads) : scratch_(static_cast<size_t>(std::max(threads, 1))) {
  try {
    for (int t = 1; t < std::max(threads, 1); ++t) workers_.emplace_back([this, t] { worker(t); });
  } catch (const std::exception& e) {
    // The threads already started are stopped, so the failure is an error, not a hang or abort.
    const size_t started = workers_.size();
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_start_.notify_all();
    for (auto& w : workers_) w.join();
    throw CapacityError("cannot start worker thread " + std::to_string(started + 1) + " of " + std::to_string(threads) + " (" +
                        e.what() + "): ask for fewer threads");
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_start_.notify_all();
  for (auto& w : workers_) w.join();
  for (auto& s : scratch_) std::free(s.data);
}

float* ThreadPool::scratch(int tid, size_t floats) {
  Scratch& s = scratch_[static_cast<size_t>(tid)];
  if (s.size < floats) {
    const size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
    void* p = floats > (SIZE_MAX - 63) / sizeof(float) ? nullptr : std::aligned_alloc(64, bytes);
    if (p == nullptr)
      throw CapacityError("cannot allocate " + std::to_string(floats) + " floats of per-thread scratch (a smaller max_context needs less)");
    std::free(s.data);
    s.data = static_cast<float*>(p);
    s.size = bytes / sizeof(float);
  }
  return s.data;
}

size_t ThreadPool::scratch_bytes() const {
  size_t b = 0;
  for (const auto& s : scratch_) b += s.size * sizeof(float);
  return b;
}

void ThreadPool::do_part(int part) {
  // An exception never leaves a worker (that would terminate the process): the first one is
  // kept and rethrown to the caller once every part has finished (a part stops at its first).
  try {
    if (chunk_ == 0) {
      const int64_t b = n_ * part / parts_, e = n_ * (part + 1) / parts_;
      if (b < e) thunk_(ctx_, part, b, e);
    } else {
      for (int64_t b; (b = next_.fetch_add(chunk_, std::memory_order_relaxed)) < n_;) thunk_(ctx_, part, b, std::min(n_, b + chunk_));
    }
  } catch (...) {
    std::lock_guard<std::mutex> lk(mu_);
    if (!error_) error_ = std::current_exception();
  }
}

void ThreadPool::run(int64_t n, int64_t parts, int64_t chunk, void* ctx, Thunk thunk) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    n_ = n;
    parts_ = parts;
    chunk_ = chunk;
    next_.store(0, std::memory_order_relaxed);
    ctx_ = ctx;
    thunk_ = thunk;
    pending_.store(static_cast<int>(parts - 1));
    error_ = nullptr;
    generation_.fetch_add(1, std::memory_order_release);
  }
  cv_start_.notify_all();
  do_part(0);
  const auto until = std::chrono::steady_clock::now() + kSpin;
  while (pending_.load(std::memory_order_acquire) != 0 && std::chrono::steady_clock::now() < until) DSV4_PAUSE();
  std::unique_lock<std::mutex> lk(mu_);
  cv_done_.wait(lk, [this] { return pending_.load() == 0; });
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

void ThreadPool::worker(int tid) {
  uint64_t seen = 0;
  for (;;) {
    const auto until = std::chrono::steady_clock::now() + kSpin;
    while (generation_.load(std::memory_order_acquire) == seen && std::chrono::steady_clock::now() < until) DSV4_PAUSE();
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_start_.wait(lk, [&] { return stop_ || generation_.load() != seen; });
      if (stop_) return;
      seen = generation_.load();
      if (tid >= parts_) continue;
    }
    do_part(tid);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lk(mu_);
      cv_done_.notify_all();
    }
  }
}

}  // namespace dsv4
