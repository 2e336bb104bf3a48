// Synthetic models at real DeepSeek-V4 dimensions, with random weights generated in memory in the
// published formats (FP8 + E8M0, FP4 experts, BF16 and F32 where the checkpoint has them), for
// benchmarks that need no download.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "dsv4/config.hpp"
#include "dsv4/model.hpp"

namespace dsv4 {

// "flash" or "pro" with the first `layers` layers of the V4-Flash schedule (0 = all). The Pro
// preset changes what the checkpoint spec documents (experts 384, intermediate 3072, index top-k
// 1024, scaling 2.5) and keeps Flash's other dimensions. Throws InvalidArgument.
std::string preset_config_json(const std::string& name, int64_t layers);
// Keeps the first `layers` layers of a config (published or HF layout JSON).
std::string truncate_config_json(const std::string& json_text, int64_t layers);

// Allocates and fills every tensor with options.threads threads and binds the model to the
// backend of `options`; `bytes` receives the total allocated.
std::shared_ptr<const Model> make_synthetic_model(const ModelConfig& cfg, uint64_t seed, const LoadOptions& options,
                                                  uint64_t* bytes = nullptr);

}  // namespace dsv4
