#include <filesystem>

#include "model/model_impl.hpp"
#include "model/rope.hpp"
#include "util/log.hpp"

namespace dsv4 {

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

std::shared_ptr<const Model> Model::load(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    throw IoError("model directory " + dir.string() + " does not exist or is not a directory");
  ModelConfig cfg = ModelConfig::load(dir / "config.json");
  TensorStore store(dir);
  ModelWeights w = bind_weights(cfg, store);
  auto impl = std::unique_ptr<Impl>(new Impl{std::move(cfg), std::move(store), std::move(w), {}, {}, {}});
  impl->freq_main = rope_frequencies(impl->cfg.rope_main, impl->cfg.rope_dim);
  impl->freq_compress = rope_frequencies(impl->cfg.rope_compress, impl->cfg.rope_dim);
  log(LogLevel::Info, "loaded " + dir.string() + ": " + std::to_string(impl->store.size()) + " tensors, " +
                          std::to_string(impl->cfg.num_layers) + " layers (" +
                          (impl->w.layout == CheckpointLayout::Published ? "published" : "huggingface") + " layout)");
  return from_impl(std::move(impl));
}

std::shared_ptr<const Model> Model::from_impl(std::unique_ptr<Impl> impl) {
  return std::shared_ptr<const Model>(new Model(std::move(impl)));
}

std::shared_ptr<const Model> make_model(ModelConfig cfg, TensorStore store, std::unique_ptr<Arena> owned) {
  ModelWeights w = bind_weights(cfg, store);
  auto impl = std::unique_ptr<Model::Impl>(new Model::Impl{std::move(cfg), std::move(store), std::move(w), {}, {}, std::move(owned)});
  impl->freq_main = rope_frequencies(impl->cfg.rope_main, impl->cfg.rope_dim);
  impl->freq_compress = rope_frequencies(impl->cfg.rope_compress, impl->cfg.rope_dim);
  return Model::from_impl(std::move(impl));
}

const ModelConfig& Model::config() const { return impl_->cfg; }

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

uint64_t Model::session_state_bytes(int64_t context) const {
  const ModelConfig& c = impl_->cfg;
  uint64_t b = 0;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    b += static_cast<uint64_t>(c.sliding_window * c.head_dim);
    if (c.attn_kind[l] == AttnKind::Sliding) continue;
    const int64_t m = c.compress_ratio[l];
    const int64_t cw = c.attn_kind[l] == AttnKind::CSA ? 2 : 1;
    b += static_cast<uint64_t>((context / m + 1) * c.head_dim + 2 * m * cw * c.head_dim + (cw - 1) * 2 * m * c.head_dim);
    if (c.attn_kind[l] == AttnKind::CSA)
      b += static_cast<uint64_t>((context / m + 1) * c.index_head_dim + 4 * m * c.index_head_dim + 2 * m * c.index_head_dim);
  }
  return b * sizeof(float);
}

}  // namespace dsv4
