// Model internals shared by the session and tools.
#pragma once
#include <vector>

#include "dsv4/model.hpp"
#include "io/tensor_store.hpp"
#include "model/weights.hpp"

namespace dsv4 {

struct Model::Impl {
  ModelConfig cfg;
  TensorStore store;
  ModelWeights w;
  std::vector<double> freq_main, freq_compress;  // RoPE inverse frequencies [rd/2]
  std::vector<std::unique_ptr<uint8_t[]>> owned;  // tensor memory of synthetic models
};

// Builds a Model from a store whose tensors follow the published layout (validates like load()).
std::shared_ptr<const Model> make_model(ModelConfig cfg, TensorStore store, std::vector<std::unique_ptr<uint8_t[]>> owned);

}  // namespace dsv4
