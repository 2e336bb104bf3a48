// Minimal command-line parsing for the dsv4 tool: "--flag value" / "-f value" pairs.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace dsv4::cli {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Args {
 public:
  // `valued` lists flags that take a value (long and short spellings); `aliases` maps short to long.
  Args(int argc, char** argv, int first, const std::set<std::string>& valued, const std::set<std::string>& switches,
       const std::map<std::string, std::string>& aliases);
  std::optional<std::string> get(const std::string& flag) const;
  bool has(const std::string& flag) const { return values_.count(flag) != 0; }
  int64_t get_int(const std::string& flag, int64_t dflt) const;

 private:
  std::map<std::string, std::string> values_;
};

// Parses integers separated by commas and/or whitespace. Throws UsageError naming `what`.
std::vector<int64_t> parse_int_list(const std::string& text, const std::string& what);

}  // namespace dsv4::cli
