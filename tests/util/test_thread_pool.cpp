// The worker pool under failure: an exception thrown by any part reaches the caller (no
// std::terminate from a worker), every part still finishes, and the pool keeps working.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "dsv4/error.hpp"
#include "util/thread_pool.hpp"

using namespace dsv4;

TEST_CASE("thread pool: an exception in a worker's part reaches the caller and the pool stays usable") {
  ThreadPool pool(3);
  REQUIRE(pool.size() == 3);
  for (int thrower = 0; thrower < 3; ++thrower) {
    std::atomic<int> done{0};
    auto body = [&](int tid, int64_t, int64_t) {
      if (tid == thrower) throw std::runtime_error("part " + std::to_string(tid));
      done.fetch_add(1);
    };
    CHECK_THROWS_WITH_AS(pool.parallel_for(3, 1, body), ("part " + std::to_string(thrower)).c_str(), std::runtime_error);
    CHECK(done.load() == 2);  // the other parts ran to the end before the call returned
  }
  std::atomic<int64_t> sum{0};
  pool.parallel_for(1000, 1, [&](int, int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) sum.fetch_add(i);
  });
  CHECK(sum.load() == 999 * 1000 / 2);
}

TEST_CASE("thread pool: scratch too large for the address space is a CapacityError") {
  ThreadPool pool(2);
  CHECK_THROWS_AS(pool.parallel_for(2, 1, [&](int tid, int64_t, int64_t) { pool.scratch(tid, SIZE_MAX / 2); }), CapacityError);
  pool.parallel_for(2, 1, [&](int tid, int64_t, int64_t) { REQUIRE(pool.scratch(tid, 16) != nullptr); });
}

TEST_CASE("thread pool: parallel_chunks runs every chunk exactly once, in order of claim, and rethrows") {
  ThreadPool pool(3);
  for (int64_t n : {1, 13, 137, 1000}) {
    for (int64_t chunk : {1, 7, 64, 5000}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      std::atomic<int> calls{0}, bad{0};
      pool.parallel_chunks(n, chunk, [&](int tid, int64_t b, int64_t e) {
        if (tid < 0 || tid >= 3 || b % chunk != 0 || e != std::min(n, b + chunk)) bad.fetch_add(1);
        for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
        calls.fetch_add(1);
      });
      CHECK(bad.load() == 0);
      CHECK(calls.load() == (n + chunk - 1) / chunk);
      int once = 0;
      for (auto& h : hits) once += h.load() == 1;
      CHECK(once == n);
    }
  }
  // One slow thread does not hold the others: they take the chunks it would have had.
  std::vector<std::atomic<int>> chunks_of(3);
  std::atomic<int> sleeper{-1};
  pool.parallel_chunks(64, 1, [&](int tid, int64_t b, int64_t) {
    chunks_of[static_cast<size_t>(tid)].fetch_add(1);
    if (b == 0) {
      sleeper.store(tid);
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
  });
  REQUIRE(sleeper.load() >= 0);
  CHECK(chunks_of[static_cast<size_t>(sleeper.load())].load() == 1);
  CHECK_THROWS_AS(pool.parallel_chunks(10, 1, [&](int, int64_t b, int64_t) {
    if (b == 5) throw std::runtime_error("chunk 5");
  }), std::runtime_error);
  std::atomic<int64_t> sum{0};
  pool.parallel_chunks(1000, 10, [&](int, int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) sum.fetch_add(i);
  });
  CHECK(sum.load() == 999 * 1000 / 2);
}
