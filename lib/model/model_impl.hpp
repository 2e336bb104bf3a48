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
};

}  // namespace dsv4
