// A generated corpus of malformed checkpoints (from the tiny_a golden): truncations, header
// lengths, header JSON (dtypes, shapes, offsets, missing / extra tensors, nesting), index files
// (missing shards, wrong maps, path traversal) and every config.json field out of range. Each
// case is loaded in a forked child under a time and address-space bound; it must end in a typed
// dsv4::Error, or load and give finite logits (and the golden's logits where the change is
// harmless). A crash, hang, untyped exception or non-finite result fails the test.
#include <doctest/doctest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dsv4/log.hpp"
#include "dsv4/model.hpp"
#include "support/support.hpp"

using namespace dsv4;
using namespace dsv4::test;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}
void spit(const fs::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(s.data(), static_cast<std::streamsize>(s.size()));
}

enum Outcome { TypedError = 10, Loaded = 0, LoadedSame = 1, LoadedWarned = 2, NotFinite = 3, Untyped = 11, Unknown = 12 };

struct Case {
  std::string name;
  std::function<void(const fs::path& dir)> make;  // writes config.json and the safetensors into dir
  bool harmless = false;                          // must load and match the golden
};

int run_child(const fs::path& dir, const std::vector<float>& want) {
  alarm(60);  // a hang is a finding
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  struct rlimit rl {8ull << 30, 8ull << 30};  // an oversized allocation is a finding, not a swap storm
  setrlimit(RLIMIT_AS, &rl);
#endif
  try {
    bool warned = false;
    set_log_callback([&](LogLevel l, std::string_view) { warned |= l >= LogLevel::Warning; });
    LoadOptions lo;
    lo.threads = 1;
    const auto m = Model::load(dir, lo);
    Session s(m);
    const std::vector<int32_t> ids = {0, 5, 17, 3};
    auto l = s.forward(ids);
    for (float v : l)
      if (!std::isfinite(v)) return NotFinite;
    if (l.size() == want.size() && rel_err(l.data(), want.data(), want.size()) < 1e-6) return LoadedSame;
    return warned ? LoadedWarned : Loaded;
  } catch (const Error&) {
    return TypedError;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "untyped exception: %s\n", e.what());
    return Untyped;
  } catch (...) {
    return Unknown;
  }
}

}  // namespace

