// TensorStore: every tensor of a checkpoint directory, memory-mapped, by name.
//
// Opens `model.safetensors.index.json` (sharded) when present, else the single
// `model.safetensors`, else the only *.safetensors file of the directory. Tensors stay in the
// mapped files in their stored dtype; nothing is copied.
#pragma once
#include <deque>
#include <filesystem>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "io/safetensors.hpp"

namespace dsv4 {

struct TensorRef {
  const TensorInfo* info = nullptr;
  const uint8_t* data = nullptr;
  const std::string& name() const { return info->name; }
};

class TensorStore {
 public:
  explicit TensorStore(const std::filesystem::path& dir_or_file);
  // Opens a single already-known file (tests, tools).
  static TensorStore open_file(const std::filesystem::path& file);
  // An empty store to which tensors held in memory are added (synthetic models for benchmarks).
  static TensorStore in_memory();
  // Registers `data` (owned by the caller, must outlive the store) under `name`.
  void add_memory(const std::string& name, DType dtype, std::vector<int64_t> shape, const uint8_t* data);

  bool has(const std::string& name) const { return index_.count(name) != 0; }
  // Throws MissingTensorError naming the tensor and the checkpoint.
  TensorRef get(const std::string& name) const;
  std::vector<std::string> names() const;
  size_t size() const { return index_.size(); }
  const std::filesystem::path& root() const { return root_; }
  uint64_t file_bytes() const;

 private:
  TensorStore() = default;
  void add_file(const std::filesystem::path& file);
  std::filesystem::path root_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::deque<TensorInfo> mem_infos_;  // stable addresses for in-memory tensors
  struct Entry {
    const TensorInfo* info;
    const uint8_t* data;
    std::string origin;  // file name, or "memory"
  };
  std::unordered_map<std::string, Entry> index_;
};

}  // namespace dsv4
