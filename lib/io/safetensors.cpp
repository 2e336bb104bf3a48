#include "io/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <nlohmann/json.hpp>

#include "dsv4/error.hpp"
#include "util/json.hpp"

namespace dsv4 {

namespace {
constexpr uint64_t kMaxHeaderBytes = 256ull << 20;  // far above any real header (Flash: ~4 MB)

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }
}  // namespace

SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, uint64_t size, uint64_t file_size,
                                           const std::string& src) {
  if (file_size < 8 || size < 8)
    throw FormatError(src + ": file is " + std::to_string(file_size) + " bytes, too short for a safetensors header");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
  if (n > kMaxHeaderBytes) throw FormatError(src + ": header length " + std::to_string(n) + " exceeds the 256 MiB limit");
  if (n > file_size - 8)
    throw FormatError(src + ": header length " + std::to_string(n) + " runs past the end of the file (" +
                      std::to_string(file_size) + " bytes): truncated file?");
  if (n > size - 8) throw FormatError(src + ": header not fully available");
  const nlohmann::json j = parse_json<FormatError>(std::string_view(reinterpret_cast<const char*>(bytes) + 8, static_cast<size_t>(n)), src + " header");
  if (!j.is_object()) throw FormatError(src + ": header must be a JSON object");

  SafetensorsHeader h;
  h.data_offset = 8 + n;
  const uint64_t data_size = file_size - h.data_offset;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const std::string& name = it.key();
    const auto& v = it.value();
    const std::string where = src + ": tensor '" + name + "'";
    if (!v.is_object()) throw FormatError(where + ": entry must be an object");
    auto dt = v.find("dtype");
    auto sh = v.find("shape");
    auto off = v.find("data_offsets");
    if (dt == v.end() || !dt->is_string()) throw FormatError(where + ": missing string 'dtype'");
    if (sh == v.end() || !sh->is_array()) throw FormatError(where + ": missing array 'shape'");
    if (off == v.end() || !off->is_array() || off->size() != 2) throw FormatError(where + ": 'data_offsets' must be [begin, end]");
    auto dtype = dtype_from_name(dt->get<std::string>());
    if (!dtype) throw FormatError(where + ": unknown dtype '" + dt->get<std::string>() + "'");
    TensorInfo t;
    t.name = name;
    t.dtype = *dtype;
    uint64_t numel = 1;
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned()) throw FormatError(where + ": shape entries must be non-negative integers");
      const uint64_t dim = d.get<uint64_t>();
      if (dim > (1ull << 48) || mul_overflows(numel, dim, &numel)) throw FormatError(where + ": shape is too large");
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    for (const auto& o : *off)
      if (!o.is_number_unsigned()) throw FormatError(where + ": data_offsets must be non-negative integers");
    t.begin = (*off)[0].get<uint64_t>();
    t.end = (*off)[1].get<uint64_t>();
    uint64_t bytes_needed = 0;
    if (mul_overflows(numel, dtype_size(t.dtype), &bytes_needed)) throw FormatError(where + ": shape is too large");
    if (t.begin > t.end) throw FormatError(where + ": data_offsets begin > end");
    if (t.end > data_size)
      throw FormatError(where + ": data_offsets end " + std::to_string(t.end) + " is past the data section (" +
                        std::to_string(data_size) + " bytes): truncated file?");
    if (t.end - t.begin != bytes_needed)
      throw FormatError(where + ": " + std::string(dtype_name(t.dtype)) + " shape needs " + std::to_string(bytes_needed) +
                        " bytes but data_offsets span " + std::to_string(t.end - t.begin));
    h.tensors.emplace(name, std::move(t));
  }
  std::vector<const TensorInfo*> order;
  order.reserve(h.tensors.size());
  for (auto& [_, t] : h.tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->begin < b->begin || (a->begin == b->begin && a->end < b->end); });
  const TensorInfo* last = nullptr;  // the non-empty tensor reaching furthest so far
  for (const TensorInfo* t : order) {
    if (t->begin == t->end) continue;
    if (last != nullptr && t->begin < last->end)
      throw FormatError(src + ": tensors '" + last->name + "' and '" + t->name + "' overlap");
    if (last == nullptr || t->end > last->end) last = t;
  }
  return h;
}

MappedFile::MappedFile(const std::filesystem::path& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw IoError("cannot open " + path.string() + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw IoError("cannot stat " + path.string() + ": " + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw IoError(path.string() + " is not a regular file");
  }
  size_ = static_cast<uint64_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int e = errno;
      ::close(fd);
      throw IoError("cannot map " + path.string() + ": " + std::strerror(e));
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
}

MappedFile::MappedFile(MappedFile&& o) noexcept : path_(std::move(o.path_)), data_(o.data_), size_(o.size_) {
  o.data_ = nullptr;
  o.size_ = 0;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
}

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path)
    : map_(path), header_(parse_safetensors_header(map_.data(), map_.size(), map_.size(), path.filename().string())) {}

}  // namespace dsv4
