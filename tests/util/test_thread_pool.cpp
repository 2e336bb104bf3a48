// The worker pool under failure: an exception thrown by any part reaches the caller (no
// std::terminate from a worker), every part still finishes, and the pool keeps working.
#include <doctest/doctest.h>

#include <atomic>
#include <stdexcept>

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
