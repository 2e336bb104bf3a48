// Session internals for the library and first-party tools (not public API).
#pragma once
#include <cstdint>

#include "dsv4/model.hpp"

namespace dsv4 {

struct SessionAccess {
  static Session::Impl& impl(Session& s);
  static const Session::Impl& impl(const Session& s);
  // Benchmark aid: sets the session as if `position` tokens had been fed, filling its caches
  // (window rows, compressor state, compressed entries, indexer keys) with random values, so
  // decode can be timed at a deep context without the prefill. Not for generating text.
  static void fill_random(Session& s, int64_t position, uint64_t seed);
};

}  // namespace dsv4
