// dsv4 info / dsv4 logits: the model and its raw logits.
#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "common.hpp"
#include "dsv4/log.hpp"
#include "terminal.hpp"
#include "dsv4/model.hpp"
#include "npy.hpp"

namespace dsv4::cli {

std::string human_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f %s", bytes, units[u]);
  return buf;
}

std::string require(const Args& a, const std::string& flag) {
  auto v = a.get(flag);
  if (!v) throw UsageError("missing required option " + flag);
  return *v;
}

CacheType cache_type(const Args& a) {
  try {
    return parse_cache_type(a.get("--cache-type").value_or("f32"));
  } catch (const InvalidArgument& e) {
    throw UsageError(std::string("--cache-type: ") + e.what());
  }
}

LoadOptions load_options(const Args& a) {
  LoadOptions o;
  o.backend = a.get("--backend").value_or("cpu");
  o.device = static_cast<int>(a.get_int("--device", 0));
  o.threads = static_cast<int>(a.get_int("--threads", 0));
  o.cpu_tier = a.get("--cpu-tier").value_or("");
  if (o.device < 0) throw UsageError("--device must be >= 0");
  if (o.threads < 0) throw UsageError("--threads must be >= 0");
  o.host_experts = !a.has("--no-host-experts");
  if (a.has("--device-reserve")) {
    const int64_t g = a.get_int("--device-reserve", 0);
    if (g <= 0 || g > 1 << 20) throw UsageError("--device-reserve must be a positive whole number of GiB");
    o.device_reserve_bytes = static_cast<uint64_t>(g) << 30;
  }
  o.progress = load_progress();
  if (a.has("--verbose")) set_log_level(LogLevel::Info);
  return o;
}

std::string model_dir(const Args& a) {
  if (auto m = a.get("--model")) return *m;
  if (const char* env = std::getenv("DSV4_MODEL"); env != nullptr && *env != '\0') return env;
  // The demo model ships as data next to the tool: <prefix>/bin/dsv4 and
  // <prefix>/share/dsv4/models/demo-code, in the build tree and in an install tree alike, so
  // either can be moved.
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const auto demo = exe.parent_path().parent_path() / "share" / "dsv4" / "models" / "demo-code";
    if (std::filesystem::exists(demo / "config.json", ec)) return demo.string();
    throw UsageError("no model given: pass -m DIR or set DSV4_MODEL (the demo model is not at " + demo.string() + ")");
  }
  throw UsageError("no model given: pass -m DIR or set DSV4_MODEL");
}

