// Bounds-checked safetensors parsing and memory-mapped files.
//
// parse_safetensors_header() validates everything before any tensor is touched: header length
// within the file, JSON well-formed, known dtypes, non-negative shapes whose byte size matches
// the offsets, offsets inside the data section, no two tensors overlapping. Any violation
// throws FormatError naming the file and tensor.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "io/dtype.hpp"

namespace dsv4 {

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets relative to the start of the data section
  uint64_t end = 0;
  int64_t numel() const {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
};

struct SafetensorsHeader {
  uint64_t data_offset = 0;  // absolute file offset of the data section
  std::map<std::string, TensorInfo> tensors;
};

// `bytes` holds at least the first min(size, file_size) bytes of a file of `file_size` bytes.
SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, uint64_t size, uint64_t file_size,
                                           const std::string& source);

// A read-only memory map of a whole file. Move-only; unmaps on destruction.
class MappedFile {
 public:
  explicit MappedFile(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&&) = delete;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

// One mapped safetensors file with its parsed header.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::filesystem::path& path);
  const SafetensorsHeader& header() const { return header_; }
  const uint8_t* tensor_data(const TensorInfo& t) const { return map_.data() + header_.data_offset + t.begin; }
  const std::filesystem::path& path() const { return map_.path(); }

 private:
  MappedFile map_;
  SafetensorsHeader header_;
};

}  // namespace dsv4
