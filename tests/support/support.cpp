#include "support/support.hpp"

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>
#include <vector>

#include <unistd.h>

#include "io/tensor_store.hpp"

namespace fs = std::filesystem;

namespace dsv4::test {

fs::path data_dir() { return fs::path(DSV4_TEST_DATA); }
fs::path golden_dir(const std::string& name) { return data_dir() / "goldens" / name; }

namespace {
// The temporary folders of this process, removed when it exits (not by forked children, which
// leave through _exit).
struct TempDirs {
  pid_t owner = ::getpid();
  std::vector<fs::path> dirs;
  ~TempDirs() {
    if (::getpid() != owner) return;
    std::error_code ec;
    for (const auto& d : dirs) fs::remove_all(d, ec);
  }
};
TempDirs& temp_dirs() {
  static TempDirs t;
  return t;
}
}  // namespace

fs::path temp_dir(const std::string& tag) {
  fs::path p = fs::temp_directory_path() / ("dsv4-test-" + tag + "-" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  temp_dirs().dirs.push_back(p);
  return p;
}

Golden load_golden(const std::string& name) {
  Golden g;
  const fs::path dir = golden_dir(name);
  std::ifstream mf(dir / "meta.json");
  std::stringstream ss;
  ss << mf.rdbuf();
  g.meta = nlohmann::json::parse(ss.str());
  const TensorStore st = TensorStore::open_file(dir / "golden.safetensors");
  const TensorRef ids = st.get("input_ids");
  g.N = ids.info->shape[1];
  for (int64_t i = 0; i < g.N; ++i) {
    int64_t v;
    std::memcpy(&v, ids.data + 8 * i, 8);
    g.ids.push_back(static_cast<int32_t>(v));
  }
  const TensorRef lg = st.get("logits_full");
  g.V = lg.info->shape[1];
  g.logits.resize(static_cast<size_t>(g.N * g.V));
  std::memcpy(g.logits.data(), lg.data, g.logits.size() * 4);
  for (int k = 0;; ++k) {
    char key[32];
    std::snprintf(key, sizeof key, "hidden_%02d", k);
    if (!st.has(key)) break;
    const TensorRef h = st.get(key);
    std::vector<float> v(static_cast<size_t>(h.info->numel()));
    std::memcpy(v.data(), h.data, v.size() * 4);
    g.hidden.push_back(std::move(v));
  }
  return g;
}

double rel_err(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    const double d = static_cast<double>(a[i]) - b[i];
    num += d * d;
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

int64_t argmax_mismatches(const float* a, const float* b, int64_t rows, int64_t cols) {
  int64_t bad = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = a + r * cols;
    const float* y = b + r * cols;
    bad += std::max_element(x, x + cols) - x != std::max_element(y, y + cols) - y;
  }
  return bad;
}

std::string worst(const float* a, const float* b, int64_t rows, int64_t cols) {
  double w = -1;
  int64_t at = 0;
  for (int64_t i = 0; i < rows * cols; ++i) {
    const double d = std::fabs(static_cast<double>(a[i]) - b[i]);
    if (!(d <= w)) {
      w = d;
      at = i;
    }
  }
  return "max |diff| = " + std::to_string(w) + " at [" + std::to_string(at / cols) + ", " + std::to_string(at % cols) +
         "] (ours " + std::to_string(a[at]) + ", ref " + std::to_string(b[at]) + ")";
}

void write_safetensors(const fs::path& path, const std::vector<RawTensor>& tensors) {
  nlohmann::json h = nlohmann::json::object();
  uint64_t off = 0;
  for (const auto& t : tensors) {
    h[t.name] = {{"dtype", std::string(dtype_name(t.dtype))}, {"shape", t.shape}, {"data_offsets", {off, off + t.bytes.size()}}};
    off += t.bytes.size();
  }
  std::string hs = h.dump();
  hs.append((8 - hs.size() % 8) % 8, ' ');
  std::ofstream f(path, std::ios::binary);
  const uint64_t n = hs.size();
  f.write(reinterpret_cast<const char*>(&n), 8);
  f.write(hs.data(), static_cast<std::streamsize>(hs.size()));
  for (const auto& t : tensors) f.write(reinterpret_cast<const char*>(t.bytes.data()), static_cast<std::streamsize>(t.bytes.size()));
}

std::vector<RawTensor> read_all(const fs::path& path) {
  const TensorStore st = TensorStore::open_file(path);
  std::vector<RawTensor> out;
  for (const auto& name : st.names()) {
    const TensorRef t = st.get(name);
    out.push_back({name, t.info->dtype, t.info->shape, std::vector<uint8_t>(t.data, t.data + (t.info->end - t.info->begin))});
  }
  return out;
}

std::vector<float> random_floats(size_t n, uint64_t seed, float lo, float hi) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

}  // namespace dsv4::test