int cmd_info(int argc, char** argv) {
  Args a("info", "Config summary, parameters and bytes by dtype, backends and devices, memory at a context length.", argc, argv,
         {{{"-m,--model", "model directory", "$DSV4_MODEL or the demo model", false, "DIR"},
           {"--context", "context length for the memory estimate", "the model maximum", false, "N"}},
          backend_opts()});
  std::cout << "backends compiled in:";
  for (const auto& b : dsv4::compiled_backends()) std::cout << " " << b;
  std::cout << "\nCPU kernel tiers compiled in:";
  for (const auto& t : dsv4::cpu_kernel_tiers()) std::cout << " " << t;
  std::cout << " (best this CPU runs: " << dsv4::best_cpu_kernel_tier() << ")";
  std::cout << "\ndevices found:\n";
  for (const auto& d : dsv4::available_devices())
    std::cout << "  " << d.backend << ":" << d.device << "  " << d.name << ", " << human_bytes(static_cast<double>(d.memory_total))
              << (d.threads > 0 ? ", " + std::to_string(d.threads) + " hardware threads" : std::string()) << "\n";
  const auto model = dsv4::Model::load(model_dir(a), load_options(a));
  {
    const BackendInfo b = model->backend_info();
    std::cout << "model bound to: " << b.name << ":" << b.device << " (" << b.device_name << ")";
    if (b.threads > 0) std::cout << ", " << b.threads << " threads";
    std::cout << ", kernel tier " << b.kernel_tier << "\n  formats:";
    for (const auto& f : b.formats) std::cout << " " << f;
    std::cout << "\n  ops:";
    for (const auto& f : b.ops) std::cout << " " << f;
    std::cout << "\n  weights " << human_bytes(static_cast<double>(b.weight_bytes)) << (b.name == "cpu" ? " (mapped, not copied)" : "")
              << (b.host_weight_bytes > 0 ? " + " + human_bytes(static_cast<double>(b.host_weight_bytes)) + " of experts in pinned host memory (read over the bus)" : std::string())
              << ", backend buffers " << human_bytes(static_cast<double>(b.buffer_bytes)) << ", memory "
              << human_bytes(static_cast<double>(b.memory_available)) << " free of " << human_bytes(static_cast<double>(b.memory_total))
              << "\n";
  }
  const auto& c = model->config();
  const int64_t max_pos = c.max_position_embeddings > 0 ? c.max_position_embeddings : 16384;
  const int64_t ctx = a.get_int("--context", max_pos);
  if (ctx <= 0) throw UsageError("--context must be positive");
  const auto st = model->stats();
  std::cout << "model: " << model_dir(a) << " (" << st.layout << " layout)\n" << c.summary();
  std::cout << "parameters: " << st.parameters << " (" << static_cast<double>(st.parameters) / 1e9 << " B)";
  if (st.mtp_parameters) std::cout << " + MTP " << st.mtp_parameters;
  std::cout << "\nstored bytes by dtype:\n";
  uint64_t total = 0;
  for (const auto& [dt, b] : st.bytes_by_dtype) {
    std::cout << "  " << dt << ": " << human_bytes(static_cast<double>(b)) << " in " << st.tensors_by_dtype.at(dt) << " tensors\n";
    total += b;
  }
  std::cout << "  total: " << human_bytes(static_cast<double>(total)) << " (files " << human_bytes(static_cast<double>(st.file_bytes))
            << ", memory-mapped)\n";
  // Session state: a fixed part when the session is created, then cache blocks from the model's
  // pool as the position advances (nothing is reserved for max_context up front).
  const CachePoolStats pool = model->cache_pool();
  std::cout << "session state at context " << ctx << " (committed as the position advances, in blocks of " << pool.block_tokens
            << " positions; nothing is reserved up front):\n";
  for (CacheType t : {CacheType::F32, CacheType::BF16, CacheType::FP8}) {
    const uint64_t at0 = model->session_state_bytes(0, t), at = model->session_state_bytes(ctx, t);
    const uint64_t block = model->session_state_bytes(pool.block_tokens, t) - model->session_state_bytes(0, t);
    std::cout << "  " << cache_type_name(t) << (t == CacheType::F32 ? " (default, exact)" : "") << ": "
              << human_bytes(static_cast<double>(at)) << "  (" << human_bytes(static_cast<double>(at0)) << " at creation, "
              << human_bytes(static_cast<double>(block)) << " per block)";
    if (ctx != max_pos) std::cout << "; at the model maximum " << max_pos << ": " << human_bytes(static_cast<double>(model->session_state_bytes(max_pos, t)));
    std::cout << "\n";
  }
  std::cout << "cache pool: budget " << (pool.limit_bytes == UINT64_MAX ? std::string("none") : human_bytes(static_cast<double>(pool.limit_bytes)))
            << " for all sessions together (LoadOptions::cache_pool_bytes), " << human_bytes(static_cast<double>(pool.in_use_bytes))
            << " in use\n";
  if (pool.limit_bytes != UINT64_MAX) {  // the plan: how many sessions of this context the pool holds
    std::cout << "plan: the pool holds";
    for (CacheType t : {CacheType::F32, CacheType::BF16, CacheType::FP8}) {
      const uint64_t per = std::max<uint64_t>(model->session_state_bytes(ctx, t), 1);
      std::cout << " " << pool.limit_bytes / per << " sessions at context " << ctx << " (" << cache_type_name(t) << ")"
                << (t == CacheType::FP8 ? "\n" : ",");
    }
  }
  const uint64_t state = model->session_state_bytes(ctx);
  std::cout << "estimated resident memory at context " << ctx << ": "
            << human_bytes(static_cast<double>(st.file_bytes + state)) << " (weights touched + f32 caches, plus scratch)\n";
  return 0;
}

