#include <algorithm>
#include <filesystem>
#include <string>
#include <thread>

#include "backend/backend.hpp"
#include "model/model_impl.hpp"
#include "model/state_layout.hpp"
#include "util/log.hpp"

namespace dsv4 {

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

namespace {

void report(const LoadOptions& o, double f, std::string_view stage) {
  if (o.progress) o.progress(f, stage);
}

std::shared_ptr<const Model> finish(std::unique_ptr<Model::Impl> impl, std::unique_ptr<Backend> backend) {
  const LoadOptions& o = impl->options;
  if (o.max_batch <= 0) throw InvalidArgument("LoadOptions::max_batch must be positive");
  report(o, 0.6, "binding weights to the backend");
  if (!backend) backend = make_backend(o);
  impl->engine = std::make_unique<Engine>(impl->cfg, impl->w, std::move(backend), o.max_batch, o.cache_pool_bytes,
                                          o.cache_block_tokens);
  if (o.cache_pool_bytes == 0) {  // automatic budget: 90% of the backend's memory less the weights, at least a quarter
    const BackendInfo b = impl->engine->backend().info();
    const double total = static_cast<double>(b.memory_total), weights = static_cast<double>(b.weight_bytes);
    if (total > 0) impl->engine->pool().set_limit(static_cast<uint64_t>(std::max(0.9 * total - weights, 0.25 * total)));
  }
  const unsigned hw = std::thread::hardware_concurrency();
  if (o.threads > 0 && hw > 0 && static_cast<unsigned>(o.threads) > hw)
    log(LogLevel::Warning, std::to_string(o.threads) + " worker threads requested but this machine has " + std::to_string(hw) +
                               " hardware threads: expect slower steps than with " + std::to_string(hw));
  if (log_enabled(LogLevel::Info)) {
    const BackendInfo b = impl->engine->backend().info();
    log(LogLevel::Info, "backend " + b.name + ":" + std::to_string(b.device) + " (" + b.device_name +
                            (b.kernel_tier.empty() ? "" : ", kernels " + b.kernel_tier) +
                            (b.threads > 0 ? ", " + std::to_string(b.threads) + " threads" : "") + ")");
  }
  report(o, 1.0, "ready");
  return ModelAccess::wrap(std::move(impl));
}

}  // namespace

std::shared_ptr<const Model> Model::load(const std::filesystem::path& dir) { return load(dir, LoadOptions{}); }

std::shared_ptr<const Model> load_model_on(const std::filesystem::path& dir, const LoadOptions& options,
                                           std::unique_ptr<Backend> backend) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    throw IoError("model directory " + dir.string() + " does not exist or is not a directory");
  if (!backend) backend = make_backend(options);  // an unknown backend or device fails before any file is read
  report(options, 0.0, "reading config.json");
  ModelConfig cfg = ModelConfig::load(dir / "config.json");
  report(options, 0.1, "mapping the safetensors");
  TensorStore store(dir);
  report(options, 0.4, "checking and binding tensors");
  auto impl = std::unique_ptr<Model::Impl>(new Model::Impl{std::move(cfg), std::move(store), {}, {}, {}, options, {}});
  impl->w = bind_weights(impl->cfg, impl->store, impl->small);
  log(LogLevel::Info, "loaded " + dir.string() + ": " + std::to_string(impl->store.size()) + " tensors, " +
                          std::to_string(impl->cfg.num_layers) + " layers (" +
                          (impl->w.layout == CheckpointLayout::Published ? "published" : "huggingface") + " layout)");
  return finish(std::move(impl), std::move(backend));
}

std::shared_ptr<const Model> Model::load(const std::filesystem::path& dir, const LoadOptions& options) {
  return load_model_on(dir, options, nullptr);
}

std::shared_ptr<const Model> make_model(ModelConfig cfg, TensorStore store, std::unique_ptr<Arena> owned,
                                        const LoadOptions& options, std::unique_ptr<Backend> backend) {
  auto impl = std::unique_ptr<Model::Impl>(new Model::Impl{std::move(cfg), std::move(store), {}, {}, std::move(owned), options, {}});
  impl->w = bind_weights(impl->cfg, impl->store, impl->small);
  return finish(std::move(impl), std::move(backend));
}

const ModelConfig& Model::config() const { return impl_->cfg; }
const LoadOptions& Model::load_options() const { return impl_->options; }

BackendInfo Model::backend_info() const {
  BackendInfo b = impl_->engine->backend().info();
  b.buffer_bytes += impl_->engine->step_buffer_bytes();
  return b;
}

ModelStats Model::stats() const {
  ModelStats st;
  st.layout = impl_->w.layout == CheckpointLayout::Published ? "published" : "huggingface";
  st.file_bytes = impl_->store.file_bytes();
  for (const auto& name : impl_->store.names()) {
    const TensorRef t = impl_->store.get(name);
    const std::string dt(dtype_name(t.info->dtype));
    st.bytes_by_dtype[dt] += t.info->end - t.info->begin;
    st.tensors_by_dtype[dt] += 1;
    if (t.info->dtype == DType::F8_E8M0) continue;  // scales are not parameters
    int64_t n = t.info->numel();
    if (t.info->dtype == DType::I8 && name.find("experts.") != std::string::npos) n *= 2;  // packed FP4
    const bool mtp = name.rfind("mtp.", 0) == 0 || name.rfind("model.mtp.", 0) == 0;
    (mtp ? st.mtp_parameters : st.parameters) += n;
  }
  return st;
}

uint64_t Model::session_state_bytes(int64_t context, CacheType type) const {
  return impl_->engine->layout(context, type).bytes_at(context);
}

CachePoolStats Model::cache_pool() const {
  const PoolStats p = impl_->engine->pool().stats();
  CachePoolStats s;
  s.limit_bytes = p.limit_bytes;
  s.in_use_bytes = p.in_use_bytes;
  s.free_bytes = p.free_bytes;
  s.peak_bytes = p.peak_bytes;
  s.block_tokens = impl_->engine->layout(0, CacheType::F32).block_tokens;
  return s;
}

void Model::trim_cache_pool() const { impl_->engine->pool().trim(); }

}  // namespace dsv4
