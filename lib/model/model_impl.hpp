// Model internals shared by the session and tools.
#pragma once
#include <vector>

#include "dsv4/model.hpp"
#include "io/tensor_store.hpp"
#include "model/weights.hpp"
#include "util/arena.hpp"

namespace dsv4 {

struct Model::Impl {
  ModelConfig cfg;
  TensorStore store;
  ModelWeights w;
  std::vector<double> freq_main, freq_compress;  // RoPE inverse frequencies [rd/2]
  std::unique_ptr<Arena> owned;  // tensor memory of synthetic models (null for checkpoints)
};

// Builds a Model from a store whose tensors follow the published layout (validates like load()).
std::shared_ptr<const Model> make_model(ModelConfig cfg, TensorStore store, std::unique_ptr<Arena> owned);

}  // namespace dsv4
