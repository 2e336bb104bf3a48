// Session state files (Session::save_state / load_state).
//
// Layout, little-endian:
//   8 bytes   "DSV4SESS"
//   u32       format version (1)
//   u32       H: bytes of the JSON header that follows (at most 1 MiB)
//   H bytes   {"version":1, "library":"0.1.0", "fingerprint":"<16 hex>", "vocab_size":V,
//              "num_layers":L, "position":P, "logits":0|V, "dtype":"f32"|"bf16"|"fp8", "vectors":[n, ...],
//              "metadata":M}
//   M bytes   the caller's metadata (opaque; e.g. the CLI's prompt tokens)
//   payload   4-byte words: the last logits (f32, when "logits" is V), then every state vector in
//             SessionSnapshot::Data::each_vector order, "vectors" giving their lengths in words.
//             "dtype" is the session's cache type: the compressed entries and indexer keys are
//             stored in it (their bytes, quant/cache_format.hpp), everything else is f32.
//   u64       checksum of the payload
// A reader checks all of it against the model and the session before anything is changed.
#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "model/model_impl.hpp"
#include "model/session_internal.hpp"
#include "util/json.hpp"

namespace dsv4 {
namespace {

static_assert(std::endian::native == std::endian::little, "state files are little-endian");

constexpr char kMagic[8] = {'D', 'S', 'V', '4', 'S', 'E', 'S', 'S'};
constexpr uint32_t kVersion = 1;
constexpr uint32_t kMaxHeader = 1u << 20;

// 64-bit hash over 8-byte words (tail bytes zero-padded): cheap next to the file I/O.
struct Hash {
  uint64_t h = 0x6a09e667f3bcc909ull;
  void add(const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    while (n >= 8) {
      uint64_t w;
      std::memcpy(&w, b, 8);
      mix(w);
      b += 8;
      n -= 8;
    }
    if (n > 0) {
      uint64_t w = 0;
      std::memcpy(&w, b, n);
      mix(w ^ (static_cast<uint64_t>(n) << 56));
    }
  }
  void mix(uint64_t w) {
    h ^= w + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
  }
};

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

uint64_t checked_add(uint64_t a, uint64_t b, const std::string& what) {
  if (b > UINT64_MAX - a) throw FormatError(what + ": sizes overflow");
  return a + b;
}

}  // namespace

uint64_t model_fingerprint(const Model& model) {
  const Model::Impl& m = model_impl(model);
  Hash h;
  for (const std::string& name : m.store.names()) {  // sorted
    const TensorRef t = m.store.get(name);
    h.add(name.data(), name.size());
    const auto dt = static_cast<int32_t>(t.info->dtype);
    h.add(&dt, sizeof dt);
    h.add(t.info->shape.data(), t.info->shape.size() * sizeof(int64_t));
  }
  for (const MatW* w : {&m.w.embed, &m.w.head}) {
    if (w->empty()) continue;
    const uint64_t n = static_cast<uint64_t>(w->rows) * static_cast<uint64_t>(w->cols);
    const uint64_t data_bytes = w->fmt == WFormat::F32 ? n * 4 : w->fmt == WFormat::FP4 ? n / 2 : w->fmt == WFormat::FP8 ? n : n * 2;
    h.add(w->data, static_cast<size_t>(std::min<uint64_t>(data_bytes, 1u << 16)));  // the first rows' values
  }
  return h.h;
}

void write_state_file(const std::filesystem::path& file, const SessionSnapshot::Data& d, const Model& model, std::string_view metadata) {
  const ModelConfig& c = model.config();
  nlohmann::json vectors = nlohmann::json::array();
  SessionSnapshot::Data::each_vector(d, [&](const std::vector<float>& v) { vectors.push_back(v.size()); });
  const nlohmann::json header = {{"version", kVersion},
                                 {"library", "0.1.0"},
                                 {"fingerprint", hex64(model_fingerprint(model))},
                                 {"vocab_size", c.vocab_size},
                                 {"num_layers", c.num_layers},
                                 {"position", d.pos},
                                 {"logits", d.last.size()},
                                 {"dtype", cache_type_name(d.cache_type)},
                                 {"cache_window", d.cache_window},
                                 {"vectors", vectors},
                                 {"metadata", metadata.size()}};
  const std::string hs = header.dump();
  const std::filesystem::path tmp = file.string() + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw IoError("cannot write session state to " + tmp.string() + ": cannot create the file");
    const auto hlen = static_cast<uint32_t>(hs.size());
    f.write(kMagic, 8);
    f.write(reinterpret_cast<const char*>(&kVersion), 4);
    f.write(reinterpret_cast<const char*>(&hlen), 4);
    f.write(hs.data(), static_cast<std::streamsize>(hs.size()));
    Hash sum;
    f.write(metadata.data(), static_cast<std::streamsize>(metadata.size()));
    sum.add(metadata.data(), metadata.size());
    auto put = [&](const std::vector<float>& v) {
      const size_t n = v.size() * sizeof(float);
      f.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(n));
      sum.add(v.data(), n);
    };
    put(d.last);
    SessionSnapshot::Data::each_vector(d, put);
    f.write(reinterpret_cast<const char*>(&sum.h), 8);
    f.flush();
    if (!f) {
      f.close();
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
      throw IoError("cannot write session state to " + tmp.string() + ": write failed (disk full?)");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, file, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    throw IoError("cannot write session state to " + file.string() + ": " + ec.message());
  }
}

