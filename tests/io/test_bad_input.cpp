// Bad checkpoints and configs: each is a typed error naming the problem, and the process survives.
#include <doctest/doctest.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include "dsv4/model.hpp"
#include "dsv4/config.hpp"
#include "io/safetensors.hpp"
#include "model/model_impl.hpp"
#include "model/weights.hpp"
#include "support/support.hpp"

using namespace dsv4;
using namespace dsv4::test;
namespace fs = std::filesystem;

namespace {

// A copy of tiny_a whose tensors pass through `edit` first.
fs::path edited_tiny(const std::string& tag, const std::function<void(std::vector<RawTensor>&)>& edit) {
  const fs::path dir = temp_dir(tag);
  fs::copy_file(golden_dir("tiny_a") / "config.json", dir / "config.json");
  auto tensors = read_all(golden_dir("tiny_a") / "model.safetensors");
  edit(tensors);
  write_safetensors(dir / "model.safetensors", tensors);
  return dir;
}

template <class E>
std::string load_error(const fs::path& dir) {
  try {
    Model::load(dir);
  } catch (const E& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("missing model directory or files") {
  CHECK(load_error<IoError>("/nonexistent/dsv4-model").find("does not exist") != std::string::npos);
  const fs::path dir = temp_dir("empty");
  CHECK(load_error<IoError>(dir).find("config.json") != std::string::npos);
  fs::copy_file(golden_dir("tiny_a") / "config.json", dir / "config.json");
  CHECK(load_error<IoError>(dir).find("no checkpoint") != std::string::npos);
}

TEST_CASE("truncated checkpoint file") {
  const fs::path dir = temp_dir("trunc");
  fs::copy_file(golden_dir("tiny_a") / "config.json", dir / "config.json");
  const fs::path src = golden_dir("tiny_a") / "model.safetensors";
  std::ifstream in(src, std::ios::binary);
  std::vector<char> bytes(fs::file_size(src) / 2);
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  std::ofstream(dir / "model.safetensors", std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  CHECK(load_error<FormatError>(dir).find("truncated") != std::string::npos);
}

TEST_CASE("shape and dtype mismatches name the tensor with expected vs found") {
  auto dir = edited_tiny("shape", [](auto& ts) {
    for (auto& t : ts)
      if (t.name == "model.layers.1.self_attn.kv_proj.weight") {
        t.shape = {32, 256};
      }
  });
  const std::string msg = load_error<ShapeError>(dir);
  CHECK(msg.find("model.layers.1.self_attn.kv_proj.weight") != std::string::npos);
  CHECK(msg.find("expected F32 [64, 128]") != std::string::npos);
  CHECK(msg.find("found F32 [32, 256]") != std::string::npos);

  auto dir2 = edited_tiny("dtype", [](auto& ts) {
    for (auto& t : ts)
      if (t.name == "model.layers.0.attn_hc.fn") {
        t.dtype = DType::I32;
      }
  });
  CHECK(load_error<ShapeError>(dir2).find("model.layers.0.attn_hc.fn") != std::string::npos);
}

TEST_CASE("missing tensor") {
  auto dir = edited_tiny("missing", [](auto& ts) {
    std::erase_if(ts, [](const RawTensor& t) { return t.name == "model.layers.3.self_attn.compressor.indexer.q_b_proj.weight"; });
  });
  CHECK(load_error<MissingTensorError>(dir).find("model.layers.3.self_attn.compressor.indexer.q_b_proj.weight") !=
        std::string::npos);
}

TEST_CASE("hash routing table with an out-of-range expert id") {
  auto dir = edited_tiny("tid2eid", [](auto& ts) {
    for (auto& t : ts)
      if (t.name == "model.layers.0.mlp.gate.tid2eid") {
        const int64_t bad = 99;
        std::memcpy(t.bytes.data() + 8 * 5, &bad, 8);
      }
  });
  CHECK(load_error<FormatError>(dir).find("not an expert id") != std::string::npos);
}

TEST_CASE("config key missing or inconsistent") {
  const fs::path dir = temp_dir("cfg");
  std::ifstream in(golden_dir("tiny_a") / "config.json");
  auto j = nlohmann::json::parse(in);
  j.erase("hidden_size");
  std::ofstream(dir / "config.json") << j.dump();
  fs::copy_file(golden_dir("tiny_a") / "model.safetensors", dir / "model.safetensors");
  CHECK(load_error<ConfigError>(dir).find("missing key 'hidden_size'") != std::string::npos);
}

TEST_CASE("deeply nested JSON in config.json, the index file or a safetensors header is an error, not a stack overflow") {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  std::ifstream in(golden_dir("tiny_a") / "config.json");
  std::string cfg((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string nested_cfg = cfg.substr(0, cfg.rfind('}')) + ", \"extra\": " + deep + "}";
  std::string msg;
  try {
    ModelConfig::parse(nested_cfg, "config.json");
  } catch (const ConfigError& e) {
    msg = e.what();
  }
  CHECK(msg.find("nests deeper than") != std::string::npos);

  const fs::path dir = temp_dir("deep_index");
  fs::copy_file(golden_dir("tiny_a") / "config.json", dir / "config.json");
  std::ofstream(dir / "model.safetensors.index.json") << "{\"weight_map\": " << deep << "}";
  CHECK(load_error<FormatError>(dir).find("nests deeper than") != std::string::npos);

  std::string header = "{\"x\": " + deep + "}";
  std::vector<uint8_t> file(8 + header.size());
  for (int i = 0; i < 8; ++i) file[static_cast<size_t>(i)] = static_cast<uint8_t>(header.size() >> (8 * i));
  std::memcpy(file.data() + 8, header.data(), header.size());
  msg.clear();
  try {
    parse_safetensors_header(file.data(), file.size(), file.size(), "deep.safetensors");
  } catch (const FormatError& e) {
    msg = e.what();
  }
  CHECK(msg.find("nests deeper than") != std::string::npos);
}

TEST_CASE("matrices stored at misaligned offsets are viewed through aligned pointers") {
  // official_a (the published layout) has F32 tensors at odd offsets in its files; the kernels
  // read F32 and 16-bit elements through typed pointers, so every such view must be aligned.
  const auto model = dsv4::Model::load(dsv4::test::golden_dir("official_a"));
  auto& impl = dsv4::ModelAccess::mutable_impl(*model);
  struct Check final : dsv4::WeightVisitor {
    int matrices = 0, misaligned = 0;
    void matrix(dsv4::MatW& w) override {
      if (w.empty()) return;
      ++matrices;
      const size_t align = w.fmt == dsv4::WFormat::F32 ? 4 : (w.fmt == dsv4::WFormat::BF16 || w.fmt == dsv4::WFormat::F16) ? 2 : 1;
      misaligned += reinterpret_cast<uintptr_t>(w.data) % align != 0;
    }
    void floats(dsv4::FVec& v) override { misaligned += reinterpret_cast<uintptr_t>(v.data()) % alignof(float) != 0; }
    void doubles(dsv4::DVec&) override {}
    void bytes(const uint8_t*&, size_t) override {}
  } check;
  dsv4::visit_weights(impl.w, impl.cfg, check);
  CHECK(check.matrices > 10);
  CHECK(check.misaligned == 0);
  // And the file really has such tensors (otherwise this test proves nothing).
  int odd = 0;
  for (const auto& name : impl.store.names()) {
    const auto t = impl.store.get(name);
    odd += t.info->dtype == dsv4::DType::F32 && reinterpret_cast<uintptr_t>(t.data) % 4 != 0;
  }
  CHECK(odd > 0);
}
