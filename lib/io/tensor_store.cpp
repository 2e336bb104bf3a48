#include "io/tensor_store.hpp"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "dsv4/error.hpp"
#include "util/json.hpp"

namespace fs = std::filesystem;

namespace dsv4 {

void TensorStore::add_file(const fs::path& file) {
  files_.push_back(std::make_unique<SafetensorsFile>(file));
  const size_t idx = files_.size() - 1;
  const SafetensorsFile& f = *files_[idx];
  for (const auto& [name, info] : f.header().tensors) {
    auto [it, inserted] = index_.emplace(name, Entry{&info, f.tensor_data(info), file.filename().string()});
    if (!inserted)
      throw FormatError("tensor '" + name + "' appears in both " + it->second.origin + " and " + file.filename().string());
  }
}

TensorStore TensorStore::open_file(const fs::path& file) {
  TensorStore s;
  s.root_ = file;
  s.add_file(file);
  return s;
}

TensorStore::TensorStore(const fs::path& dir) : root_(dir) {
  std::error_code ec;
  if (fs::is_regular_file(dir, ec)) {
    add_file(dir);
    return;
  }
  if (!fs::is_directory(dir, ec)) throw IoError("model path " + dir.string() + " does not exist or is not a directory");
  const fs::path index = dir / "model.safetensors.index.json";
  if (fs::exists(index)) {
    std::ifstream f(index);
    if (!f) throw IoError("cannot open " + index.string());
    std::stringstream ss;
    ss << f.rdbuf();
    const nlohmann::json j = parse_json<FormatError>(ss.str(), index.string());
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      throw FormatError(index.string() + ": missing object 'weight_map'");
    std::set<std::string> shards;
    std::vector<std::pair<std::string, std::string>> expected;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string()) throw FormatError(index.string() + ": weight_map['" + it.key() + "'] must be a file name");
      const std::string shard = it.value().get<std::string>();
      if (shard.find('/') != std::string::npos || shard == "..")
        throw FormatError(index.string() + ": shard name '" + shard + "' must be a plain file name");
      shards.insert(shard);
      expected.emplace_back(it.key(), shard);
    }
    for (const auto& s : shards) add_file(dir / s);
    for (const auto& [name, shard] : expected) {
      auto it = index_.find(name);
      if (it == index_.end())
        throw FormatError(index.string() + ": lists tensor '" + name + "' in " + shard + ", but that shard does not contain it");
    }
    return;
  }
  if (fs::exists(dir / "model.safetensors")) {
    add_file(dir / "model.safetensors");
    return;
  }
  std::vector<fs::path> found;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".safetensors" && e.path().filename() != "golden.safetensors") found.push_back(e.path());
  if (found.size() != 1)
    throw IoError("no checkpoint in " + dir.string() +
                  ": expected model.safetensors.index.json, model.safetensors, or exactly one *.safetensors file");
  add_file(found[0]);
}

TensorRef TensorStore::get(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end())
    throw MissingTensorError("tensor '" + name + "' is missing from the checkpoint at " + root_.string());
  return TensorRef{it->second.info, it->second.data};
}

TensorStore TensorStore::in_memory() {
  TensorStore s;
  s.root_ = "(memory)";
  return s;
}

void TensorStore::add_memory(const std::string& name, DType dtype, std::vector<int64_t> shape, const uint8_t* data) {
  TensorInfo t;
  t.name = name;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.begin = 0;
  t.end = static_cast<uint64_t>(t.numel()) * dtype_size(dtype);
  mem_infos_.push_back(std::move(t));
  if (!index_.emplace(name, Entry{&mem_infos_.back(), data, "memory"}).second)
    throw FormatError("tensor '" + name + "' added twice");
}

std::vector<std::string> TensorStore::names() const {
  std::vector<std::string> v;
  v.reserve(index_.size());
  for (const auto& [n, _] : index_) v.push_back(n);
  std::sort(v.begin(), v.end());
  return v;
}

uint64_t TensorStore::file_bytes() const {
  uint64_t b = 0;
  for (const auto& f : files_) b += fs::file_size(f->path());
  return b;
}

}  // namespace dsv4
