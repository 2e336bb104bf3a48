#include "args.hpp"

#include <CLI/CLI.hpp>

#include <cctype>
#include <cerrno>
#include <cstdlib>

namespace dsv4::cli {

namespace {
std::string long_name(const std::string& names) {
  size_t p = names.rfind("--");
  if (p == std::string::npos) throw std::logic_error("option without a long name: " + names);
  return names.substr(p);
}
}  // namespace

std::vector<Opt> model_opts() {
  return {{"-m,--model", "model directory (config.json, safetensors, tokenizer.json)", "$DSV4_MODEL or the demo model", false, "DIR"},
          {"--tokenizer", "tokenizer.json (or a directory holding one) instead of the model's", "", false, "FILE"}};
}

std::vector<Opt> backend_opts() {
  return {{"--backend", "compute backend: cpu, or cuda where built", "cpu", false, "NAME"},
          {"--device", "device index of the backend", "0", false, "N"},
          {"--threads", "worker threads (a warning when above the hardware threads)", "one per hardware thread", false, "N"},
          {"--cpu-tier", "force a lower CPU kernel tier: portable, avx2, avx512, avx512vnni (x86-64); neon, neondot (AArch64)",
           "the best this CPU runs", false, "NAME"},
          {"--no-host-experts", "device backends: refuse weights that do not fit in device memory instead of keeping experts in host memory", "", true, ""},
          {"--device-reserve", "device backends: whole GiB of device memory kept free for caches and scratch when placing weights",
           "5% of the device, at least 2", false, "GIB"}};
}

std::vector<Opt> cache_opts() {
  return {{"--cache-type", "how the session stores compressed entries and indexer keys: f32 (exact), bf16 (half), fp8 (about a quarter)",
           "f32", false, "TYPE"},
          {"--cache-window", "store the sliding-window rows in the cache type too (less memory, less accurate)", "", true, ""}};
}

std::vector<Opt> sampling_opts() {
  return {{"--greedy", "always take the most likely token (temperature 0)", "", true, ""},
          {"--temperature", "sampling temperature (<= 0: greedy)", "1.0", false, "T"},
          {"--top-k", "keep the K most likely tokens (0: off)", "0", false, "K"},
          {"--top-p", "keep the smallest set with probability >= P (1: off)", "1.0", false, "P"},
          {"--min-p", "drop tokens below P x the best one's probability (0: off)", "0.0", false, "P"},
          {"--repetition-penalty", "penalty for tokens seen recently (1: off)", "1.0", false, "R"},
          {"--seed", "random seed (-1: a random one, printed to stderr)", "0", false, "S"}};
}

Args::Args(const std::string& command, const std::string& description, int argc, char** argv,
           const std::vector<std::vector<Opt>>& groups) {
  CLI::App app(description, "dsv4 " + command);
  app.set_help_flag("-h,--help", "print this help and exit");
  app.get_formatter()->column_width(34);
  std::map<std::string, std::string> raw;
  struct Seen {
    std::string key;
    CLI::Option* opt;
    bool flag;
  };
  std::vector<Seen> opts;
  for (const auto& group : groups)
    for (const Opt& o : group) {
      const std::string key = long_name(o.names);
      CLI::Option* opt = nullptr;
      if (o.flag) {
        opt = app.add_flag(o.names, o.help);
      } else {
        opt = app.add_option(o.names, raw[key], o.help);
        opt->type_name(o.value_name.empty() ? "VALUE" : o.value_name);
        opt->allow_extra_args(false);
        if (!o.dflt.empty()) opt->default_str(o.dflt);
      }
      opts.push_back({key, opt, o.flag});
    }
  // CLI11 wants the arguments without the program and command names, in reverse order.
  std::vector<std::string> args;
  for (int i = argc - 1; i >= 2; --i) args.emplace_back(argv[i]);
  try {
    app.parse(args);
  } catch (const CLI::CallForHelp&) {
    throw HelpRequested{app.help()};
  } catch (const CLI::ParseError& e) {
    throw UsageError(e.what());
  }
  for (const Seen& o : opts)
    if (o.opt->count() > 0) values_[o.key] = o.flag ? std::string("1") : raw[o.key];
}

std::optional<std::string> Args::get(const std::string& flag) const {
  auto it = values_.find(flag);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

int64_t Args::get_int(const std::string& flag, int64_t dflt) const {
  auto v = get(flag);
  if (!v) return dflt;
  auto xs = parse_int_list(*v, flag);
  if (xs.size() != 1) throw UsageError("option " + flag + " takes one integer, got '" + *v + "'");
  return xs[0];
}

std::vector<int64_t> parse_int_list(const std::string& text, const std::string& what) {
  std::vector<int64_t> out;
  size_t i = 0;
  while (i < text.size()) {
    const char ch = text[i];
    if (ch == ',' || std::isspace(static_cast<unsigned char>(ch))) {
      ++i;
      continue;
    }
    const char* start = text.c_str() + i;
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(start, &end, 10);
    if (end == start || errno == ERANGE || (*end != '\0' && *end != ',' && !std::isspace(static_cast<unsigned char>(*end))))
      throw UsageError(what + ": '" + text.substr(i, 20) + "' is not an integer");
    out.push_back(v);
    i += static_cast<size_t>(end - start);
  }
  return out;
}

}  // namespace dsv4::cli