std::vector<int32_t> read_ids(const Args& a) {
  std::string text;
  if (auto ids = a.get("--ids")) {
    if (a.has("--ids-file")) throw UsageError("give either --ids or --ids-file, not both");
    text = *ids;
  } else if (auto file = a.get("--ids-file")) {
    std::ifstream f(*file);
    if (!f) throw UsageError("cannot read ids file " + *file);
    std::stringstream ss;
    ss << f.rdbuf();
    text = ss.str();
  } else {
    throw UsageError("give the token ids with --ids or --ids-file");
  }
  std::vector<int32_t> out;
  for (int64_t v : dsv4::cli::parse_int_list(text, "token ids")) {
    if (v < INT32_MIN || v > INT32_MAX) throw UsageError("token id " + std::to_string(v) + " is out of range");
    out.push_back(static_cast<int32_t>(v));
  }
  if (out.empty()) throw UsageError("no token ids given");
  return out;
}

int cmd_logits(int argc, char** argv) {
  Args a("logits", "Raw float32 logits of token ids as a .npy file [n_tokens, vocab].", argc, argv,
         {{{"-m,--model", "model directory", "$DSV4_MODEL or the demo model", false, "DIR"},
           {"--ids", "token ids, comma-separated", "", false, "LIST"},
           {"--ids-file", "a file of token ids (whitespace or comma separated)", "", false, "FILE"},
           {"-o,--output", "output .npy file (required)", "", false, "FILE"},
           {"--chunks", "feed the prompt in pieces of these sizes, the rest one token at a time", "all at once", false, "LIST"},
           {"--max-context", "session max_context", "the model maximum", false, "N"}},
          cache_opts(), backend_opts()});
  const std::string out_path = require(a, "--output");
  const auto ids = read_ids(a);
  std::vector<int64_t> chunks;
  if (auto ch = a.get("--chunks")) chunks = dsv4::cli::parse_int_list(*ch, "--chunks");
  int64_t sum = 0;
  for (auto c : chunks) {
    if (c <= 0) throw UsageError("--chunks sizes must be positive");
    sum += c;
  }
  if (sum > static_cast<int64_t>(ids.size()))
    throw UsageError("--chunks add up to " + std::to_string(sum) + " but only " + std::to_string(ids.size()) + " ids were given");
  const auto t0 = std::chrono::steady_clock::now();
  const auto model = dsv4::Model::load(model_dir(a), load_options(a));
  dsv4::SessionOptions opt;
  opt.max_context = a.get_int("--max-context", 0);
  opt.cache_type = cache_type(a);
  opt.cache_window = a.has("--cache-window");
  dsv4::Session s(model, opt);
  const int64_t V = s.vocab_size(), n = static_cast<int64_t>(ids.size());
  std::vector<float> all(static_cast<size_t>(n * V));
  const auto t1 = std::chrono::steady_clock::now();
  int64_t done = 0;
  auto feed = [&](int64_t len) {
    auto lg = s.forward({ids.data() + done, static_cast<size_t>(len)}, dsv4::Logits::All);
    std::copy(lg.begin(), lg.end(), all.begin() + done * V);
    done += len;
  };
  for (auto c : chunks) feed(c);
  while (done < n) feed(1);
  const auto t2 = std::chrono::steady_clock::now();
  dsv4::cli::write_npy_f32(out_path, all.data(), {n, V});
  const double load_s = std::chrono::duration<double>(t1 - t0).count(), run_s = std::chrono::duration<double>(t2 - t1).count();
  std::fprintf(stderr, "dsv4: %lld tokens in %.3f s (%.1f tok/s), load %.3f s, session memory %s -> %s\n",
               static_cast<long long>(n), run_s, static_cast<double>(n) / run_s, load_s,
               human_bytes(static_cast<double>(s.memory().total())).c_str(), out_path.c_str());
  return 0;
}


}  // namespace dsv4::cli