TEST_CASE("malformed checkpoints: every generated case ends in a typed error or a finite result") {
  const fs::path src = golden_dir("tiny_a");
  const std::string cfg_text = slurp(src / "config.json");
  const std::string st = slurp(src / "model.safetensors");
  const json cfg = json::parse(cfg_text);
  uint64_t hlen = 0;
  std::memcpy(&hlen, st.data(), 8);
  const json header = json::parse(st.substr(8, hlen));
  const std::string data = st.substr(8 + hlen);
  std::string first;  // the first tensor's name (not __metadata__)
  for (auto it = header.begin(); it != header.end(); ++it)
    if (it.key() != "__metadata__") {
      first = it.key();
      break;
    }
  REQUIRE(!first.empty());

  auto write_st = [&](const fs::path& file, const json& h) {
    const std::string hs = h.dump();
    std::string out(8, '\0');
    const uint64_t n = hs.size();
    std::memcpy(out.data(), &n, 8);
    spit(file, out + hs + data);
  };
  auto with_config = [&](const json& c) {
    return [c, &st](const fs::path& dir) {
      spit(dir / "config.json", c.dump(2));
      fs::create_symlink(fs::absolute(golden_dir("tiny_a") / "model.safetensors"), dir / "model.safetensors");
      (void)st;
    };
  };
  auto with_header = [&](const json& h) {
    return [&, h](const fs::path& dir) {
      spit(dir / "config.json", cfg_text);
      write_st(dir / "model.safetensors", h);
    };
  };
  auto with_bytes = [&](const std::string& bytes) {
    return [&, bytes](const fs::path& dir) {
      spit(dir / "config.json", cfg_text);
      spit(dir / "model.safetensors", bytes);
    };
  };

  std::vector<Case> cases;
  cases.push_back({"unchanged", with_config(cfg), true});
  // Truncations and header lengths.
  for (uint64_t at : {uint64_t{0}, uint64_t{4}, uint64_t{8}, uint64_t{9}, 8 + hlen / 2, 8 + hlen, 8 + hlen + 1,
                      static_cast<uint64_t>(st.size() / 2), static_cast<uint64_t>(st.size() - 1)})
    cases.push_back({"truncated at " + std::to_string(at), with_bytes(st.substr(0, at))});
  for (uint64_t n : {uint64_t{0}, uint64_t{1}, hlen + 1, hlen - 1, static_cast<uint64_t>(st.size()), uint64_t{1} << 40, ~uint64_t{0}}) {
    std::string b = st;
    std::memcpy(b.data(), &n, 8);
    cases.push_back({"header length " + std::to_string(n), with_bytes(b)});
  }
  cases.push_back({"trailing bytes", with_bytes(st + std::string(100, 'x')), true});
  // Header JSON.
  for (const json& dt : {json("F64"), json("I32"), json("XX"), json(7), json(nullptr), json("BF16"), json("F8_E4M3")}) {
    json h = header;
    h[first]["dtype"] = dt;
    cases.push_back({"dtype " + dt.dump(), with_header(h)});
  }
  for (const json& sh : {json::array(), json{-1, 4}, json{1ll << 40, 1ll << 40}, json{"a"}, json{3}, json(5), json{0, 0}}) {
    json h = header;
    h[first]["shape"] = sh;
    cases.push_back({"shape " + sh.dump(), with_header(h)});
  }
  for (const json& off : {json{0, 1000000000000000000ll}, json{10, 5}, json{-1, 4}, json{0}, json("x"), json{0, 4},
                          json{data.size(), data.size() + 4}}) {
    json h = header;
    h[first]["data_offsets"] = off;
    cases.push_back({"offsets " + off.dump(), with_header(h)});
  }
  {
    json h = header;
    h[first].erase("data_offsets");
    cases.push_back({"no offsets", with_header(h)});
    h = header;
    h.erase(first);
    cases.push_back({"missing tensor " + first, with_header(h)});
    h = header;
    h["junk.extra.weight"] = {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {data.size(), data.size() + 8}}};
    cases.push_back({"extra tensor", [&, h](const fs::path& dir) {
                       spit(dir / "config.json", cfg_text);
                       const std::string hs = h.dump();
                       std::string out(8, '\0');
                       const uint64_t n = hs.size();
                       std::memcpy(out.data(), &n, 8);
                       spit(dir / "model.safetensors", out + hs + data + std::string(8, '\0'));
                     }, true});
    h = header;
    h["junk.overlapping.weight"] = {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}};
    cases.push_back({"overlapping tensors", with_header(h)});
    h = header;
    h["__metadata__"] = 5;
    cases.push_back({"metadata not an object", with_header(h)});
    cases.push_back({"header an array", with_header(json::array({1, 2}))});
    std::string deep(100000, '[');
    cases.push_back({"header nested 100000 deep", with_bytes([&] {
                       std::string b(8, '\0');
                       const uint64_t n = deep.size();
                       std::memcpy(b.data(), &n, 8);
                       return b + deep + data;
                     }())});
  }
  // Index files.
  auto with_index = [&](const std::string& index, bool keep_file) {
    return [&, index, keep_file](const fs::path& dir) {
      spit(dir / "config.json", cfg_text);
      if (keep_file) fs::create_symlink(fs::absolute(src / "model.safetensors"), dir / "model-00001-of-00001.safetensors");
      spit(dir / "model.safetensors.index.json", index);
    };
  };
  json wm = json::object();
  for (auto it = header.begin(); it != header.end(); ++it)
    if (it.key() != "__metadata__") wm[it.key()] = "model-00001-of-00001.safetensors";
  cases.push_back({"index ok", with_index(json{{"weight_map", wm}}.dump(), true), true});
  cases.push_back({"index names a missing shard", with_index(json{{"weight_map", wm}}.dump(), false)});
  {
    json w2 = wm;
    w2[first] = "model-00002-of-00002.safetensors";
    cases.push_back({"index maps a tensor to another shard", with_index(json{{"weight_map", w2}}.dump(), true)});
    w2 = wm;
    w2[first] = "../../../etc/passwd";
    cases.push_back({"index path traversal", with_index(json{{"weight_map", w2}}.dump(), true)});
    w2 = wm;
    w2[first] = 5;
    cases.push_back({"index shard not a string", with_index(json{{"weight_map", w2}}.dump(), true)});
  }
  cases.push_back({"index malformed", with_index("{\"weight_map\": {", true)});
  cases.push_back({"index weight_map an array", with_index("{\"weight_map\": []}", true)});
  // Every config field out of range (and removed).
  const std::vector<json> bad_values = {json(-1), json(0), json(1ll << 62), json(1e300), json(nullptr), json("x"), json(0.5),
                                        json::array(), json::object()};
  std::vector<std::string> keys;
  for (auto it = cfg.begin(); it != cfg.end(); ++it) keys.push_back(it.key());
  for (const std::string& k : keys) {
    for (const json& v : bad_values) {
      json c = cfg;
      c[k] = v;
      cases.push_back({"config " + k + " = " + v.dump(), with_config(c)});
    }
    json c = cfg;
    c.erase(k);
    cases.push_back({"config without " + k, with_config(c)});
  }
  for (const char* k : {"compressed_sparse_attention", "heavily_compressed_attention"})
    for (const json& v : {json(0), json(-4), json(3), json(1 << 30)}) {
      json c = cfg;
      c["compress_rates"][k] = v;
      cases.push_back({std::string("config compress_rates.") + k + " = " + v.dump(), with_config(c)});
    }
  {
    json c = cfg;
    c["layer_types"][1] = "quantum_attention";
    cases.push_back({"config unknown layer type", with_config(c)});
    c = cfg;
    c["layer_types"].erase(c["layer_types"].begin());
    cases.push_back({"config layer_types too short", with_config(c)});
    c = cfg;
    c["mlp_layer_types"][0] = "dense?";
    cases.push_back({"config unknown mlp type", with_config(c)});
    c = cfg;
    c["rope_parameters"]["main"]["rope_theta"] = -5;
    cases.push_back({"config rope theta < 0", with_config(c)});
  }

  // The golden's logits for the harmless cases.
  std::vector<float> want;
  {
    LoadOptions lo;
    lo.threads = 1;
    Session s(Model::load(src, lo));
    const std::vector<int32_t> ids = {0, 5, 17, 3};
    auto l = s.forward(ids);
    want.assign(l.begin(), l.end());
  }

  std::map<std::string, int> tally;
  std::vector<std::string> changed;  // loaded with different logits: each must be a legitimate change
  const fs::path root = fs::temp_directory_path() / ("dsv4_corpus_" + std::to_string(::getpid()));
  int n = 0;
  for (const Case& c : cases) {
    const fs::path dir = root / std::to_string(n++);
    fs::create_directories(dir);
    c.make(dir);
    std::fflush(nullptr);
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) _exit(run_child(dir, want));
    int status = 0;
    waitpid(pid, &status, 0);
    std::string result;
    if (WIFSIGNALED(status)) {
      result = WTERMSIG(status) == SIGALRM ? "HANG" : "CRASH (signal " + std::to_string(WTERMSIG(status)) + ")";
    } else {
      const int code = WEXITSTATUS(status);
      result = code == TypedError ? "typed error" : code == LoadedSame ? "loaded, golden logits" : code == Loaded ? "loaded, finite logits" : code == LoadedWarned ? "loaded with a warning"
               : code == NotFinite ? "NON-FINITE LOGITS" : "UNTYPED EXCEPTION";
    }
    ++tally[result];
    if (result == "loaded, finite logits") changed.push_back(c.name);
    INFO("case '" << c.name << "': " << result);
    CHECK((result == "typed error" || result.rfind("loaded", 0) == 0));
    if (c.harmless) CHECK(result == "loaded, golden logits");
    fs::remove_all(dir);
  }
  fs::remove_all(root);
  std::string table;
  for (const auto& [k, v] : tally) table += "  " + k + ": " + std::to_string(v) + "\n";
  std::string list;
  for (const auto& c : changed) list += "  " + c + "\n";
  // Values that legitimately change the result (another epsilon, scaling or clamp), or a key
  // whose absence means its documented default. Anything else loading with other logits is a
  // silently wrong answer.
  const std::vector<std::string> legit = {"config hc_eps = ", "config rms_norm_eps = ", "config rope_parameters = null",
                                          "config without rope_parameters", "config routed_scaling_factor = ",
                                          "config without routed_scaling_factor", "config swiglu_limit = ", "config without swiglu_limit"};
  for (const auto& c : changed) {
    bool ok = false;
    for (const auto& l : legit) ok |= c.rfind(l, 0) == 0;
    INFO("loaded with other logits and no warning: " << c);
    CHECK(ok);
  }
  MESSAGE("malformed-checkpoint corpus: " << cases.size() << " cases\n" << table << "loaded with other logits:\n" << list);
  CHECK(cases.size() > 300);
}
