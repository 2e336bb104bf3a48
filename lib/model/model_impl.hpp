// Model internals shared by the session, the engine and tools.
#pragma once
#include <memory>
#include <vector>

#include "dsv4/model.hpp"
#include "io/tensor_store.hpp"
#include "model/weights.hpp"
#include "runtime/engine.hpp"
#include "util/arena.hpp"

namespace dsv4 {

class Backend;

struct Model::Impl {
  ModelConfig cfg;
  TensorStore store;
  SmallParams small;  // decoded small parameters viewed by `w`
  ModelWeights w;     // host views (the mapped checkpoint)
  std::unique_ptr<Arena> owned;  // tensor memory of synthetic models (null for checkpoints)
  LoadOptions options;
  std::unique_ptr<Engine> engine;  // last: destroyed before the memory it reads
};

// Access to a Model's internals for the library and first-party tools (not public API).
struct ModelAccess {
  static const Model::Impl& impl(const Model& m) { return *m.impl_; }
  static Model::Impl& mutable_impl(const Model& m) { return *m.impl_; }
  static std::shared_ptr<const Model> wrap(std::unique_ptr<Model::Impl> impl) {
    return std::shared_ptr<const Model>(new Model(std::move(impl)));
  }
};
inline const Model::Impl& model_impl(const Model& m) { return ModelAccess::impl(m); }
inline Engine& model_engine(const Model& m) { return *ModelAccess::mutable_impl(m).engine; }

// Builds a Model from a store whose tensors follow the published layout (validates like load()),
// bound to the backend of `options`, or to `backend` when one is given (tests: instrumented backends).
std::shared_ptr<const Model> make_model(ModelConfig cfg, TensorStore store, std::unique_ptr<Arena> owned,
                                        const LoadOptions& options, std::unique_ptr<Backend> backend = nullptr);
// Model::load onto a given backend instance (tests: instrumented backends).
std::shared_ptr<const Model> load_model_on(const std::filesystem::path& dir, const LoadOptions& options,
                                           std::unique_ptr<Backend> backend);

}  // namespace dsv4