SessionSnapshot::Data read_state_file(const std::filesystem::path& file, const Model& model, CacheType type, bool cache_window,
                                      const std::function<std::vector<uint64_t>(int64_t pos)>& expect, std::string* metadata) {
  const std::string src = "session state " + file.string();
  std::ifstream f(file, std::ios::binary);
  if (!f) throw IoError("cannot open " + src + ": no such file or not readable");
  std::error_code ec;
  const uint64_t size = std::filesystem::file_size(file, ec);
  if (ec) throw IoError("cannot read " + src + ": " + ec.message());
  char magic[8];
  uint32_t version = 0, hlen = 0;
  if (size < 24 || !f.read(magic, 8) || !f.read(reinterpret_cast<char*>(&version), 4) || !f.read(reinterpret_cast<char*>(&hlen), 4) ||
      std::memcmp(magic, kMagic, 8) != 0)
    throw FormatError(src + ": not a dsv4 session state file");
  if (version != kVersion)
    throw FormatError(src + ": format version " + std::to_string(version) + "; this library reads version " + std::to_string(kVersion));
  if (hlen > kMaxHeader || hlen > size - 24) throw FormatError(src + ": header length " + std::to_string(hlen) + " is out of range");
  std::string hs(hlen, '\0');
  if (!f.read(hs.data(), hlen)) throw FormatError(src + ": truncated header");
  const nlohmann::json h = parse_json<FormatError>(hs, src + " header");
  auto num = [&](const char* key) -> int64_t {
    if (!h.is_object() || !h.contains(key) || !h[key].is_number_integer())
      throw FormatError(src + ": header field '" + key + "' is missing or not an integer");
    return h[key].get<int64_t>();
  };
  const ModelConfig& c = model.config();
  if (!h.contains("fingerprint") || !h["fingerprint"].is_string() || h["fingerprint"].get<std::string>() != hex64(model_fingerprint(model)))
    throw InvalidArgument(src + " was saved from a different model (its weights' fingerprint differs): load it into a session of that model");
  if (num("vocab_size") != c.vocab_size || num("num_layers") != c.num_layers)
    throw InvalidArgument(src + " was saved from a model with another vocabulary or layer count");
  if (!h.contains("dtype") || !h["dtype"].is_string()) throw FormatError(src + ": header field 'dtype' is missing");
  CacheType file_type;
  try {
    file_type = parse_cache_type(h["dtype"].get<std::string>());
  } catch (const InvalidArgument&) {
    throw FormatError(src + ": unknown state dtype " + h["dtype"].dump());
  }
  const bool file_window = h.contains("cache_window") && h["cache_window"].is_boolean() && h["cache_window"].get<bool>();
  if (file_type != CacheType::F32 && file_window != cache_window)
    throw InvalidArgument(src + (file_window ? " stores its window rows in " : " stores its window rows in f32, ") +
                          (file_window ? std::string(cache_type_name(file_type)) + "; " : std::string()) +
                          "create the session with cache_window = " + (file_window ? "true" : "false"));
  if (file_type != type)
    throw InvalidArgument(src + " holds a " + cache_type_name(file_type) + " cache; this session's is " + cache_type_name(type) +
                          " (create the session with cache_type " + cache_type_name(file_type) + ")");
  const int64_t pos = num("position");
  const int64_t logits = num("logits");
  const int64_t meta = h.contains("metadata") ? num("metadata") : 0;
  if (meta < 0 || static_cast<uint64_t>(meta) > size) throw FormatError(src + ": metadata length out of range");
  if (pos < 0) throw FormatError(src + ": negative position");
  if (logits != 0 && logits != c.vocab_size) throw FormatError(src + ": logits count " + std::to_string(logits) + " is not 0 or the vocabulary size");
  const std::vector<uint64_t> want = expect(pos);  // throws when pos does not fit the session
  if (!h.contains("vectors") || !h["vectors"].is_array() || h["vectors"].size() != want.size())
    throw FormatError(src + ": its state layout does not match this model's");
  uint64_t floats = static_cast<uint64_t>(logits);
  for (size_t i = 0; i < want.size(); ++i) {
    const auto& v = h["vectors"][i];
    if (!v.is_number_unsigned() || v.get<uint64_t>() != want[i])
      throw FormatError(src + ": state vector " + std::to_string(i) + " has " + v.dump() + " floats where this session holds " +
                        std::to_string(want[i]) + " at position " + std::to_string(pos));
    floats = checked_add(floats, want[i], src);
  }
  if (floats > (UINT64_MAX - 32) / 4) throw FormatError(src + ": sizes overflow");
  const uint64_t expect_size = checked_add(16 + hlen + floats * 4 + 8, static_cast<uint64_t>(meta), src);
  if (expect_size != size)
    throw FormatError(src + ": " + std::to_string(size) + " bytes where its header implies " + std::to_string(expect_size) +
                      (size < expect_size ? " (truncated)" : " (trailing bytes)"));

  SessionSnapshot::Data d;
  d.model = &model;
  d.pos = pos;
  d.cache_type = file_type;
  d.cache_window = file_window;
  d.layers.resize(static_cast<size_t>(c.num_layers));
  Hash sum;
  std::string md(static_cast<size_t>(meta), '\0');
  if (!f.read(md.data(), meta)) throw FormatError(src + ": truncated metadata");
  sum.add(md.data(), md.size());
  auto get = [&](std::vector<float>& v, uint64_t n) {
    v.resize(static_cast<size_t>(n));
    if (!f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * 4))) throw FormatError(src + ": truncated payload");
    sum.add(v.data(), static_cast<size_t>(n * 4));
  };
  get(d.last, static_cast<uint64_t>(logits));
  size_t k = 0;
  SessionSnapshot::Data::each_vector(d, [&](std::vector<float>& v) { get(v, want[k++]); });
  uint64_t stored = 0;
  if (!f.read(reinterpret_cast<char*>(&stored), 8) || stored != sum.h) throw FormatError(src + ": checksum mismatch (the file is corrupted)");
  if (metadata != nullptr) *metadata = std::move(md);
  return d;
}

}  // namespace dsv4
