// Session internals for the library and first-party tools (not public API).
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

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

struct SessionSnapshot::Data {
  const Model* model = nullptr;
  int64_t pos = 0;
  CacheType cache_type = CacheType::F32;  // how the entries vectors are stored (as 4-byte words)
  bool cache_window = false;              // the ring vectors too
  std::vector<float> last;
  struct Comp {
    std::vector<float> pend_kv, pend_g, prev_kv, prev_g, entries;
  };
  struct Layer {
    std::vector<float> ring;
    Comp comp, index;
  };
  std::vector<Layer> layers;
  // Every state vector in a fixed order (per layer: ring, then pend_kv, pend_g, prev_kv, prev_g,
  // entries of the compressor and of the indexer); absent parts are empty.
  template <class D, class F>
  static void each_vector(D& d, F&& fn) {
    for (auto& l : d.layers) {
      fn(l.ring);
      for (auto* c : {&l.comp, &l.index})
        for (auto* v : {&c->pend_kv, &c->pend_g, &c->prev_kv, &c->prev_g, &c->entries}) fn(*v);
    }
  }
  uint64_t bytes() const {
    uint64_t b = last.size() * 4;
    for (const auto& l : layers) {
      b += l.ring.size() * 4;
      for (const Comp* c : {&l.comp, &l.index})
        b += (c->pend_kv.size() + c->pend_g.size() + c->prev_kv.size() + c->prev_g.size() + c->entries.size()) * 4;
    }
    return b;
  }
};


// A fingerprint of the model's weights for state files: tensor names, dtypes and shapes, and
// samples of the embedding and output head (so another checkpoint of the same shape differs).
uint64_t model_fingerprint(const Model& m);

// State files (Session::save_state / load_state), format in session_file.cpp.
void write_state_file(const std::filesystem::path& file, const SessionSnapshot::Data& d, const Model& m, std::string_view metadata);
// Reads and checks a state file: `expect(pos)` gives the float count of every state vector (in
// each_vector order) a session of `m` holds at `pos`, or throws when `pos` does not fit.
// The file's cache type must be `type`.
SessionSnapshot::Data read_state_file(const std::filesystem::path& file, const Model& m, CacheType type, bool cache_window,
                                      const std::function<std::vector<uint64_t>(int64_t pos)>& expect, std::string* metadata);

}  // namespace dsv4
