// Command-line parsing for the dsv4 tool, on CLI11: every subcommand declares its options (names,
// value, default, help) once; `dsv4 <cmd> --help` lists them all with their defaults, and a
// usage error is one line plus a hint. Values are read back as text by the command code.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace dsv4::cli {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// --help was given: the text to print (exit status 0).
struct HelpRequested {
  std::string text;
};

struct Opt {
  std::string names;       // CLI11 spelling: "-m,--model" (the long name is the key)
  std::string help;
  std::string dflt;        // shown as the default in --help ("" for none)
  bool flag = false;       // takes no value
  std::string value_name;  // e.g. "DIR", "N" (default: "VALUE")
};

// Option groups shared by the commands that run a model.
std::vector<Opt> model_opts();     // -m/--model, --tokenizer
std::vector<Opt> backend_opts();   // --backend, --device, --threads, --cpu-tier
std::vector<Opt> cache_opts();     // --cache-type
std::vector<Opt> sampling_opts();  // --greedy, --temperature, --top-k, --top-p, --min-p, --repetition-penalty, --seed

class Args {
 public:
  // Parses argv[2..] for `command`. Throws UsageError (bad usage) or HelpRequested.
  Args(const std::string& command, const std::string& description, int argc, char** argv, const std::vector<std::vector<Opt>>& groups);
  std::optional<std::string> get(const std::string& flag) const;
  bool has(const std::string& flag) const { return values_.count(flag) != 0; }
  int64_t get_int(const std::string& flag, int64_t dflt) const;

 private:
  std::map<std::string, std::string> values_;
};

// Parses integers separated by commas and/or whitespace. Throws UsageError naming `what`.
std::vector<int64_t> parse_int_list(const std::string& text, const std::string& what);

}  // namespace dsv4::cli
